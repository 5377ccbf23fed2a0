import type { Dispatcher } from 'undici';
import { Failure, classify, type AttemptProgress } from '../failure/index.js';
import { ResponseTimer, type ResponseTimerOwner } from '../timing/response-timer.js';
import type { PoolConnection } from '../pool/index.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { CacheEntry, refusedForSize, selectFor304, withoutSetCookie, varyValuesOf, type RequestHeaders, type RouteCache, type StoreTicket, type UpdateResult } from '../cache/index.js';
import { admitPhase, type Admittable } from './admit.js';
import { credentialDigest, freshened, headerObject, isCredential, storedPairs, variesOnAlteredField, varyOf } from './cache-fields.js';
import type { GatewayContext } from './context.js';
import { requestEnd, requestRecord, type AttemptRecord, type ReverseRecord } from './events.js';
import type { RevalidationResult, StoreRefusal } from '../record/index.js';
import type { Exchange } from './exchange.js';
import type { Route } from './router.js';
import type { RawField } from '../http/headers.js';

/**
 * A background revalidation (RFC 5861 §3 stale-while-revalidate): the stored response's
 * validators sent to one endpoint of the route's cluster; a 304 refreshes the entry, a
 * storable answer (never a 5xx) replaces it, anything else leaves it as it was. A 304 that
 * names no stored response sends the request again without validators, once (`#again`).
 *
 * It is a request of the gateway's own, and is treated like one: it takes a slot of the
 * cluster's admission (or waits in its queue; a full queue or the queue timeout drops it,
 * and the stale entry stays for the next hit to try again), counts in the context's
 * in-flight requests (a drain or a reload waits for it), feeds the endpoint's outlier and
 * latency records, and ends with a `ReverseRecord` on `gatewise:request:end` marked
 * `background: 'revalidation'` with its result and the request id of the stale answer that
 * started it (the access log writes it; the metrics count it in
 * `gatewise_cache_revalidations_total`, not as a client request). It is not retried and
 * runs no hooks (there is no client to answer). There is one per stored response at a time
 * (`Collapser.refresh`); it holds the key's collapsing slot when that is free, and misses for
 * the key then wait for it like for any leader (with the slot held by another fetch of the key,
 * another variant's or a Range request's, it runs beside that fetch; before, none started).
 *
 * It validates the stored response, so it goes with the credentials (Cookie, Authorization,
 * Proxy-Authorization) of the request that stored it, never another client's: the triggering
 * client's go only when they are the same (`CacheEntry.credentials`), and otherwise none go.
 * Before (session 31) the triggering client's went, and an origin that personalises for them
 * had that client's page stored for every client. Its answer is judged for storing against the
 * request as it went (credentials included or not), by the rules of any store.
 */
