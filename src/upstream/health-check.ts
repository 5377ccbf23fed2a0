import { channel } from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import { connect, type LookupFunction } from 'node:net';
import type { Agent } from 'undici';
import { undici } from '../http/undici.js';
import type { Endpoint } from './endpoint.js';
import type { CancelSignal } from '../timing/cancel.js';
import { Timeout } from '../timing/deadlines.js';

export const HEALTH_CHANNEL = 'gatewise:upstream:health';
const healthChannel = channel(HEALTH_CHANNEL);

export type Health = Endpoint['health'];

/** Published on `gatewise:upstream:health` on every change of verdict, when it has subscribers. */
export interface HealthEvent {
  /** The endpoint's next hop (`host:port`). */
  endpoint: string;
  cluster?: string;
  from: Health;
  to: Health;
  /** The check result that decided it: 'status 200', 'connected', 'status 500', 'ECONNREFUSED', 'timeout'… */
  reason: string;
}

export interface HealthCheckOptions {
  /** 'http': GET `path`, pass on an expected status. 'tcp': pass when a connection opens. */
  kind: 'http' | 'tcp';
  path: string;
  /** Statuses that pass, single or inclusive ranges, e.g. [[200, 399]]. */
  expectStatuses: Array<number | [number, number]>;
  intervalMs: number;
  /** Each interval is varied by ± jitter/2 of itself (0..1), so checks of many gateways do not arrive in step. */
  jitter: number;
  /** Whole check: connect, response head and body. */
  timeoutMs: number;
  /** Consecutive passes that turn an unhealthy endpoint healthy. */
  rise: number;
  /** Consecutive failures that turn a healthy endpoint unhealthy. */
  fall: number;
  /** Host header for HTTP checks; default the endpoint's own. */
  host?: string;
  /** Named in events. */
  cluster?: string;
  /** TLS for https endpoints (as the cluster's: `ca` is a file path). Default: verify. */
  tls?: { verify: boolean; ca?: string; servername?: string };
  /** Resolver, so checks resolve names as traffic does. Default: the system's. */
  lookup?: LookupFunction;
  /** Called when an endpoint comes back from 'unhealthy' (the cluster ends its outlier ejection). */
  onRecovered?: (ep: Endpoint) => void;
  /** Called when an endpoint turns healthy (held requests wake on it). */
  onHealthy?: (ep: Endpoint) => void;
}

interface Probe {
  readonly ep: Endpoint;
  passes: number;
  fails: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The check in progress, awaited by stop(). */
  running: Promise<void> | undefined;
  abort: AbortController | undefined;
}

/**
 * Active health checks. It only WRITES `endpoint.health` (balancers read it) and, when an
 * endpoint comes back from 'unhealthy', `endpoint.readyAt` (slow start).
 *
 * Verdicts: an endpoint starts 'unknown' (counts as up). The FIRST result decides at once —
 * pass → 'healthy', fail → 'unhealthy' — so a dead endpoint is out within one check of startup
 * instead of after `fall` checks of failed traffic; from then on `rise` consecutive passes or
 * `fall` consecutive failures are needed to change it, so one lost packet does not flap it.
 * 'unknown' → 'healthy' leaves `readyAt` alone: all endpoints start together, none is cold.
 *
 * HTTP checks use their own small undici Agent, never the traffic pools (a check must not take
 * a connection a request is waiting for, and must test a fresh connect, which is what fails when
 * a server dies). Each check closes its connection (`reset`), drains the body and has one
 * deadline for the whole exchange. Checks per endpoint never overlap: the next is scheduled when
 * one ends. Timers are unref'd: health checks alone do not keep the process alive.
 */
export class HealthChecker {
  readonly #opts: HealthCheckOptions;
  readonly #probes: Probe[];
  readonly #agent: Agent | undefined;
  #started = false;
  #stopped = false;

  constructor(endpoints: readonly Endpoint[], opts: HealthCheckOptions) {
    this.#opts = opts;
    this.#probes = endpoints.map((ep) => ({ ep, passes: 0, fails: 0, timer: undefined, running: undefined, abort: undefined }));
    if (opts.kind === 'http') {
      const connect: Record<string, unknown> = { timeout: opts.timeoutMs };
      if (opts.lookup) connect.lookup = opts.lookup;
      if (opts.tls) {
        connect.rejectUnauthorized = opts.tls.verify;
        if (opts.tls.ca) connect.ca = readFileSync(opts.tls.ca, 'utf8');
        if (opts.tls.servername) connect.servername = opts.tls.servername;
      }
      this.#agent = new (undici().Agent)({ connections: 2, pipelining: 1, keepAliveTimeout: 1000, connect });
    }
  }

