import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createH2cServer, type Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { startTestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { validateConfig, type ConfigError } from '../../src/config/load.js';

/**
 * The HTTP/2 stream limit per upstream connection (`clusters.*.h2MaxStreams`, default 100),
 * counted by the upstream: the sessions it accepted and the streams each carried at once.
 * Requests are started one by one, each once the upstream has the previous one in flight, so
 * the previous connection is up when the next request is placed: then exactly
 * ceil(concurrency / limit) connections carry them, none more than `limit` at once. All are
 * answered together once all are in flight (the upstream holds each until then, bounded).
 */
async function run(limit: number | undefined, concurrency: number): Promise<{ sessions: number; mostPerSession: number; statuses: number[] }> {
  const server = createH2cServer();
  let sessions = 0;
  let mostPerSession = 0;
  let inFlight = 0;
  const open = new Map<Http2Session, number>();
  const waiting: Array<() => void> = [];
  const inFlightWaiters = new Set<() => void>();
  server.on('session', (s) => {
    sessions++;
    s.on('error', () => {});
  });
  server.on('stream', (stream) => {
    const s = stream.session!;
    const n = (open.get(s) ?? 0) + 1;
    open.set(s, n);
    mostPerSession = Math.max(mostPerSession, n);
    inFlight++;
    for (const w of [...inFlightWaiters]) w();
    const answer = (): void => {
      open.set(s, (open.get(s) ?? 1) - 1);
      if (!stream.destroyed) {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      }
    };
    waiting.push(answer);
    if (waiting.length === concurrency) for (const w of waiting.splice(0)) w();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const gw = await startTestGateway({
    clusters: { up: { endpoints: [`http://127.0.0.1:${port}`], protocol: 'h2c', ...(limit === undefined ? {} : { h2MaxStreams: limit }), timeouts: { response: '30s' } } },
    routes: [{ cluster: 'up' }],
  });
  const client = new Agent({ connections: concurrency + 1 });
  try {
    const answers: Array<Promise<number>> = [];
    for (let i = 0; i < concurrency; i++) {
      const before = inFlight;
      answers.push(request(`${gw.url}/s${i}`, { dispatcher: client, headersTimeout: 30_000 }).then(async (r) => {
        await r.body.text();
        return r.statusCode;
      }));
      if (i === concurrency - 1) break;
      // The upstream has it (bounded) before the next one starts.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`request ${i} never reached the upstream`)), 20_000);
        const check = (): void => {
          if (inFlight > before) {
            clearTimeout(timer);
            inFlightWaiters.delete(check);
            resolve();
          }
        };
        inFlightWaiters.add(check);
        check();
      });
    }
    const statuses = await Promise.all(answers);
    return { sessions, mostPerSession, statuses };
  } finally {
    await client.close();
    await gw.close();
    server.close();
  }
}

describe('HTTP/2 upstream: streams per connection (h2MaxStreams)', () => {
  test('seeded family over limits and concurrencies: exactly ceil(concurrency / limit) upstream connections, none carrying more than the limit', { timeout: 300_000 }, async () => {
    const rand = seededRandom();
    console.log(`h2MaxStreams seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    await withSeed(rand, async () => {
      const cases: Array<[number | undefined, number]> = [[1, 3], [undefined, 24]];
      for (let i = 0; i < 5; i++) cases.push([1 + rand.int(12), 1 + rand.int(30)]);
      for (const [limit, concurrency] of cases) {
        const r = await run(limit, concurrency);
        const what = `limit ${limit ?? 'default (100)'}, ${concurrency} requests at once`;
        assert.deepEqual(r.statuses, Array(concurrency).fill(200), `answers (${what})`);
        const expected = Math.ceil(concurrency / (limit ?? 100));
        assert.equal(r.sessions, expected, `upstream connections: ${r.sessions}, expected ${expected} (${what})`);
        assert.ok(r.mostPerSession <= (limit ?? 100), `a connection carried ${r.mostPerSession} streams at once (${what})`);
        assert.equal(r.mostPerSession, Math.min(concurrency, limit ?? 100), `the most streams on one connection (${what})`);
      }
    });
  });

  test('config: h2MaxStreams is a positive integer and needs protocol h2 or h2c', () => {
    const base = (c: Record<string, unknown>): unknown => ({ listeners: [{ port: 0 }], clusters: { up: { endpoints: ['http://127.0.0.1:1'], ...c } }, routes: [{ cluster: 'up' }] });
    assert.equal((validateConfig(base({ protocol: 'h2c' })) as { clusters: Record<string, { h2MaxStreams?: number }> }).clusters.up!.h2MaxStreams, undefined);
    assert.equal((validateConfig(base({ protocol: 'h2c', h2MaxStreams: 7 })) as { clusters: Record<string, { h2MaxStreams?: number }> }).clusters.up!.h2MaxStreams, 7);
    for (const bad of [0, -1, 1.5, 'ten', 2 ** 31]) {
      assert.throws(() => validateConfig(base({ protocol: 'h2c', h2MaxStreams: bad })), (e: ConfigError) => e.problems.some((p) => p.path === 'clusters.up.h2MaxStreams'), `h2MaxStreams ${String(bad)} accepted`);
    }
    assert.throws(() => validateConfig(base({ h2MaxStreams: 10 })), (e: ConfigError) => e.problems.some((p) => p.path === 'clusters.up.h2MaxStreams' && /needs protocol h2 or h2c/.test(p.message)));
  });
});