export class Revalidation implements Dispatcher.DispatchHandler, Admittable, ResponseTimerOwner {
  readonly #ctx: GatewayContext;
  readonly #route: Route;
  readonly #rc: RouteCache;
  readonly #key: string;
  readonly #entry: CacheEntry;
  readonly #path: string;
  /** The request's fields: the stored response's validators in, until a 304 naming none of them sends it again without. */
  #headers: string[];
  readonly #req: Exchange['req'];
  /** The client's request fields as the revalidation sent them: without its credentials unless they are the entry's. */
  readonly #reqHeaders: RequestHeaders;
  /** The stored entry's credential digest when they went again; undefined: none went. */
  readonly #credentials: string | undefined;
  readonly #clientAddress: string | undefined;
  readonly #listener: string;
  readonly #recordPath: string;
  readonly #triggeredBy: string;
  readonly #requestId: string;
  readonly #t0 = performance.now();
  #admitted = false;
  #admittedAt = 0;
  #headersAt = 0;
  #ep: Endpoint | undefined;
  #client: PoolConnection | undefined;
  /**
   * The wait for the head (the cluster's response timeout), then between body bytes (its idle
   * timeout), as a client request's try is timed. Before session 13 only the head was timed:
   * an upstream that stopped mid-body held the revalidation, the key's collapsing slot, the
   * admission slot and the in-flight counts for ever (the stall hunt).
   */
  readonly #timer = new ResponseTimer(this);
  #abort: ((err?: Error) => void) | undefined;
  /** Dispatched behind another request on a busy connection (the endpoint at maxConnections): when, timed from then (ConnectionPool.queuedOn; 0: sent at once). */
  #queuedAt = 0;
  #attempt: AttemptRecord | undefined;
  /** Tries before this one (the try whose 304 named no stored response). */
  #tries: AttemptRecord[] = [];
  /** The 304 just received names none of the stored responses: send the request again, without validators, once it is over. */
  #resend = false;
  /** This is that request, sent again: a 304 to it freshens nothing. */
  #resent = false;
  #progress: AttemptProgress = { connected: false, responseStarted: false, headersReceived: false };
  #status = 0;
  #raw: string[] | undefined;
  #chunks: Buffer[] = [];
  #bytes = 0;
  #bytesDown = 0;
  /**
   * The answer was storable but larger than the route's maxObjectSize: refused then, and named at
   * that moment (`refusedForSize`): `purged` when a purge had cancelled it already, else
   * `too-large`, which a purge after does not change (before, any purge before the end said `purged`).
   * Or storable but for its Set-Cookie: `set-cookie` (`ResponseCache.storeVerdict`).
   */
  #sizeRefusal: StoreRefusal | undefined;
  #requestTime = Date.now();
  #responseTime = 0;
  #done = false;
  /** A purge or invalidation of the key while it runs cancels storing its answer (`ResponseCache.begin`). */
  #ticket: StoreTicket | undefined;

  /** It holds the key's collapsing slot (it was free when it started): misses wait for it, and it releases them at the end. */
  readonly #holdsSlot: boolean;

  constructor(ex: Exchange, rc: RouteCache, key: string, entry: CacheEntry, holdsSlot: boolean) {
    this.#holdsSlot = holdsSlot;
    this.#ctx = ex.ctx;
    this.#route = ex.route!;
    this.#rc = rc;
    this.#key = key;
    this.#entry = entry;
    const up = ex.upstreamRequest();
    this.#path = up.path;
    // The triggering client's credentials go only when they are those the entry was stored with.
    const same = entry.credentials !== undefined && credentialDigest(up.headers) === entry.credentials;
    this.#credentials = same ? entry.credentials : undefined;
    this.#reqHeaders = same ? ex.req.headers : withoutCredentials(ex.req.headers);
    const h: string[] = [];
    for (let i = 0; i < up.headers.length; i += 2) {
      const n = up.headers[i]!.toLowerCase();
      if (n === 'if-none-match' || n === 'if-modified-since' || n === 'range' || n === 'if-range') continue;
      if (!same && isCredential(n)) continue;
      h.push(up.headers[i]!, up.headers[i + 1]!);
    }
    if (entry.etag !== undefined) h.push('if-none-match', entry.etag);
    if (entry.lastModified !== undefined) h.push('if-modified-since', entry.lastModified);
    this.#headers = h;
    this.#req = ex.req;
    this.#clientAddress = ex.clientAddress;
    this.#listener = ex.listener;
    this.#recordPath = ex.path;
    this.#triggeredBy = ex.requestId;
    this.#requestId = ex.ctx.requestIds.next();
  }

  /** Admit it like a request; the caller holds the key's collapsing slot when `holdsSlot`, released at the end. */
  start(): void {
    this.#ticket = this.#rc.cache.begin(this.#key);
    this.#rc.cache.collapser.refresh(this.#entry);
    const ctx = this.#ctx;
    ctx.inflight++;
    const cluster = this.#route.cluster;
    cluster.onRequest(Date.now());
    try {
      if (!admitPhase(cluster, this)) return; // queued: admitted() or queueRefused() follows
    } catch (err) {
      this.#end(err instanceof Failure ? err : classify(err, this.#progress));
      return;
    }
    this.admitted();
  }

