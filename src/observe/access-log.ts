import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import pino, { type Logger } from 'pino';
import { LimitLog } from './limit-log.js';
import { LineWriter } from './line-writer.js';
import { LIFECYCLE_CHANNEL, REQUEST_END_CHANNEL, type AttemptRecord, type Face, type LifecycleRecord, type ForwardRecord, type RequestRecord, type ReverseRecord } from '../record/index.js';
import type { HealthEvent } from '../upstream/health-check.js';
import type { OutlierEvent } from '../upstream/outlier.js';
import { LIMIT_CHANNEL } from '../upstream/admission.js';

export interface LoggerOptions {
  level?: string;
  /** A file path; standard output when absent. */
  file?: string;
  /** Write synchronously (tests, short-lived commands). Default false: an async buffered writer off the hot path. */
  sync?: boolean;
}

/**
 * Where log lines go: a `LineWriter`, asynchronous by default and batched (16 KiB or a
 * second at most). Without batching every line was one write on libuv's thread pool:
 * measured on the fixed-load benchmark (1 KiB at ~1,900 req/s, one core) that cost
 * ~0.13 ms of CPU per request and raised the p99 from 5 to 35 ms.
 */
export function logDestination(file: string | number = 1, sync = false): LineWriter {
  return new LineWriter({ dest: file, sync });
}

let stampSecond = -1;
let stampPrefix = '';
let stampMs = -1;
let stampIso = '';

/**
 * An ISO time: the part up to the second is formatted once per second and the
 * milliseconds appended (Date#toISOString once per millisecond was ~1 % of a proxied
 * 1 KiB request's CPU in the duel, where a process serves a few requests per millisecond).
 */
function isoTime(now: number): string {
  if (now === stampMs) return stampIso;
  if (!Number.isInteger(now)) return new Date(now).toISOString();
  const second = Math.floor(now / 1000);
  if (second !== stampSecond) {
    stampSecond = second;
    stampPrefix = new Date(second * 1000).toISOString().slice(0, 20); // "2026-12-03T09:21:09."
  }
  const ms = now - second * 1000;
  stampMs = now;
  stampIso = stampPrefix + (ms < 10 ? '00' : ms < 100 ? '0' : '') + ms + 'Z';
  return stampIso;
}

function pinoTime(): string {
  return `,"time":"${isoTime(Date.now())}"`;
}

/**
 * The one log format of every component: one JSON object per line with `level` (a word:
 * info, warn, error), an ISO `time`, the `component` that wrote it, `msg`, and the fields.
 */
export function createLogger(opts: LoggerOptions & { destination?: pino.DestinationStream } = {}): Logger {
  return pino(
    { level: opts.level ?? 'info', base: undefined, timestamp: pinoTime, formatters: { level: (label) => ({ level: label }) } },
    opts.destination ?? logDestination(opts.file ?? 1, opts.sync ?? false),
  );
}

/** Write out buffered log lines now (call before exit). */
export function flushLogger(logger: Logger): void {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as { flushSync?: () => void } | undefined;
  try {
    if (stream?.flushSync) {
      stream.flushSync();
      return;
    }
  } catch {
    // still opening: fall back to an asynchronous flush
  }
  try {
    logger.flush();
  } catch {
    // a closed destination has nothing left to flush
  }
}

/**
 * Writes access-log lines for the records of both faces, through the logger's destination.
 *
 * The line is the record as JSON (the same field names as `RequestRecord`), after `level`,
 * `time`, `component`, `type: "access"` and `msg`; fields that are undefined are left out.
 * Written by hand for this fixed shape: pino serialises an object key by key with a
 * generic loop, and the access log cost about a quarter of the CPU of a proxied 1 KiB
 * request that way (issue 17's duels: default vs `--no-access-log`, 0.72–0.82×).
 * Lines still go through pino's batched destination, and any other logger can read the
 * same records from `gatewise:request:end`.
 */
export class AccessLog {
  readonly #logger: Logger;
  readonly #stream: { write(s: string): unknown };

