import { Failure, classify, hookTimedOut, withDetail } from '../failure/index.js';
import { DEFAULT_HOOK_TIMEOUT_MS, within } from '../timing/within.js';
import type { ReverseRecord as RequestRecord } from './events.js';
import type { TlsInfo } from '../tls/index.js';

/**
 * The request as a hook sees it: read-only facts. (The gateway's own request object
 * implements it, so a hook call allocates nothing.)
 */
export interface HookRequest {
  readonly method: string;
  /** Origin-form path with query, as the client sent it. */
  readonly path: string;
  /** The Host header, lower-cased, without a default port. */
  readonly host: string;
  /** The name of the matched route (undefined before routing or when none matched). */
  readonly routeName: string | undefined;
  readonly clusterName: string | undefined;
  readonly requestId: string;
  readonly clientAddress: string | undefined;
  /** A request header by lower-case name (repeated fields joined as Node joins them). */
  header(name: string): string | string[] | undefined;
  /** true for WebSocket and other Upgrade requests. */
  readonly upgrade: boolean;
  /** The connection's TLS on an HTTPS listener (server name, protocol, the verified client certificate); undefined on plain HTTP. */
  readonly tls: TlsInfo | undefined;
}

/** The upstream's response head as `onResponse` sees it. */
export interface ResponseHead {
  readonly status: number;
  /** Flat name, value pairs (lower-case names), mutable: add, remove or change fields. */
  headers: string[];
}

/**
 * The reverse gateway's extension points, at fixed phases (Pingora's ProxyHttp filters,
 * fastify's hooks). Every member is optional; hooks run in registration order.
 */
export interface GatewayHooks {
  /** After routing, before admission. Return a Failure to refuse (written by the one responder). */
  onRequest?(ctx: HookRequest): Failure | void | Promise<Failure | void>;
  /** The upstream's response head, before it is written: may change status-independent headers. */
  onResponse?(ctx: HookRequest, head: ResponseHead): void;
  /**
   * A failure the gateway is about to answer: observe it, or return a replacement detail
   * (the status, type and everything else stay).
   */
  onFailure?(ctx: HookRequest, failure: Failure): void | string;
  /** Once per request, with the finished record. */
  onFinish?(record: RequestRecord): void;
}

type RequestHook = NonNullable<GatewayHooks['onRequest']>;
type ResponseHook = NonNullable<GatewayHooks['onResponse']>;
type FailureHook = NonNullable<GatewayHooks['onFailure']>;
type FinishHook = NonNullable<GatewayHooks['onFinish']>;

/**
 * Hooks compiled once per gateway: one array per phase, undefined when empty, so the hot
 * path tests a field and makes no call for a phase nobody hooked. A gateway without hooks
 * has no `GatewayHooksRunner` at all (`ctx.hooks` is undefined).
 */
export class GatewayHooksRunner {
  readonly request: readonly RequestHook[] | undefined;
  readonly response: readonly ResponseHook[] | undefined;
  readonly #failure: readonly FailureHook[] | undefined;
  readonly finish: readonly FinishHook[] | undefined;
  /** The longest the asynchronous `onRequest` hooks of one request may take together (0: no bound). */
  readonly #timeoutMs: number;

  private constructor(hooks: readonly GatewayHooks[], timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
    this.request = collect(hooks, 'onRequest');
    this.response = collect(hooks, 'onResponse');
    this.#failure = collect(hooks, 'onFailure');
    this.finish = collect(hooks, 'onFinish');
  }

  /** A runner for these hooks, or undefined when none hooks any phase. */
  static of(hooks: readonly GatewayHooks[] | undefined, timeoutMs = DEFAULT_HOOK_TIMEOUT_MS): GatewayHooksRunner | undefined {
    if (hooks === undefined || hooks.length === 0) return undefined;
    const r = new GatewayHooksRunner(hooks, timeoutMs);
    return r.request || r.response || r.#failure || r.finish ? r : undefined;
  }

  /**
   * `onRequest` hooks in order until one refuses. Synchronous hooks are run synchronously
   * (no promise per request); the first that returns a promise makes the rest wait for it.
   * The asynchronous part is bounded by the hook timeout: past it the request is answered
   * 500 `proxy_internal_error` and what the hooks settle later is ignored.
   */
  runRequest(req: HookRequest): Failure | undefined | Promise<Failure | undefined> {
    const list = this.request!;
    for (let i = 0; i < list.length; i++) {
      const out = list[i]!(req);
      if (out instanceof Failure) return out;
      if (out !== undefined && typeof (out as Promise<unknown>).then === 'function') {
        const ms = this.#timeoutMs;
        return within(this.#continueRequest(req, out as Promise<Failure | void>, i + 1), ms, () => hookTimedOut('onRequest', ms));
      }
    }
    return undefined;
  }

  async #continueRequest(req: HookRequest, pending: Promise<Failure | void>, next: number): Promise<Failure | undefined> {
    const first = await pending;
    if (first instanceof Failure) return first;
    const list = this.request!;
    for (let i = next; i < list.length; i++) {
      const out = await list[i]!(req);
      if (out instanceof Failure) return out;
    }
    return undefined;
  }

  runResponse(req: HookRequest, status: number, headers: string[]): string[] {
    const head: ResponseHead = { status, headers };
    for (const h of this.response!) h(req, head);
    return head.headers;
  }

  /** The failure to answer: the same one, or a copy with the detail a hook gave. */
  failure(req: HookRequest, f: Failure): Failure {
    const list = this.#failure;
    if (list === undefined) return f;
    for (const h of list) {
      let detail: string | void;
      try {
        detail = h(req, f);
      } catch {
        continue; // a broken observer must not change the answer
      }
      if (typeof detail === 'string') f = withDetail(f, detail);
    }
    return f;
  }

  runFinish(record: RequestRecord): void {
    for (const h of this.finish!) {
      try {
        h(record);
      } catch {
        // the response is over; nothing to answer
      }
    }
  }
}

function collect<K extends keyof GatewayHooks>(hooks: readonly GatewayHooks[], k: K): Array<NonNullable<GatewayHooks[K]>> | undefined {
  const out: Array<NonNullable<GatewayHooks[K]>> = [];
  for (const h of hooks) {
    const fn = h[k];
    if (typeof fn === 'function') out.push(fn.bind(h) as NonNullable<GatewayHooks[K]>);
  }
  return out.length > 0 ? out : undefined;
}

/** A request that runs the `onRequest` phase: told how its asynchronous hooks ended. */
export interface HookedRequest extends HookRequest {
  /** The hooks settled: a Failure to refuse with, or undefined to go on to admission. */
  afterRequestHooks(f: Failure | undefined): void;
}

const NOT_SENT = { connected: false, responseStarted: false, headersReceived: false } as const;

/**
 * The `onRequest` phase of any reverse request (plain or upgrade): true when the caller
 * goes on now (no hooks, or all agreed synchronously); throws the Failure a synchronous
 * hook refused with; false when hooks are pending (`afterRequestHooks` follows).
 */
export function runRequestPhase(runner: GatewayHooksRunner | undefined, req: HookedRequest): boolean {
  if (runner === undefined || runner.request === undefined) return true;
  const out = runner.runRequest(req);
  if (out instanceof Failure) throw out;
  if (out === undefined) return true;
  out.then(
    (f) => req.afterRequestHooks(f),
    (err: unknown) => req.afterRequestHooks(classify(err, NOT_SENT)),
  );
  return false;
}
