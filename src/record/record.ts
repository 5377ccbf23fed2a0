import { channel } from 'node:diagnostics_channel';
import type { EndedBy, Phase, ProxyErrorType } from '../failure/index.js';

/**
 * The one record of a finished request, for both faces. The reverse gateway publishes one
 * per HTTP request or upgraded connection, the forward proxy one per HTTP request, tunnel
 * or UDP association; the access log, the metrics, the hooks' `onFinish` and any other
 * subscriber of `gatewise:request:end` read the same fields in the same words.
 */

export type { EndedBy };

/** Which side of the product answered: the reverse gateway or the forward proxy. */
export type Face = 'reverse' | 'forward';

/** How the client spoke to us. */
export type RecordProtocol = 'http' | 'connect' | 'socks5' | 'socks4' | 'socks5-udp';

/**
 * What the cache did for a request (`ReverseRecord.cache`; gateway/cache-phase.ts decides it):
 * hit, stale (answered with a stale copy: for a failure, or under stale-while-revalidate, then
 * starting the key's background revalidation, none while the gateway drains), updating (a stale-while-revalidate copy answered
 * while a fetch of that stored response was already in flight, a client's request for it or
 * its background revalidation, so it started none: nginx's UPDATING; before session 34 it said
 * `stale`; a fetch of the key for another Vary variant or a Range does not count), revalidated (a 304
 * refreshed it), collapsed
 * (it waited for another request's fetch of its key and was answered from what that stored:
 * Cache-Status `fwd=…; collapsed`, RFC 9211 §2.7; a waiter that then went upstream itself is a
 * `miss`), miss, bypass (a method or request the cache does not answer).
 */
export type CacheOutcome = 'hit' | 'stale' | 'updating' | 'revalidated' | 'collapsed' | 'miss' | 'bypass';

/**
 * Why the cache passed a request by (`ReverseRecord.bypass` with `cache: bypass`,
 * `gatewise_cache_bypasses_total{reason}`; gateway/cache-phase.ts decides it, and Cache-Status
 * names all but `method` in its `detail`): method (a method the cache does not answer),
 * request-content (a GET with content, which the key does not name), unkeyed-host (a Host with
 * a port or a trailing dot the key does not name), unkeyed-field (a field some upstreams read
 * as another URL or method, such as X-Original-URL), authorization and cookie (a request sent
 * upstream with that field, on a route whose `cache.bypassOn` names it; session 38). A fixed
 * list: the metric's label stays bounded. Before session 34 only Cache-Status said it.
 */
export type BypassReason = 'method' | 'request-content' | 'unkeyed-host' | 'unkeyed-field' | 'authorization' | 'cookie';

/**
 * What a background revalidation did (`ReverseRecord.revalidation`,
 * `gatewise_cache_revalidations_total`; gateway/revalidation.ts decides it): refreshed (304),
 * replaced (a new response stored), kept (the answer was not stored), too-large (a storable
 * answer, or the response a 304 freshened, larger than the route's `maxObjectSize` or than the
 * whole store, which refused it: not stored, the stored response as it was; before session 33
 * the store's refusal was recorded `replaced`, or `dropped` after a 304, and `maxObjectSize`
 * `kept`), purged (the key was purged or invalidated while it ran, so its answer was not
 * stored: its `StoreTicket` was cancelled; before session 32 that was recorded as `kept`),
 * set-cookie (a new answer with Set-Cookie, never stored; before session 37 `kept`),
 * dropped, failed, refused (admission).
 */
export type RevalidationResult = 'refreshed' | 'replaced' | 'kept' | StoreRefusal | 'dropped' | 'failed' | 'refused';

/**
 * Why the store could not keep a storable answer (`ReverseRecord.storeRefused` on a client's
 * request, `gatewise_cache_store_refused_total{reason}`; the background revalidation records
 * the same value as its RevalidationResult): too-large (a `Content-Length` or a body larger
 * than the route's `maxObjectSize`, or a response, or one a 304 or a HEAD freshened, larger
 * than the whole store, which refused it), purged (a purge or an invalidation of the key while
 * the answer was on its way cancelled its store: its `StoreTicket`, before the head or during the
 * body). Before session 34 the client path recorded neither (a plain `miss` or `revalidated`).
 * Both at once (a purge and a size over the limit): the first to decide the store names it, the
 * same on both paths (`refusedForSize` in cache/response-cache.ts). set-cookie (a response the
 * rules would store, but carrying `Set-Cookie`, which one client's answer must not give to
 * every other: `ResponseCache.storeVerdict`; before session 37 stored when it said `public`).
 */
export type StoreRefusal = 'too-large' | 'purged' | 'set-cookie';

