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
