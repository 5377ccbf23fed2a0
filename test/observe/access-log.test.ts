import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { accessLine, AccessLog, createLogger, flushLogger, jsonNumber } from '../../src/observe/access-log.js';
import type { ForwardRecord, RequestRecord, ReverseRecord } from '../../src/record/index.js';
import { seededRun } from '../helpers/seeded.js';
import pino from 'pino';
import { LineWriter } from '../../src/observe/line-writer.js';
import { newForwardRequestId } from '../../src/http/request-id.js';
import { Meter } from '../../src/tenants/meter.js';
import { anyRecord } from '../helpers/records.js';

/** What the line must hold: every defined field of the record, the same names and values. */
function expectedFields(r: RequestRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) {
    if (v === undefined || k === 'time') continue;
    if (k === 'attempts' && (v as unknown[]).length === 0) continue;
    if ((k === 'upgrade' || k === 'repinned') && v === false) continue;
    out[k] = v;
  }
  return out;
}

test('an access-log line is its record as one JSON object, for any record of either face (seeded)', async () => {
  await seededRun('access line', (rand) => {
    for (let i = 0; i < 2000; i++) {
      const r = anyRecord(rand);
      const line = accessLine(r);
      assert.ok(line.endsWith('}\n') && line.indexOf('\n') === line.length - 1, 'one line');
      const parsed = JSON.parse(line) as Record<string, unknown>;
      assert.equal(parsed.level, 'info');
      assert.equal(parsed.time, new Date(r.time).toISOString());
      assert.equal(parsed.component, r.face === 'reverse' ? 'gateway' : 'forward');
      assert.equal(parsed.type, 'access');
      assert.equal(typeof parsed.msg, 'string');
      const { level: _l, time: _t, component: _c, type: _ty, msg: _m, ...fields } = parsed;
      // Lone surrogates come back as U+FFFD from JSON.parse of a JSON.stringify'd string in
      // neither direction; compare through the same round trip.
      assert.deepEqual(fields, JSON.parse(JSON.stringify(expectedFields(r))));
    }
  });
});

test('the time of a line is the record time in ISO form, across millisecond and second boundaries (the formatted second is reused)', async () => {
  await seededRun('access time', (rand) => {
    const r = anyRecord(rand);
    let t = 1_700_000_000_000 + Math.floor(rand() * 1e10);
    for (let i = 0; i < 3000; i++) {
      t += Math.floor(rand() * 3) * (rand() < 0.1 ? 997 : 1); // same ms, next ms, or a jump over a second
      assert.equal(JSON.parse(accessLine({ ...r, time: t })).time, new Date(t).toISOString());
    }
    assert.equal(JSON.parse(accessLine({ ...r, time: t + 0.5 })).time, new Date(t + 0.5).toISOString());
  });
});

