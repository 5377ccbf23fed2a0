import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Gauge, Registry } from 'prom-client';
import { request } from 'undici';
import { startAdmin, type AdminAccounts, type AdminOptions } from '../../src/observe/admin.js';
import { createLogger } from '../../src/observe/access-log.js';
import { seededRun, between } from '../helpers/seeded.js';
import { ask, LogSink, withGroup, type Answer } from './admin-group-run.js';

/**
 * A route that throws something other than an AdminProblem is the gateway's failure: 500
 * `internal`. Before, the problem's detail was the thrown message, handed to the client (a
 * file path, a library's internals). Now the detail names a request id and the thrown error,
 * message and stack, is logged at error level under that id.
 */

type Thrower = () => never;

/** Routes of the listener made to throw through what they drive: the reload callback, the gateway's control, the account service, a metric's collect. */
const ROUTES: Array<{ name: string; method: 'GET' | 'POST'; path: string; options(fail: Thrower): Partial<AdminOptions> }> = [
  { name: 'reload', method: 'POST', path: '/reload', options: (fail) => ({ reload: async () => fail() }) },
  { name: 'clusters', method: 'GET', path: '/clusters', options: (fail) => ({ gateway: { status: () => fail(), drain: () => false } }) },
  { name: 'accounts', method: 'GET', path: '/accounts', options: (fail) => ({ accounts: () => ({ list: () => fail() }) as unknown as AdminAccounts }) },
  {
    name: 'metrics', method: 'GET', path: '/metrics',
    options: (fail) => {
      const registry = new Registry();
      new Gauge({ name: 'fixture_collect_throws', help: 'a gauge whose collect throws', registers: [registry], collect: () => fail() });
      return { registry };
    },
  },
];

test('a route that throws answers 500 internal without the thrown text; its request id finds the error, message and stack, in the log (seeded over routes and what is thrown)', async () => {
  await seededRun('admin-route-failure', async (rand) => {
    for (let round = 0; round < 8; round++) {
      const route = ROUTES[between(rand, 0, ROUTES.length - 1)]!;
      const secret = `/srv/gatewise-secret-${between(rand, 0, 1e9)}/key.pem`;
      const kind = (['error', 'coded', 'string'] as const)[between(rand, 0, 2)]!;
      const fail: Thrower = () => {
        if (kind === 'string') throw `cannot open ${secret}`;
        const err = new Error(`cannot open ${secret}`);
        if (kind === 'coded') (err as Error & { code: string }).code = 'EACCES';
        throw err;
      };
      const sink = new LogSink();
      const admin = await startAdmin({ port: 0, logger: createLogger({ destination: sink.stream }), ...route.options(fail) });
      try {
        const r = await request(`${admin.url}${route.path}`, { method: route.method, headers: route.method === 'POST' ? { 'gatewise-admin': '1' } : {} });
        const text = await r.body.text();
        const where = `${route.name}, thrown ${kind}`;
        assert.equal(r.statusCode, 500, `${where}: ${text}`);
        assert.match(String(r.headers['content-type']), /^application\/problem\+json/, where);
        assert.ok(!text.includes(secret) && !text.includes('cannot open'), `${where}: the thrown text stays out of the answer: ${text}`);
        const p = JSON.parse(text) as { code: string; status: number; detail: string; requestId?: string };
        assert.equal(p.code, 'internal', where);
        assert.equal(typeof p.requestId, 'string', `${where}: a request id: ${text}`);
        assert.ok(p.detail.includes(p.requestId!), `${where}: the detail names the id: ${p.detail}`);
        const line = await sink.wait((l) => l.requestId === p.requestId, 5000);
        assert.equal(line.level, 'error', where);
        assert.equal(line.component, 'admin', where);
        assert.ok(JSON.stringify(line).includes(secret), `${where}: the log line carries the thrown text: ${JSON.stringify(line)}`);
        if (kind !== 'string') assert.match(String((line.err as { stack?: string }).stack), /\n\s+at /, `${where}: and its stack`);
      } finally {
        await admin.close();
      }
    }
  });
});

