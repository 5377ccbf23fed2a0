import { channel } from 'node:diagnostics_channel';
import { Agent, get as httpsGet } from 'node:https';
import { rootCertificates } from 'node:tls';
import type { AcmeConfig } from '../../config/tls.js';
import { parseDuration } from '../../config/duration.js';
import { CertificateFileError, readCaFile, readCertificatePair, type CertificatePair } from '../../config/tls-files.js';
import { ConfigError, type ConfigProblem } from '../../config/load.js';
import type { CertificateStore } from '../certificate-store.js';
import type { AcmeChallenges } from './challenges.js';
import { AcmeDiskStorage } from './storage.js';
import { X509Certificate } from 'node:crypto';
import { AcmeRedisShare, type AcmeShare, type SharedChallenge } from './redis-share.js';
import { certificateNames } from '../../config/tls-files.js';
import { challengeRecordName, dnsProvider, dnsProviderNames, waitForTxt, type DnsProvider } from './dns.js';

/** What the ACME manager of a listener did: an order began, a certificate came, an order failed, a stored one was reused. */
export interface AcmeEvent {
  event: 'ordering' | 'obtained' | 'renewed' | 'failed' | 'reused';
  listener: string;
  names: string[];
  /** The certificate in use expires (ISO); undefined while there is none. */
  notAfter: string | undefined;
  /** failed: the step that failed (`unreachable`: the ACME server could not be reached; `account`, `order`, `challenge`, `finalize`, `storage`). */
  reason: string | undefined;
  detail: string | undefined;
  /** failed: the next try in this many milliseconds (back-off); else the next renewal check. */
  nextInMs: number | undefined;
}

export const ACME_CHANNEL = 'gatewise:tls:acme';
export const acmeEvents = channel(ACME_CHANNEL);

/** A failed order: which step, with what underneath (`cause`). Classified by step, never by message. */
export class AcmeOrderError extends Error {
  readonly code = 'GATEWISE_ACME_ORDER_FAILED';
  readonly step: string;