test('both faces write the format of every other component: level word, ISO time, component, msg', () => {
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  logger.warn({ component: 'upstream', endpoint: 'e' }, 'something');
  const log = new AccessLog(logger);
  const rev: ReverseRecord = {
    face: 'reverse', protocol: 'http', time: Date.now(), requestId: 'r1', clientAddress: '127.0.0.1', method: 'GET', status: 200, error: undefined, reason: undefined,
    phase: undefined, endedBy: 'complete', detail: undefined, bytesUp: 10, bytesDown: 20, durationMs: 1.5, listener: 'l', host: 'h', path: '/', httpVersion: '1.1',
    route: 'r', cluster: 'c', attempts: [], upgrade: false,
  };
  const fwd: ForwardRecord = {
    face: 'forward', protocol: 'connect', time: Date.now(), requestId: 'f1', clientAddress: '127.0.0.1', method: 'CONNECT', status: 502, error: 'connection_refused',
    reason: undefined, phase: 'connect', endedBy: 'gateway', detail: 'refused', bytesUp: 0, bytesDown: 0, durationMs: 2, user: 'bob', destination: 'x:443', address: undefined,
    reply: undefined, plan: 'starter', pool: 'dc', exit: 'e1', session: undefined, repinned: undefined, exitRetries: 1, quota: undefined,
    datagramsUp: undefined, datagramsDown: undefined, datagramsDropped: undefined,
  };
  log.write(rev);
  log.write(fwd);
  log.drain(); // lines are formatted together at the next setImmediate, or now by drain()
  const parsed = lines.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(parsed.length, 3);
  for (const p of parsed) {
    assert.match(String(p.level), /^(info|warn)$/);
    assert.match(String(p.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(typeof p.component, 'string');
    assert.equal(typeof p.msg, 'string');
    assert.equal(p.pid, undefined);
    assert.equal(p.hostname, undefined);
  }
  assert.deepEqual([parsed[1]!.requestId, parsed[1]!.face, parsed[2]!.requestId, parsed[2]!.pool, parsed[2]!.exitRetries, parsed[2]!.error], ['r1', 'reverse', 'f1', 'dc', 1, 'connection_refused']);
});

test('the access log writes nothing when the level is above info', () => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'warn', destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  new AccessLog(logger).write({
    face: 'reverse', protocol: 'http', time: Date.now(), requestId: 'r1', clientAddress: undefined, method: 'GET', status: 200, error: undefined, reason: undefined,
    phase: undefined, endedBy: 'complete', detail: undefined, bytesUp: 1, bytesDown: 1, durationMs: 1, listener: 'l', host: 'h', path: '/', httpVersion: '1.1',
    route: undefined, cluster: undefined, attempts: [], upgrade: false,
  });
  assert.equal(lines.length, 0);
});

test('fields whose value repeats from line to line (listener, host, route, cluster, client, endpoint) are right however values alternate and whatever they hold (seeded)', async () => {
  await seededRun('access line repeats', (rand) => {
    // A few values per field, some that need escaping, drawn in any order: the line keeps
    // the last value's JSON per field, so a change, a return and an escape must all show.
    const pool = ['a', '127.0.0.1:8080', 'quote"d', 'back\\slash', 'nl\n', 'é😀', '\ud800', ''];
    const pick = (): string => pool[Math.floor(rand() * pool.length)]!;
    for (let i = 0; i < 3000; i++) {
      const r = anyRecord(rand);
      if (r.face !== 'reverse') continue;
      r.listener = pick();
      r.host = pick();
      r.route = rand() < 0.2 ? undefined : pick();
      r.cluster = rand() < 0.2 ? undefined : pick();
      r.clientAddress = rand() < 0.2 ? undefined : pick();
      const n = Math.floor(rand() * 3);
      r.attempts = Array.from({ length: n }, () => ({ endpoint: pick(), phase: 'body' as const, startMs: Math.floor(rand() * 10), endMs: rand() < 0.5 ? 3 : undefined }));
      const parsed = JSON.parse(accessLine(r)) as Record<string, unknown>;
      const { level: _l, time: _t, component: _c, type: _ty, msg: _m, ...fields } = parsed;
      assert.deepEqual(fields, JSON.parse(JSON.stringify(expectedFields(r))), `record ${i}`);
    }
  });
});

test('lines gathered in one turn of the event loop go out whole and in order: several per write to the LineWriter, one per write to any other destination; drain writes what waits at once (seeded over counts and sizes)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-test-alog-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  await seededRun('access log batches', async (rand) => {
    for (let round = 0; round < 8; round++) {
      const toFile = rand() < 0.5;
      const file = path.join(dir, `r${round}-${Math.floor(rand() * 1e9)}.log`);
      const writes: string[] = [];
      const logger = toFile ? createLogger({ file }) : createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (writes.push(c.toString()), cb()) }) });
      const log = new AccessLog(logger);
      const count = 1 + Math.floor(rand() * 300);
      const expected: string[] = [];
      for (let i = 0; i < count; i++) {
        const r = anyRecord(rand);
        if (r.face === 'reverse') r.path = '/' + 'p'.repeat(Math.floor(rand() * (rand() < 0.05 ? 20_000 : 400)));
        expected.push(accessLine(r));
        log.write(r);
      }
      const viaDrain = rand() < 0.5;
      if (viaDrain) log.drain();
      else await new Promise<void>((resolve) => setImmediate(resolve));
      const want = expected.join('');
      const what = `round ${round}: ${count} lines, ${viaDrain ? 'drain' : 'setImmediate'}, ${toFile ? 'LineWriter' : 'Writable'}`;
      if (toFile) {
        flushLogger(logger);
        assert.equal(fs.readFileSync(file, 'utf8'), want, what);
        continue;
      }
      // pino hands a Writable its lines asynchronously: wait (bounded) until every byte has arrived.
      const deadline = Date.now() + 20_000;
      while (writes.join('').length < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(writes, expected, what);
    }
  });
});

