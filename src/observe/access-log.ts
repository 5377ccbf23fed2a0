import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import pino, { type Logger } from 'pino';
import type { LifecycleRecord, RequestRecord } from '../gateway/events.js';
import type { HealthEvent } from '../upstream/health-check.js';
import type { OutlierEvent } from '../upstream/outlier.js';

export interface LoggerOptions {
  level?: string;
  /** A file path; standard output when absent. */
  file?: string;
  /** Write synchronously (tests, short-lived commands). Default false: an async buffered writer off the hot path. */
  sync?: boolean;
}

/** Bytes collected before an asynchronous write, and the longest a line waits. */
const BATCH_BYTES = 16384;
const BATCH_MS = 1000;

/**
 * Where log lines go. Asynchronous by default, and batched: lines are written once
 * 16 KiB have gathered or after a second at most. Without batching every line was one
 * write on libuv's thread pool (a thread hop there and back per request): measured on
 * the fixed-load benchmark (1 KiB at ~1,900 req/s, one core) the access log cost ~0.13 ms
 * of CPU per request and raised the p99 from 5 to 35 ms. With 4 KiB batches the forward
 * proxy's access log still cost ~10 % of a CONNECT tunnel's CPU; 16 KiB batches cost ~7 %
 * (same-core duel, log to /dev/null against no log).
 */
export function logDestination(file: string | number = 1, sync = false): ReturnType<typeof pino.destination> {
  return sync ? pino.destination({ dest: file, sync: true }) : pino.destination({ dest: file, sync: false, minLength: BATCH_BYTES, maxWrite: 4 * BATCH_BYTES, periodicFlush: BATCH_MS });
}

let stampMs = 0;
let stamp = '';

/** pino's ISO time, formatted once per millisecond rather than once per line. */
function isoTimeCached(): string {
  const now = Date.now();
  if (now !== stampMs) {
    stampMs = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino({ level: opts.level ?? 'info', base: undefined, timestamp: isoTimeCached }, logDestination(opts.file ?? 1, opts.sync ?? false));
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
 * One JSON line per request, HAProxy-style "who ended it, in which phase" included.
 * Subscribes to the gateway's events; returns a function that unsubscribes.
 */
export function attachAccessLog(logger: Logger): () => void {
  const onRequest = (msg: unknown): void => {
    const r = msg as RequestRecord;
    logger.info(
      {
        type: 'access',
        requestId: r.requestId,
        listener: r.listener,
        client: r.clientAddress,
        method: r.method,
        host: r.host,
        path: r.path,
        httpVersion: r.httpVersion,
        route: r.route,
        cluster: r.cluster,
        status: r.status,
        proxyStatusError: r.error,
        phase: r.phase,
        endedBy: r.endedBy,
        detail: r.detail,
        attempts: r.attempts,
        bytesIn: r.bytesIn,
        bytesOut: r.bytesOut,
        durationMs: r.durationMs,
        upgrade: r.upgrade || undefined,
      },
      'request',
    );
  };
  const onLifecycle = (msg: unknown): void => {
    const r = msg as LifecycleRecord;
    logger.info({ type: 'lifecycle', event: r.event }, r.detail);
    logger.flush(); // lifecycle lines go out now, not with the next batch
  };
  // Every change of an endpoint's standing is a log line with its reason: an ejection or a
  // failed health check explains the 503s that follow it.
  const onHealth = (msg: unknown): void => {
    const e = msg as HealthEvent;
    const fields = { type: 'health', cluster: e.cluster, endpoint: e.endpoint, from: e.from, to: e.to, reason: e.reason };
    const text = `endpoint ${e.endpoint}${e.cluster ? ` of cluster ${e.cluster}` : ''} is ${e.to} (${e.reason})`;
    if (e.to === 'unhealthy') logger.warn(fields, text);
    else logger.info(fields, text);
    logger.flush();
  };
  const onOutlier = (msg: unknown): void => {
    const e = msg as OutlierEvent;
    const fields = { type: 'outlier', cluster: e.cluster, endpoint: e.endpoint, event: e.event, until: e.event === 'ejected' ? new Date(e.untilMs).toISOString() : undefined, reason: e.reason };
    const where = `endpoint ${e.endpoint}${e.cluster ? ` of cluster ${e.cluster}` : ''}`;
    if (e.event === 'ejected') logger.warn(fields, `${where} ejected until ${new Date(e.untilMs).toISOString()}: ${e.reason}`);
    else if (e.event === 'spared') logger.warn(fields, `${where} not ejected: ${e.reason}`);
    else logger.info(fields, `${where} back in service: ${e.reason}`);
    logger.flush();
  };
  subscribe('gatewise:request:end', onRequest);
  subscribe('gatewise:gateway:lifecycle', onLifecycle);
  subscribe('gatewise:upstream:health', onHealth);
  subscribe('gatewise:upstream:outlier', onOutlier);
  return () => {
    unsubscribe('gatewise:request:end', onRequest);
    unsubscribe('gatewise:gateway:lifecycle', onLifecycle);
    unsubscribe('gatewise:upstream:health', onHealth);
    unsubscribe('gatewise:upstream:outlier', onOutlier);
  };
}