  /** Begin checking; the first round starts within `jitter × interval` (at once when jitter is 0). */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    const spread = this.#opts.jitter * this.#opts.intervalMs;
    for (const p of this.#probes) this.#schedule(p, Math.random() * spread);
  }

  /** Stop all timers, abort checks in flight, wait for them and close the check agent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const running: Promise<void>[] = [];
    for (const p of this.#probes) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      p.timer = undefined;
      p.abort?.abort();
      if (p.running) running.push(p.running);
    }
    await Promise.all(running);
    await this.#agent?.close().catch(() => this.#agent?.destroy());
  }

  #schedule(p: Probe, delayMs: number): void {
    if (this.#stopped) return;
    p.timer = setTimeout(() => {
      p.timer = undefined;
      p.running = this.#run(p).finally(() => {
        p.running = undefined;
      });
    }, delayMs);
    p.timer.unref();
  }

  async #run(p: Probe): Promise<void> {
    const o = this.#opts;
    const ac = new AbortController();
    p.abort = ac;
    // undici's request() takes a DOM AbortSignal, so this probe uses an AbortController (a CancelSignal too).
    const deadline = new Timeout(() => ac.abort(), o.timeoutMs);
    let failure: string | undefined;
    let passReason = '';
    try {
      if (o.kind === 'http') {
        const status = await this.#http(p.ep, ac.signal);
        if (statusExpected(status, o.expectStatuses)) passReason = `status ${status}`;
        else failure = `status ${status}`;
      } else {
        await tcpConnect(p.ep, ac.signal, o.lookup);
        passReason = 'connected';
      }
    } catch (err) {
      failure = ac.signal.aborted ? 'timeout' : errorCode(err);
    } finally {
      deadline.cancel();
      p.abort = undefined;
    }
    if (this.#stopped) return;
    if (failure === undefined) this.#pass(p, passReason);
    else this.#fail(p, failure);
    const j = o.jitter * (Math.random() - 0.5);
    this.#schedule(p, Math.max(0, o.intervalMs * (1 + j)));
  }

  async #http(ep: Endpoint, signal: AbortSignal): Promise<number> {
    const o = this.#opts;
    const headers: Record<string, string> = { 'user-agent': 'gatewise-health-check' };
    if (o.host) headers.host = o.host;
    const res = await undici().request(ep.origin + o.path, {
      method: 'GET',
      dispatcher: this.#agent,
      headers,
      signal,
      reset: true,
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
    });
    await res.body.dump({ limit: 64 * 1024 });
    return res.statusCode;
  }

  #pass(p: Probe, reason: string): void {
    p.passes++;
    p.fails = 0;
    const from = p.ep.health;
    if (from === 'healthy') return;
    if (from === 'unknown' || p.passes >= this.#opts.rise) {
      this.#set(p, 'healthy', reason);
      if (from === 'unhealthy') {
        p.ep.readyAt = Date.now();
        this.#opts.onRecovered?.(p.ep);
      }
    }
  }

  #fail(p: Probe, reason: string): void {
    p.fails++;
    p.passes = 0;
    const from = p.ep.health;
    if (from === 'unhealthy') return;
    if (from === 'unknown' || p.fails >= this.#opts.fall) this.#set(p, 'unhealthy', reason);
  }

  #set(p: Probe, to: Health, reason: string): void {
    const from = p.ep.health;
    p.ep.health = to;
    if (to === 'healthy') this.#opts.onHealthy?.(p.ep);
    if (!healthChannel.hasSubscribers) return;
    const msg: HealthEvent = { endpoint: p.ep.nextHop, from, to, reason };
    if (this.#opts.cluster !== undefined) msg.cluster = this.#opts.cluster;
    healthChannel.publish(msg);
  }
}

/** Whether `status` is one of `expected` (numbers or inclusive [low, high] ranges). */
export function statusExpected(status: number, expected: ReadonlyArray<number | readonly [number, number]>): boolean {
  for (const e of expected) {
    if (typeof e === 'number' ? status === e : status >= e[0] && status <= e[1]) return true;
  }
  return false;
}

function tcpConnect(ep: Endpoint, signal: CancelSignal, lookup: LookupFunction | undefined): Promise<void> {
  const host = ep.url.hostname.startsWith('[') ? ep.url.hostname.slice(1, -1) : ep.url.hostname;
  const port = Number(ep.nextHop.slice(ep.nextHop.lastIndexOf(':') + 1));
  return new Promise<void>((resolve, reject) => {
    const socket = connect(lookup ? { host, port, lookup } : { host, port });
    const onAbort = (): void => {
      socket.destroy();
      reject(new Error('timeout'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve();
    });
    socket.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    });
  });
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.message : String(err);
}