/**
 * The line as the documented shape says it, written the plain way (JSON.stringify per value,
 * fields in their fixed order): the fast writer must produce these exact bytes, since the
 * line's bytes are the log format (the tests above compare parsed fields, not bytes or order).
 */
function referenceLine(r: RequestRecord): string {
  const j = JSON.stringify;
  const time = `"level":"info","time":${j(new Date(r.time).toISOString())}`;
  const opt = (k: string, v: unknown): string => (v === undefined ? '' : `,${j(k)}:${j(v)}`);
  const outcome = opt('status', r.status) + opt('error', r.error) + opt('reason', r.reason) + opt('phase', r.phase) + `,"endedBy":${j(r.endedBy)}` + opt('detail', r.detail) + `,"bytesUp":${j(r.bytesUp)},"bytesDown":${j(r.bytesDown)}`;
  if (r.face === 'reverse') {
    const attempt = (a: ReverseRecord['attempts'][number]): string =>
      `{"endpoint":${j(a.endpoint)},"phase":${j(a.phase)}` + opt('connection', a.connection) + opt('status', a.status) + opt('error', a.error) + opt('detail', a.detail) + `,"startMs":${j(a.startMs)}` +
      opt('dnsMs', a.dnsMs) + opt('tcpMs', a.tcpMs) + opt('tlsMs', a.tlsMs) + opt('connectedMs', a.connectedMs) + opt('firstByteMs', a.firstByteMs) + opt('headersMs', a.headersMs) + opt('endMs', a.endMs) + '}';
    return `{${time},"component":"gateway","type":"access","face":"reverse","protocol":${j(r.protocol)}` + opt('requestId', r.requestId) + opt('clientAddress', r.clientAddress) + opt('method', r.method) +
      opt('listener', r.listener) + opt('host', r.host) + opt('path', r.path) + opt('httpVersion', r.httpVersion) + opt('route', r.route) + opt('cluster', r.cluster) + outcome +
      (r.attempts.length > 0 ? `,"attempts":[${r.attempts.map(attempt).join(',')}]` : '') + (r.upgrade ? ',"upgrade":true' : '') + opt('cache', r.cache) + opt('bypass', r.bypass) + opt('storeRefused', r.storeRefused) + opt('recoveredFrom', r.recoveredFrom) +
      opt('background', r.background) + opt('revalidation', r.revalidation) + opt('triggeredBy', r.triggeredBy) + `,"durationMs":${j(r.durationMs)},"msg":"request"}\n`;
  }
  const msg = r.protocol === 'http' ? 'forward request' : r.protocol === 'socks5-udp' ? 'forward association' : 'forward tunnel';
  return `{${time},"component":"forward","type":"access","face":"forward","protocol":${j(r.protocol)}` + opt('requestId', r.requestId) + opt('clientAddress', r.clientAddress) + opt('method', r.method) +
    opt('user', r.user) + opt('destination', r.destination) + opt('address', r.address) + opt('plan', r.plan) + opt('pool', r.pool) + opt('exit', r.exit) + opt('session', r.session) +
    (r.repinned ? ',"repinned":true' : '') + opt('exitRetries', r.exitRetries) + opt('reply', r.reply) + outcome + opt('quota', r.quota) + opt('datagramsUp', r.datagramsUp) +
    opt('datagramsDown', r.datagramsDown) + opt('datagramsDropped', r.datagramsDropped) + `,"durationMs":${j(r.durationMs)},"msg":${j(msg)}}\n`;
}