  constructor(logger: Logger, opts: { gather?: boolean } = {}) {
    this.#logger = logger;
    this.#stream = (logger as unknown as Record<symbol, { write(s: string): unknown }>)[pino.symbols.streamSym]!;
    this.#batches = this.#stream instanceof LineWriter;
    if (opts.gather && this.#stream instanceof LineWriter && this.#stream.batching) this.#unpull = this.#stream.addSource(() => this.drain());
  }

  /** Whether the destination is a `LineWriter`, which takes several whole lines per write. */
  readonly #batches: boolean;

  /**
   * Set when the records gather until the `LineWriter` flushes (or writes another line), or
   * `GATHER` of them wait, instead of one `setImmediate` per turn of the event loop
   * (`gather`, the forward proxy's log). Lines go out no later than before: the writer sends
   * its buffer within its `flushMs` either way. Why: in the CONNECT per-tunnel load a batch
   * held ~1.6 lines, and each batch's `setImmediate` (the check phase, `MakeCallback`, the
   * async context) cost more than its lines; callgrind (`bench/tunnel-icount.ts`, default
   * configuration, 20,000 warm, 3,000 counted): `CheckImmediate` 10.9k → 1.4k and all but GC
   * and TurboFan 172.6k → 169.9k instructions per tunnel (docs/benchmarks.md §54).
   */
  #unpull: (() => void) | undefined;

  /**
   * Records whose lines are formatted together once the current I/O callbacks are done
   * (setImmediate), not one by one on each request's path: in the reverse 1 KiB duel
   * (default against `--no-access-log`, profiled) the log's share of the main thread fell
   * from ~7.5 to ~4.9 points and the CPU ratio rose from 0.84–0.85 to 0.90; the same code
   * run back to back stays warm. `drain` writes them at once (close, exit).
   */
  #pending: RequestRecord[] = [];
  /**
   * Beside each pending record: its id as `write` saw it when that id is the forward face's own
   * (`write`'s `ownId`), else undefined. The id itself, not a flag: a hook or a
   * `gatewise:request:end` subscriber gets the same record before its line is built, and an id
   * it puts there must still be escaped.
   */
  #ownIds: Array<string | undefined> = [];

  /** `ownId`: the id was made by `newForwardRequestId` (the meter session says so), and its JSON needs no escape test. */
  write(r: RequestRecord, ownId = false): void {
    if (!this.#logger.isLevelEnabled('info')) return;
    this.#ownIds.push(ownId && r.face === 'forward' ? r.requestId : undefined);
    const n = this.#pending.push(r);
    if (this.#unpull !== undefined) {
      if (n >= GATHER) this.drain();
    } else if (n === 1) setImmediate(drainLog, this);
  }

  /** Write what waits and stop gathering (records written after go out at the next turn). */
  close(): void {
    this.#unpull?.();
    this.#unpull = undefined;
    this.drain();
  }

  drain(): void {
    const p = this.#pending;
    if (p.length === 0) return;
    const own = this.#ownIds;
    this.#pending = [];
    this.#ownIds = [];
    if (!this.#batches) {
      // Another destination (a user's logger) gets one line per write, as pino writes them.
      for (let i = 0; i < p.length; i++) this.#stream.write(accessLine(p[i]!, own[i]));
      return;
    }
    // Several lines per write (up to ~8 KiB): the destination encodes one string per call
    // instead of one per line (format + write of a 600-byte reverse line into a LineWriter
    // to /dev/null, 300,000 lines: ~1.7 µs against ~2.1 µs one write per line).
    let batch = '';
    for (let i = 0; i < p.length; i++) {
      batch += accessLine(p[i]!, own[i]);
      if (batch.length >= 8192) {
        this.#stream.write(batch);
        batch = '';
      }
    }
    if (batch !== '') this.#stream.write(batch);
  }
}

/** At most this many records wait in a gathering log (memory: a few tens of KiB of lines). */
const GATHER = 64;

function drainLog(log: AccessLog): void {
  log.drain();
}

/** What JSON must escape in a string (controls, quote, backslash) and lone surrogate halves. */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

/** A JSON string: most values (ids, addresses, names, paths) need no escaping and skip the serialiser. */
function str(v: string): string {
  return NEEDS_ESCAPE.test(v) ? JSON.stringify(v) : `"${v}"`;
}

const ANYWHERE = /$/;

/**
 * The same string, flat. A string built by appends is a tree of its pieces, which V8 walks
 * whenever it copies the string out; a kept piece that stays a tree is walked again in
 * every line it goes into, when the batch is encoded (a kept 6-field piece in 14-line
 * batches: ~8–9 µs against ~2–2.5 µs per batch to encode, same process). A regular
 * expression flattens its subject in place, and unlike `Number(s)` its call is not dropped
 * by the optimiser as unused.
 */
function flat(s: string): string {
  ANYWHERE.test(s);
  return s;
}

/**
 * A JSON string for one field whose value often repeats from line to line (a path, a
 * destination, an address): the last value and its JSON are kept, so a repeat costs one
 * comparison instead of the escape test and a new string.
 */
class Memo {
  last: string | undefined = undefined;
  json = '';
  of(v: string): string {
    if (v === this.last) return this.json;
    this.last = v;
    this.json = str(v);
    return this.json;
  }
}

/** Never equal to a field's value: a group's slots start with it, so its first line builds. */
const UNSET: unique symbol = Symbol('unset');

/**
 * The JSON of neighbouring fields that repeat together from line to line (a listener's
 * method and host; a try's endpoint and outcome; how a request ended): the last
 * values and their JSON are kept, and a line whose values are the same costs one comparison
 * per field and one append, instead of an append, an escape test and a new string per
 * field. Lines are chains of appends, and each append is a string object V8 must later
 * copy when the batch is encoded, so fewer, longer pieces are cheaper twice. Measured with
 * `flat` below (`bench/access-line.ts`: the 1 KiB duel's records, formatted, batched and
 * written to /dev/null, the record's own cost taken out): ~1.65–2.15 µs and ~3.4 KB of
 * garbage per line before, ~1.1–1.3 µs and ~2.3 KB after (docs/benchmarks.md §14).
 */
class Group<A, B = undefined, C = undefined, D = undefined, E = undefined, F = undefined, G = undefined> {
  #a: unknown = UNSET;
  #b: unknown = UNSET;
  #c: unknown = UNSET;
  #d: unknown = UNSET;
  #e: unknown = UNSET;
  #f: unknown = UNSET;
  #g: unknown = UNSET;
  #json = '';
  readonly #build: (a: A, b: B, c: C, d: D, e: E, f: F, g: G) => string;

  constructor(build: (a: A, b: B, c: C, d: D, e: E, f: F, g: G) => string) {
    this.#build = build;
  }

  /** The JSON of these values (the slots a group does not use are left out: undefined). */
  of(a: A, b?: B, c?: C, d?: D, e?: E, f?: F, g?: G): string {
    if (a === this.#a && b === this.#b && c === this.#c && d === this.#d && e === this.#e && f === this.#f && g === this.#g) return this.#json;
    this.#a = a;
    this.#b = b;
    this.#c = c;
    this.#d = d;
    this.#e = e;
    this.#f = f;
    this.#g = g;
    return (this.#json = flat(this.#build(a, b as B, c as C, d as D, e as E, f as F, g as G)));
  }
}

type Str = string | undefined;
type Num = number | undefined;

/** `,"key":"value"` for a string field, nothing when it is undefined. */
function field(key: string, v: Str): string {
  return v === undefined ? '' : ',"' + key + '":' + str(v);
}

function numField(key: string, v: Num): string {
  return v === undefined ? '' : ',"' + key + '":' + jsonNumber(v);
}

/**
 * The fractions of a millisecond as JSON writes them after the whole part: '' for none, then
 * '.001' … '.999' with trailing zeros dropped ('.5', '.25').
 */
const THOUSANDTHS = Array.from({ length: 1000 }, (_, i) => (i === 0 ? '' : '.' + String(i).padStart(3, '0').replace(/0+$/, '')));

/**
 * A number as `JSON.stringify` writes it (`null` for NaN and the infinities). Durations are
 * milliseconds rounded to thousandths: written as a whole part (a small integer, whose string
 * V8 keeps in its number cache) and a kept fraction, not through V8's double-to-shortest
 * conversion, which was ~0.7k of the ~13k instructions the log adds to a proxied request
 * (bench/icount.ts). Measured with the kept try times below: young-generation collections per
 * line −22 % (`bench/access-line.ts`), CPU in the duel within its noise (docs/benchmarks.md
 * §39). Below 2^31 thousandths (~36 minutes) a double holds a thousandth exactly enough that
 * this is also the shortest form, which is what `String(v)` writes
 * (test/observe/access-log.test.ts compares a seeded family).
 */
export function jsonNumber(v: number): string {
  if (v > 0 && v < 2147483.647 && (v | 0) !== v) {
    const m = Math.round(v * 1000);
    if (m / 1000 === v) {
      const whole = v | 0;
      return whole + THOUSANDTHS[m - whole * 1000]!;
    }
  }
  return Number.isFinite(v) ? '' + v : 'null';
}

/** What follows the time at the start of a line: component, type, face, protocol. */
const afterTime = (component: string, face: string): Group<string> =>
  new Group((protocol: string) => '","component":"' + component + '","type":"access","face":"' + face + '","protocol":"' + protocol + '"');
const revAfterTime = afterTime('gateway', 'reverse');
const fwdAfterTime = afterTime('forward', 'forward');

// Client addresses and users change from line to line in most traffic: each is kept on its
// own, so a new one does not rebuild a group.
const mClient = new Memo();
const revWho = new Group((method: Str, listener: Str, host: Str) => field('method', method) + field('listener', listener) + field('host', host));
const revWhere = new Group((httpVersion: Str, route: Str, cluster: Str) => field('httpVersion', httpVersion) + field('route', route) + field('cluster', cluster));
const mPath = new Memo();
const mFwdClient = new Memo();
const mMethod = new Memo();
const mUser = new Memo();
const mDestination = new Memo();
const mAddress = new Memo();
const fwdEgress = new Group((plan: Str, pool: Str, exit: Str, session: Str, repinned: boolean | undefined, exitRetries: Num, reply: Num) =>
  field('plan', plan) + field('pool', pool) + field('exit', exit) + field('session', session) + (repinned ? ',"repinned":true' : '') + numField('exitRetries', exitRetries) + numField('reply', reply));

/** How it ended, the fields every record has (status through detail): one group per face. */
const outcomeOf = (): Group<Num, Str, Str, Str, string, Str> =>
  new Group((status: Num, error: Str, reason: Str, phase: Str, endedBy: string, detail: Str) =>
    numField('status', status) + field('error', error) + field('reason', reason) + field('phase', phase) + ',"endedBy":"' + endedBy + '"' + field('detail', detail));
const revOutcome = outcomeOf();
const fwdOutcome = outcomeOf();

/** A try's endpoint, outcome and start. */
const tryHead = new Group((endpoint: string, phase: string, connection: Str, status: Num, error: Str, detail: Str, startMs: number) =>
  '{"endpoint":' + str(endpoint) + ',"phase":"' + phase + '"' + (connection === undefined ? '' : ',"connection":"' + connection + '"') + numField('status', status) + (error === undefined ? '' : ',"error":"' + error + '"') + field('detail', detail) + ',"startMs":' + jsonNumber(startMs));

/**
 * A try's times after its start. Whole milliseconds on a fast path repeat from line to line
 * (0, 0, 1, 1, 1 in the 1 KiB duel): kept as one piece instead of up to seven keys and numbers.
 */
const tryTimes = new Group((dnsMs: Num, tcpMs: Num, tlsMs: Num, connectedMs: Num, firstByteMs: Num, headersMs: Num, endMs: Num) =>
  numField('dnsMs', dnsMs) + numField('tcpMs', tcpMs) + numField('tlsMs', tlsMs) + numField('connectedMs', connectedMs) + numField('firstByteMs', firstByteMs) + numField('headersMs', headersMs) + numField('endMs', endMs) + '}');

/** One attempt, fields in a fixed order (JSON.stringify walked each record's own key order). */
function attemptJson(a: AttemptRecord): string {
  return tryHead.of(a.endpoint, a.phase, a.connection, a.status, a.error, a.detail, a.startMs) + tryTimes.of(a.dnsMs, a.tcpMs, a.tlsMs, a.connectedMs, a.firstByteMs, a.headersMs, a.endMs);
}

/**
 * The reverse face's line of one record: one chain of appends, the constant keys as
 * literals, fields that repeat together through `Group`. Against the generic `s()`/`n()`
 * helpers (a template string per field): ~0.8–1.0 µs against ~1.6–1.8 µs per line to
 * format (300,000 lines of the 1 KiB duel's shape, same process, interleaved; issue 17).
 */
function reverseLine(r: ReverseRecord): string {
  let line = '{"level":"info","time":"' + isoTime(r.time) + revAfterTime.of(r.protocol);
  if (r.requestId !== undefined) line += ',"requestId":' + str(r.requestId);
  if (r.clientAddress !== undefined) line += ',"clientAddress":' + mClient.of(r.clientAddress);
  line += revWho.of(r.method, r.listener, r.host);
  if (r.path !== undefined) line += ',"path":' + mPath.of(r.path);
  line += revWhere.of(r.httpVersion, r.route, r.cluster);
  line += revOutcome.of(r.status, r.error, r.reason, r.phase, r.endedBy, r.detail) + ',"bytesUp":' + jsonNumber(r.bytesUp) + ',"bytesDown":' + jsonNumber(r.bytesDown);
  const at = r.attempts;
  if (at.length === 1) line += ',"attempts":[' + attemptJson(at[0]!) + ']';
  else if (at.length > 1) line += ',"attempts":[' + at.map(attemptJson).join(',') + ']';
  if (r.upgrade) line += ',"upgrade":true';
  if (r.cache !== undefined) line += ',"cache":' + str(r.cache);
  if (r.bypass !== undefined) line += ',"bypass":' + str(r.bypass);
  if (r.storeRefused !== undefined) line += ',"storeRefused":' + str(r.storeRefused);
  if (r.recoveredFrom !== undefined) line += ',"recoveredFrom":' + str(r.recoveredFrom);
  if (r.background !== undefined) line += ',"background":' + str(r.background);
  if (r.revalidation !== undefined) line += ',"revalidation":' + str(r.revalidation);
  if (r.triggeredBy !== undefined) line += ',"triggeredBy":' + str(r.triggeredBy);
  return line + ',"durationMs":' + jsonNumber(r.durationMs) + ',"msg":"request"}\n';
}

/** The forward face's line of one record, built the same way as `reverseLine`. */
function forwardLine(r: ForwardRecord, ownId: string | undefined): string {
  let line = '{"level":"info","time":"' + isoTime(r.time) + fwdAfterTime.of(r.protocol);
  // An id of `newForwardRequestId` (base 36 and '-') is written as it is: no escape test, which
  // flattened the appended id for its regular expression. Callgrind, as for `gather`:
  // `RegExpPrototypeTestFast` 3.5k → 2.0k, all but GC and TurboFan 169.9k → 169.1k per tunnel (§54).
  // Only while the record still holds the id `write` saw: one that a hook put there since is escaped.
  if (r.requestId !== undefined) line += ',"requestId":' + (r.requestId === ownId ? '"' + r.requestId + '"' : str(r.requestId));
  if (r.clientAddress !== undefined) line += ',"clientAddress":' + mFwdClient.of(r.clientAddress);
  if (r.method !== undefined) line += ',"method":' + mMethod.of(r.method);
  if (r.user !== undefined) line += ',"user":' + mUser.of(r.user);
  if (r.destination !== undefined) line += ',"destination":' + mDestination.of(r.destination);
  if (r.address !== undefined) line += ',"address":' + mAddress.of(r.address);
  line += fwdEgress.of(r.plan, r.pool, r.exit, r.session, r.repinned, r.exitRetries, r.reply);
  line += fwdOutcome.of(r.status, r.error, r.reason, r.phase, r.endedBy, r.detail) + ',"bytesUp":' + jsonNumber(r.bytesUp) + ',"bytesDown":' + jsonNumber(r.bytesDown);
  if (r.quota !== undefined) line += ',"quota":' + str(r.quota);
  line += numField('datagramsUp', r.datagramsUp) + numField('datagramsDown', r.datagramsDown) + numField('datagramsDropped', r.datagramsDropped);
  return line + ',"durationMs":' + jsonNumber(r.durationMs) + (r.protocol === 'http' ? ',"msg":"forward request"}\n' : r.protocol === 'socks5-udp' ? ',"msg":"forward association"}\n' : ',"msg":"forward tunnel"}\n');
}

/** The access-log line of one record (exported for the tests that compare it with the record). */
export function accessLine(r: RequestRecord, ownId?: string): string {
  return r.face === 'reverse' ? reverseLine(r) : forwardLine(r, ownId);
}

/**
 * The access log of every record published on `gatewise:request:end` (of one face, when
 * `face` is given), plus the reverse gateway's lifecycle and endpoint-standing lines.
 * Every state change of the upstreams is a line with its reason: health transitions,
 * ejections and returns, adaptive concurrency limit changes (`LimitLog`, rate-limited).
 * Returns a function that unsubscribes.
 */
export function attachAccessLog(logger: Logger, opts: { face?: Face; /** At most one adaptive-limit line per cluster this often (default 5 s; `LimitLog`). */ limitLogIntervalMs?: number } = {}): () => void {
  const log = new AccessLog(logger);
  const face = opts.face;
  const onRequest = (msg: unknown): void => {
    const r = msg as RequestRecord;
    if (face === undefined || r.face === face) log.write(r);
  };
  const onLifecycle = (msg: unknown): void => {
    const r = msg as LifecycleRecord;
    logger.info({ component: 'gateway', type: 'lifecycle', event: r.event }, r.detail);
    logger.flush(); // lifecycle lines go out now, not with the next batch
  };
  // Every change of an endpoint's standing is a log line with its reason: an ejection or a
  // failed health check explains the 503s that follow it.
  const onHealth = (msg: unknown): void => {
    const e = msg as HealthEvent;
    const fields = { component: 'upstream', type: 'health', cluster: e.cluster, endpoint: e.endpoint, from: e.from, to: e.to, reason: e.reason };
    const text = `endpoint ${e.endpoint}${e.cluster ? ` of cluster ${e.cluster}` : ''} is ${e.to} (${e.reason})`;
    if (e.to === 'unhealthy') logger.warn(fields, text);
    else logger.info(fields, text);
    logger.flush();
  };
  const onOutlier = (msg: unknown): void => {
    const e = msg as OutlierEvent;
    const fields = { component: 'upstream', type: 'outlier', cluster: e.cluster, endpoint: e.endpoint, event: e.event, until: e.event === 'ejected' ? new Date(e.untilMs).toISOString() : undefined, reason: e.reason };
    const where = `endpoint ${e.endpoint}${e.cluster ? ` of cluster ${e.cluster}` : ''}`;
    if (e.event === 'ejected') logger.warn(fields, `${where} ejected until ${new Date(e.untilMs).toISOString()}: ${e.reason}`);
    else if (e.event === 'spared') logger.warn(fields, `${where} not ejected: ${e.reason}`);
    else logger.info(fields, `${where} back in service: ${e.reason}`);
    logger.flush();
  };
  subscribe(REQUEST_END_CHANNEL, onRequest);
  if (face === 'forward') {
    return () => {
      unsubscribe(REQUEST_END_CHANNEL, onRequest);
      log.drain();
    };
  }
  // Adaptive concurrency limits: old → new and why, rate-limited per cluster.
  const limits = new LimitLog(logger, opts.limitLogIntervalMs);
  subscribe(LIFECYCLE_CHANNEL, onLifecycle);
  subscribe('gatewise:upstream:health', onHealth);
  subscribe('gatewise:upstream:outlier', onOutlier);
  subscribe(LIMIT_CHANNEL, limits.onEvent);
  return () => {
    unsubscribe(LIMIT_CHANNEL, limits.onEvent);
    limits.close();
    unsubscribe(REQUEST_END_CHANNEL, onRequest);
    log.drain();
    unsubscribe(LIFECYCLE_CHANNEL, onLifecycle);
    unsubscribe('gatewise:upstream:health', onHealth);
    unsubscribe('gatewise:upstream:outlier', onOutlier);
  };
}
