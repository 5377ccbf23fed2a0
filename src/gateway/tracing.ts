import type { IncomingMessage } from 'node:http';
import type { AttemptRecord, ReverseRecord } from '../record/index.js';

/**
 * What the reverse gateway asks of tracing (implemented by observe/tracing.ts over
 * @opentelemetry/api, which only loads when `tracing.enabled`). The exchange tests one field
 * (`ctx.tracing`) per request and per try when tracing is off.
 */
export interface GatewayTracing {
  /** Send `traceparent` upstream. */
  readonly propagate: boolean;
  /** A request's trace, started at its first try (`startEpochMs`: when the request arrived). */
  begin(req: IncomingMessage, startEpochMs: number): RequestTrace;
  /** The end of a request: its span (begun or not), and its tries' spans, from the record. */
  finish(trace: RequestTrace | undefined, req: IncomingMessage, record: ReverseRecord, startEpochMs: number): void;
}

export interface RequestTrace {
  /** A try begins: its span's W3C `traceparent` value, to send upstream. */
  attempt(a: AttemptRecord, startEpochMs: number): string;
}

/**
 * Tracing on, a try begins: the request's trace (begun at its first try), the try's span, and
 * its `traceparent` in a copy of the headers (the client's replaced). For requests and upgrades.
 */
export function traceTry(tracing: GatewayTracing, trace: RequestTrace | undefined, req: IncomingMessage, startEpochMs: number, a: AttemptRecord, headers: string[]): { trace: RequestTrace; headers: string[] } {
  trace ??= tracing.begin(req, startEpochMs);
  const parent = trace.attempt(a, startEpochMs + a.startMs);
  if (!tracing.propagate || parent === '') return { trace, headers };
  const out = headers.slice();
  for (let i = 0; i < out.length; i += 2) {
    if (out[i] === 'traceparent') {
      out[i + 1] = parent;
      return { trace, headers: out };
    }
  }
  out.push('traceparent', parent);
  return { trace, headers: out };
}