test('an access line has the exact bytes of the plain serialisation, however fields repeat, return or change from line to line (seeded)', async () => {
  await seededRun('access line bytes', (rand) => {
    // Steady traffic repeats most fields line after line (what the writer's caches are for);
    // here a record is often the previous one of its face with a few fields redrawn, so
    // every field is seen repeating, changing, changing back and becoming undefined.
    const last: Partial<Record<RequestRecord['face'], RequestRecord>> = {};
    for (let i = 0; i < 5000; i++) {
      const fresh = anyRecord(rand);
      const prev = last[fresh.face];
      let r: RequestRecord = fresh;
      if (prev !== undefined && rand() < 0.7) {
        r = { ...prev, attempts: prev.face === 'reverse' ? prev.attempts.map((a) => ({ ...a })) : undefined } as RequestRecord;
        if (r.face === 'forward') delete (r as unknown as Record<string, unknown>).attempts;
        const keys = Object.keys(fresh).filter((k) => k !== 'face' && k !== 'attempts') as Array<keyof RequestRecord>;
        for (let n = Math.floor(rand() * 3); n > 0; n--) {
          const k = keys[Math.floor(rand() * keys.length)]!;
          (r as unknown as Record<string, unknown>)[k] = (fresh as unknown as Record<string, unknown>)[k];
        }
        if (r.face === 'reverse' && fresh.face === 'reverse' && rand() < 0.2) r.attempts = fresh.attempts;
        if (r.face === 'reverse' && r.attempts.length > 0 && rand() < 0.3) {
          const a = r.attempts[0]!;
          a.startMs = Math.floor(rand() * 5);
          a.headersMs = rand() < 0.5 ? undefined : Math.floor(rand() * 9);
          a.connection = rand() < 0.5 ? 'new' : 'reused';
          a.status = rand() < 0.8 ? 200 : 503;
          a.error = rand() < 0.8 ? undefined : 'connection_refused';
        }
      }
      last[r.face] = r;
      assert.equal(accessLine(r), referenceLine(r), `record ${i}`);
    }
  });
});

/** The double next to `v` upwards or downwards: a value one unit off a thousandth. */
function nextDouble(v: number, up: boolean): number {
  const b = new DataView(new ArrayBuffer(8));
  b.setFloat64(0, v);
  const bits = b.getBigUint64(0);
  b.setBigUint64(0, v >= 0 === up ? bits + 1n : bits - 1n);
  return b.getFloat64(0);
}

test('numbers in a line are written as JSON.stringify writes them: thousandths of a millisecond at every magnitude, their neighbours, integers and the values JSON has no number for (seeded)', async () => {
  await seededRun('json number', (rand) => {
    const fixed = [0, -0, 1, 0.001, 0.999, 0.5, 0.25, 0.1, 1.1, 10.01, 2147483.647, 2147483.646, 2147483.648, 2147483.6475, 1e-7, 1e-6, 0.0005, 1 / 3, 4294967295, 4294967296, 2 ** 53, 1e21, 1e300, -1.5, -0.001,
      Number.MIN_VALUE, Number.EPSILON, NaN, Infinity, -Infinity];
    for (const v of fixed) assert.equal(jsonNumber(v), JSON.stringify(v), `value ${v}`);
    for (let i = 0; i < 100_000; i++) {
      // Thousandths below and above the fast path's limit, at every magnitude from 0.001 ms up.
      const magnitude = 10 ** Math.floor(rand() * 10);
      const m = Math.floor(rand() * magnitude * 1000) + 1;
      const v = m / 1000;
      assert.equal(jsonNumber(v), JSON.stringify(v), `value ${v}`);
      const near = nextDouble(v, rand() < 0.5);
      assert.equal(jsonNumber(near), JSON.stringify(near), `value ${near}`);
      const any = (rand() - 0.2) * magnitude;
      assert.equal(jsonNumber(any), JSON.stringify(any), `value ${any}`);
    }
  });
});

