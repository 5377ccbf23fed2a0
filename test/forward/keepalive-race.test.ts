import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { ProxyAgent } from 'undici';
import { between, prng, seededRun } from '../helpers/seeded.js';
import { assertNoErrors, driveGetPost, type RaceLoadResult } from '../helpers/race-load.js';
import { basic, startTestProxy, type TestProxy } from './helpers.js';

/**
 * The keep-alive race on the forward proxy's direct exit (absolute-form HTTP, no CONNECT):
 * families of destinations that close idle keep-alive connections when the proxy cannot
 * know it (after a random idle time drawn per response, with or without a `Keep-Alive:`
 * hint longer than that; after a number of requests, without saying so), each with random
 * parameters and client gaps around the close time, GET and POST through undici's
 * ProxyAgent. The properties: zero failed requests, and no POST ever arrives on a
 * connection that served a request before (counted by the destination). Every case prints
 * its seed when it fails (GATEWISE_SEED=<seed> replays it).
 */

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const o of opened.reverse()) await o.close();
});

interface ConnState {
  served: number;
  idle: NodeJS.Timeout | undefined;
}

interface OriginOptions {
  idleCloseMs?: readonly [number, number];
  /** Sent as `Keep-Alive: timeout=` (s). */
  hintS?: number;
  maxRequests?: number;
  /** Close the connection, unanswered, when its n-th request arrives (an idle close that crossed the request). */
  dropNth?: number;
}

/**
 * A destination that closes each idle keep-alive connection after a random time in
 * [lo, hi] ms (drawn after every response) or after `maxRequests` responses, and counts
 * what arrived on which connection.
 */
class ClosingOrigin {
  port = 0;
  requests = 0;
  posts = 0;
  /** POSTs that arrived on a connection that had served a request before. */
  postsOnReused = 0;
  /** Requests dropped unanswered (`dropNth`). */
  dropped = 0;
  readonly #server: Server;
  readonly #conns = new Map<Socket, ConnState>();

  constructor(
    readonly opts: OriginOptions,
    readonly rand: () => number,
  ) {
    this.#server = createServer((req, res) => this.#onRequest(req, res));
    // No close of Node's own, and no Keep-Alive header unless the family sends a hint.
    this.#server.keepAliveTimeout = 0;
    this.#server.on('connection', (s: Socket) => {
      this.#conns.set(s, { served: 0, idle: undefined });
      s.once('close', () => {
        const st = this.#conns.get(s);
        if (st?.idle !== undefined) clearTimeout(st.idle);
        this.#conns.delete(s);
      });
    });
  }

  async listen(): Promise<this> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    const st = this.#conns.get(socket)!;
    if (st.idle !== undefined) clearTimeout(st.idle);
    st.idle = undefined;
    this.requests++;
    if (this.opts.dropNth !== undefined && st.served + 1 === this.opts.dropNth) {
      this.dropped++;
      socket.destroy();
      return;
    }
    if (req.method === 'POST') {
      this.posts++;
      if (st.served > 0) this.postsOnReused++;
    }
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      st.served++;
      const last = this.opts.maxRequests !== undefined && st.served >= this.opts.maxRequests;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (this.opts.hintS !== undefined) headers['keep-alive'] = `timeout=${this.opts.hintS}`;
      res.writeHead(200, headers);
      res.end(JSON.stringify({ method: req.method, bodyBytes: bytes }));
      res.once('finish', () => {
        if (socket.destroyed) return;
        if (last) {
          socket.destroy();
          return;
        }
        const range = this.opts.idleCloseMs;
        if (range === undefined) return;
        const ms = range[0] + this.rand() * (range[1] - range[0]);
        st.idle = setTimeout(() => socket.destroy(), ms);
      });
    });
  }

  async close(): Promise<void> {
    for (const [s, st] of this.#conns) {
      if (st.idle !== undefined) clearTimeout(st.idle);
      s.destroy();
    }
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

async function proxy(): Promise<TestProxy> {
  const p = await startTestProxy();
  opened.push(p);
  return p;
}

/** One case of a family: a destination (`opts`, its closes drawn from the seed), a new proxy, the race load (test/helpers/race-load.ts) in absolute form (ProxyAgent without a tunnel), and the two properties. */
async function runFamily(
  family: string,
  opts: OriginOptions,
  seed: number,
  load: { clients: number; durationMs: number; gapMaxMs: number; until?: (o: ClosingOrigin) => boolean },
): Promise<ClosingOrigin> {
  const o = await new ClosingOrigin(opts, prng(seed ^ 0x5eed)).listen();
  opened.push(o);
  const p = await proxy();
  const agent = new ProxyAgent({ uri: p.url, token: basic(), proxyTunnel: false, connections: load.clients });
  let r: RaceLoadResult;
  try {
    const until = load.until;
    r = await driveGetPost({ dispatcher: agent, url: `http://127.0.0.1:${o.port}`, seed, ...load, until: until && (() => until(o)) });
  } finally {
    await agent.close();
  }
  assertNoErrors(r, family);
  assert.equal(o.postsOnReused, 0, `${family}: ${o.postsOnReused} of ${o.posts} POSTs arrived on a reused connection`);
  return o;
}

describe('forward proxy, direct exit: the keep-alive race, by family of destination', () => {
  for (const hint of [false, true]) {
    test(`idle connections closed after a random time in a seeded range ${hint ? 'shorter than the Keep-Alive hint' : 'without a Keep-Alive hint'}: GET and POST, zero failures, no POST on a reused connection`, () =>
      seededRun(`forward idle close (${hint ? 'hint' : 'no hint'})`, async (rand, seed) => {
        const lo = between(rand, 1, 150);
        const hi = lo + between(rand, 0, 250);
        const hintS = hint ? between(rand, 2, 10) : undefined;
        const clients = between(rand, 4, 16);
        const family = `idle close uniform ${lo}–${hi} ms${hint ? `, Keep-Alive: timeout=${hintS}` : ''}, ${clients} clients`;
        await runFamily(family, { idleCloseMs: [lo, hi], hintS }, seed, { clients, durationMs: 2500, gapMaxMs: hi * 1.5 + 5 });
      }));
  }

  test('a connection closed after a number of requests, without Connection: close: GET and POST, zero failures, no POST on a reused connection', () =>
    seededRun('forward close after N requests', async (rand, seed) => {
      const n = between(rand, 1, 8);
      const clients = between(rand, 4, 16);
      const gapMaxMs = between(rand, 0, 20);
      await runFamily(`close after ${n} requests, gaps 0–${gapMaxMs} ms, ${clients} clients`, { maxRequests: n }, seed, { clients, durationMs: 2500, gapMaxMs });
    }));

  test('a reused connection closed as the request arrives (the race lost every time on the n-th request): GETs retried once on a fresh connection, zero failures', () =>
    seededRun('forward close on the n-th request', async (rand, seed) => {
      const n = between(rand, 2, 6);
      const clients = between(rand, 2, 8);
      const gapMaxMs = between(rand, 0, 10);
      const family = `close on the ${n}th request of each connection, gaps 0–${gapMaxMs} ms, ${clients} clients`;
      // Until the race was lost a few times: a loaded CI machine once sent too few requests in
      // 1.5 s for any connection to reach its 6th (seed 4044591464, "dropped requests (0)").
      const o = await runFamily(family, { dropNth: n }, seed, { clients, durationMs: 1500, gapMaxMs, until: (d) => d.dropped >= 3 });
      assert.ok(o.dropped > 0, `${family}: the destination dropped requests (${o.dropped})`);
    }));
});