test('the OpenAPI document\'s Problem schema describes the requestId a 500 internal carries', async () => {
  const admin = await startAdmin({ port: 0 });
  try {
    const r = await request(`${admin.url}/openapi.json`);
    const doc = (await r.body.json()) as { components: { schemas: { Problem: { properties: Record<string, { type: string }> } } } };
    assert.equal(doc.components.schemas.Problem.properties.requestId?.type, 'string');
  } finally {
    await admin.close();
  }
});

/**
 * With `--workers`: whichever worker takes the request asks every worker (worker-ipc.ts).
 * When workers answered but every one failed, the answer is the 500 of a single process (no
 * thrown text, a request id the log holds it under); 503 `busy` only when none answered in
 * time. Before, any answer without a good part was `busy`. A part that failed beside good ones
 * is said in Gatewise-Workers-Failed, with the id in X-Request-Id. A real node:cluster group
 * (admin-group-fixture.ts); the routes are made to fail through the fixture's gateway control
 * and metric collect, chosen per request.
 */
test('--workers: a route that throws in every worker that answered is 500 internal (not 503 busy), busy only when none answered; partial failures are said (seeded over which workers fail, throw or hang)', { timeout: 110_000 }, async () => {
  await seededRun('admin-group-failure', async (rand) => {
    const secret = `/srv/gatewise-secret-${between(rand, 0, 1e9)}/key.pem`;
    await withGroup({ FIXTURE_SECRET: secret }, async (group) => {
      const { url, sink } = group;
      const post = (path: string): Promise<Answer> => ask(url, path, 'POST');
      /** The 500 of a failed group answer: no thrown text, an id that is the header's and a logged error's (with a stack) carrying the thrown text. */
      const internal = async (where: string, a: Answer): Promise<void> => {
        assert.equal(a.status, 500, `${where}: ${a.text}`);
        assert.match(String(a.headers['content-type']), /^application\/problem\+json/, where);
        assert.ok(!a.text.includes(secret) && !a.text.includes('cannot '), `${where}: the thrown text stays out of the answer: ${a.text}`);
        const p = JSON.parse(a.text) as { code: string; requestId: string; detail: string };
        assert.equal(p.code, 'internal', where);
        assert.equal(a.headers['x-request-id'], p.requestId, where);
        assert.ok(p.detail.includes(p.requestId), `${where}: ${p.detail}`);
        await loggedWithStack(where, p.requestId);
      };
      const loggedWithStack = async (where: string, id: string): Promise<void> => {
        const line = await sink.wait((l) => l.requestId === id && l.level === 'error' && typeof (l.err as { stack?: unknown } | undefined)?.stack === 'string', 10_000);
        assert.ok(JSON.stringify(line).includes(secret), `${where}: the logged error carries the thrown text: ${JSON.stringify(line)}`);
        assert.match(String((line.err as { stack: string }).stack), /\n\s+at /, `${where}: and its stack`);
      };
      // Every outcome at least once (all failed, some failed, none; all silent, failed and
      // silent), then seeded ones, in a seeded order.
      type Mode = 'ok' | 'throw' | 'hang';
      const modes: Mode[] = ['ok', 'throw', 'hang'];
      // A refusal thrown in the workers is their answer (404 not-found), not a failure.
      const refused = await post('/clusters/refuse/drain?endpoint=x');
      assert.equal(refused.status, 404, refused.text);
      assert.equal((JSON.parse(refused.text) as { code: string }).code, 'not-found');
      assert.deepEqual([refused.headers['gatewise-workers'], refused.headers['gatewise-workers-failed']], ['2', '0']);
      const cases: Array<{ failing: number[] } | { metrics: [Mode, Mode] }> = [
        { failing: [1, 2] }, { failing: [between(rand, 1, 2)] }, { failing: [] },
        { metrics: ['hang', 'hang'] }, { metrics: ['throw', 'throw'] }, { metrics: ['throw', 'hang'] }, { metrics: ['ok', rand() < 0.5 ? 'throw' : 'hang'] },
      ];
      for (let i = 0; i < 3; i++) cases.push(rand() < 0.5 ? { failing: [1, 2].filter(() => rand() < 0.6) } : { metrics: [modes[between(rand, 0, 2)]!, modes[between(rand, 0, 2)]!] });
      for (const c of cases.map((x) => ({ x, k: rand() })).sort((a, b) => a.k - b.k).map((y) => y.x)) {
        if ('failing' in c) {
          const failing = c.failing;
          const where = `drain failing in workers [${failing.join(',')}]`;
          const a = await post(`/clusters/fail/drain?endpoint=${failing.join(',') || 'none'}`);
          assert.equal(a.status, failing.length === 2 ? 500 : 200, `${where}: ${a.text}`);
          assert.equal(a.headers['gatewise-workers-missing'], '0', where);
          assert.equal(a.headers['gatewise-workers-failed'], String(failing.length), where);
          assert.equal(a.headers['gatewise-workers'], String(2 - failing.length), where);
          if (failing.length === 2) await internal(where, a);
          else {
            assert.equal(a.status, 200, `${where}: ${a.text}`);
            assert.ok(!a.text.includes(secret), where);
            if (failing.length === 1) await loggedWithStack(where, a.headers['x-request-id']!);
            else assert.equal(a.headers['x-request-id'], undefined, where);
          }
        } else {
          const m = c.metrics;
          const where = `metrics collect ${m.join(', ')}`;
          const set = await post(`/clusters/metrics/drain?endpoint=${m.join(',')}`);
          assert.equal(set.status, 200, `${where}: set: ${set.text}`);
          const a = await ask(url, '/metrics', 'GET');
          const count = (x: string): number => m.filter((y) => y === x).length;
          assert.equal(a.status, count('ok') > 0 ? 200 : count('throw') > 0 ? 500 : 503, `${where}: ${a.text}`);
          assert.equal(a.headers['gatewise-workers'], String(count('ok')), where);
          assert.equal(a.headers['gatewise-workers-failed'], String(count('throw')), where);
          assert.equal(a.headers['gatewise-workers-missing'], String(count('hang')), where);
          if (count('ok') > 0) {
            assert.equal(a.status, 200, `${where}: ${a.text}`);
            assert.match(a.text, new RegExp(`^fixture_worker_up ${count('ok')}$`, 'm'), where);
          } else if (count('throw') > 0) await internal(where, a);
          else {
            assert.equal(a.status, 503, `${where}: ${a.text}`);
            assert.equal((JSON.parse(a.text) as { code: string }).code, 'busy', where);
          }
        }
      }
    });
  });
});

