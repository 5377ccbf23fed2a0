import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { Agent, request } from 'undici';
import { startLab, type Lab, type LabOptions } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { between, prng, seededRun } from '../helpers/seeded.js';
import { assertNoErrors, driveGetPost, type RaceLoadResult } from '../helpers/race-load.js';

/**
 * The keep-alive race as property tests: families of upstreams that close reused
 * connections when a gateway cannot know it (irregular idle closes, closes shorter than the
 * advertised `Keep-Alive: timeout=`, a request limit per connection, graceful rolling
 * restarts), each with random parameters and random client gaps, GET and POST. The
 * property: zero client-visible errors. Every case prints its seed when it fails
 * (GATEWISE_SEED=<seed> replays it).
 */

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const o of opened.reverse()) await o.close();
});

async function lab(opts: LabOptions): Promise<Lab> {
  const l = await startLab(opts);
  opened.push(l);
  return l;
}

async function gateway(endpoints: string[], extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const g = await startTestGateway({ clusters: { c: { endpoints, keepAlive: '10s', ...extra } }, routes: [{ cluster: 'c' }] });
  opened.push(g);
  return g;
}

/** The race load (test/helpers/race-load.ts) through the gateway, on keep-alive connections of its own. */
async function drive(url: string, seed: number, clients: number, durationMs: number, gapMaxMs: number): Promise<RaceLoadResult> {
  const agent = new Agent({ keepAliveTimeout: 10_000, connections: clients });
  try {
    return await driveGetPost({ dispatcher: agent, url, seed, clients, durationMs, gapMaxMs });
  } finally {
    await agent.close();
  }
}

describe('the keep-alive race, by family of upstream', () => {
  for (const [name, lo, hi] of [
    ['under 50 ms', 1, 49],
    ['50–400 ms', 50, 400],
  ] as const) {
    test(`idle keep-alive connections closed after a random 0–N ms, N ${name}, no Keep-Alive hint: GET and POST, zero errors`, () =>
      seededRun(`random idle close (N ${name})`, async (rand, seed) => {
        const maxMs = between(rand, lo, hi);
        const clients = between(rand, 10, 40);
        const family = `idle close uniform 0–${maxMs} ms, ${clients} clients`;
        const up = await lab({ idleCloseMs: [0, maxMs], advertiseKeepAlive: false, random: prng(seed ^ 0x5eed) });
        const gw = await gateway([up.url]);
        const r = await drive(gw.url, seed, clients, 3000, maxMs * 1.5);
        assertNoErrors(r, family);
      }));
  }

  test('idle closes shorter than the advertised Keep-Alive: timeout=: GET and POST, zero errors', () =>
    seededRun('closes under the hint', async (rand, seed) => {
      const hintS = between(rand, 2, 10);
      const lo = between(rand, 0, 100);
      const hi = lo + between(rand, 0, 200);
      const clients = between(rand, 10, 40);
      const family = `Keep-Alive: timeout=${hintS}, idle close uniform ${lo}–${hi} ms, ${clients} clients`;
      const up = await lab({ idleCloseMs: [lo, hi], advertiseKeepAlive: hintS, random: prng(seed ^ 0x5eed) });
      const gw = await gateway([up.url]);
      const r = await drive(gw.url, seed, clients, 3000, hi * 1.5 + 5);
      assertNoErrors(r, family);
    }));

  for (const closeHeader of [true, false]) {
    test(`a connection closed after a number of requests (keepalive_requests), ${closeHeader ? 'with' : 'without'} Connection: close on the last: GET and POST, zero errors`, () =>
      seededRun(`close after N requests (${closeHeader ? 'with' : 'without'} Connection: close)`, async (rand, seed) => {
        const n = between(rand, 1, 12);
        const clients = between(rand, 10, 40);
        const gapMax = between(rand, 0, 30);
        const family = `close after ${n} requests, ${closeHeader ? 'with' : 'without'} Connection: close, gaps 0–${gapMax} ms, ${clients} clients`;
        const up = await lab({ maxRequestsPerConnection: n, closeHeaderOnLast: closeHeader });
        const gw = await gateway([up.url]);
        const r = await drive(gw.url, seed, clients, 3000, gapMax);
        assertNoErrors(r, family);
      }));
  }
});

/**
 * An upstream that restarts the way a well-behaved server deploys: stop listening, close
 * the idle connections, answer what it already read with `Connection: close`, exit once
 * those answers are out, and come back on the same port after a pause. It counts each POST
 * by its id, so a POST run twice would show.
 */
class GracefulOrigin {
  readonly posts = new Map<string, number>();
  port = 0;
  requests = 0;
  #server: Server;
  #closing = false;
  readonly #rand: () => number;
  /** Waiters for a request count (served()). */
  #waiters: Array<{ n: number; resolve: () => void }> = [];

  constructor(rand: () => number) {
    this.#rand = rand;
    this.#server = this.#newServer();
  }