/** One try at an upstream endpoint (reverse). */
export interface AttemptRecord {
  endpoint: string;
  /** The furthest phase reached. */
  phase: Phase;
  /** Whether the attempt used a new upstream connection or reused a pooled one. */
  connection?: 'new' | 'reused';
  status?: number;
  error?: ProxyErrorType;
  detail?: string;
  /** Milliseconds from the start of the request. */
  startMs: number;
  /** New connections only: DNS, TCP connect and TLS handshake times (ms). */
  dnsMs?: number;
  tcpMs?: number;
  tlsMs?: number;
  /** Handed to a connected socket (includes DNS, connect and TLS when a new connection was opened). */
  connectedMs?: number;
  firstByteMs?: number;
  headersMs?: number;
  endMs?: number;
}

/** What every record has, whichever face made it. */
export interface RecordBase {
  face: Face;
  protocol: RecordProtocol;
  /** When it finished (epoch ms). */
  time: number;
  requestId: string;
  clientAddress: string | undefined;
  /** The HTTP method (`CONNECT` for a CONNECT tunnel); undefined for SOCKS. */
  method: string | undefined;
  /** The HTTP status answered to the client; undefined for SOCKS. */
  status: number | undefined;
  /** RFC 9209 error type when the proxy produced the answer or cut it short. */
  error: ProxyErrorType | undefined;
  /** The refusal reason (REFUSAL_REASONS) when the status is not the error type's own. */
  reason: string | undefined;
  /** The phase where it ended badly, if it did. */
  phase: Phase | undefined;
  /** Who ended it: complete, client, upstream, gateway, idle, quota. */
  endedBy: EndedBy;
  detail: string | undefined;
  /** Bytes from the client towards the upstream, and from the upstream to the client. */
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
}

/** A request the reverse gateway answered (or an upgraded connection it carried). */
export interface ReverseRecord extends RecordBase {
  face: 'reverse';
  listener: string;
  host: string;
  path: string;
  httpVersion: string;
  route: string | undefined;
  cluster: string | undefined;
  attempts: AttemptRecord[];
  upgrade: boolean;
  /** Routes with a cache: what the cache did (CacheOutcome). */
  cache?: CacheOutcome | undefined;
  /** With `cache: bypass`: why (BypassReason). */
  bypass?: BypassReason | undefined;
  /** A storable answer to this request that the store could not keep (StoreRefusal). */
  storeRefused?: StoreRefusal | undefined;
  /** A stale cached copy answered for this failure: an RFC 9209 error type, or the upstream's status ("503"). */
  recoveredFrom?: string | undefined;
  /**
   * A request the gateway made on its own, not a client's: `revalidation` is the cache's
   * background revalidation of a stale entry (stale-while-revalidate). Its `status` is the
   * upstream's; `clientAddress` is absent.
   */
  background?: 'revalidation' | undefined;
  /** What the background revalidation did (RevalidationResult). */
  revalidation?: RevalidationResult | undefined;
  /** The request id of the client request whose stale answer started this background request. */
  triggeredBy?: string | undefined;
}

/** A request, tunnel or UDP association the forward proxy carried or refused. */
export interface ForwardRecord extends RecordBase {
  face: 'forward';
  /** The authenticated user (undefined: anonymous or refused before authentication). */
  user: string | undefined;
  /** `host:port` as the client asked for it. */
  destination: string | undefined;
  /** The address actually connected to (after resolution and rule checks). */
  address: string | undefined;
  /** SOCKS reply code sent, when SOCKS. */
  reply: number | undefined;
  plan: string | undefined;
  /** Egress pool and exit that carried it (undefined: direct). */
  pool: string | undefined;
  exit: string | undefined;
  /** Username session id, and whether the session moved to another exit. */
  session: string | undefined;
  repinned: boolean | undefined;
  /** Exits tried before the one that worked. */
  exitRetries: number | undefined;
  /** The byte quota that ended this tunnel. */
  quota: string | undefined;
  /** UDP associations only. */
  datagramsUp: number | undefined;
  datagramsDown: number | undefined;
  datagramsDropped: number | undefined;
}

export type RequestRecord = ReverseRecord | ForwardRecord;

/** The channel every finished request of either face is published on. */
export const REQUEST_END_CHANNEL = 'gatewise:request:end';
export const requestEnd = channel(REQUEST_END_CHANNEL);

/** The reverse gateway's listening/draining/closed events. */
export const LIFECYCLE_CHANNEL = 'gatewise:gateway:lifecycle';
export const gatewayLifecycle = channel(LIFECYCLE_CHANNEL);

export interface LifecycleRecord {
  event: 'listening' | 'draining' | 'closed' | 'config-warning' | 'reloaded';
  detail: string;
}