test('a gathering log (the forward proxy\'s) writes every record, in order with the logger\'s other lines, at any flush, end, close or after 64 records; an own id is written as the escape test would (seeded)', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-test-alog-gather-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  await seededRun('access log gathering', async (rand) => {
    for (let round = 0; round < 8; round++) {
      const file = path.join(dir, `g${round}-${Math.floor(rand() * 1e9)}.log`);
      const logger = createLogger({ file });
      const stream = (logger as unknown as Record<symbol, LineWriter>)[pino.symbols.streamSym]!;
      const log = new AccessLog(logger, { gather: true });
      // Each expected line: the access line's exact bytes, or the msg of another component's line.
      // A record whose id a hook changed after `write` may be written before the change (when
      // `write` itself drained: the 64th record, or another line pulled) or after it: `or`.
      const expected: Array<{ access: string; or?: string } | { msg: string }> = [];
      const count = 1 + Math.floor(rand() * 300);
      for (let i = 0; i < count; i++) {
        if (rand() < 0.1) {
          const msg = `other ${i}`;
          logger.info({ component: 'test' }, msg);
          expected.push({ msg });
          continue;
        }
        const r = anyRecord(rand);
        const own = r.face === 'forward' && rand() < 0.5;
        if (own) r.requestId = newForwardRequestId();
        const before = accessLine(r);
        log.write(r, own);
        // A hook or a `gatewise:request:end` subscriber gets this same record before its line is
        // built: an id it puts there is escaped, never written as the own id was.
        if (own && rand() < 0.3) {
          r.requestId = `hook${i}","user":"admin`;
          expected.push({ access: before, or: accessLine(r) });
        } else expected.push({ access: before });
      }
      const how = Math.floor(rand() * 4);
      if (how === 0) flushLogger(logger);
      else if (how === 1) stream.end();
      else if (how === 2) log.close(), flushLogger(logger);
      else await new Promise<void>((resolve) => stream.flush(() => resolve()));
      const got = fs.readFileSync(file, 'utf8').split('\n').slice(0, -1);
      const what = `round ${round}: ${count} writes, ${['flushSync', 'end', 'close', 'flush'][how]}`;
      assert.equal(got.length, expected.length, what);
      expected.forEach((e, i) => {
        if ('access' in e) {
          if (e.or !== undefined && got[i] + '\n' !== e.access) assert.equal(got[i] + '\n', e.or, `${what}, line ${i} (an id a hook changed)`);
          else assert.equal(got[i] + '\n', e.access, `${what}, line ${i}`);
        }
        else assert.equal((JSON.parse(got[i]!) as { msg: string }).msg, e.msg, `${what}, line ${i}`);
      });
      if (how !== 1) stream.end();
    }
  });
});

test('the meter says an id is the forward face\'s own only for a session opened with newForwardRequestId itself', () => {
  const meter = new Meter();
  const seen: boolean[] = [];
  meter.on('finished', (_r, own) => seen.push(own));
  const forged = (): string => 'x"y';
  meter.open({ protocol: 'connect', requestId: newForwardRequestId, user: null }).finish();
  meter.open({ protocol: 'connect', requestId: newForwardRequestId(), user: null }).finish();
  meter.open({ protocol: 'connect', requestId: forged, user: null }).finish();
  meter.open({ protocol: 'connect', requestId: 'a"b', user: null }).finish();
  assert.deepEqual(seen, [true, false, false, false]);
  assert.match(newForwardRequestId(), /^[0-9a-z]+-[0-9a-z]+-[0-9a-z]+$/);
});