  constructor(step: string, cause: unknown) {
    super(`${step}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'AcmeOrderError';
    this.step = step;
  }
}

const DAY_MS = 86_400_000;
/** An order lock older than this was left by a process that died. */
const LOCK_STALE_MS = 10 * 60_000;
/** How soon a process that found the lock taken looks again (at most; backoff.initial when shorter). */
const LOCK_WAIT_MS = 2_000;
/** setTimeout's longest delay is 2^31-1 ms (24.8 days); renewals further off are checked again after this. */
const MAX_TIMER_MS = 12 * 3_600_000;

type AcmeModule = typeof import('acme-client');
let acmeModule: Promise<AcmeModule> | undefined;
/** acme-client (with axios, node-forge and @peculiar/x509) is loaded only by a gateway with acme. */
function loadAcme(): Promise<AcmeModule> {
  acmeModule ??= import('acme-client');
  return acmeModule;
}

/**
 * Whether the directory can be reached: undefined when it answers, else the Node error code
 * (ECONNREFUSED, ETIMEDOUT, a certificate error …). Asked after a failed order because
 * acme-client does not pass a transport error on (its axios interceptor turns one it no
 * longer retries into a TypeError), and failures are classified by code, never by message.
 */
function probeDirectory(url: string, agent: Agent | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = httpsGet(url, { agent, timeout: 10_000 }, (res) => {
      res.resume();
      resolve(undefined);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('directory timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'EIO'));
  });
}

/**
 * Automatic certificates for one TLS listener (RFC 8555, through acme-client): the account
 * (key and URL stored on disk, created once), an order for the listener's host names
 * answered by HTTP-01 from the gateway's plain listeners (`AcmeChallenges`), the key and
 * certificate written to disk (0600) and installed into the listener's certificate store
 * (the next handshakes get it; open connections keep theirs). A renewal timer fires
 * `renewBefore` days ahead of expiry; a failed order is retried with exponential back-off
 * while the certificate in use (or the listener's default) keeps serving.
 *
 * Timers: one Node timer per listener, unref'd (process-level periodic work, like the
 * certificate files' watch; the deadline list is for short per-request deadlines).
 */
export class AcmeManager {
  readonly names: readonly string[];
  readonly #cfg: AcmeConfig;
  readonly #certs: CertificateStore;
  readonly #challenges: AcmeChallenges;
  readonly #storage: AcmeDiskStorage;
  readonly #files: { cert: string; key: string };
  readonly #httpsAgent: Agent | undefined;
  /** DNS-01: the provider that writes the TXT records (undefined without dns-01). */
  readonly #dns: DnsProvider | undefined;
  readonly #propagation: { resolvers: readonly string[]; timeoutMs: number; intervalMs: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The fleet's shared state (tls.acme.redis), connecting; undefined without it. */
  readonly #share: Promise<AcmeShare> | undefined;
  #running: Promise<void> | undefined;
  #closed = false;
  /** Orders failed in a row (the back-off's exponent); 0 after a success. */
  failures = 0;
  /** Orders that succeeded since start. */
  orders = 0;
  /** When the next check or try is due (epoch ms), undefined when none is scheduled. */
  nextAt: number | undefined;

  /** Throws a ConfigError (at `configPath`) when the storage folder cannot be written or directoryCa cannot be read. */
  constructor(cfg: AcmeConfig, names: readonly string[], certs: CertificateStore, challenges: AcmeChallenges, configPath = 'tls.acme') {
    this.#cfg = cfg;
    this.names = names;
    this.#certs = certs;
    this.#challenges = challenges;
    this.#storage = new AcmeDiskStorage(cfg.storage);
    this.#files = this.#storage.certificateFiles(names[0]!);
    // The directory's own TLS: the system roots plus the configured CA (a test directory such as Pebble).
    const problems: ConfigProblem[] = [];
    let ca: string | undefined;
    if (cfg.directoryCa !== undefined) {
      try {
        ca = readCaFile(cfg.directoryCa);
      } catch (err) {
        if (!(err instanceof CertificateFileError)) throw err;
        problems.push({ path: `${configPath}.directoryCa`, message: err.message });
      }
    }
    const d = cfg.dns;
    if (cfg.challenges.includes('dns-01') && d !== undefined) {
      this.#dns = dnsProvider({ provider: d.provider, command: d.command, timeoutMs: parseDuration(d.timeout)!, options: d.options });
      if (this.#dns === undefined) problems.push({ path: `${configPath}.dns.provider`, message: `no DNS-01 provider is registered as "${d.provider}" (known: ${dnsProviderNames().join(', ')}; register one with registerDnsProvider before the gateway starts)` });
      const p = d.propagation;
      this.#propagation = p === undefined ? undefined : { resolvers: p.resolvers, timeoutMs: parseDuration(p.timeout)!, intervalMs: parseDuration(p.interval)! };
    }
    const unwritable = this.#storage.writable();
    if (unwritable !== undefined) problems.push({ path: `${configPath}.storage`, message: unwritable });
    if (problems.length > 0) throw new ConfigError(problems);
    this.#httpsAgent = ca !== undefined ? new Agent({ ca: [...rootCertificates, ca], keepAlive: true }) : undefined;
    challenges.share(this.#storage);
    this.#loadStored();
    const r = cfg.redis;
    if (r !== undefined) {
      this.#share = AcmeRedisShare.open(r.url, r.keyPrefix, parseDuration(r.connectTimeout)!).then((share) => {
        share.listen({ challenge: (c) => this.#onSharedChallenge(c), certificate: (host) => void this.#onSharedCertificate(host) });
        return share;
      });
    }
  }

  /** Another node's challenge: answered here too while it is validated. */
  #onSharedChallenge(c: SharedChallenge): void {
    if (this.#closed) return;
    if (c.type === 'http-01') {
      if (c.done === true) this.#challenges.delete(c.token);
      else this.#challenges.set(c.token, c.keyAuthorization);
    } else if (c.done === true) this.#challenges.deleteAlpn(c.name);
    else this.#challenges.setAlpn(c.name, c.cert, c.key);
  }

  /** Another node stored a new certificate for these names: install it now (no order here). */
  async #onSharedCertificate(host: string): Promise<void> {
    if (this.#closed || host !== this.names[0] || this.#share === undefined) return;
    try {
      await this.#adoptShared(await this.#share);
    } catch {
      // Redis away: the next renewal check takes the lock and looks again.
    }
  }

  /**
   * The certificate in the shared store, when it names exactly these names, is not due and is
   * newer than the one in use: written to this node's storage and installed. True when adopted.
   */
  async #adoptShared(share: AcmeShare): Promise<boolean> {
    const stored = await share.readCertificate(this.names[0]!);
    if (stored === undefined || this.#closed) return false;
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(stored.cert);
    } catch {
      return false; // damaged: ordered again
    }
    const notAfter = new Date(leaf.validTo).getTime();
    const mine = this.current();
    const due = notAfter - this.#cfg.renewBefore * DAY_MS;
    if (!sameNames(certificateNames(leaf), this.names) || due <= Date.now() || (mine !== undefined && notAfter <= mine.notAfter.getTime())) return false;
    const f = this.#storage.writeCertificate(this.names[0]!, stored.cert, stored.key);
    this.#certs.install(f.cert, f.key);
    this.#publish({ event: 'reused', notAfter: new Date(notAfter).toISOString(), reason: undefined, detail: 'shared store', nextInMs: due - Date.now() });
    this.#schedule(due - Date.now());
    return true;
  }

  /** A stored certificate for exactly these names is served from the start (a restart orders nothing when it is not due). */
  #loadStored(): void {
    let pair: CertificatePair;
    try {
      pair = readCertificatePair(this.#files.cert, this.#files.key);
    } catch (err) {
      if (err instanceof CertificateFileError) return; // none yet, or unusable: ordered on start
      throw err;
    }
    if (!sameNames(pair.names, this.names) || pair.notAfter.getTime() <= Date.now()) return;
    this.#certs.install(this.#files.cert, this.#files.key);
    this.#publish({ event: 'reused', notAfter: pair.notAfter.toISOString(), reason: undefined, detail: this.#files.cert, nextInMs: Math.max(0, this.#dueAt(pair) - Date.now()) });
  }

  /** The certificate this manager serves, if any. */
  current(): CertificatePair | undefined {
    return this.#certs.pairOf(this.#files.cert);
  }

  #dueAt(pair: CertificatePair): number {
    return pair.notAfter.getTime() - this.#cfg.renewBefore * DAY_MS;
  }

  /** Start: order now when there is no certificate or it is due, else wait for its renewal time. */
  start(): void {
    if (this.#closed) return;
    const pair = this.current();
    this.#schedule(pair === undefined ? 0 : this.#dueAt(pair) - Date.now());
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    const d = Math.max(0, delayMs);
    this.nextAt = Date.now() + d;
    this.#timer = setTimeout(() => void this.#tick(), Math.min(d, MAX_TIMER_MS));
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    const pair = this.current();
    const due = pair === undefined ? 0 : this.#dueAt(pair);
    // A renewal further off than one timer can wait: look again later.
    if (due > Date.now()) return this.#schedule(due - Date.now());
    await this.renew(true);
  }

  /** Order a certificate now (`onlyIfDue`: only when the one in use is due, checked under the lock) (one at a time); resolves when it is installed or the failure is scheduled for a retry. */
  renew(onlyIfDue = false): Promise<void> {
    this.#running ??= this.#renew(onlyIfDue).finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #renew(onlyIfDue: boolean): Promise<void> {
    // One process orders at a time for a storage folder (or, with redis, for the fleet); the others wait and then find its certificate.
    let share: AcmeShare | undefined;
    let release: (() => void | Promise<void>) | undefined;
    try {
      share = await this.#share;
      release = share !== undefined ? await share.tryLock(this.names[0]!, LOCK_STALE_MS) : this.#storage.tryLock(this.names[0]!, LOCK_STALE_MS);
    } catch (err) {
      // The shared store cannot be reached: no order without its lock (two nodes would order at once).
      return this.#failed(new AcmeOrderError('storage', new Error(`the shared store (tls.acme.redis) cannot be reached: ${(err as Error).message}`)), this.current());
    }
    if (this.#closed) return void (await release?.());
    if (release === undefined) return this.#schedule(Math.min(parseDuration(this.#cfg.backoff.initial)!, LOCK_WAIT_MS));
    try {
      // Another node's certificate may have been installed while the lock was asked for (its word came first).
      const cur = this.current();
      if (onlyIfDue && cur !== undefined && this.#dueAt(cur) > Date.now()) return this.#schedule(this.#dueAt(cur) - Date.now());
      const adopted = share !== undefined ? await this.#adoptShared(share).catch((e: unknown) => Promise.reject(new AcmeOrderError('storage', e))) : this.#adoptStored();
      if (adopted) return;
      await this.#renewLocked(share);
    } catch (err) {
      await this.#failed(err, this.current());
    } finally {
      await release();
    }
  }

  /** A certificate another process sharing the storage wrote since ours, not due: served without an order. */
  #adoptStored(): boolean {
    let pair: CertificatePair;
    try {
      pair = readCertificatePair(this.#files.cert, this.#files.key);
    } catch (err) {
      if (err instanceof CertificateFileError) return false;
      throw err;
    }
    const mine = this.current();
    if (!sameNames(pair.names, this.names) || this.#dueAt(pair) <= Date.now() || (mine !== undefined && pair.notAfter.getTime() <= mine.notAfter.getTime())) return false;
    this.#certs.install(this.#files.cert, this.#files.key);
    this.#publish({ event: 'reused', notAfter: pair.notAfter.toISOString(), reason: undefined, detail: this.#files.cert, nextInMs: this.#dueAt(pair) - Date.now() });
    this.#schedule(this.#dueAt(pair) - Date.now());
    return true;
  }

  async #renewLocked(share: AcmeShare | undefined): Promise<void> {
    const before = this.current();
    this.#publish({ event: 'ordering', notAfter: before?.notAfter.toISOString(), reason: undefined, detail: this.#cfg.directory, nextInMs: undefined });
    let pair: CertificatePair;
    try {
      pair = await this.#order(share);
    } catch (err) {
      return this.#failed(err, before);
    }
    if (this.#closed) return;
    this.failures = 0;
    this.orders++;
    let next = this.#dueAt(pair) - Date.now();
    // A certificate due on arrival (validity shorter than renewBefore) is not ordered again at once.
    if (next <= 0) next = parseDuration(this.#cfg.backoff.initial)!;
    this.#publish({ event: before === undefined ? 'obtained' : 'renewed', notAfter: pair.notAfter.toISOString(), reason: undefined, detail: this.#files.cert, nextInMs: next });
    this.#schedule(next);
  }

  /** A failed order (or lock): counted, published with its step, tried again after the back-off. */
  async #failed(err: unknown, before: CertificatePair | undefined): Promise<void> {
    if (this.#closed) return;
    this.failures++;
    const wait = backoffWait(this.failures, parseDuration(this.#cfg.backoff.initial)!, parseDuration(this.#cfg.backoff.max)!);
    const down = err instanceof AcmeOrderError && err.step !== 'storage' ? await probeDirectory(this.#cfg.directory, this.#httpsAgent) : undefined;
    if (this.#closed) return;
    const reason = down !== undefined ? 'unreachable' : err instanceof AcmeOrderError ? err.step : 'internal';
    const detail = down !== undefined ? `the ACME directory ${this.#cfg.directory} cannot be reached (${down})` : (err as Error).message;
    this.#publish({ event: 'failed', notAfter: before?.notAfter.toISOString(), reason, detail, nextInMs: wait });
    this.#schedule(wait);
  }

  /** One order (RFC 8555 §7.4), step by step so a failure names its step. */
  async #order(share: AcmeShare | undefined): Promise<CertificatePair> {
    const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      try {
        return await fn();
      } catch (err) {
        throw err instanceof AcmeOrderError ? err : new AcmeOrderError(name, err);
      }
    };
    const acme = await loadAcme();
    // acme-client retries a request that found no server itself (5 times, waiting 5 to 25 s, on
    // timers that hold the process open): the manager's back-off is the one retry policy, so a
    // failure is seen, logged and counted at once.
    (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number } }).acmeSettings!.retryMaxAttempts = 0;
    const directory = this.#cfg.directory;
    if (this.#httpsAgent !== undefined) {
      // acme-client has one axios instance per process: the agent trusts the system roots too, so other directories still verify.
      acme.axios.defaults.httpsAgent = this.#httpsAgent;
    }
    const client = await step('account', async () => {
      // With a shared store the fleet has one account: the one stored there first.
      let stored = (await share?.readAccount(directory)) ?? this.#storage.readAccount(directory);
      if (stored === undefined) {
        const keyPem = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
        this.#storage.writeAccountKey(directory, keyPem);
        stored = { keyPem, url: undefined };
      }
      if (share !== undefined) {
        await share.writeAccount(directory, stored.keyPem, undefined);
        const fleet = await share.readAccount(directory);
        if (fleet !== undefined && fleet.keyPem !== stored.keyPem) stored = fleet;
      }
      const c = new acme.Client({ directoryUrl: directory, accountKey: stored.keyPem, backoffAttempts: 10, backoffMin: 100, backoffMax: 5000 });
      // newAccount with the stored key (RFC 8555 §7.3): the server answers with the account it
      // has for this key (no new account), or makes one when it no longer knows it (a reset
      // staging or test server). One request per order, so a forgotten account is not an outage.
      // Without an e-mail, acme-client follows an existing account's 200 with an update carrying
      // only termsOfServiceAgreed, which servers refuse ("use POST-as-GET"): every order after the
      // first failed at `account`. A known account is looked up with onlyReturnExisting instead
      // (its update is then a POST-as-GET); a new one is made with the terms.
      const known = this.#cfg.email === undefined && stored.url !== undefined ? await c.createAccount({ onlyReturnExisting: true }).then(() => true, () => false) : false;
      if (!known) await c.createAccount({ termsOfServiceAgreed: this.#cfg.acceptTerms, ...(this.#cfg.email !== undefined ? { contact: [`mailto:${this.#cfg.email}`] } : {}) });
      if (c.getAccountUrl() !== stored.url) {
        this.#storage.writeAccountUrl(directory, c.getAccountUrl());
        await share?.writeAccount(directory, stored.keyPem, c.getAccountUrl());
      }
      return c;
    });
    const order = await step('order', () => client.createOrder({ identifiers: this.names.map((value) => ({ type: 'dns', value })) }));
    const authorizations = await step('order', () => client.getAuthorizations(order));
    for (const authz of authorizations) {
      if (authz.status === 'valid') continue;
      await step('challenge', async () => {
        // The configured types in order of preference, the first the server offers.
        let challenge: (typeof authz.challenges)[number] | undefined;
        for (const type of this.#cfg.challenges) {
          challenge = authz.challenges.find((c) => (c.type as string) === type);
          if (challenge !== undefined) break;
        }
        if (challenge === undefined) throw new Error(`the server offers no ${this.#cfg.challenges.join(' or ')} challenge for ${authz.identifier.value}`);
        const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
        let withdraw: () => void | Promise<void>;
        if ((challenge.type as string) === 'dns-01') {
          // RFC 8555 §8.4: the digest as a TXT record, written by the provider; the same record name
          // for a wildcard and its base name (each authorization adds and removes its own value).
          const fqdn = challengeRecordName(authz.identifier.value);
          const dns = this.#dns!;
          await dns.present(fqdn, keyAuthorization);
          withdraw = () => dns.cleanup(fqdn, keyAuthorization).catch(() => {});
          if (this.#propagation !== undefined) {
            try {
              await waitForTxt(fqdn, keyAuthorization, this.#propagation);
            } catch (err) {
              await withdraw();
              throw err;
            }
          }
        } else if ((challenge.type as string) === 'tls-alpn-01') {
          // RFC 8737: the listener answers a validation's handshake (ALPN acme-tls/1) for this name with this certificate.
          const name = authz.identifier.value;
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization);
          const shared: SharedChallenge = { type: 'tls-alpn-01', name, cert: alpnCert.toString(), key: alpnKey.toString() };
          this.#challenges.setAlpn(name, shared.cert, shared.key);
          // The other nodes answer it too (a validation may reach any of them): told before the server is.
          await share?.publishChallenge(shared);
          withdraw = () => {
            this.#challenges.deleteAlpn(name);
            void share?.publishChallenge({ ...shared, done: true }).catch(() => {});
          };
        } else {
          const token = (challenge as { token: string }).token;
          this.#challenges.set(token, keyAuthorization);
          this.#storage.writeChallenge(token, keyAuthorization);
          await share?.publishChallenge({ type: 'http-01', token, keyAuthorization });
          withdraw = () => {
            this.#challenges.delete(token);
            this.#storage.deleteChallenge(token);
            void share?.publishChallenge({ type: 'http-01', token, keyAuthorization, done: true }).catch(() => {});
          };
        }
        try {
          // acme-client's own check before telling the server is skipped: it would resolve the name
          // itself; the gateway answers from memory, and the server's validation is the check.
          await client.completeChallenge(challenge);
          await client.waitForValidStatus(authz);
        } finally {
          await withdraw();
        }
      });
    }
    const [keyPem, csr] = await step('finalize', async () => acme.crypto.createCsr({ commonName: this.names[0]!, altNames: [...this.names] }, await acme.crypto.createPrivateEcdsaKey('P-256')));
    const certPem = await step('finalize', async () => {
      const finalized = await client.finalizeOrder(order, csr);
      return client.getCertificate(finalized);
    });
    return step('storage', async () => {
      if (this.#closed) throw new Error('the gateway closed during the order');
      const f = this.#storage.writeCertificate(this.names[0]!, certPem, keyPem.toString());
      this.#certs.install(f.cert, f.key);
      // The fleet's copy, and the word to the other nodes to install it.
      await share?.writeCertificate(this.names[0]!, certPem, keyPem.toString());
      return this.current()!;
    });
  }

  #publish(e: Omit<AcmeEvent, 'listener' | 'names'>): void {
    if (acmeEvents.hasSubscribers) acmeEvents.publish({ listener: this.#certs.listener, names: [...this.names], ...e } satisfies AcmeEvent);
  }

  close(): void {
    this.#closed = true;
    void this.#share?.then((s) => s.close(), () => {});
    clearTimeout(this.#timer);
    this.nextAt = undefined;
    this.#httpsAgent?.destroy();
  }
}

/**
 * The wait after the `failures`-th failed order in a row (1 = the first): `initialMs` doubled
 * for each failure before it, at most `maxMs`, plus up to 10 % (`random` in [0, 1)) so nodes
 * that failed together do not all try again at the same moment. Never below the smaller of `initialMs` and `maxMs`, never
 * above `maxMs` × 1.1, never shorter than the wait before it (for the same `random`).
 */
export function backoffWait(failures: number, initialMs: number, maxMs: number, random: number = Math.random()): number {
  // 2 ** n grows past Number.MAX_VALUE after ~1000 failures: cap the exponent once the max is reached.
  const exp = Math.min(Math.max(0, failures - 1), 60);
  const base = Math.min(initialMs * 2 ** exp, maxMs);
  return Math.round(base * (1 + random * 0.1));
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && b.every((n) => a.includes(n));
}
