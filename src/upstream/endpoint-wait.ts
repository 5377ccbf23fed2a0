import { channel } from 'node:diagnostics_channel';
import { connect, type LookupFunction, type Socket } from 'node:net';
import { Timeout } from '../timing/deadlines.js';
import type { Endpoint } from './endpoint.js';

export const ENDPOINT_WAIT_CHANNEL = 'gatewise:upstream:endpoint-wait';
const waitChannel = channel(ENDPOINT_WAIT_CHANNEL);

/** Published on `gatewise:upstream:endpoint-wait` when it has subscribers. */
export interface EndpointWaitEvent {
  cluster: string;
  /**
   * 'held': a request is held; 'left': a held request's client went away; 'back': an endpoint
   * came back and the held requests were woken; 'unreachable': a connect failed and the
   * endpoint is probed while requests wait.
   */
  event: 'held' | 'left' | 'back' | 'unreachable';
  /** The endpoint ('back', 'unreachable'); '' for 'held' and 'left'. */
  endpoint: string;
  /** What brought it back: 'connect' (a request or the probe connected), 'health', 'outlier', 'undrain'. */
  reason: string;
  /** Requests held at that moment. */
  waiting: number;
}

/** A request held until an endpoint comes back. */
export interface EndpointWaiter {
  /** Something brought an endpoint back: try again now. */
  endpointBack(): void;
  /** The wait ran out: answer with what failed. */
  waitExpired(): void;
}

export interface EndpointWaitOptions {
  cluster: string;
  /** Longest hold of one request (ms). */
  timeoutMs: number;
  /** Requests held at once; past it a request is answered at once. */
  maxWaiting: number;
  /** Time a recovery probe's connect may take (the cluster's connect timeout). */
  connectTimeoutMs: number;
  lookup?: LookupFunction;
}

const PROBE_FIRST_MS = 25;
const PROBE_MAX_MS = 250;

/**
 * Requests held while every endpoint of a cluster is down (Caddy's `lb_try_duration`): a
 * rolling deploy of a single endpoint, a restart. A held request wakes on the event that
 * brings an endpoint back — a health check passing, an ejection ending, an endpoint
 * undrained, or a connection opening to an endpoint that had refused — never on a sleep;
 * it gives up when its own wait (or the request deadline, or the client) ends first.
 *
 * An endpoint that refused a connection says nothing more until something connects to it
 * again. While requests are held (and only then), each such endpoint gets a recovery
 * probe: a bare TCP connect, again after 25 ms, doubling to 250 ms, until one opens (the
 * endpoint is back) or nobody waits. One probe per endpoint, however many requests wait,
 * so the held requests add no load of their own to an endpoint that is starting.
 */
export class EndpointWait {
  readonly #opts: EndpointWaitOptions;
  readonly #waiting = new Map<EndpointWaiter, Timeout>();
  /** Endpoints whose last connect failed, with their probe. */
  readonly #unreachable = new Map<Endpoint, Probe>();

  constructor(opts: EndpointWaitOptions) {
    this.#opts = opts;
  }

