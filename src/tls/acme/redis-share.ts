import { createHash, randomUUID } from 'node:crypto';
import type { Redis as RedisClient } from 'ioredis';

/** A challenge being validated, told to every node (a validation may reach any of them). */
export type SharedChallenge =
  | { type: 'http-01'; token: string; keyAuthorization: string; done?: boolean }
  | { type: 'tls-alpn-01'; name: string; cert: string; key: string; done?: boolean };

/** What the ACME manager shares with the other nodes of a fleet (see `AcmeRedisShare`). */
export interface AcmeShare {
  /** The order lock of a certificate, held at most `ttlMs`: the release, or undefined when another node holds it. */
  tryLock(firstHost: string, ttlMs: number): Promise<(() => Promise<void>) | undefined>;
  readCertificate(firstHost: string): Promise<{ cert: string; key: string } | undefined>;
  /** Store a new pair and tell the other nodes (they install it at once). */
  writeCertificate(firstHost: string, cert: string, key: string): Promise<void>;
  readAccount(directory: string): Promise<{ keyPem: string; url: string | undefined } | undefined>;
  writeAccount(directory: string, keyPem: string, url: string | undefined): Promise<void>;
  /** Tell the other nodes about a challenge (resolves once Redis has passed it on). */
  publishChallenge(c: SharedChallenge): Promise<void>;
  /** Hear the challenges and new certificates of the other nodes (not one's own). */
  listen(on: { challenge(c: SharedChallenge): void; certificate(firstHost: string): void }): void;
  close(): Promise<void>;
}

/** Release the lock only when this node still holds it (its expiry may have passed and another taken it). */
const UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/**
 * ACME state shared by a fleet through Redis (`tls.acme.redis`): the order lock
 * (`SET NX PX`: one node orders at a time, and a node that dies frees it when it expires),
 * the certificate and key, the account, and the challenges pending (pub/sub: a validation
 * that reaches another node is answered there). Under the key prefix P: `P acme:lock:<host>`,
 * `P acme:cert:<host>` (hash cert, key), `P acme:account:<directory hash>` (hash key, url),
 * channel `P acme`. ioredis is imported directly: the state layer's `Store` is made of
 * counters and fleet operations, none of which holds a document or a lock with an owner.
 * Each node keeps its own copy on disk (`storage`), so it serves at start while Redis is away.
 */
export class AcmeRedisShare implements AcmeShare {
  readonly #redis: RedisClient;
  readonly #sub: RedisClient;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #node = randomUUID();
  #listener: Parameters<AcmeShare['listen']>[0] | undefined;

  private constructor(redis: RedisClient, sub: RedisClient, prefix: string) {
    this.#redis = redis;
    this.#sub = sub;
    this.#prefix = prefix;
    this.#channel = `${prefix}acme`;
    sub.on('message', (_ch: string, msg: string) => this.#onMessage(msg));
  }

  /** Connect (ioredis, loaded only here); commands wait for a connection at most `connectTimeoutMs`, then fail. */
  static async open(url: string, keyPrefix: string, connectTimeoutMs: number): Promise<AcmeRedisShare> {
    const { Redis } = await import('ioredis');
    const common = { connectTimeout: connectTimeoutMs, maxRetriesPerRequest: 1, retryStrategy: (times: number) => Math.min(100 * times, 2000), lazyConnect: false };
    const redis = new Redis(url, common);
    const sub = new Redis(url, common);
    redis.on('error', () => {});
    sub.on('error', () => {});
    const share = new AcmeRedisShare(redis, sub, keyPrefix);
    void sub.subscribe(share.#channel).catch(() => {});
    return share;
  }

  #key(kind: string, id: string): string {
    return `${this.#prefix}acme:${kind}:${id}`;
  }

  async tryLock(firstHost: string, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
    const key = this.#key('lock', firstHost);
    const token = `${this.#node} ${new Date().toISOString()}`;
    const ok = await this.#redis.set(key, token, 'PX', ttlMs, 'NX');
    if (ok !== 'OK') return undefined;
    return async () => {
      await this.#redis.eval(UNLOCK, 1, key, token).catch(() => {
        // Redis away: the lock lapses at its expiry.
      });
    };
  }

  async readCertificate(firstHost: string): Promise<{ cert: string; key: string } | undefined> {
    const h = await this.#redis.hgetall(this.#key('cert', firstHost));
    return h.cert !== undefined && h.key !== undefined ? { cert: h.cert, key: h.key } : undefined;
  }

  async writeCertificate(firstHost: string, cert: string, key: string): Promise<void> {
    await this.#redis.hset(this.#key('cert', firstHost), { cert, key });
    await this.#publish({ kind: 'cert', host: firstHost });
  }

  #accountKey(directory: string): string {
    return this.#key('account', createHash('sha256').update(directory).digest('hex').slice(0, 16));
  }

  async readAccount(directory: string): Promise<{ keyPem: string; url: string | undefined } | undefined> {
    const h = await this.#redis.hgetall(this.#accountKey(directory));
    return h.key !== undefined ? { keyPem: h.key, url: h.url !== undefined && h.url !== '' ? h.url : undefined } : undefined;
  }

  async writeAccount(directory: string, keyPem: string, url: string | undefined): Promise<void> {
    // The first node's key wins (HSETNX): two nodes never make two accounts for one directory.
    await this.#redis.hsetnx(this.#accountKey(directory), 'key', keyPem);
    if (url !== undefined) await this.#redis.hset(this.#accountKey(directory), 'url', url);
  }

  async publishChallenge(c: SharedChallenge): Promise<void> {
    await this.#publish({ kind: 'challenge', challenge: c });
  }

  async #publish(body: Record<string, unknown>): Promise<void> {
    await this.#redis.publish(this.#channel, JSON.stringify({ node: this.#node, ...body }));
  }

  listen(on: Parameters<AcmeShare['listen']>[0]): void {
    this.#listener = on;
  }

  #onMessage(raw: string): void {
    let m: { node?: unknown; kind?: unknown; host?: unknown; challenge?: SharedChallenge };
    try {
      m = JSON.parse(raw) as typeof m;
    } catch {
      return; // not ours
    }
    if (m.node === this.#node || this.#listener === undefined) return;
    if (m.kind === 'cert' && typeof m.host === 'string') this.#listener.certificate(m.host);
    else if (m.kind === 'challenge' && m.challenge !== undefined) this.#listener.challenge(m.challenge);
  }

  async close(): Promise<void> {
    this.#listener = undefined;
    this.#sub.disconnect();
    this.#redis.disconnect();
  }
}
