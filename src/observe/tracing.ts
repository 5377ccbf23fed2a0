import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, createTraceState, isSpanContextValid, trace, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { GatewayTracing, RequestTrace } from '../gateway/tracing.js';
import { REQUEST_END_CHANNEL, type AttemptRecord, type ForwardRecord, type RequestRecord, type ReverseRecord } from '../record/index.js';

/**
 * OpenTelemetry traces, through @opentelemetry/api only: this module is imported (and the API
 * with it) only when `tracing.enabled`; the SDK and exporter are the operator's choice,
 * registered by `tracing.setup` or by whoever embeds Gatewise. With tracing off the request
 * path tests one field (`ctx.tracing`).
 *
 * Reverse gateway: a SERVER span per request, a CLIENT span per try at an endpoint (its
 * child), each with the RFC 9209 error type as `error.type` and Gatewise's own attributes;
 * the try's span travels upstream as W3C `traceparent`, and a client's `traceparent`
 * (and `tracestate`) becomes the request span's parent. Forward proxy: a SERVER span per
 * request, tunnel or association, made from its record when it ends (the proxy passes the
 * client's headers through as they are and adds none).
 *
 * Span start and end times are the record's (the exchange's clock): the spans are begun
 * when a try is dispatched (its span id is needed for `traceparent`) and ended when the
 * request is finished.
 */

export interface TracingConfig {
  enabled: boolean;
  setup?: string | undefined;
  propagate: boolean;
}

export interface Tracing {
  /** For `new Gateway(config, { tracing })` / `startGateway`. */
  readonly gateway: GatewayTracing;
  /** Stop making spans of forward records. */
  detach(): void;
}

/** W3C trace context `traceparent`: version 00, 32 and 16 lower-case hex digits, 2 of flags. */
const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * The parent context from a client's `traceparent`/`tracestate` (W3C Trace Context §3.2).
 * Parsed here: the W3C propagator is in @opentelemetry/core, part of the SDK, which Gatewise
 * does not load; the format is one fixed-width line.
 */
export function parentFrom(headers: IncomingMessage['headers']): Context {
  const tp = headers.traceparent;
  if (typeof tp !== 'string') return ROOT_CONTEXT;
  const m = TRACEPARENT_RE.exec(tp.trim());
  if (m === null || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return ROOT_CONTEXT;
  const sc = { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & 1, isRemote: true, traceState: undefined as ReturnType<typeof createTraceState> | undefined };
  if (!isSpanContextValid(sc)) return ROOT_CONTEXT;
  const ts = headers.tracestate;
  if (ts !== undefined) sc.traceState = createTraceState(Array.isArray(ts) ? ts.join(',') : ts);
  return trace.setSpanContext(ROOT_CONTEXT, sc);
}

function traceparentOf(span: Span): string {
  const sc = span.spanContext();
  if (!isSpanContextValid(sc)) return '';
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 1) === 1 ? '01' : '00'}`;
}

function set(attrs: Attributes, key: string, v: string | number | boolean | undefined | null): void {
  if (v !== undefined && v !== null && v !== '') attrs[key] = v;
}

class ReverseTrace implements RequestTrace {
  readonly span: Span;
  readonly tries: Span[] = [];
  readonly #tracer: Tracer;
  readonly #ctx: Context;
  readonly #method: string;

  constructor(tracer: Tracer, req: IncomingMessage, startEpochMs: number) {
    this.#tracer = tracer;
    this.#method = req.method ?? 'GET';
    const attrs: Attributes = { 'http.request.method': this.#method, 'gatewise.face': 'reverse' };
    set(attrs, 'url.path', req.url);
    set(attrs, 'server.address', req.headers.host);
    set(attrs, 'network.protocol.version', req.httpVersion);
    this.span = tracer.startSpan(this.#method, { kind: SpanKind.SERVER, startTime: startEpochMs, attributes: attrs }, parentFrom(req.headers));
    this.#ctx = trace.setSpan(ROOT_CONTEXT, this.span);
  }

  attempt(a: AttemptRecord, startEpochMs: number): string {
    const attrs: Attributes = { 'http.request.method': this.#method, 'gatewise.endpoint': a.endpoint, 'gatewise.try': this.tries.length + 1 };
    // The endpoint as the record names it: host:port ([v6]:port).
    const m = /^\[?(.*?)\]?:(\d+)$/.exec(a.endpoint);
    if (m !== null) {
      attrs['server.address'] = m[1]!;
      attrs['server.port'] = Number(m[2]);
    }
    const span = this.#tracer.startSpan(`${this.#method} try`, { kind: SpanKind.CLIENT, startTime: startEpochMs, attributes: attrs }, this.#ctx);
    this.tries.push(span);
    return traceparentOf(span);
  }
}

