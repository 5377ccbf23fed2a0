import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Reply, Route, match as matchRoute } from './admin.js';
import { GROUP_MERGES, type WorkerReply } from './admin-merge.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { GATHER_LATE_CHANNEL, gather, inWorkerGroup, serveGather, type Gathered } from './worker-ipc.js';
import { AdminProblem, internalProblem, logRouteFailure, problem, problemReply } from './admin-problem.js';
import type { Logger } from 'pino';
import type { RequestIds } from '../http/request-id.js';

export interface AdminGroup {
  /** The group's answer to this route, or undefined when the route answers for this worker alone. */
  answers(route: Route, url: URL): Promise<Reply & { headers: Record<string, string> }> | undefined;
  close(): void;
}

/**
 * Response headers saying how many workers answered, how many failed (their route threw: each
 * logged it under the request id, sent as X-Request-Id) and how many did not answer in time
 * (-1: unknown).
 */
function groupHeaders(g: Gathered, requestId: string): Record<string, string> {
  const ok = g.parts.filter((p) => p.ok).length;
  const failed = g.parts.length - ok;
  return { 'gatewise-workers': String(ok), 'gatewise-workers-failed': String(failed), 'gatewise-workers-missing': String(g.missing), ...(failed > 0 ? { 'x-request-id': requestId } : {}) };
}

/** Methods that change nothing: a late group answer may be this worker's alone. */
const SAFE = new Set(['GET', 'HEAD']);

/** Where a failed route is logged, and the ids it is logged under (the admin listener's). */
export interface GroupFailures {
  ids: RequestIds;
  log(): Logger;
}

/**
 * The admin listener of a worker in a `--workers N` group: it answers every worker's
 * gathers from its own routes, and answers its own clients for the group.
 *
 * /metrics: every worker's registry as JSON, merged by prom-client's
 * `AggregatorRegistry.aggregate`, which applies each metric's `aggregator`: counters and
 * histograms (buckets, sum, count) are summed over workers, so totals are the group's;
 * gauges are summed (in flight, queued, connections, sessions, the admission limit: the
 * group's capacity is the sum of the workers' limits) except the 0/1 standings
 * `gatewise_endpoint_state` and `gatewise_forward_exit_down`, which take the highest (1 when
 * any worker sees the state); prom-client's own process metrics keep its aggregators.
 * The JSON routes: admin-merge.ts says what is summed and what is given per worker.
 * Undefined outside a process group.
 */
