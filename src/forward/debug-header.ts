import { sfString, sfTokenOrString } from '../failure/proxy-status.js';
import { egressOf, type ExitChoice } from '../egress/index.js';
import type { Failure } from '../failure/index.js';
import { isCustomerFacing, type MeterSession } from '../tenants/index.js';
import type { ForwardContext } from './context.js';
import type { ForwardRequest } from './pipeline.js';

/**
 * `Gatewise-Debug`: per-request debug for forward users who ask for it (the username
 * parameter `-debug-1`, or a plan with `debug: true`), in the spirit of Bright Data's
 * `x-brd-debug`: what carried the request and what decided it, on the plain-HTTP response
 * and on the CONNECT 200. An RFC 8941 Dictionary, e.g.
 *
 *   Gatewise-Debug: req-id="…", exit="http://10.0.0.8:3128", pool=resi, session="s1",
 *     repinned, exit-retries=1, decided-by=rule-2, plan=starter, bytes-up=312, ms=41
 *
 * Never sent to a user who did not opt in: the exit and pool are the operator's topology.
 */

/** Whether this request's answers carry the header: the username's `-debug-` wins over the plan. One field test when no plan has debug on. */
export function wantsDebug(ctx: ForwardContext, req: ForwardRequest): boolean {
  const asked = req.route.debug;
  if (asked !== undefined) return asked;
  const plans = ctx.debugPlans;
  return plans !== undefined && req.session.plan !== undefined && plans.has(req.session.plan);
}

/** The header's value. `bytesUp`: bytes sent toward the destination when the answer's head was written (absent for a tunnel just opened). */
export function debugValue(ctx: ForwardContext, req: ForwardRequest, choice: ExitChoice | undefined, bytesUp: number | undefined): string {
  const s: MeterSession = req.session;
  let v = `req-id=${sfString(s.requestId)}`;
  if (choice !== undefined) {
    v += `, exit=${sfString(choice.exit.label)}, pool=${sfTokenOrString(choice.pool)}`;
    if (choice.session !== undefined) v += `, session=${sfString(choice.session)}`;
    if (choice.repinned) v += ', repinned';
    if (choice.retried > 0) v += `, exit-retries=${choice.retried}`;
  } else {
    v += ', exit=direct';
  }
  v += `, decided-by=${sfTokenOrString(ctx.egress.poolDecidedBy(req.route, req.target.host))}`;
  if (s.plan !== undefined) v += `, plan=${sfTokenOrString(s.plan)}`;
  if (bytesUp !== undefined) v += `, bytes-up=${bytesUp}`;
  v += `, ms=${Math.round(performance.now() - s.startedAt)}`;
  return v;
}

/**
 * The header on a refusal or failure answered by the proxy (HTTP and CONNECT), for a user
 * who asked: `decided-by` is what refused it (the refusal reason, such as `too_many_requests`;
 * else the RFC 9209 type), `detail` which rule or limit (when it is shown to the client
 * anyway: a plan's limit, a destination rule), and the pool and the exit that failed last
 * when it went through a pool.
 */
export function debugRefusalValue(ctx: ForwardContext, req: ForwardRequest, f: Failure): string {
  const s: MeterSession = req.session;
  let v = `req-id=${sfString(s.requestId)}, error=${f.type}`;
  const e = egressOf(f);
  if (e !== undefined) {
    if (e.exit !== undefined) v += `, exit=${sfString(e.exit)}`;
    v += `, pool=${sfTokenOrString(e.pool)}`;
    if (e.retried > 0) v += `, exit-retries=${e.retried}`;
  }
  v += `, decided-by=${sfTokenOrString(f.reason ?? f.type)}`;
  // Which rule or limit, in words: what Proxy-Status shows this client anyway (a plan's limit, a rule that denies it).
  if (isCustomerFacing(f) || ctx.settings.revealDetails) v += `, detail=${sfString(f.detail)}`;
  if (s.plan !== undefined) v += `, plan=${sfTokenOrString(s.plan)}`;
  v += `, ms=${Math.round(performance.now() - s.startedAt)}`;
  return v;
}
