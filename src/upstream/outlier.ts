import { channel } from 'node:diagnostics_channel';
import type { Endpoint } from './endpoint.js';

export const OUTLIER_CHANNEL = 'gatewise:upstream:outlier';
const outlierChannel = channel(OUTLIER_CHANNEL);

/** Published on `gatewise:upstream:outlier` when it has subscribers. */
export interface OutlierEvent {
  /** The endpoint's next hop (`host:port`). */
  endpoint: string;
  cluster?: string;
  /** 'spared': it met a threshold but was kept in, as one of the last available endpoints (once per run of failures). */
  event: 'ejected' | 'returned' | 'spared';
  /** 'ejected': when it may return; 'returned': when it did (ms since epoch); 'spared': now. */
  untilMs: number;
  reason: string;
}

/**
 * What the request path saw from one attempt. 'gateway-failure': the gateway could not get a
 * response (connect refused or timed out, reset, protocol error, response timeout — the caller
 * classifies); 'timeout': no response head in time, a gateway failure that also cost the
 * client the whole wait, so it has a lower threshold of its own. 'upstream-5xx': the upstream answered with a 5xx. Anything else is 'success'.
 */
export type Outcome = 'success' | 'gateway-failure' | 'timeout' | 'upstream-5xx';

export interface OutlierOptions {
  /** Consecutive gateway failures that eject an endpoint. Default 5; 0 disables. */
  consecutiveGatewayFailures?: number;
  /** Consecutive 5xx-class outcomes (upstream 5xx or gateway failures) that eject. Default 5; 0 disables. */
  consecutive5xx?: number;
  /** Consecutive response timeouts (no head within the try's timeout) that eject. Default 3; 0 disables. */
  consecutiveTimeouts?: number;
  /** First ejection's length; each repeat doubles it. Default 30 s. */
  baseEjectionMs?: number;
  /** Cap on an ejection's length. Default 5 min. */
  maxEjectionMs?: number;
  /** Never eject past this share of the cluster. Default 50. */
  maxEjectedPercent?: number;
  /** Named in events. */
  cluster?: string;
  /** Called when an ejected endpoint is noticed back in service (held requests wake on it). */
  onReturn?: (ep: Endpoint) => void;
}

interface Track {
  gateway: number;
  timeouts: number;
  fiveXx: number;
  /** Ejected and not yet seen back (so its return is announced once). */
  out: boolean;
  /** Since when it has been in, for decaying `ejections`. */
  inSince: number;
  /** A threshold was met but the ejection skipped (announced once until a success). */
  spared: boolean;
}

/**
 * Passive health (Envoy's outlier detection): real traffic's outcomes eject an endpoint that
 * keeps failing, before active checks would notice, and without sending extra traffic.
 *
 * Counting: a response timeout counts toward `consecutiveTimeouts` and as a gateway failure;
 * a gateway failure counts toward both other thresholds (to a client it is a 502/504), an
 * upstream 5xx only toward `consecutive5xx` and breaks a run of gateway failures; a success
 * resets both. Outcomes of requests that finish while their endpoint is ejected are ignored.
 *
 * Ejection: `ejectedUntil = now + min(base × 2^ejections, max)`, then `ejections++`, so a
 * repeat offender stays out longer. `ejections` decays by one per `base` spent in service, so a
 * long-stable endpoint starts small again.
 *
 * Never empties a cluster (unless `maxEjectedPercent` is 100): an ejection is skipped
 * (counters kept; retried on the next failure) when no other endpoint is available, or when the endpoints that cannot take requests now —
 * ejected, failed by health checks or draining — would, with this one, exceed
 * `maxEjectedPercent` of the endpoints. With 50%: 2 endpoints → 1 may be out; 1 endpoint →
 * none, ever; 5 → 2. Counting only ejections let an endpoint whose application answers 503
 * on one path be ejected while its only peer was down (health-checked out): the gateway's
 * own check caused the outage. A skipped ejection is published once ('spared').
 *
 * Return: `available(now)` brings an endpoint back by itself when `ejectedUntil` passes. The
 * detector notices lazily, with no timer of its own: on the first `record()` of any endpoint
 * after the earliest due return (O(1) otherwise), or on `tick(now)` for clusters without
 * traffic. It then sets `readyAt = ejectedUntil` (the true return time, so slow start ramps from
 * when traffic could resume) and publishes 'returned'.
 */
export class OutlierDetector {
  readonly #endpoints: readonly Endpoint[];
  readonly #gatewayLimit: number;
  readonly #fiveXxLimit: number;
  readonly #timeoutLimit: number;
  readonly #baseMs: number;
  readonly #maxMs: number;
  readonly #maxPercent: number;
  readonly #cluster: string | undefined;
  readonly #onReturn: ((ep: Endpoint) => void) | undefined;
  readonly #tracks = new Map<Endpoint, Track>();
  /** Earliest `ejectedUntil` among endpoints still marked out; Infinity when none. */
  #nextReturn = Infinity;

