import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Reply, Route, match as matchRoute } from './admin.js';
import { GROUP_MERGES, type WorkerReply } from './admin-merge.js';
import { gather, inWorkerGroup, serveGather, type Gathered } from './worker-ipc.js';
import { problem } from './admin-problem.js';
import type { Logger } from 'pino';
import type { RequestIds } from '../http/request-id.js';

export interface AdminGroup {
  /** The group's answer to this route, or undefined when the route answers for this worker alone. */
  answers(route: Route, url: URL): Promise<Reply & { headers: Record<string, string> }> | undefined;
  close(): void;
}

/** Response headers saying how many workers answered and how many did not in time (-1: unknown). */
function groupHeaders(g: Gathered): Record<string, string> {
  return { 'gatewise-workers': String(g.parts.filter((p) => p.ok).length), 'gatewise-workers-missing': String(g.missing) };
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
export async function adminGroup(opts: { perProcessUsage: boolean; timeoutMs?: number }, table: readonly Route[], match: typeof matchRoute, registry: Registry | undefined, _failures: { ids: RequestIds; log(): Logger }): Promise<AdminGroup | undefined> {
  if (!inWorkerGroup()) return undefined;
  const timeoutMs = opts.timeoutMs ?? 2500;
  const stopAdmin = serveGather('admin', async (arg) => {
    const { method, url } = arg as { method: string; url: string };
    const u = new URL(url, 'http://admin');
    const m = match(table, method, u.pathname);
    if (m === undefined || m === 'method') return problem('no-route', `no admin route is at ${method} ${u.pathname}`);
    // Ctx.req: no route answering for the group reads the request itself.
    const r = await m.route.handle({ url: u, params: m.params, req: undefined as never });
    return { status: r.status, body: r.body, type: r.type, perProcessUsage: opts.perProcessUsage };
  });
  const stopMetrics = registry ? serveGather('metrics', () => registry.getMetricsAsJSON()) : () => {};
  return {
    answers(route, url) {
      if (route.path === '/metrics') {
        if (!registry) return undefined;
        return gather<Awaited<ReturnType<Registry['getMetricsAsJSON']>>>('metrics', null, timeoutMs).then(async (g) => {
          const merged = AggregatorRegistry.aggregate(g.parts.filter((p) => p.ok).map((p) => p.value!));
          return { status: 200, body: await merged.metrics(), type: registry.contentType, headers: groupHeaders(g) };
        });
      }
      const merge = GROUP_MERGES[`${route.method} ${route.path}`];
      if (merge === undefined) return undefined;
      return gather<Omit<WorkerReply, 'pid'>>('admin', { method: route.method, url: url.pathname + url.search }, timeoutMs).then((g) => {
        const parts: WorkerReply[] = g.parts.filter((p) => p.ok).map((p) => ({ ...p.value!, pid: p.pid }));
        if (parts.length === 0) return { ...problem('busy', `no worker answered within ${timeoutMs} ms`), headers: groupHeaders(g) };
        return { ...merge(parts, url), headers: groupHeaders(g) };
      });
    },
    close() {
      stopAdmin();
      stopMetrics();
    },
  };
}
