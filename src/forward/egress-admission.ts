import { Failure } from '../failure/index.js';
import { egressOf, type EgressRoute, type ExitChoice } from '../egress/index.js';
import type { MeterSession } from '../tenants/index.js';
import type { ForwardContext } from './context.js';
import type { CancelSignal } from '../timing/cancel.js';

/**
 * The plan and pool checks of one request, tunnel or association, after the
 * destination rules and before the concurrency slot: which pool it would use (an
 * unknown `-pool-` is 403), whether the plan includes that pool (403), requests per
 * second and byte quotas (429). Returns the refusal or undefined.
 */
export function admitPlan(ctx: ForwardContext, route: EgressRoute, host: string): Failure | undefined | Promise<Failure | undefined> {
  const pool = ctx.egress.poolName(route, host);
  if (pool instanceof Failure) return pool;
  const notInPlan = ctx.plans.checkPool(route.user, pool);
  if (notInPlan) return notInPlan;
  return ctx.plans.admit(route.user);
}

/** Record the exit in the session (access log) once it is chosen. */
/** A failure through a pool: the record names the pool, the exit that failed last and the exits tried before it. */
export function noteFailedExit(session: MeterSession, f: Failure, sessionId: string | undefined): void {
  const e = egressOf(f);
  if (e !== undefined) session.egress = { pool: e.pool, exit: e.exit, session: sessionId, repinned: e.repinned, exitRetries: e.retried };
}

export function noteExit(session: MeterSession, choice: ExitChoice | undefined): void {
  if (!choice) return;
  session.egress = { pool: choice.pool, exit: choice.exit.label, session: choice.session, repinned: choice.repinned, exitRetries: choice.retried };
}

/** Response header lines naming the exit (HTTP CONNECT and plain HTTP). */
export function exitHeaders(choice: ExitChoice | undefined): Record<string, string> {
  if (!choice) return {};
  const h: Record<string, string> = { 'x-gatewise-exit': choice.exit.label };
  if (choice.session !== undefined) h['x-gatewise-session'] = choice.session;
  if (choice.repinned) h['x-gatewise-session-repinned'] = '1';
  return h;
}

type TunnelDialOptions = { readonly guard: ReturnType<ForwardContext['rules']['guardFor']>; readonly connectTimeoutMs: number; readonly dnsTimeoutMs: number };
/** Options without a signal per guard (the dialers only read them). */
const tunnelOptions = new WeakMap<ReturnType<ForwardContext['rules']['guardFor']>, TunnelDialOptions>();

/**
 * `dialOptions` without a signal (a tunnel's dial: the client leaving aborts it through its
 * handle), one object per guard and timeouts instead of one per tunnel.
 */
export function tunnelDialOptions(ctx: ForwardContext, user: string | null): TunnelDialOptions {
  const guard = ctx.rules.guardFor(user);
  const s = ctx.settings;
  const had = tunnelOptions.get(guard);
  if (had !== undefined && had.connectTimeoutMs === s.connectTimeoutMs && had.dnsTimeoutMs === s.dnsTimeoutMs) return had;
  const opts = { guard, connectTimeoutMs: s.connectTimeoutMs, dnsTimeoutMs: s.dnsTimeoutMs };
  tunnelOptions.set(guard, opts);
  return opts;
}

/** Dial options every handler uses. */
export function dialOptions(ctx: ForwardContext, user: string | null, signal?: CancelSignal): { guard: ReturnType<ForwardContext['rules']['guardFor']>; connectTimeoutMs: number; dnsTimeoutMs: number; signal?: CancelSignal } {
  return { guard: ctx.rules.guardFor(user), connectTimeoutMs: ctx.settings.connectTimeoutMs, dnsTimeoutMs: ctx.settings.dnsTimeoutMs, signal };
}