  constructor(endpoints: readonly Endpoint[], opts: OutlierOptions = {}) {
    this.#endpoints = endpoints;
    this.#gatewayLimit = opts.consecutiveGatewayFailures ?? 5;
    this.#fiveXxLimit = opts.consecutive5xx ?? 5;
    this.#timeoutLimit = opts.consecutiveTimeouts ?? 3;
    this.#baseMs = opts.baseEjectionMs ?? 30_000;
    this.#maxMs = opts.maxEjectionMs ?? 300_000;
    this.#maxPercent = opts.maxEjectedPercent ?? 50;
    this.#cluster = opts.cluster;
    this.#onReturn = opts.onReturn;
    for (const e of endpoints) this.#track(e, 0);
  }

  record(endpoint: Endpoint, outcome: Outcome, now: number): void {
    if (now >= this.#nextReturn) this.tick(now);
    const t = this.#tracks.get(endpoint) ?? this.#track(endpoint, now);
    if (t.out) return;
    if (endpoint.ejections > 0) this.#decay(endpoint, t, now);
    if (outcome === 'success') {
      t.gateway = 0;
      t.timeouts = 0;
      t.fiveXx = 0;
      t.spared = false;
      return;
    }
    if (outcome === 'gateway-failure' || outcome === 'timeout') t.gateway++;
    else t.gateway = 0;
    if (outcome === 'timeout') t.timeouts++;
    else t.timeouts = 0;
    t.fiveXx++;
    if (this.#timeoutLimit > 0 && t.timeouts >= this.#timeoutLimit) {
      this.#eject(endpoint, t, now, `${t.timeouts} consecutive response timeouts`);
    } else if (this.#gatewayLimit > 0 && t.gateway >= this.#gatewayLimit) {
      this.#eject(endpoint, t, now, `${t.gateway} consecutive gateway failures`);
    } else if (this.#fiveXxLimit > 0 && t.fiveXx >= this.#fiveXxLimit) {
      this.#eject(endpoint, t, now, `${t.fiveXx} consecutive 5xx`);
    }
  }

  /** Notice endpoints whose ejection has run out (O(n)); `record()` calls it when one is due. */
  tick(now: number): void {
    let next = Infinity;
    for (const e of this.#endpoints) {
      const t = this.#tracks.get(e);
      if (t === undefined || !t.out) continue;
      if (e.ejectedUntil > now) {
        next = Math.min(next, e.ejectedUntil);
        continue;
      }
      t.out = false;
      t.inSince = e.ejectedUntil;
      e.readyAt = e.ejectedUntil;
      this.#publish(e, 'returned', e.ejectedUntil, 'ejection time passed');
      this.#onReturn?.(e);
    }
    this.#nextReturn = next;
  }

  /** Active health checks saw an ejected endpoint recover: it returns now, its counts cleared. */
  recovered(ep: Endpoint, now: number): void {
    const t = this.#tracks.get(ep);
    if (t === undefined || !t.out || ep.ejectedUntil <= now) return;
    ep.ejectedUntil = now;
    t.out = false;
    t.inSince = now;
    t.gateway = 0;
    t.fiveXx = 0;
    this.#publish(ep, 'returned', now, 'active health check passed');
  }

  #eject(ep: Endpoint, t: Track, now: number, reason: string): void {
    let out = 0;
    let availableOthers = 0;
    for (const e of this.#endpoints) {
      if (e === ep) continue;
      if (e.available(now)) availableOthers++;
      else out++;
    }
    // maxEjectedPercent 100 is the operator's choice to let the cluster empty; below it, the last available endpoint stays.
    if ((availableOthers === 0 && this.#maxPercent < 100) || (out + 1) * 100 > this.#maxPercent * this.#endpoints.length) {
      if (!t.spared) {
        t.spared = true;
        this.#publish(ep, 'spared', now, `${reason}; kept in: ${availableOthers === 0 ? 'no other endpoint is available' : `${out} of ${this.#endpoints.length} endpoints are already unavailable (maxEjectedPercent ${this.#maxPercent})`}`);
      }
      return;
    }
    const ms = Math.min(this.#baseMs * 2 ** ep.ejections, this.#maxMs);
    ep.ejectedUntil = now + ms;
    ep.ejections++;
    t.out = true;
    t.gateway = 0;
    t.timeouts = 0;
    t.fiveXx = 0;
    if (ep.ejectedUntil < this.#nextReturn) this.#nextReturn = ep.ejectedUntil;
    this.#publish(ep, 'ejected', ep.ejectedUntil, reason);
  }

  /** One ejection forgiven per full base interval in service. */
  #decay(ep: Endpoint, t: Track, now: number): void {
    const periods = Math.floor((now - t.inSince) / this.#baseMs);
    if (periods <= 0) return;
    const forgiven = Math.min(periods, ep.ejections);
    ep.ejections -= forgiven;
    t.inSince += periods * this.#baseMs;
  }

  #track(ep: Endpoint, now: number): Track {
    const t: Track = { gateway: 0, timeouts: 0, fiveXx: 0, out: false, inSince: now, spared: false };
    this.#tracks.set(ep, t);
    return t;
  }

  #publish(ep: Endpoint, event: OutlierEvent['event'], untilMs: number, reason: string): void {
    if (!outlierChannel.hasSubscribers) return;
    const msg: OutlierEvent = { endpoint: ep.nextHop, event, untilMs, reason };
    if (this.#cluster !== undefined) msg.cluster = this.#cluster;
    outlierChannel.publish(msg);
  }
}
