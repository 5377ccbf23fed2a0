import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import pino, { type Logger } from 'pino';
import type { LifecycleRecord, RequestRecord } from '../gateway/events.js';

export interface LoggerOptions {
  level?: string;
  /** A file path; standard output when absent. */
  file?: string;
  /** Write synchronously (tests, short-lived commands). Default false: an async buffered writer off the hot path. */
  sync?: boolean;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const dest = pino.destination({ dest: opts.file ?? 1, sync: opts.sync ?? false });
  return pino({ level: opts.level ?? 'info', base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

/** Flush buffered log lines (call before exit). */
export function flushLogger(logger: Logger): void {
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
  };
  subscribe('gatewise:request:end', onRequest);
  subscribe('gatewise:gateway:lifecycle', onLifecycle);
  return () => {
    unsubscribe('gatewise:request:end', onRequest);
    unsubscribe('gatewise:gateway:lifecycle', onLifecycle);
  };
}