export async function adminGroup(opts: { perProcessUsage: boolean; timeoutMs?: number }, table: readonly Route[], match: typeof matchRoute, registry: Registry | undefined, failures: GroupFailures): Promise<AdminGroup | undefined> {
  if (!inWorkerGroup()) return undefined;
  const timeoutMs = opts.timeoutMs ?? 2500;
  // A worker whose route throws logs it (message and stack) under the asker's request id; its
  // part of the answer is a failure (worker-ipc.ts), the thrown text staying inside the group.
  const failedHere = (err: unknown, requestId: string, fields: Record<string, unknown>): never => {
    logRouteFailure(failures.log(), requestId, err, { ...fields, worker: process.pid });
    throw err;
  };
  const stopAdmin = serveGather('admin', async (arg) => {
    const { method, url, requestId } = arg as { method: string; url: string; requestId: string };
    const u = new URL(url, 'http://admin');
    const m = match(table, method, u.pathname);
    if (m === undefined || 'allow' in m) return problem('no-route', `no admin route is at ${method} ${u.pathname}`);
    try {
      // Ctx.req: no route answering for the group reads the request itself.
      const r = await m.route.handle({ url: u, params: m.params, req: undefined as never });
      return { status: r.status, body: r.body, type: r.type, perProcessUsage: opts.perProcessUsage };
    } catch (err) {
      // A refusal thrown is this worker's answer, as it is a single process's.
      if (err instanceof AdminProblem) return { ...problemReply(err), perProcessUsage: opts.perProcessUsage };
      return failedHere(err, requestId, { method, path: u.pathname });
    }
  });
  // A route here that answered after the group's deadline: its answer was dropped (worker-ipc.ts); said once per answer.
  const onLate = (m: unknown): void => {
    const l = m as { kind: string; ok: boolean; late: number };
    failures.log().warn({ component: 'admin', type: 'gather-late', kind: l.kind, ok: l.ok, late: l.late, worker: process.pid }, `an admin ${l.kind === 'metrics' ? 'scrape' : 'route'} in this worker answered after the group's deadline (${timeoutMs} ms); its answer was dropped`);
  };
  subscribe(GATHER_LATE_CHANNEL, onLate);
  const stopMetrics = registry
    ? serveGather('metrics', (arg) => registry.getMetricsAsJSON().catch((err: unknown) => failedHere(err, (arg as { requestId: string }).requestId, { method: 'GET', path: '/metrics' })))
    : () => {};
  /**
   * No worker answered well: 500 when some answered and every one of them failed (each logged
   * why under the request id; the asker logs which), 503 `busy` only when none answered in time:
   * within `timeoutMs` in all, relay and answers (`gather`: one deadline).
   */
  const noneOk = (g: Gathered, requestId: string): Reply & { headers: Record<string, string> } => {
    if (g.parts.length === 0) return { ...problem('busy', g.missing === -1 ? `no answer from the group within ${timeoutMs} ms, nor from this worker` : `no worker answered within ${timeoutMs} ms`), headers: groupHeaders(g, requestId) };
    return { ...internalProblem(requestId, `the admin route failed in every worker that answered (${g.parts.length}, ${g.missing === -1 ? 'the others unknown' : `${g.missing} silent`})`), headers: groupHeaders(g, requestId) };
  };
  /** The asker's line for a group answer some worker failed: which ones, what they said, under the id the client got. */
  const logFailed = (g: Gathered, requestId: string, path: string): void => {
    const failed = g.parts.filter((p) => !p.ok).map((p) => ({ worker: p.pid, error: p.error }));
    if (failed.length === 0) return;
    failures.log().error({ component: 'admin', type: 'route-failed', requestId, path, failed, answered: g.parts.length - failed.length, missing: g.missing }, `an admin route failed in ${failed.length} worker(s) of the group`);
  };
  return {
    answers(route, url) {
      if (route.path === '/metrics') {
        if (!registry) return undefined;
        const requestId = failures.ids.next();
        return gather<Awaited<ReturnType<Registry['getMetricsAsJSON']>>>('metrics', { requestId }, timeoutMs).then(async (g) => {
          logFailed(g, requestId, route.path);
          const ok = g.parts.filter((p) => p.ok);
          if (ok.length === 0) return noneOk(g, requestId);
          const merged = AggregatorRegistry.aggregate(ok.map((p) => p.value!));
          return { status: 200, body: await merged.metrics(), type: registry.contentType, headers: groupHeaders(g, requestId) };
        });
      }
      const merge = GROUP_MERGES[`${route.method} ${route.path}`];
      if (merge === undefined) return undefined;
      const requestId = failures.ids.next();
      return gather<Omit<WorkerReply, 'pid'>>('admin', { method: route.method, url: url.pathname + url.search, requestId }, timeoutMs).then((g) => {
        logFailed(g, requestId, route.path);
        // A state-changing request whose group answer is late: what the other workers did is
        // unknown (each did it at most once, or not at all), so the answer is not this worker's
        // alone but busy.
        if (g.late && !SAFE.has(route.method)) return { ...problem('busy', `the group's answer did not come within ${timeoutMs} ms; each worker did ${route.method} ${url.pathname} at most once, some perhaps not at all (this worker: ${g.parts[0]?.ok === true ? 'done' : g.parts.length > 0 ? 'failed' : 'not known'})`), headers: groupHeaders({ ...g, parts: [] }, requestId) };
        const parts: WorkerReply[] = g.parts.filter((p) => p.ok).map((p) => ({ ...p.value!, pid: p.pid }));
        if (parts.length === 0) return noneOk(g, requestId);
        return { ...merge(parts, url), headers: groupHeaders(g, requestId) };
      });
    },
    close() {
      unsubscribe(GATHER_LATE_CHANNEL, onLate);
      stopAdmin();
      stopMetrics();
    },
  };
}