function endTry(span: Span, a: AttemptRecord, startEpochMs: number, fallbackEndMs: number): void {
  const attrs: Attributes = { 'gatewise.phase': a.phase };
  set(attrs, 'gatewise.connection', a.connection);
  set(attrs, 'http.response.status_code', a.status);
  set(attrs, 'error.type', a.error);
  set(attrs, 'gatewise.detail', a.detail);
  span.setAttributes(attrs);
  if (a.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: a.error });
  span.end(startEpochMs + (a.endMs ?? fallbackEndMs));
}

function outcome(span: Span, r: RequestRecord): void {
  const attrs: Attributes = { 'gatewise.request_id': r.requestId, 'gatewise.ended_by': r.endedBy, 'gatewise.bytes_up': r.bytesUp, 'gatewise.bytes_down': r.bytesDown };
  set(attrs, 'http.response.status_code', r.status);
  set(attrs, 'error.type', r.error);
  set(attrs, 'gatewise.reason', r.reason);
  set(attrs, 'gatewise.phase', r.phase);
  set(attrs, 'client.address', r.clientAddress);
  span.setAttributes(attrs);
  if (r.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: r.reason ?? r.error });
}

function forwardSpan(tracer: Tracer, r: ForwardRecord): void {
  const end = r.time;
  const attrs: Attributes = { 'gatewise.face': 'forward', 'gatewise.protocol': r.protocol };
  set(attrs, 'http.request.method', r.method);
  set(attrs, 'gatewise.destination', r.destination);
  set(attrs, 'gatewise.user', r.user);
  set(attrs, 'gatewise.plan', r.plan);
  set(attrs, 'gatewise.pool', r.pool);
  set(attrs, 'gatewise.exit', r.exit);
  set(attrs, 'gatewise.exit_retries', r.exitRetries);
  const span = tracer.startSpan(r.method ?? r.protocol, { kind: SpanKind.SERVER, startTime: end - r.durationMs, attributes: attrs }, ROOT_CONTEXT);
  outcome(span, r);
  span.end(end);
}

/**
 * Start tracing: import `setup` (it registers a tracer provider), take the tracer, and make
 * spans of forward records from `gatewise:request:end`.
 */
export async function startTracing(cfg: TracingConfig): Promise<Tracing> {
  if (cfg.setup !== undefined) {
    const spec = cfg.setup.startsWith('.') || isAbsolute(cfg.setup) ? pathToFileURL(resolve(cfg.setup)).href : cfg.setup;
    await import(spec);
  }
  const tracer = trace.getTracer('gatewise');
  const gateway: GatewayTracing = {
    propagate: cfg.propagate,
    begin: (req, start) => new ReverseTrace(tracer, req, start),
    finish(t, req, record: ReverseRecord, start) {
      const rt = (t as ReverseTrace | undefined) ?? new ReverseTrace(tracer, req, start);
      const span = rt.span;
      span.updateName(record.route !== undefined ? `${record.method ?? 'GET'} ${record.route}` : (record.method ?? 'GET'));
      const attrs: Attributes = {};
      set(attrs, 'gatewise.route', record.route);
      set(attrs, 'gatewise.cluster', record.cluster);
      if (record.upgrade) attrs['gatewise.upgrade'] = true;
      span.setAttributes(attrs);
      outcome(span, record);
      for (let i = 0; i < rt.tries.length; i++) {
        const a = record.attempts[i];
        if (a !== undefined) endTry(rt.tries[i]!, a, start, record.durationMs);
        else rt.tries[i]!.end(start + record.durationMs);
      }
      span.end(start + record.durationMs);
    },
  };
  const onRecord = (msg: unknown): void => {
    const r = msg as RequestRecord;
    if (r.face === 'forward') forwardSpan(tracer, r);
  };
  subscribe(REQUEST_END_CHANNEL, onRecord);
  return { gateway, detach: () => unsubscribe(REQUEST_END_CHANNEL, onRecord) };
}
