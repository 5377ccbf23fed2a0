import { Failure, failureMember, receivedMember } from '../failure/index.js';
import { Timeout } from '../timing/deadlines.js';
import {
  CacheEntry,
  entrySize,
  answerFrom,
  cacheKey,
  targetKey,
  cacheStatusMember,
  refusedForSize,
  requestDirectives,
  withoutSetCookie,
  selectFor304,
  varyValuesOf,
  type CacheStatus,
  type CollapseWaiter,
  type Forward,
  type ResponseCache,
  type RouteCache,
  type StoreTicket,
  type UpdateResult,
} from '../cache/index.js';
import { credentialDigest, freshened, headerObject, setCookiePairs, storedPairs, variesOnAlteredField, varyOf } from './cache-fields.js';
import { HTTPS_TARGET } from '../cache/index.js';
import { proxyStatusOptions } from './context.js';
import { Revalidation } from './revalidation.js';
import type { Exchange } from './exchange.js';
import { fieldText, type RawField } from '../http/headers.js';
import { SAFE_METHODS } from '../http/methods.js';
import { normalizeOriginForm, refuseAsError, type EscapedSlashes } from '../http/path.js';
import { routeHostOf } from './request-target.js';
import { clientPaths } from './router.js';
import { lowerCase } from '../http/token.js';
import type { BypassReason, CacheOutcome, StoreRefusal } from '../record/index.js';

/** What the cache made of an upstream head: it answered instead, or the request must be sent again (a 304 it cannot use); undefined: pass it on. */
export type HeadVerdict = 'answered' | 'resend' | undefined;

/**
 * The cache phase of one request on a route with `cache` (after route and request hooks,
 * before admit; docs/architecture.md). It looks the request up and answers a hit; sends a
 * stale stored response's validators upstream and answers a 304 from the store; answers a
 * failure or an upstream 5xx with a stale copy when allowed (RFC 5861 stale-if-error,
 * the route's `serveStaleOn`), saying so in Cache-Status and Proxy-Status; waits for a
 * request for the same key already on its way (collapsing); and taps a storable response's
 * body into the store as it streams to the client. Gateway-made answers are never stored:
 * only `onHead` (an upstream head) starts a tap.
 */
export class CachePhase implements CollapseWaiter {
  readonly #ex: Exchange;
  readonly #rc: RouteCache;
  readonly key: string;
  /** A stored response that matched: validated upstream, or answering for an error. */
  #candidate: CacheEntry | undefined;
  /** Its validators were sent upstream (a 304 refreshes it). */
  #conditional = false;
  /** On a vary miss: the stored variants with entity tags, all sent in If-None-Match (RFC 9111 §4.3.1). */
  #variants: CacheEntry[] | undefined;
  /** The request's headers before the cache put its validators in (sent again after a 304 it cannot use). */
  #clientHeaders: string[] | undefined;
  #fwd: Forward | undefined = 'uri-miss';
  /**
   * Cache-Status `detail` of a gateway-made answer: only-if-cached, or why a GET or HEAD was
   * not looked up (`#unkeyed`; a relayed answer says it in `onHead`). Before session 33 a
   * bypassed GET with content that the gateway answered itself (a 502 for a refused
   * connection) said a bare `fwd=bypass`, as a method the cache does not answer does.
   */
  #failureDetail: string | undefined;
  /** Leads the collapsed requests of its key (must release them once). */
  #leader = false;
  /**
   * The stored response its fetch may refresh (`Collapser.refresh`): as the key's leader, or as a
   * waiter that went upstream for itself (`#mayRefresh`); given back by `#release`.
   */
  #refreshes: CacheEntry | undefined;
  #waiting: Timeout | undefined;
  /** It waited behind a leader and then went upstream itself (Cache-Status `collapsed=?0`). */
  #collapsedMiss = false;
  #requestTime = 0;
  /** From going upstream to the end: a purge or invalidation of the key meanwhile cancels storing what comes back. */
  #ticket: StoreTicket | undefined;
  // The body being stored.
  #tapStatus = 0;
  #tapHeaders: string[] | undefined;
  #tapChunks: Buffer[] | undefined;
  #tapBytes = 0;
  #tapResponseTime = 0;
  /** The head being stored said its Content-Length (within the limits): its store is decided with the head, and Cache-Status says `stored`. */
  #lengthKnown = false;
  outcome: CacheOutcome = 'miss';
  /** With outcome `bypass`: why (the record's `bypass`). */
  bypass: BypassReason | undefined;
  /** A storable answer to this request that the store could not keep: for its size, a purge, its Set-Cookie (the record's `storeRefused`). */
  storeRefused: StoreRefusal | undefined;
  /** The failure (RFC 9209 type) or upstream status ("503") a stale copy answered for. */
  recoveredFrom: string | undefined;

  constructor(ex: Exchange, rc: RouteCache) {
    this.#ex = ex;
    this.#rc = rc;
    const scheme = ex.front === undefined ? 'http' : ex.front.scheme;
    this.key = cacheKey(schemeTarget(scheme, targetKey(ex.host, keyPath(ex))), rc.route);
    this.#unkeyed = unkeyedHost(ex, scheme) ? 'unkeyed-host' : hasContent(ex) ? 'request-content' : unkeyedField(ex, rc);
  }