/**
 * Review of session 35: a worker whose admin listener is closed (draining at SIGTERM) while its
 * process and IPC stay up answers the group's gathers "no admin here": it was counted as a
 * worker whose route failed (Gatewise-Workers-Failed, an error logged for every request and
 * scrape), though nothing threw. It is a worker that no longer serves: not failed, not asked.
 */
test('--workers: a worker whose admin listener closed is not counted as failed', { timeout: 60_000 }, async () => {
  await withGroup({}, async (group) => {
    const { url, sink } = group;
    const post = (path: string): Promise<Answer> => ask(url, path, 'POST');
    // Worker 2 may be the one that took this request and close its listener (and this
    // connection) before the answer is written: a cut connection here is that, not a failure.
    const closed = await post('/clusters/close/drain?endpoint=2').catch((err: { code?: string }) => {
      if (err.code === 'UND_ERR_SOCKET') return undefined;
      throw err;
    });
    if (closed !== undefined) assert.equal(closed.status, 200, closed.text);
    // Worker 2's listener closes after its answer; its 'close' is logged by nothing, so ask until
    // every answer comes from worker 1 alone (bounded: a few requests).
    let last: Answer | undefined;
    for (let i = 0; i < 20; i++) {
      // A connection worker 2 took as its listener closed is cut (admin close() ends them): ask again.
      const a = await post('/clusters/none/drain?endpoint=none').catch((err: { code?: string }) => {
        if (err.code === 'UND_ERR_SOCKET') return undefined;
        throw err;
      });
      if (a === undefined) continue;
      last = a;
      assert.equal(last.status, 200, last.text);
      if (last.headers['gatewise-workers'] === '1') break;
    }
    assert.deepEqual([last!.headers['gatewise-workers'], last!.headers['gatewise-workers-failed'], last!.headers['x-request-id']], ['1', '0', undefined], `headers: ${JSON.stringify(last!.headers)}`);
    assert.equal(sink.lines.filter((l) => l.type === 'route-failed').length, 0, 'no route failure logged');
  });
});