  get timeoutMs(): number {
    return this.#opts.timeoutMs;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  /** Whether the endpoint's last connect failed (and nothing connected since). */
  unreachable(ep: Endpoint): boolean {
    return this.#unreachable.has(ep);
  }

  /**
   * Hold `w` for at most `ms` (bounded by the configured timeout); false when the hold is
   * full (the caller answers now).
   */
  hold(w: EndpointWaiter, ms: number): boolean {
    if (this.#waiting.size >= this.#opts.maxWaiting) return false;
    this.#waiting.set(
      w,
      new Timeout(() => {
        if (this.#waiting.delete(w)) w.waitExpired();
      }, Math.max(1, Math.min(ms, this.#opts.timeoutMs))),
    );
    for (const p of this.#unreachable.values()) p.start();
    this.#publish(undefined, 'held', 'every endpoint is down');
    return true;
  }

  /** The held request left (its client went away). */
  cancel(w: EndpointWaiter): void {
    const t = this.#waiting.get(w);
    if (t === undefined) return;
    t.cancel();
    this.#waiting.delete(w);
    this.#publish(undefined, 'left', 'the client went away');
  }

  /** A connect to `ep` failed: probe it while requests wait. */
  connectFailed(ep: Endpoint): void {
    if (this.#unreachable.has(ep)) return;
    const p = new Probe(ep, this);
    this.#unreachable.set(ep, p);
    this.#publish(ep, 'unreachable', 'connect failed');
    if (this.#waiting.size > 0) p.start();
  }

  /** A connection to `ep` opened (a request's or the probe's). */
  connected(ep: Endpoint): void {
    const p = this.#unreachable.get(ep);
    if (p === undefined) return;
    this.#unreachable.delete(ep);
    p.stop();
    this.back(ep, 'connect');
  }

  /** An endpoint is back (or may be): wake every held request, each tries again. */
  back(ep: Endpoint, reason: string): void {
    this.#publish(ep, 'back', reason);
    if (this.#waiting.size === 0) return;
    const woken = [...this.#waiting];
    this.#waiting.clear();
    for (const [w, t] of woken) {
      t.cancel();
      w.endpointBack();
    }
  }

  /** Anyone still held (probes stop when nobody is). */
  get active(): boolean {
    return this.#waiting.size > 0;
  }

  get connectTimeoutMs(): number {
    return this.#opts.connectTimeoutMs;
  }

  get lookup(): LookupFunction | undefined {
    return this.#opts.lookup;
  }

  /** The cluster closes: every held request is answered now (with what failed), none is left hanging. */
  close(): void {
    const held = [...this.#waiting];
    this.#waiting.clear();
    for (const [w, t] of held) {
      t.cancel();
      w.waitExpired();
    }
    for (const p of this.#unreachable.values()) p.stop();
    this.#unreachable.clear();
  }

  #publish(ep: Endpoint | undefined, event: EndpointWaitEvent['event'], reason: string): void {
    if (!waitChannel.hasSubscribers) return;
    const msg: EndpointWaitEvent = { cluster: this.#opts.cluster, event, endpoint: ep?.nextHop ?? '', reason, waiting: this.#waiting.size };
    waitChannel.publish(msg);
  }
}

/** The recovery probe of one unreachable endpoint: TCP connects with a growing gap, while requests wait. */
class Probe {
  readonly #ep: Endpoint;
  readonly #wait: EndpointWait;
  #socket: Socket | undefined;
  #timer: NodeJS.Timeout | undefined;
  #gapMs = PROBE_FIRST_MS;
  #stopped = false;

  constructor(ep: Endpoint, wait: EndpointWait) {
    this.#ep = ep;
    this.#wait = wait;
  }

  /** Probe now unless a probe is under way or due. */
  start(): void {
    if (this.#socket !== undefined || this.#timer !== undefined || this.#stopped) return;
    const u = this.#ep.url;
    const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    const lookup = this.#wait.lookup;
    const s = connect({ host, port, timeout: this.#wait.connectTimeoutMs, ...(lookup ? { lookup } : {}) });
    this.#socket = s;
    s.once('connect', () => {
      this.#socket = undefined;
      s.destroy();
      if (!this.#stopped) this.#wait.connected(this.#ep);
    });
    s.once('timeout', () => s.destroy());
    s.once('error', () => {});
    s.once('close', () => {
      if (this.#socket !== s) return;
      this.#socket = undefined;
      this.#again();
    });
  }

  /** The connect failed: again after the gap, if anyone still waits. */
  #again(): void {
    if (this.#stopped || !this.#wait.active) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.start();
    }, this.#gapMs);
    this.#gapMs = Math.min(PROBE_MAX_MS, this.#gapMs * 2);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#socket?.destroy();
    this.#socket = undefined;
  }
}