  admitted(): void {
    this.#admitted = this.#route.cluster.admission !== undefined;
    this.#admittedAt = performance.now();
    const cluster = this.#route.cluster;
    const now = Date.now();
    const ep = cluster.pick(now, undefined, this.#req, this.#clientAddress);
    if (ep === undefined) {
      this.#end(new Failure({ type: 'destination_unavailable', phase: 'pick', detail: `no endpoint of cluster ${cluster.name} is available (${cluster.describeAvailability(now)})` }));
      return;
    }
    if (this.#route.host === 'endpoint') {
      for (let i = 0; i < this.#headers.length; i += 2) if (this.#headers[i] === 'host') this.#headers[i + 1] = ep.hostHeader;
    }
    this.#ep = ep;
    this.#progress.nextHop = ep.nextHop;
    ep.inflight++;
    this.#send(ep, now);
  }

  /** One try at `ep`: a pooled connection, the head timer, the request. */
  #send(ep: Endpoint, now: number): void {
    const client = (this.#client = ep.pool.acquire(now, true, false));
    this.#attempt = { endpoint: ep.nextHop, phase: 'connect', connection: client.connected ? 'reused' : 'new', startMs: this.#ms() };
    const t = performance.now();
    if (ep.pool.queuedOn(client)) this.#queuedAt = t;
    this.#timer.headers(this.#route.cluster.responseTimeoutMs, t);
    client.dispatch({ path: this.#path, method: 'GET', headers: this.#headers, headersTimeout: 0, bodyTimeout: 0 }, this);
  }

  /**
   * The 304 named none of the stored responses (RFC 9111 §4.3.4: it updates nothing): the
   * request goes again at once, once, to the same endpoint, without the validators, and what
   * it brings is stored by the usual rules, as a client's request does after such a 304
   * (`CachePhase.onHead` 'resend'). Before session 33 the revalidation stopped at the 304
   * (`kept`): the entry stayed stale, and every later stale-while-revalidate hit revalidated
   * again and got the same 304, for the whole window. Both tries are in its record.
   */
  #again(): void {
    const ep = this.#ep!;
    const a = this.#attempt!;
    a.endMs = this.#ms();
    a.detail = 'a 304 naming none of the stored responses the cache asked about; sent again without its validators';
    this.#tries.push(a);
    this.#timer.stop();
    ep.pool.release(this.#client!, Date.now(), true);
    this.#client = undefined;
    this.#abort = undefined;
    this.#queuedAt = 0;
    this.#progress = { connected: false, responseStarted: false, headersReceived: false, nextHop: ep.nextHop };
    this.#status = 0;
    this.#raw = undefined;
    this.#resend = false;
    this.#resent = true;
    const h: string[] = [];
    for (let i = 0; i < this.#headers.length; i += 2) {
      const n = this.#headers[i]!;
      if (n !== 'if-none-match' && n !== 'if-modified-since') h.push(n, this.#headers[i + 1]!);
    }
    this.#headers = h;
    const now = Date.now();
    this.#requestTime = now;
    this.#send(ep, now);
  }

  queueRefused(f: Failure): void {
    this.#end(f);
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.#done) {
      // Given up while queued; undici's Client kept the request (it cannot drop one): not sent.
      abort();
      return;
    }
    this.#queuedAt = 0;
    this.#abort = abort;
    this.#progress.connected = true;
    if (this.#attempt !== undefined) {
      this.#attempt.connectedMs = this.#ms();
      this.#attempt.phase = 'send';
    }
  }

  onHeaders(statusCode: number, rawHeaders: RawField[], _resume: () => void): boolean {
    if (statusCode < 200) return true;
    this.#progress.responseStarted = true;
    this.#progress.headersReceived = true;
    this.#timer.body(this.#route.cluster.idleTimeoutMs, performance.now());
    this.#status = statusCode;
    this.#responseTime = Date.now();
    this.#headersAt = performance.now();
    const a = this.#attempt!;
    a.headersMs = this.#ms();
    a.status = statusCode;
    a.phase = 'body';
    const ep = this.#ep!;
    const cluster = this.#route.cluster;
    cluster.observeLatency(ep, a.headersMs - a.startMs, this.#responseTime);
    cluster.recordOutcome(ep, statusCode >= 500 ? 'upstream-5xx' : 'success', this.#responseTime);
    this.#raw = storedPairs(rawHeaders);
    if (statusCode === 304) {
      // A 304 whose entity tag names another representation than the stored one updates nothing
      // (RFC 9111 §4.3.4): the request goes again without validators (`#again`). A 304 to that
      // request (it asked nothing conditional) freshens nothing either, and is not followed.
      if (this.#resent) this.#raw = undefined;
      else if (selectFor304([this.#entry], headerObject(rawHeaders).etag) === undefined) {
        this.#raw = undefined;
        this.#resend = true;
      }
    } else {
      const obj = headerObject(rawHeaders);
      const verdict = obj.vary !== undefined && variesOnAlteredField(varyOf(['vary', obj.vary]), this.#reqHeaders, this.#headers, this.#ctx.requestIdHeader) ? 'unstorable' : this.#rc.cache.storeVerdict('GET', this.#path, this.#reqHeaders, statusCode, obj);
      if (verdict !== 'store') {
        this.#raw = undefined;
        // Storable but for its Set-Cookie: named so, as a client's request records it (before session 37: `kept`).
        if (verdict === 'set-cookie' && statusCode < 500) this.#sizeRefusal ??= 'set-cookie';
      } else if (statusCode < 500 && obj['content-length'] !== undefined && Number(obj['content-length']) > this.#rc.maxObjectBytes) this.#tooBig();
    }
    if (statusCode >= 500) this.#raw = undefined; // never replace a good entry with a 5xx
    if (this.#ticket?.cancelled === true) this.#raw = undefined; // purged meanwhile
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#timer.progressAt = performance.now();
    this.#bytesDown += chunk.length;
    if (this.#raw === undefined || this.#status === 304) return true;
    this.#bytes += chunk.length;
    if (this.#bytes > this.#rc.maxObjectBytes) this.#tooBig();
    else this.#chunks.push(chunk);
    return true;
  }

  /** Larger than the route's maxObjectSize: passed by, recorded by the one rule (`refusedForSize`). */
  #tooBig(): void {
    this.#raw = undefined;
    this.#chunks = [];
    this.#sizeRefusal ??= refusedForSize(this.#ticket);
  }

  onComplete(): void {
    // Not when the key was purged meanwhile: nothing it brought would be stored (`purged`).
    if (this.#resend && this.#ticket?.cancelled !== true) {
      this.#again();
      return;
    }
    const raw = this.#raw;
    // Refused for its size: named when the size refused it. Else purged or invalidated while it
    // ran: neither the freshened purged response nor the new one is stored.
    let result: RevalidationResult = this.#sizeRefusal ?? (this.#ticket?.cancelled === true ? 'purged' : 'kept');
    if (raw !== undefined && result === 'kept') {
      const cache = this.#rc.cache;
      if (this.#status === 304) {
        const f = freshened(this.#entry, raw, this.#requestTime, this.#responseTime, this.#reqHeaders, this.#headers, this.#ctx.requestIdHeader, false);
        result = UPDATED[cache.keepUpdated(f.entry, this.#path, this.#reqHeaders, f.fields, this.#ticket, f.mayStore)];
      } else {
        // The store refuses what is larger than all of it (cache.maxSize, which a route's
        // maxObjectSize may exceed): not `replaced` then, the stale response is still the one stored.
        const stored = cache.put(
          new CacheEntry({
            key: this.#key,
            status: this.#status,
            headers: withoutSetCookie(raw),
            body: Buffer.concat(this.#chunks, this.#bytes),
            requestTime: this.#requestTime,
            responseTime: this.#responseTime,
            varyValues: varyValuesOf(varyOf(raw), this.#reqHeaders),
            credentials: this.#credentials,
          }),
          this.#ticket,
        );
        result = stored ? 'replaced' : refusedForSize(this.#ticket);
      }
    }
    this.#end(undefined, result);
  }

  onError(err: Error): void {
    const f = classify(err, this.#progress);
    if (f.source === 'upstream' && this.#ep !== undefined) this.#route.cluster.recordOutcome(this.#ep, f.type === 'http_response_timeout' ? 'timeout' : 'gateway-failure', Date.now());
    this.#end(f);
  }

  // ---- the response timer (ResponseTimerOwner) ---------------------------------------------

  timedOut(err: Error): void {
    if (this.#abort === undefined && this.#queuedAt > 0) {
      // Still behind the request ahead on its connection: given up unsent.
      const ep = this.#ep!;
      this.#end(ep.pool.giveUpQueued(this.#client!, this, ep.nextHop, this.#queuedAt, performance.now()));
      return;
    }
    if (this.#timer.phase === 'headers') {
      const ms = this.#route.cluster.responseTimeoutMs;
      this.#abort?.(new Failure({ type: 'http_response_timeout', phase: 'headers', nextHop: this.#ep?.nextHop, detail: `background revalidation: no response head within ${ms} ms` }));
    } else this.#abort?.(err);
  }

  notReading(): void {
    // No client reads a background revalidation (no send timeout is set).
  }

  #ms(): number {
    return Math.round((performance.now() - this.#t0) * 1000) / 1000;
  }

  #end(f: Failure | undefined, result: RevalidationResult = f === undefined ? 'kept' : f.type === 'connection_limit_reached' ? 'refused' : 'failed'): void {
    if (this.#done) return;
    this.#done = true;
    this.#timer.stop();
    const ep = this.#ep;
    if (ep !== undefined) {
      ep.inflight--;
      if (this.#client !== undefined) ep.pool.release(this.#client, Date.now(), f === undefined);
    }
    if (this.#admitted) {
      const end = this.#headersAt > this.#admittedAt ? this.#headersAt : performance.now();
      this.#route.cluster.admission!.release(end - this.#admittedAt, f !== undefined);
    }
    if (this.#ticket !== undefined) this.#rc.cache.finish(this.#ticket);
    this.#rc.cache.collapser.refreshed(this.#entry);
    if (this.#holdsSlot) this.#rc.cache.collapser.release(this.#key);
    this.#ctx.inflight--;
    const a = this.#attempt;
    if (a !== undefined) {
      a.endMs = this.#ms();
      if (f !== undefined) {
        a.error = f.type;
        a.detail = f.detail;
        a.phase = f.phase;
      }
    }
    if (requestEnd.hasSubscribers) requestEnd.publish(this.#record(f, result));
  }

  #record(f: Failure | undefined, result: RevalidationResult): ReverseRecord {
    const r = requestRecord(this.#requestId, this.#listener, undefined, { method: 'GET', httpVersion: '1.1', headers: { host: this.#req.headers.host } }, {
      path: this.#recordPath,
      route: this.#route.name,
      cluster: this.#route.cluster.name,
      // The upstream's status (there is no client answer); none when it failed before one.
      status: this.#status === 0 ? undefined : this.#status,
      error: f?.type,
      reason: f?.reason,
      phase: f?.phase,
      endedBy: f === undefined ? 'complete' : f.source,
      detail: f?.detail,
      attempts: this.#attempt === undefined ? this.#tries : [...this.#tries, this.#attempt],
      bytesUp: 0,
      bytesDown: this.#bytesDown,
      durationMs: this.#ms(),
      upgrade: false,
      cache: undefined,
      recoveredFrom: undefined,
    });
    r.background = 'revalidation';
    r.revalidation = result;
    r.triggeredBy = this.#triggeredBy;
    return r;
  }
}

/** A revalidation's result from what became of the response its 304 freshened. */
const UPDATED: Readonly<Record<UpdateResult, RevalidationResult>> = { kept: 'refreshed', dropped: 'dropped', 'too-large': 'too-large', cancelled: 'purged' };

/** Request fields without the credential ones. */
function withoutCredentials(headers: RequestHeaders): RequestHeaders {
  const out: Record<string, string | string[] | undefined> = {};
  for (const n of Object.keys(headers)) if (!isCredential(n)) out[n] = headers[n];
  return out;
}