  /**
   * What the upstream gets that the key leaves out, when it does; such a request neither reads
   * nor fills the store (findings, adversarial review, session 30). `unkeyed-host`: the Host
   * sent has a port other than the listener's own or the scheme's default, or a trailing dot
   * (`Host: site:1337` went upstream as sent, and its 301 to port 1337 was stored under `site`
   * for every client). `request-content`: a GET with a body, forwarded with it (an upstream
   * that reads GET bodies answered one client's body for every client of the URL; RFC 9110
   * §9.3.1 gives such content no meaning a cache could key on; over HTTP/2 without
   * Content-Length too, session 31). `unkeyed-field`: a field some upstreams read as another
   * URL or method (`UNKEYED_FIELDS`; session 37). `authorization`, `cookie`: the request goes
   * upstream with that field, on a route whose `bypassOn` names it (session 38: a logged-in
   * user's request was answered with the anonymous page stored before it).
   */
  readonly #unkeyed: BypassReason | undefined;

  /** The member of Cache-Status a gateway-made answer on this route carries. */
  get failureStatus(): string {
    return cacheStatusMember(this.#ex.ctx.identity, { fwd: this.#fwd, collapsed: this.#collapsedMiss ? false : undefined, detail: this.#failureDetail });
  }

  /** Look the request up: true when it was answered (or waits for a collapsed leader); false: go upstream. */
  lookup(): boolean {
    const ex = this.#ex;
    const method = ex.method;
    if (method !== 'GET' && method !== 'HEAD') {
      this.#fwd = 'bypass';
      this.outcome = 'bypass';
      this.bypass = 'method';
      return false;
    }
    if (this.#unkeyed !== undefined) {
      this.#fwd = 'bypass';
      this.outcome = 'bypass';
      this.bypass = this.#unkeyed;
      this.#failureDetail = this.#unkeyed;
      return false;
    }
    return this.#lookup(true);
  }

  #lookup(disk: boolean): boolean {
    const ex = this.#ex;
    const method = ex.method;
    const now = Date.now();
    const r = this.#rc.cache.lookup(this.key, ex.req.headers, now, disk);
    if (r.kind === 'on-disk') {
      // Read back from the disk tier, then look again (memory only).
      this.#rc.cache.load(this.key).then(
        () => this.#loaded(),
        () => this.#loaded(),
      );
      return true;
    }
    if (r.kind === 'fresh') {
      this.outcome = 'hit';
      this.#answer(r.entry, { hit: true, ttl: r.entry.ttlMs(now) / 1000 }, undefined, now);
      return true;
    }
    if (r.kind === 'revalidate-behind') {
      // With a fetch of this stored response in flight (a client's GET for it, `#mayRefresh`, or
      // the background revalidation another stale hit started) this hit starts none: that
      // fetch brings the new copy (Varnish's grace behind a busy object, nginx's `updating`).
      // Recorded `updating` (nginx's UPDATING), not `stale`: before session 34 both said `stale`,
      // and a hit behind a client's fetch was recorded as if it had revalidated. A fetch of the
      // key for another variant, or a Range request's, refreshes nothing of this one: the hit
      // revalidates it (`stale`); before, any fetch of the key made it `updating`.
      this.outcome = this.#rc.cache.collapser.refreshing(r.entry) ? 'updating' : 'stale';
      this.#answer(r.entry, { hit: true, ttl: r.entry.ttlMs(now) / 1000, detail: 'stale-while-revalidate' }, undefined, now);
      this.#revalidateBehind(r.entry);
      return true;
    }
    if (requestDirectives(ex.req.headers).has('only-if-cached')) {
      // RFC 9111 §5.2.1.7: a stored response the request's other directives allow, or a 504;
      // never the upstream. Not a stale copy for this "failure" either (nothing failed).
      this.#fwd = undefined;
      this.#failureDetail = 'only-if-cached';
      ex.fail(new Failure({ type: 'proxy_internal_response', reason: 'only_if_cached', phase: 'route', detail: `only-if-cached: ${r.fwd === 'uri-miss' || r.fwd === 'vary-miss' ? 'nothing stored for this request' : 'the stored response may not be used without going to the upstream'}` }));
      return true;
    }
    this.#fwd = r.fwd;
    this.#validate(r.entry, r.variants);
    if (method === 'GET' && this.#rc.collapseWaitMs > 0) {
      const joined = this.#rc.cache.collapser.join(this.key, this);
      if (joined === true) this.#leader = true;
      else if (joined === false) {
        this.#waiting = new Timeout(() => this.#waitOver(), this.#rc.collapseWaitMs);
        return true;
      }
    }
    this.#mayRefresh(r.entry);
    this.#upstream(now);
    return false;
  }

  /**
   * The stored response(s) its request goes upstream for, and which validators it sends: a
   * conditional request for a stored response with validators, or on a Vary miss the stored
   * variants' entity tags (not for a range: the client's Range goes upstream as it came; not
   * for a HEAD). Chosen at each lookup that goes upstream, the first one's and a woken waiter's:
   * before session 49 a waiter kept its first lookup's choice, so one that had started with
   * nothing stored (or a response without validators) went upstream with none although its
   * leader had just stored one with an ETag, and one that had started at a Vary miss sent the
   * tags of the variants stored then (test/cache/collapsed-validators.test.ts).
   */
  #validate(entry: CacheEntry | undefined, variants: readonly CacheEntry[] | undefined): void {
    const ex = this.#ex;
    const whole = ex.req.headers.range === undefined && ex.method === 'GET';
    this.#candidate = entry;
    this.#conditional = whole && entry !== undefined && (entry.etag !== undefined || entry.lastModified !== undefined);
    const tagged = whole && variants !== undefined ? variants.filter((v) => v.etag !== undefined) : undefined;
    this.#variants = tagged !== undefined && tagged.length > 0 ? tagged : undefined;
  }

  /**
   * A stale copy answered under stale-while-revalidate (a lookup's or a woken waiter's): make
   * sure one fetch that may refresh that stored response is in flight, starting its background
   * revalidation when none is (one per stored response at a time). The revalidation holds the
   * collapser's slot for the key when it is free (`lead`: never queued), and misses for the key
   * wait for it; with the slot held by another fetch of the key (another variant's, a Range
   * request's) it runs beside it. None is started while the gateway drains (the stale copy
   * answered; the next start revalidates).
   */
  #revalidateBehind(entry: CacheEntry): void {
    const ex = this.#ex;
    const collapser = this.#rc.cache.collapser;
    if (!ex.ctx.draining && !collapser.refreshing(entry)) new Revalidation(ex, this.#rc, this.key, entry, collapser.lead(this.key)).start();
  }

  /** The request goes upstream now: its answer may be stored unless the key is purged from now on. */
  #upstream(now: number): void {
    this.#requestTime = now;
    this.#ticket ??= this.#rc.cache.begin(this.key);
  }

  #loaded(): void {
    const ex = this.#ex;
    if (ex.clientGone) return;
    if (!this.#lookup(false)) ex.cacheGoOn();
  }

  /** The collapsed leader finished: look again; what is still a miss goes upstream (not as a leader). */
  collapseWake(): void {
    this.#waiting?.cancel();
    this.#waiting = undefined;
    const ex = this.#ex;
    if (ex.clientGone) return;
    const now = Date.now();
    const r = this.#rc.cache.lookup(this.key, ex.req.headers, now, false);
    if (r.kind === 'on-disk') {
      ex.cacheGoOn(); // not asked for (disk = false); a miss
      return;
    }
    if (r.kind === 'fresh' || r.kind === 'revalidate-behind') {
      // Not a hit (RFC 9211 §2.1: answered without going forward): it went forward in the
      // leader's request, for the reason its own lookup found (§2.7: `collapsed` goes with `fwd`).
      this.outcome = 'collapsed';
      // A stale copy says it answered under stale-while-revalidate, as a direct stale hit does
      // (before, a woken waiter's member lacked the detail: a stale ttl and nothing saying why).
      const swr = r.kind === 'revalidate-behind' ? 'stale-while-revalidate' : undefined;
      this.#answer(r.entry, { fwd: this.#fwd, ttl: r.entry.ttlMs(now) / 1000, collapsed: true, detail: swr }, undefined, now);
      // A stale copy answered under stale-while-revalidate goes with a revalidation here too
      // (the leader stored a response stale on arrival); before session 33 a woken waiter
      // started none. The first waiter woken so starts it; the others find it in flight.
      if (r.kind === 'revalidate-behind') this.#revalidateBehind(r.entry);
      return;
    }
    this.#validate(r.entry, r.variants);
    this.#fwd = r.fwd;
    this.#collapsedMiss = true;
    this.#mayRefresh(r.entry);
    this.#upstream(now);
    ex.cacheGoOn();
  }

  /**
   * Its fetch may refresh `entry`, the stored response it matched (a GET for the whole response:
   * not a HEAD, not a range, whose 206 is never stored): marked so (`Collapser.refresh`) until
   * `#release`, and a stale-while-revalidate hit on it meanwhile is `updating` and starts no
   * revalidation. Every such GET that goes upstream: the key's leader, a request on a route
   * without collapsing (`collapseWait: 0s`) or behind a full queue, and a waiter that goes upstream
   * for itself (its leader failed, the leader's answer was not stored, its own request forwards
   * whatever is stored, or its wait ran out). Before, only the leader marked it, then the waiters
   * too: a stale hit while another such fetch (a `no-cache` one without collapsing) was in flight
   * started a background revalidation beside it, a second request for the same stored response
   * (test/cache/waiter-fetch-updating.test.ts).
   */
  #mayRefresh(entry: CacheEntry | undefined): void {
    if (entry === undefined || this.#refreshes !== undefined || this.#ex.method !== 'GET' || this.#ex.req.headers.range !== undefined) return;
    this.#refreshes = entry;
    this.#rc.cache.collapser.refresh(entry);
  }

  #waitOver(): void {
    this.#waiting = undefined;
    this.#rc.cache.collapser.leave(this.key, this);
    const ex = this.#ex;
    if (ex.clientGone) return;
    this.#collapsedMiss = true;
    this.#mayRefresh(this.#candidate);
    this.#upstream(Date.now());
    ex.cacheGoOn();
  }

  /** The upstream request's headers: the stored response's validators instead of the client's (which the cache answers itself). */
  upstreamHeaders(headers: string[]): string[] {
    const e = this.#candidate;
    const variants = this.#variants;
    if (variants !== undefined) {
      this.#clientHeaders = headers;
      return withoutValidators(headers).concat('if-none-match', [...new Set(variants.map((v) => v.etag!))].join(', '));
    }
    if (!this.#conditional || e === undefined) return headers;
    this.#clientHeaders = headers;
    const out = withoutValidators(headers);
    if (e.etag !== undefined) out.push('if-none-match', e.etag);
    if (e.lastModified !== undefined) out.push('if-modified-since', e.lastModified);
    return out;
  }

  /**
   * The upstream's final head. 'answered' when the cache answered instead (a 304 to its own
   * validators, or a stale copy for an error status): the try's body is not passed on.
   * 'resend': a 304 to the cache's validators that names none of the stored responses they
   * came from (RFC 9111 §4.3.4): nothing is updated, and the request goes again as the client
   * sent it (`resendHeaders`), once. Otherwise `head` gets Cache-Status, and a storable
   * response starts being stored.
   */
  onHead(status: number, raw: readonly RawField[], head: string[]): HeadVerdict {
    const ex = this.#ex;
    const now = Date.now();
    const method = ex.method;
    // Not safe: its response invalidates the stored ones of its target (RFC 9111 §4.4).
    if (!SAFE_METHODS.has(method)) {
      if (status < 400) invalidateAfterUnsafe(this.#rc.cache, ex.route!.cluster.name, ex.host, ex.path, ex.upstreamRequest().path, raw, ex.ctx.escapedSlashes);
      head.push('cache-status', cacheStatusMember(ex.ctx.identity, { fwd: 'bypass', fwdStatus: status }));
      return undefined;
    }
    const e = this.#candidate;
    const variants = this.#variants;
    if (status === 304 && (variants !== undefined || (this.#conditional && e !== undefined))) {
      const chosen = selectFor304(variants ?? [e!], headerObject(raw).etag);
      if (chosen === undefined) {
        // Passed on, it would be a 304 to a client that asked nothing conditional (or a
        // different question than the client's own).
        this.#variants = undefined;
        this.#conditional = false;
        this.#requestTime = now;
        return 'resend';
      }
      // On a Vary miss the variant the 304 named is now also the one for this request's values.
      // Renamed for this request's values only when it went upstream with them as the client sent them.
      const sent = ex.upstreamRequest().headers;
      const rename = variants !== undefined && !variesOnAlteredField(chosen.vary, ex.req.headers, sent, ex.ctx.requestIdHeader);
      const f = freshened(chosen, storedPairs(raw), this.#requestTime, now, ex.req.headers, sent, ex.ctx.requestIdHeader, rename);
      const fresh = f.entry;
      this.storeRefused = REFUSED_UPDATE[this.#rc.cache.keepUpdated(fresh, ex.path, ex.req.headers, f.fields, this.#ticket, f.mayStore)];
      this.outcome = 'revalidated';
      this.#answer(fresh, { fwd: variants !== undefined ? 'vary-miss' : 'stale', fwdStatus: 304, ttl: fresh.ttlMs(now) / 1000, detail: this.storeRefused }, undefined, now, setCookiePairs(raw));
      this.#release();
      return 'answered';
    }
    if (status >= 500 && e !== undefined) {
      const why = this.#rc.cache.staleAllowed(e, ex.req.headers, this.#rc, undefined, status, now);
      if (why !== undefined) {
        this.outcome = 'stale';
        this.recoveredFrom = String(status);
        const member = receivedMember(status, ex.currentEndpoint, proxyStatusOptions(ex.ctx, ex.clientAddress, ex.clientSocket));
        // The status is the cause, said by fwd-status (and received-status in Proxy-Status).
        this.#answer(e, { fwd: 'stale', fwdStatus: status, ttl: e.ttlMs(now) / 1000 }, member, now);
        this.#release();
        return 'answered';
      }
    }
    // RFC 9111 §4.3.5: a HEAD answer for the stored GET's representation (same validators, or
    // none and the same length) freshens its headers.
    // The client gets the freshened stored headers (fields the HEAD answer left out are kept).
    if (method === 'HEAD' && status === 200 && e !== undefined && e.status === 200 && sameRepresentation(e, headerObject(raw))) {
      const f = freshened(e, storedPairs(raw), this.#requestTime, now, ex.req.headers, ex.upstreamRequest().headers, ex.ctx.requestIdHeader, false);
      const fresh = f.entry;
      this.storeRefused = REFUSED_UPDATE[this.#rc.cache.keepUpdated(fresh, ex.path, ex.req.headers, f.fields, this.#ticket, f.mayStore)];
      this.outcome = 'revalidated';
      this.#answer(fresh, { fwd: this.#fwd, fwdStatus: status, ttl: fresh.ttlMs(now) / 1000, detail: this.storeRefused }, undefined, now, setCookiePairs(raw));
      this.#release();
      return 'answered';
    }
    const cs: CacheStatus = { fwd: this.#fwd, fwdStatus: status };
    if (this.#collapsedMiss) cs.collapsed = false;
    if (this.#unkeyed !== undefined) cs.detail = this.#unkeyed;
    if (method === 'GET' && this.#unkeyed === undefined && this.#mayStore(status, raw)) {
      // RFC 9211 §2.6: `stored` says it was stored. Said here only when the head decides it:
      // a Content-Length within the limits (`#mayStore` refused one over them). A body of
      // unknown length may yet pass `maxObjectSize` or the store's size after this head has
      // gone, so its head says nothing of the store; the record, the access log and the metric
      // say what became of it. Before, such a head said `stored` of a body refused on its way.
      if (this.#lengthKnown) cs.stored = true;
      this.#tapStatus = status;
      this.#tapChunks = [];
      this.#tapBytes = 0;
      this.#tapResponseTime = now;
    } else {
      // A refusal decided by the head says its name, as the record and the metric do (why the
      // next request misses too): set-cookie, too-large, purged. Before session 38 only set-cookie.
      if (this.storeRefused !== undefined) cs.detail = this.storeRefused;
      this.#release();
    }
    head.push('cache-status', cacheStatusMember(ex.ctx.identity, cs));
    return undefined;
  }

  #mayStore(status: number, raw: readonly RawField[]): boolean {
    const ex = this.#ex;
    const obj = headerObject(raw);
    // Never replace a good stored response with an upstream 5xx.
    if (status >= 500 && (this.#candidate !== undefined || this.#rc.cache.store.get(this.key) !== undefined)) return false;
    if (obj.vary !== undefined && variesOnAlteredField(varyOf(['vary', obj.vary]), ex.req.headers, ex.upstreamRequest().headers, ex.ctx.requestIdHeader)) return false;
    const verdict = this.#rc.cache.storeVerdict('GET', ex.path, ex.req.headers, status, obj);
    if (verdict !== 'store') {
      // Storable but for its Set-Cookie: refused, and named so (before session 37 stored with `public`).
      if (verdict === 'set-cookie') this.storeRefused = 'set-cookie';
      return false;
    }
    // Storable, but purged or invalidated since the request went upstream: what it brings is
    // from before, refused and recorded so (before, the record said a plain miss).
    if (this.#ticket?.cancelled === true) {
      this.storeRefused = 'purged';
      return false;
    }
    // Storable, but said to be larger than the route's maxObjectSize: refused, and recorded so
    // (before session 34 only a background revalidation's record said `too-large`); named by the
    // one rule (`refusedForSize`: not cancelled here, so `too-large`, and a later purge keeps it).
    // A Content-Length over the whole store is refused here too (the store would refuse the
    // whole body at its end, after the head said `stored`).
    // The store's own bound is on the entry's size, its fields counted (`entrySize`): before, a
    // Content-Length just under `cache.maxSize` was said `stored` and refused at its end.
    const headers = withoutSetCookie(storedPairs(raw));
    const cl = obj['content-length'];
    if (cl !== undefined && (Number(cl) > this.#rc.maxObjectBytes || entrySize(Number(cl), headers) > this.#rc.cache.store.maxBytes)) {
      this.storeRefused = refusedForSize(this.#ticket);
      return false;
    }
    this.#lengthKnown = cl !== undefined;
    this.#tapHeaders = headers;
    return true;
  }

  /** The request's headers as they were before the cache's validators replaced the client's (after 'resend'). */
  resendHeaders(): string[] {
    const h = this.#clientHeaders!;
    this.#clientHeaders = undefined;
    return h;
  }

  /** A body chunk on its way to the client. */
  tap(chunk: Buffer): void {
    const chunks = this.#tapChunks;
    if (chunks === undefined) return;
    this.#tapBytes += chunk.length;
    if (this.#tapBytes > this.#rc.maxObjectBytes) {
      // Larger than the per-object limit: passed through uncached; `purged` when a purge had
      // already cancelled it, else `too-large`, which a later purge does not change (`refusedForSize`).
      this.#tapChunks = undefined;
      this.storeRefused = refusedForSize(this.#ticket);
      this.#release();
      return;
    }
    chunks.push(chunk);
  }

  /** The response is complete: store it. */
  complete(): void {
    const chunks = this.#tapChunks;
    if (chunks !== undefined) {
      this.#tapChunks = undefined;
      const ex = this.#ex;
      const headers = this.#tapHeaders!;
      const entry = new CacheEntry({
        key: this.key,
        status: this.#tapStatus,
        headers,
        body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#tapBytes),
        requestTime: this.#requestTime,
        responseTime: this.#tapResponseTime,
        varyValues: varyValuesOf(varyOf(headers), ex.req.headers),
        credentials: credentialDigest(ex.upstreamRequest().headers),
      });
      // Refused: a purge cancelled the ticket while the body came, or the store (larger than all of it).
      if (!this.#rc.cache.put(entry, this.#ticket)) this.storeRefused = refusedForSize(this.#ticket);
    }
    this.#finish();
    this.#release();
  }

  #finish(): void {
    if (this.#ticket === undefined) return;
    this.#rc.cache.finish(this.#ticket);
    this.#ticket = undefined;
  }

  /** A failure is about to be answered: true when a stale copy answered it instead. */
  onFailure(f: Failure): boolean {
    this.#tapChunks = undefined;
    const e = this.#candidate;
    const ex = this.#ex;
    if (e === undefined || f.source === 'client' || ex.clientGone) {
      this.#release();
      return false;
    }
    const now = Date.now();
    const why = this.#rc.cache.staleAllowed(e, ex.req.headers, this.#rc, f.type, undefined, now);
    this.#release();
    if (why === undefined) return false;
    this.outcome = 'stale';
    this.recoveredFrom = f.type;
    const member = failureMember(f, proxyStatusOptions(ex.ctx, ex.clientAddress, ex.clientSocket));
    this.#answer(e, { fwd: 'stale', ttl: e.ttlMs(now) / 1000, detail: f.type }, member, now);
    return true;
  }

  /** Whether a stale copy would answer this failure (the exchange then does not hold the request for an endpoint). */
  canAnswer(f: Failure): boolean {
    const e = this.#candidate;
    return e !== undefined && this.#rc.cache.staleAllowed(e, this.#ex.req.headers, this.#rc, f.type, undefined, Date.now()) !== undefined;
  }

  /** The exchange is over (its response closed): let collapsed waiters go, stop waiting. */
  end(): void {
    this.#tapChunks = undefined;
    this.#finish();
    if (this.#waiting !== undefined) {
      this.#waiting.cancel();
      this.#waiting = undefined;
      this.#rc.cache.collapser.leave(this.key, this);
    }
    this.#release();
  }

  /** Its fetch is over for the store: give back its refresh mark, and as the leader the key's slot (waking its waiters). */
  #release(): void {
    const collapser = this.#rc.cache.collapser;
    if (this.#refreshes !== undefined) {
      collapser.refreshed(this.#refreshes);
      this.#refreshes = undefined;
    }
    if (!this.#leader) return;
    this.#leader = false;
    collapser.release(this.key);
  }

  /** `own`: the Set-Cookie fields of the upstream's answer to this request (a 304, a HEAD's 200), this client's own; an answer from the store has none. */
  #answer(e: CacheEntry, cs: CacheStatus, proxyStatus: string | undefined, now: number, own?: readonly string[]): void {
    const ex = this.#ex;
    const a = answerFrom(e, ex.method, ex.req.headers, now);
    const h = a.headers;
    if (own !== undefined) for (const f of own) h.push(f);
    h.push('cache-status', cacheStatusMember(ex.ctx.identity, cs));
    if (proxyStatus !== undefined) h.push('proxy-status', proxyStatus);
    ex.answerFromCache(a.status, h, a.body);
  }
}

/**
 * RFC 9111 §4.4: a non-error answer (`status` below 400, the caller's test) to an unsafe method
 * invalidates its target (as the client wrote it, and as the upstream was sent it, mapped to
 * each cached route's path space), and the targets of its `Location` and `Content-Location` whose host
 * part is the request's, on every cached route to the cluster that answered (`origin`: the
 * same origin server; review of session 37: a catch-all to another cluster answering a POST
 * with `303 Location: /important` dropped a.example's stored /important), whatever route the
 * request took: the exchange calls it for a route without `cache` too (before session 37 only
 * a cached route's request invalidated, and a POST routed apart from the cached GETs left them
 * stored). A Location is
 * named as keys are: its path and query read from its own text (`referencedTarget`) and
 * normalised as a request's (`/%7ea`, `/x//y` are `/~a`, `/x/y`; before, written as sent, they
 * invalidated nothing), its host compared without the port (an absolute Location naming the
 * listener's port never matched).
 */
export function invalidateAfterUnsafe(cache: ResponseCache, origin: string, host: string, path: string, upstreamPath: string, raw: readonly RawField[], escapedSlashes: EscapedSlashes): void {
  // The keys are gathered first and each forgotten once: on a route without a rewrite the
  // client's target and the upstream path name the same key (session 39: forgotten twice).
  const keys = new Set<string>();
  cache.targetKeys(targetKey(host, path), keys, origin);
  // Its own target on the other cached routes too, each in its own path space: the upstream
  // path it was sent, mapped back as a Location is (review: with a route stripping `/api/` and
  // one without rewrite to the same cluster, `POST /api/items/7` left the other's `/items/7`).
  upstreamTargetKeys(cache, origin, host, upstreamPath, escapedSlashes, keys);
  const own = host || 'localhost';
  for (let i = 0; i < raw.length; i += 2) {
    const n = fieldText(raw[i]!).toLowerCase();
    if (n !== 'location' && n !== 'content-location') continue;
    // The upstream's field names its own paths: a relative one is resolved against the path it
    // was sent, and each cached route maps the result back to its clients' (`upstreamKeys`).
    const target = referencedTarget(fieldText(raw[i + 1]!).trim(), own, upstreamPath);
    if (target !== undefined) upstreamTargetKeys(cache, origin, host, target, escapedSlashes, keys);
  }
  cache.invalidateKeys(keys);
}

/** The keys an upstream path and query (not yet normalised) names on the cached routes to `origin`, normalised as a request's first, added to `into`. */
function upstreamTargetKeys(cache: ResponseCache, origin: string, host: string, target: string, escapedSlashes: EscapedSlashes, into: Set<string>): void {
  let p: string;
  try {
    p = normalizeOriginForm(target, refuseAsError, escapedSlashes);
  } catch {
    return; // a path the gateway refuses: nothing is stored under it
  }
  cache.upstreamKeys(host, p, origin, into);
}

/**
 * The target a purge by key names, spelled as keys are (`targetKey`): a scheme in any case
 * (`https://` kept as the mark, `http://` dropped; `invalidateTarget` covers both schemes
 * anyway), the host in lower case without a port or a trailing dot, the path normalised as a
 * request's (`normalizeOriginForm`: `/%7eu`, `//a` and `/x/../a` are `/~u`, `/a` and `/a`), the
 * query as sent. undefined: a path no request could have (the gateway refuses it), so nothing is
 * stored under it. Before session 38 only the normalised spelling purged anything (`purged: 0`
 * for `/%7euser` while `/~user` stayed); before session 39 `http://` was read as a host.
 */
export function purgeTarget(text: string, escapedSlashes: EscapedSlashes): string | undefined {
  const { mark, host, path } = purgeParts(text);
  let p = host === undefined ? '/' : path;
  if (p.charCodeAt(0) === 63 /* ? */) p = '/' + p;
  try {
    p = normalizeOriginForm(p, refuseAsError, escapedSlashes);
  } catch {
    return undefined;
  }
  return mark + targetKey(routeHostOf(host ?? path), p);
}

/**
 * The target prefix a purge by prefix names, spelled as keys are, as `purgeTarget` spells a key
 * (session 39: the prefix was taken as written, and `HTTP://Example.COM./a/` purged nothing that
 * `example.com/a/` did). A host followed by a path is a whole host (lower case, no port, no
 * trailing dot); a host alone may be the start of host names and is only lower-cased (a port
 * makes it whole). The path's complete segments are normalised as a request's; its last,
 * possibly partial, segment too, unless it is a bare dot segment (`/img/.` may begin
 * `/img/.well-known`) or ends inside a percent-escape (`/a%7`): then it stays as written, the
 * escape's hex digits upper-cased as normalised keys hold them. undefined: a path the gateway
 * refuses (nothing stored under it).
 */
export function purgePrefixTarget(text: string, escapedSlashes: EscapedSlashes): string | undefined {
  const { mark, host, path } = purgeParts(text);
  // A host alone, or the start of one: whole only with a port.
  if (host === undefined) return mark + (HOST_WITH_PORT.test(path) ? routeHostOf(path) : lowerCase(path));
  let p = path.charCodeAt(0) === 63 /* ? */ ? '/' + path : path;
  let keep = '';
  const q = p.indexOf('?');
  const last = p.lastIndexOf('/', q < 0 ? p.length : q) + 1;
  const tail = q < 0 ? p.slice(last) : '';
  const escape = PARTIAL_ESCAPE.exec(p);
  if (tail === '.' || tail === '..') {
    keep = tail;
    p = p.slice(0, last);
  } else if (escape !== null) {
    keep = escape[0].toUpperCase();
    p = p.slice(0, escape.index);
  }
  try {
    p = normalizeOriginForm(p, refuseAsError, escapedSlashes);
  } catch {
    return undefined;
  }
  return mark + targetKey(routeHostOf(host), p + keep);
}

/** A host with a port (`example.com:8080`, `[::1]:80`): a whole host, not the start of one. */
const HOST_WITH_PORT = /^(?:\[[^\]]*\]|[^:[\]]*):\d*$/;

/** A percent-escape cut short at the end of a prefix. */
const PARTIAL_ESCAPE = /%[0-9A-Fa-f]?$/;

/**
 * A purge's text in parts: the https mark (or none: `http://` and no scheme alike; any case),
 * the host (undefined when no path or query follows it: then `path` holds what was given), and
 * the path and query as given.
 */
function purgeParts(text: string): { mark: string; host: string | undefined; path: string } {
  let bare = text;
  let mark = '';
  const scheme = /^(https?):\/\//i.exec(text);
  if (scheme !== null) {
    bare = text.slice(scheme[0].length);
    if (scheme[1]!.length === 5) mark = HTTPS_TARGET;
  }
  const slash = bare.search(/[/?]/);
  if (slash < 0) return { mark, host: undefined, path: bare };
  return { mark, host: bare.slice(0, slash), path: bare.slice(slash) };
}

/** A URI reference with a scheme (RFC 3986 §3.1), or a network-path reference (`//host…`). */
const WITH_AUTHORITY = /^(?:[A-Za-z][A-Za-z0-9+.-]*:)?\/\//;

/**
 * The path and query (origin-form, not yet normalised) a Location or Content-Location names on
 * `own` host, taken from the field's text; undefined: another host, or not a URI reference.
 * Keys hold the request's bytes, so the text is read as it is (review of session 37: WHATWG URL
 * percent-encodes `{ } ' " | ^ \` < >` in a path, and `/a{b}` invalidated `/a%7Bb%7D`): only the
 * host of an absolute reference is read by URL parsing. A relative one is resolved against the
 * request's `path` (RFC 3986 §5.2.2-5.2.3: its query kept for an empty reference, its directory
 * for a relative path; the dot segments are removed by the normalisation after).
 */
function referencedTarget(text: string, own: string, path: string): string | undefined {
  const hash = text.indexOf('#');
  const ref = hash < 0 ? text : text.slice(0, hash);
  const m = WITH_AUTHORITY.exec(ref);
  if (m !== null) {
    let u: URL;
    try {
      u = new URL(ref, `http://${own}/`);
    } catch {
      return undefined; // not a URI reference: nothing to invalidate
    }
    const h = u.hostname.endsWith('.') ? u.hostname.slice(0, -1) : u.hostname;
    if (h !== own) return undefined;
    const rest = ref.slice(m[0].length);
    const at = rest.search(/[/?]/);
    if (at < 0) return '/';
    return rest.charCodeAt(at) === 63 /* ? */ ? '/' + rest.slice(at) : rest.slice(at);
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(ref)) return undefined; // another scheme without an authority (mailto:, urn:)
  if (ref.charCodeAt(0) === 47 /* / */) return ref;
  const q = path.indexOf('?');
  const basePath = q < 0 ? path : path.slice(0, q);
  if (ref === '') return path;
  if (ref.charCodeAt(0) === 63 /* ? */) return basePath + ref;
  // A relative path: merged with the request path's directory; "./x", "../x" resolved by normalising.
  return basePath.slice(0, basePath.lastIndexOf('/') + 1) + ref;
}

/** The refusal a freshened response's fate records on the client's request (kept or dropped: none). */
const REFUSED_UPDATE: Readonly<Record<UpdateResult, StoreRefusal | undefined>> = { kept: undefined, dropped: undefined, 'too-large': 'too-large', cancelled: 'purged' };

/** The HEAD answer describes the stored representation (RFC 9111 §4.3.5). */
function sameRepresentation(e: CacheEntry, h: Record<string, string>): boolean {
  if (h.etag !== undefined || e.etag !== undefined) return h.etag !== undefined && e.etag !== undefined && !h.etag.startsWith('W/') && h.etag === e.etag;
  if (h['last-modified'] !== undefined || e.lastModified !== undefined) return h['last-modified'] === e.lastModified;
  return h['content-length'] === undefined || h['content-length'] === String(e.body.length);
}

function isValidator(name: string): boolean {
  const n = name.toLowerCase();
  return n === 'if-none-match' || n === 'if-modified-since';
}

/** Header pairs without the client's If-None-Match / If-Modified-Since (the cache answers those itself). */
function withoutValidators(headers: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!isValidator(headers[i]!)) out.push(headers[i]!, headers[i + 1]!);
  return out;
}

/**
 * A target as the key names it: an https listener's with a mark before it, so the same route
 * on a plain and a TLS listener keeps two copies (finding, adversarial review, session 30: a
 * plain listener's cacheable "go to https" 301 was a hit for the https clients, a redirect
 * loop). A plain one's is the target alone (the keys of the stores before this stay valid).
 * `ResponseCache.invalidateTarget` and `purgePrefix` cover both.
 */
function schemeTarget(scheme: string, target: string): string {
  return scheme === 'https' ? HTTPS_TARGET + target : target;
}

/**
 * The path a request is keyed by: its own, but on a `caseInsensitive` route that strips or
 * rewrites its prefix, the client path the upstream path maps back to (`clientPaths`: the prefix
 * as configured). Every casing of the prefix sends the same upstream path, so it is one key, the
 * one an upstream's Location and an unsafe request's upstream path name (session 39: keyed by
 * the client's casing, `/api/items/7` was not forgotten by `Location: /items/7` behind a prefix
 * configured `/Api/`, and each casing was stored apart).
 */
function keyPath(ex: Exchange): string {
  const r = ex.route;
  if (r === undefined || r.prefixLower === undefined || r.newPrefix === undefined) return ex.path;
  return clientPaths(r, ex.upstreamRequest().path)[0] ?? ex.path;
}

/** The Host sent upstream is the client's (`host: preserve`, the default) and has a port or a trailing dot the key does not. */
function unkeyedHost(ex: Exchange, scheme: string): boolean {
  // A route with `host: endpoint` or a literal sends a Host of its own, not the client's.
  if (ex.route === undefined || ex.route.host !== 'preserve') return false;
  const headers = ex.upstreamRequest().headers;
  let sent: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === 4 && headers[i]!.toLowerCase() === 'host') {
      sent = headers[i + 1]!.toLowerCase();
      break;
    }
  }
  const host = ex.host.toLowerCase();
  if (sent === undefined || sent === host) return false;
  if (!sent.startsWith(host)) return true;
  const rest = sent.slice(host.length);
  if (rest === `:${scheme === 'https' ? 443 : 80}`) return false;
  let local: number | undefined;
  try {
    local = ex.req.socket.localPort;
  } catch {
    // An HTTP/2 stream's socket is Node's proxy, which throws once the connection is gone.
  }
  return !(local !== undefined && rest === `:${local}`);
}

/**
 * Request fields some upstreams read as the request's URL or method instead of the request line:
 * X-Original-URL and X-Rewrite-URL (Symfony's old request factory, IIS URL Rewrite and the
 * frameworks behind it), and the method-override fields of method-override middleware. The key
 * names neither. Finding (adversarial probe, session 37): `GET /home` with `X-Original-URL: /admin`
 * went upstream with it, and the answer for /admin was stored under /home for every client (web
 * cache poisoning, Kettle 2018). Such a GET is passed by the cache, the field still sent.
 * A name is read with `_` as `-` (review of session 37): under `underscoreHeaders: forward`,
 * `X_Original_URL` goes upstream, and PHP, CGI and IIS read it as HTTP_X_ORIGINAL_URL, the same
 * field; it had been stored under /home as well. Recognised here rather than dropped as the
 * gateway's own fields' underscore spellings are (request-headers.ts): a route without `cache`
 * has nothing to poison, and the dashed spelling is not dropped either.
 * A value that changes nothing does not pass the request by (same review: `X-Original-URL: /home`
 * on `GET /home`, or `X-HTTP-Method-Override: GET`, turned the cache off, for every request behind
 * a front end that adds the field): a URL field only when it names another target than the key
 * (`sameTarget`), a method field only when it names a method other than GET or HEAD.
 */
const UNKEYED_FIELDS = new Map<string, 'url' | 'method'>([
  ['x-original-url', 'url'],
  ['x-rewrite-url', 'url'],
  ['x-http-method-override', 'method'],
  ['x-http-method', 'method'],
  ['x-method-override', 'method'],
]);

/**
 * `unkeyed-field`: the request goes upstream with one of `UNKEYED_FIELDS`, in any spelling,
 * saying something the key does not; else `authorization` or `cookie`: it goes upstream with
 * that field and the route's `bypassOn` names it (a credential: the answer may be the user's own,
 * and a stored one is another client's; session 38). Read from what is sent: a request hook may
 * have removed or added one. One pass over the fields, a length test for most.
 */
function unkeyedField(ex: Exchange, rc: RouteCache): BypassReason | undefined {
  const headers = ex.upstreamRequest().headers;
  let credential: BypassReason | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i]!;
    const len = n.length;
    if (len === 13 && rc.bypassAuthorization && credential === undefined && n.toLowerCase() === 'authorization') credential = 'authorization';
    else if (len === 6 && rc.bypassCookie && credential !== 'authorization' && n.toLowerCase() === 'cookie') credential = 'cookie';
    // Every such name starts with "x" and is 13 to 22 characters: one char test skips the rest.
    if ((n.charCodeAt(0) | 0x20) !== 120 /* x */ || len < 13 || len > 22) continue;
    const kind = UNKEYED_FIELDS.get(n.toLowerCase().replaceAll('_', '-'));
    if (kind === undefined) continue;
    const v = headers[i + 1]!.trim();
    if (kind === 'url' ? !sameTarget(v, ex.path, ex.ctx.escapedSlashes) : !SAME_METHODS.has(v.toUpperCase())) return 'unkeyed-field';
  }
  return credential;
}

/** A method field's values that answer what a GET or HEAD of the key answers. */
const SAME_METHODS = new Set(['GET', 'HEAD']);

/** A URL field's value names the key's target (`path`: the request's, normalised): the same after normalising as a request path. */
function sameTarget(v: string, path: string, escapedSlashes: EscapedSlashes): boolean {
  if (v === path) return true;
  if (v.charCodeAt(0) !== 47 /* / */) return false;
  try {
    return normalizeOriginForm(v, refuseAsError, escapedSlashes) === path;
  } catch {
    return false; // a path the gateway would refuse: not the request's
  }
}

/**
 * The request has content: Content-Length above 0, or Transfer-Encoding, or over HTTP/2 DATA
 * frames without a Content-Length (the exchange's `hasBody`: the HEADERS frame did not end the
 * stream; read from the frame, so a GET that ends its stream with its HEADERS waits for
 * nothing). An HTTP/2 request that says `content-length: 0` has none whatever its frames (the
 * HTTP/2 layer refuses DATA beyond a stated length). Before session 31 only the fields were
 * read, and an HTTP/2 GET's body without Content-Length was stored under the URL alone.
 */
function hasContent(ex: Exchange): boolean {
  const headers = ex.req.headers;
  const cl = headers['content-length'];
  if (headers['transfer-encoding'] !== undefined) return true;
  if (cl !== undefined) return cl !== '0';
  return ex.hasBody;
}
