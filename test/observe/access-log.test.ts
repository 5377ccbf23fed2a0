import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { accessLine, AccessLog, createLogger } from '../../src/observe/access-log.js';
import { ERROR_TYPE_NAMES } from '../../src/failure/index.js';
import type { ForwardRecord, RequestRecord, ReverseRecord } from '../../src/record/index.js';
import { seededRun } from '../helpers/seeded.js';

/** Strings a client, an upstream or a user may put in a record: quotes, controls, non-ASCII, lone surrogates. */
function anyString(rand: () => number): string {
  const alphabet = ['a', 'Z', '0', '/', ' ', '"', '\\', '\n', '\r', '\t', '\u0000', '\u001f', '\u007f', 'é', '€', '😀', '\u2028', '\ud800', '<', '%', '{', '}'];
  const n = Math.floor(rand() * 24);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
}

function maybe<T>(rand: () => number, v: T): T | undefined {
  return rand() < 0.5 ? v : undefined;
}

const ENDED = ['complete', 'client', 'upstream', 'gateway', 'idle', 'quota'] as const;

function anyRecord(rand: () => number): RequestRecord {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const base = {
    time: 1_700_000_000_000 + Math.floor(rand() * 1e10),
    requestId: anyString(rand) || 'id',
    clientAddress: maybe(rand, anyString(rand)),
    method: maybe(rand, anyString(rand)),
    status: maybe(rand, 100 + Math.floor(rand() * 500)),
    error: maybe(rand, pick(ERROR_TYPE_NAMES)),
    reason: maybe(rand, anyString(rand)),
    phase: maybe(rand, pick(['accept', 'route', 'connect', 'headers', 'body'] as const)),
    endedBy: pick(ENDED),
    detail: maybe(rand, anyString(rand)),
    bytesUp: Math.floor(rand() * 1e9),
    bytesDown: Math.floor(rand() * 1e12),
    durationMs: Math.round(rand() * 1e6) / 1000,
  };
  if (rand() < 0.5) {
    const r: ReverseRecord = {
      ...base,
      face: 'reverse',
      protocol: 'http',
      listener: anyString(rand),
      host: anyString(rand),
      path: anyString(rand),
      httpVersion: pick(['1.0', '1.1']),
      route: maybe(rand, anyString(rand)),
      cluster: maybe(rand, anyString(rand)),
      attempts: rand() < 0.5 ? [] : [{ endpoint: anyString(rand), phase: 'headers', connection: 'reused', status: 200, startMs: 0.5, detail: anyString(rand) }],
      upgrade: rand() < 0.2,
    };
    return r;
  }
  const udp = rand() < 0.3;
  const r: ForwardRecord = {
    ...base,
    face: 'forward',
    protocol: udp ? 'socks5-udp' : pick(['http', 'connect', 'socks5', 'socks4'] as const),
    user: maybe(rand, anyString(rand)),
    destination: maybe(rand, anyString(rand)),
    address: maybe(rand, anyString(rand)),
    reply: maybe(rand, Math.floor(rand() * 9)),
    plan: maybe(rand, anyString(rand)),
    pool: maybe(rand, anyString(rand)),
    exit: maybe(rand, anyString(rand)),
    session: maybe(rand, anyString(rand)),
    repinned: maybe(rand, true),
    exitRetries: maybe(rand, 1 + Math.floor(rand() * 3)),
    quota: maybe(rand, anyString(rand)),
    datagramsUp: udp ? Math.floor(rand() * 100) : undefined,
    datagramsDown: udp ? Math.floor(rand() * 100) : undefined,
    datagramsDropped: udp ? Math.floor(rand() * 10) : undefined,
  };
  return r;
}

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