  async listen(): Promise<this> {
    this.#server.listen(this.port, '127.0.0.1');
    await once(this.#server, 'listening');
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  /** Resolves once it has answered `n` requests in all. */
  served(n: number): Promise<void> {
    if (this.requests >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  #newServer(): Server {
    const server = createServer((req, res) => this.#onRequest(req, res));
    server.keepAliveTimeout = 5000;
    return server;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      this.requests++;
      if (this.#waiters.length > 0) {
        const due = this.#waiters.filter((w) => w.n <= this.requests);
        this.#waiters = this.#waiters.filter((w) => w.n > this.requests);
        for (const w of due) w.resolve();
      }
      const id = req.headers['x-post-id'];
      if (req.method === 'POST' && typeof id === 'string') this.posts.set(id, (this.posts.get(id) ?? 0) + 1);
      const answer = (): void => {
        // Read before the restart began, answered during it: the answer says the connection ends.
        if (this.#closing) res.setHeader('connection', 'close');
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, bodyBytes: bytes }));
      };
      const work = Math.floor(this.#rand() * 4);
      if (work === 0) answer();
      else setTimeout(answer, work);
    });
  }

  /** Stop listening, close idle connections, finish what was read, exit; come back after `downMs`. */
  async restart(downMs: number): Promise<void> {
    const server = this.#server;
    this.#closing = true;
    const exited = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    // Connections that become idle after their (Connection: close) answer are closed by Node;
    // the close callback fires once every connection has ended: the process "exits".
    await exited;
    await new Promise((resolve) => setTimeout(resolve, downMs));
    this.#closing = false;
    this.#server = this.#newServer();
    await this.listen();
  }

  async close(): Promise<void> {
    const server = this.#server;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

describe('graceful rolling restarts', () => {
  test('each endpoint in turn stops listening, closes idle connections, answers what it read with Connection: close, exits and comes back: zero GET errors, no POST run twice, a POST fails only unprocessed', () =>
    seededRun('graceful rolling restart', async (rand, seed) => {
      const count = between(rand, 2, 3);
      const clients = between(rand, 10, 40);
      const downMs = between(rand, 50, 300);
      const origins: GracefulOrigin[] = [];
      for (let i = 0; i < count; i++) {
        const o = await new GracefulOrigin(prng(seed + i)).listen();
        origins.push(o);
        opened.push(o);
      }
      const gw = await gateway(
        origins.map((o) => o.url),
        { healthCheck: { path: '/', interval: '100ms', timeout: '300ms', rise: 1, fall: 1 } },
      );
      const family = `${count} endpoints, down ${downMs} ms each, ${clients} clients`;
      let posts = 0;
      const agent = new Agent({ keepAliveTimeout: 10_000, connections: clients });
      const failures: string[] = [];
      const unsent: string[] = [];
      let get = 0;
      let stop = false;
      const worker = async (w: number): Promise<void> => {
        const r = prng(seed + 104729 * (w + 1));
        while (!stop) {
          const gap = r() * 20;
          if (gap >= 1) await new Promise((res) => setTimeout(res, gap));
          const post = r() < 0.5;
          const id = post ? `p${posts++}` : undefined;
          if (!post) get++;
          const bytes = post ? 1 + Math.floor(r() * 4096) : 0;
          try {
            const res = await request(`${gw.url}/`, { dispatcher: agent, method: post ? 'POST' : 'GET', body: post ? 'p'.repeat(bytes) : undefined, headers: id ? { 'x-post-id': id } : {} });
            const text = await res.body.text();
            // A POST written on a connection the restart reset unaccepted (its listener closed with
            // it in the backlog) cannot be told from one an upstream read and died on: it is not
            // sent again (resilience review F3) and gets a 502; checked below never to have run.
            if (post && res.statusCode === 502 && String(res.headers['proxy-status'] ?? '').includes('error=connection_terminated')) unsent.push(id!);
            else if (res.statusCode !== 200) failures.push(`${post ? 'POST' : 'GET'} → ${res.statusCode} ${String(res.headers['proxy-status'] ?? '')}`);
            else if (JSON.parse(text).bodyBytes !== bytes) failures.push(`${post ? 'POST' : 'GET'}: body not relayed whole`);
          } catch (err) {
            failures.push(`${post ? 'POST' : 'GET'} → client error ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
          }
        }
      };
      const load = Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
      // Let the pools fill with reused connections before the first restart.
      await Promise.all(origins.map((o) => o.served(20)));
      for (const o of origins) {
        const before = o.requests;
        await o.restart(downMs);
        // Back in service: it has served traffic again before the next one goes.
        await o.served(before + 20);
      }
      stop = true;
      await load;
      await agent.close();
      assert.ok(get > 0 && posts > 0, `${family}: both methods were sent`);
      assert.equal(failures.length, 0, `${family}: ${failures.length} of ${get + posts} requests failed: ${failures.slice(0, 10).join('; ')}`);
      const twice = [...origins.flatMap((o) => [...o.posts])].reduce((m, [id, n]) => m.set(id, (m.get(id) ?? 0) + n), new Map<string, number>());
      const dup = [...twice].filter(([, n]) => n > 1);
      assert.deepEqual(dup, [], `${family}: POSTs processed more than once`);
      assert.deepEqual(unsent.filter((id) => twice.has(id)), [], `${family}: a POST answered 502 was processed`);
      assert.ok(unsent.length <= Math.max(2, posts / 2), `${family}: ${unsent.length} of ${posts} POSTs failed unprocessed`);
      assert.equal(twice.size, posts - unsent.length, `${family}: every other POST reached an upstream once`);
    }));
});
