import { hookTimedOut, type Failure } from '../failure/index.js';
import { DEFAULT_HOOK_TIMEOUT_MS, within } from '../timing/within.js';
import type { MeteredProtocol } from '../tenants/index.js';
import type { ForwardRecord } from '../record/index.js';

/** What a forward request is: one HTTP request, one tunnel, or one UDP association. */
export type ForwardKind = 'request' | 'tunnel' | 'datagram';

/** The facts of one forward request that hooks may read (the pipeline owns the rest). */
export interface ForwardHookRequest {
  readonly requestId: string;
  readonly protocol: MeteredProtocol;
  readonly kind: ForwardKind;
  /** The authenticated user (null: anonymous). Set once `authenticate` has passed. */
  readonly user: string | null;
  /** The user's plan, when they have one. */
  readonly plan: string | undefined;
  /** Where the client wants to go (`*` and the announced port for a UDP association). */
  readonly target: { readonly host: string; readonly port: number };
  /** The HTTP method of a request ('CONNECT' for a CONNECT tunnel), undefined for SOCKS. */
  readonly method: string | undefined;
  /** The client's address (read lazily: a `getpeername` call). */
  readonly clientAddress: string | undefined;
}

/**
 * The public extension points of the forward proxy, called at fixed phases of the one
 * pipeline every protocol goes through (authenticate → authorize → plan → admit → egress →
 * relay → finish). Register them with `startForwardProxy(config, { hooks: [...] })`; they
 * run in the order given, after the built-in behaviour of the same phase.
 *
 * A hook that refuses returns a `Failure` (build one with `refuse()`): the protocol front
 * answers it in its own protocol (HTTP status with Proxy-Status, or the SOCKS reply code
 * mapped from the failure type), and the access log names it like any built-in refusal.
 */
export interface ForwardHooks {
  /** After authentication and the destination rules, before the plan's checks. */
  authorize?(req: ForwardHookRequest): Failure | undefined | Promise<Failure | undefined>;
  /**
   * Choose the egress pool by name (undefined: the built-in routing: the username's
   * `-pool-` parameter, the routing rules, the default pool). An unknown name is a 403.
   */
  chooseEgress?(req: ForwardHookRequest): string | undefined;
  /** A refusal or failure the client is about to be answered with (observe only). */
  onFailure?(req: ForwardHookRequest, failure: Failure): void;
  /** Once per request, tunnel or association, with its finished record. */
  onFinish?(record: ForwardRecord): void;
}

/** The hooks of one proxy, merged into one call per phase (none: undefined, no call at all). */
export interface MergedForwardHooks {
  authorize: ((req: ForwardHookRequest) => Failure | undefined | Promise<Failure | undefined>) | undefined;
  chooseEgress: ((req: ForwardHookRequest) => string | undefined) | undefined;
  onFailure: ((req: ForwardHookRequest, failure: Failure) => void) | undefined;
  onFinish: ((record: ForwardRecord) => void) | undefined;
}

/**
 * Merge a list of hooks: each phase becomes one function, or undefined when no hook has it.
 * The `authorize` hooks of one request are bounded together by `timeoutMs` (0: no bound):
 * past it the request is refused 500 `proxy_internal_error` and what they settle later is ignored.
 */
export function mergeForwardHooks(list: readonly ForwardHooks[], timeoutMs = DEFAULT_HOOK_TIMEOUT_MS): MergedForwardHooks {
  const authorizers = list.filter((h) => h.authorize).map((h) => h.authorize!.bind(h));
  const choosers = list.filter((h) => h.chooseEgress).map((h) => h.chooseEgress!.bind(h));
  const onFailure = list.filter((h) => h.onFailure).map((h) => h.onFailure!.bind(h));
  const onFinish = list.filter((h) => h.onFinish).map((h) => h.onFinish!.bind(h));
  return {
    authorize:
      authorizers.length === 0
        ? undefined
        : (req) => within(authorizeAll(authorizers, req), timeoutMs, () => hookTimedOut('authorize', timeoutMs)),
    chooseEgress:
      choosers.length === 0
        ? undefined
        : (req) => {
            for (const c of choosers) {
              const pool = c(req);
              if (pool !== undefined) return pool;
            }
            return undefined;
          },
    onFailure: onFailure.length === 0 ? undefined : (req, f) => onFailure.forEach((h) => h(req, f)),
    onFinish: onFinish.length === 0 ? undefined : (rec) => onFinish.forEach((h) => h(rec)),
  };
}

async function authorizeAll(authorizers: ReadonlyArray<(req: ForwardHookRequest) => Failure | undefined | Promise<Failure | undefined>>, req: ForwardHookRequest): Promise<Failure | undefined> {
  for (const a of authorizers) {
    const f = await a(req);
    if (f) return f;
  }
  return undefined;
}
