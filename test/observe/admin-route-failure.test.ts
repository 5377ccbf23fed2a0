import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { Gauge, Registry } from 'prom-client';
import { request } from 'undici';
import { startAdmin, type AdminAccounts, type AdminOptions } from '../../src/observe/admin.js';
import { createLogger } from '../../src/observe/access-log.js';
import { seededRun, between } from '../helpers/seeded.js';

/**
 * A route that throws something other than an AdminProblem is the gateway's failure: 500
 * `internal`. Before, the problem's detail was the thrown message, handed to the client (a
 * file path, a library's internals). Now the detail names a request id and the thrown error,
 * message and stack, is logged at error level under that id.
 */

/** Log lines as parsed JSON, with a wait for one that matches (bounded). */
export class LogSink {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly #events = new EventEmitter();
  readonly stream = new Writable({
    write: (c: Buffer, _e, cb) => {
      for (const l of c.toString().split('\n')) {
        if (l.trim() === '') continue;
        const line = JSON.parse(l) as Record<string, unknown>;
        this.lines.push(line);
        this.#events.emit('line', line);
      }
      cb();
    },
  });

  /** The first line `ok` accepts, now or when it is written within `ms`. */
  wait(ok: (line: Record<string, unknown>) => boolean, ms: number): Promise<Record<string, unknown>> {
    const seen = this.lines.find(ok);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#events.off('line', on);
        reject(new Error(`no such log line within ${ms} ms; lines: ${JSON.stringify(this.lines)}`));
      }, ms);
      const on = (line: Record<string, unknown>): void => {
        if (!ok(line)) return;
        clearTimeout(t);
        this.#events.off('line', on);
        resolve(line);
      };
      this.#events.on('line', on);
    });
  }
}

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
