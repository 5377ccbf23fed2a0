import type { Endpoint } from '../endpoint.js';
import { effectiveWeight } from '../slow-start.js';
import type { BalancerOptions } from './balancer.js';
import { PowerOfTwoChoices } from './p2c.js';

/** Default decay window of the latency estimate (ms). */
export const DEFAULT_EWMA_DECAY_MS = 10_000;

/**
 * Cost of an endpoint with requests in flight but no latency sample yet (ms): so large that a
 * new endpoint takes one request at a time until it has answered once, yet ordered by inflight.
 */
const UNMEASURED_PENALTY_MS = 1e9;

/**
 * Record one response's latency (the request path calls this on each response, success or
 * failure, with the time to response headers). Peak-sensitive: a sample above the estimate
 * replaces it at once, a lower one only pulls it down with weight `1 - e^(-Δt/decay)`. So an
 * endpoint that turns slow is avoided immediately and earns trust back gradually (Finagle).
 */
export function observeLatency(endpoint: Endpoint, ms: number, now: number, decayMs = DEFAULT_EWMA_DECAY_MS): void {
  const sample = ms > 0 ? ms : 0;
  if (endpoint.ewmaAt === 0 || sample > endpoint.ewmaMs) {
    endpoint.ewmaMs = sample;
  } else {
    const dt = now > endpoint.ewmaAt ? now - endpoint.ewmaAt : 0;
    const w = Math.exp(-dt / decayMs);
    endpoint.ewmaMs = endpoint.ewmaMs * w + sample * (1 - w);
  }
  endpoint.ewmaAt = now;
}

/**
 * Peak EWMA (Finagle, linkerd): cost = latency estimate × (inflight + 1) ÷ weight, compared over
 * two random choices. It reacts to slowness before it becomes errors. At read time the estimate
 * decays toward 0 with the time since its last sample, so an endpoint avoided for being slow is
 * tried again after a while instead of being starved of the samples that would clear it.
 * Reading never writes the endpoint: only `observeLatency` does.
 */
export class PeakEwmaBalancer extends PowerOfTwoChoices {
  readonly #slowStartMs: number;
  readonly #decayMs: number;

  constructor(_endpoints: readonly Endpoint[], opts: BalancerOptions = {}) {
    super();
    this.#slowStartMs = opts.slowStartMs ?? 0;
    this.#decayMs = opts.ewmaDecayMs ?? DEFAULT_EWMA_DECAY_MS;
  }

  protected cost(ep: Endpoint, now: number): number {
    const pending = ep.inflight;
    const w = effectiveWeight(ep, now, this.#slowStartMs);
    if (ep.ewmaAt === 0) return pending === 0 ? 0 : (UNMEASURED_PENALTY_MS + pending) / w;
    const dt = now > ep.ewmaAt ? now - ep.ewmaAt : 0;
    const latency = ep.ewmaMs * Math.exp(-dt / this.#decayMs);
    return (latency * (pending + 1)) / w;
  }
}
