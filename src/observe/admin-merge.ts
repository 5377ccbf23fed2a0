import { createHash } from 'node:crypto';

/**
 * The admin API's answers of a `--workers N` process group: each worker answers from its own
 * state (worker-ipc.ts gathers them) and these functions merge the answers into one, route by
 * route. The rule: what counts traffic or things in flight is summed (requests, bytes,
 * failures, in flight, queued, connections, sessions, per-second counts); what is a standing
 * each worker judges for itself (an endpoint's health, ejection, availability; an exit being
 * down) is given per worker under `workers` and summed up at the top as the worst case
 * (unhealthy if any worker sees it unhealthy, ejected for the longest, available only where
 * every worker would send to it); lists (failures, sessions) are concatenated, each item
 * naming its `worker` (pid).
 */

export interface ReplyPart {
  status: number;
  body: unknown;
  type?: string;
}

/** A worker's answer with the pid that gave it. */
export interface WorkerReply extends ReplyPart {
  pid: number;
  /** The worker counts usage in its own store (memory): quota use is summed over workers. False with a shared store. */
  perProcessUsage?: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/** The first 2xx answer's shape, or the first answer: routes whose answer is the same in every worker. */
function first(parts: readonly WorkerReply[]): ReplyPart {
  return parts.find((p) => p.status >= 200 && p.status < 300) ?? parts[0]!;
}

const HEALTH_RANK: Record<string, number> = { healthy: 0, unknown: 1, unhealthy: 2 };

function mergeClusters(parts: readonly WorkerReply[]): Obj {
  const out: Obj = {};
  for (const p of parts) {
    if (!isObj(p.body)) continue;
    for (const [name, eps] of Object.entries(p.body)) {
      const list = (out[name] ??= []) as Obj[];
      for (const e of eps as Obj[]) {
        let m = list.find((x) => x.endpoint === e.endpoint);
        if (m === undefined) {
          list.push((m = { endpoint: e.endpoint, available: true, health: 'healthy', ejectedForMs: 0, draining: false, inflight: 0, connections: 0, learnedIdleMs: e.learnedIdleMs, workers: [] }));
        }
        m.available = m.available === true && e.available === true;
        if ((HEALTH_RANK[String(e.health)] ?? 1) > (HEALTH_RANK[String(m.health)] ?? 0)) m.health = e.health;
        m.ejectedForMs = Math.max(num(m.ejectedForMs), num(e.ejectedForMs));
        m.draining = m.draining === true || e.draining === true;
        m.inflight = num(m.inflight) + num(e.inflight);
        m.connections = num(m.connections) + num(e.connections);
        if (typeof e.learnedIdleMs === 'number') m.learnedIdleMs = typeof m.learnedIdleMs === 'number' ? Math.min(m.learnedIdleMs, e.learnedIdleMs) : e.learnedIdleMs;
        (m.workers as Obj[]).push({ worker: p.pid, available: e.available, health: e.health, ejectedForMs: e.ejectedForMs, draining: e.draining, inflight: e.inflight, connections: e.connections });
      }
    }
  }
  return out;
}

function sumFields(into: Obj, from: Obj, fields: readonly string[]): void {
  for (const f of fields) into[f] = num(into[f]) + num(from[f]);
}

function mergeStatus(parts: readonly WorkerReply[]): Obj {
  const bodies = parts.map((p) => p.body).filter(isObj);
  const admission: Record<string, Obj> = {};
  const listeners: Obj[] = [];
  for (const b of bodies) {
    for (const [name, a] of Object.entries((b.admission as Obj | undefined) ?? {})) sumFields((admission[name] ??= {}), a as Obj, ['limit', 'inflight', 'queued']);
    ((b.forwardListeners as Obj[] | undefined) ?? []).forEach((l, i) => sumFields((listeners[i] ??= {}), l, ['open', 'waiting', 'shed', 'refused', 'accepted']));
  }
  const starts = bodies.map((b) => Date.parse(String(b.startedAt))).filter((t) => !Number.isNaN(t));
  const startedAt = starts.length ? Math.min(...starts) : Date.now();
  return {
    ...bodies[0],
    ready: bodies.every((b) => b.ready === true),
    startedAt: new Date(startedAt).toISOString(),
    uptimeMs: Date.now() - startedAt,
    admission,
    forwardListeners: listeners,
    workers: parts.map((p) => ({ worker: p.pid, ready: isObj(p.body) ? p.body.ready : undefined })),
  };
}

function mergeExits(parts: readonly WorkerReply[]): Obj {
  const pools: Record<string, Obj> = {};
  for (const p of parts) {
    const ps = isObj(p.body) ? (p.body.pools as Record<string, Obj> | undefined) : undefined;
    for (const [name, pool] of Object.entries(ps ?? {})) {
      const m = (pools[name] ??= { strategy: pool.strategy, sessions: 0, exits: [] });
      m.sessions = num(m.sessions) + num(pool.sessions);
      for (const e of (pool.exits as Obj[] | undefined) ?? []) {
        let x = (m.exits as Obj[]).find((y) => y.exit === e.exit);
        if (x === undefined) (m.exits as Obj[]).push((x = { exit: e.exit, kind: e.kind, weight: e.weight, active: 0, uses: 0, down: false, downIn: 0 }));
        sumFields(x, e, ['active', 'uses']);
        if (e.down === true) {
          x.down = true;
          x.downIn = num(x.downIn) + 1;
        }
      }
    }
  }
  return { pools };
}

function mergeSessions(parts: readonly WorkerReply[], limit: number): Obj {
  let total = 0;
  const sessions: Obj[] = [];
  for (const p of parts) {
    if (!isObj(p.body)) continue;
    total += num(p.body.total);
    for (const s of (p.body.sessions as Obj[] | undefined) ?? []) if (sessions.length < limit) sessions.push({ ...s, worker: p.pid });
  }
  return { total, sessions };
}

/** One user's figures from several workers. Quota use is summed while each worker keeps its own usage (`perProcessUsage`), else taken once. */
function mergeUser(list: readonly Obj[], perProcessUsage: boolean): Obj {
  const m: Obj = { ...list[0], requests: 0, bytesUp: 0, bytesDown: 0, failures: 0 };
  const reasons = new Map<string, Obj>();
  let lastSeen = 0;
  for (const u of list) {
    sumFields(m, u, ['requests', 'bytesUp', 'bytesDown', 'failures']);
    lastSeen = Math.max(lastSeen, Date.parse(String(u.lastSeen)) || 0);
    for (const r of (u.refusals as Obj[] | undefined) ?? []) {
      const have = reasons.get(String(r.code));
      if (have) have.count = num(have.count) + num(r.count);
      else reasons.set(String(r.code), { ...r });
    }
  }
  m.lastSeen = new Date(lastSeen).toISOString();
  m.refusals = [...reasons.values()].sort((a, b) => num(b.count) - num(a.count)).slice(0, 5);
  if (perProcessUsage) {
    const quotas = new Map<string, Obj>();
    for (const u of list) {
      for (const q of (u.quotas as Obj[] | undefined) ?? []) {
        const have = quotas.get(String(q.quota));
        if (have === undefined) quotas.set(String(q.quota), { ...q });
        else have.used = num(have.used) + num(q.used);
      }
    }
    for (const q of quotas.values()) q.fraction = num(q.limit) > 0 ? num(q.used) / num(q.limit) : 1;
    m.quotas = [...quotas.values()];
  }
  return m;
}

function mergeUsers(parts: readonly WorkerReply[], limit: number): Obj {
  const byName = new Map<string, Obj[]>();
  let perProcess = true;
  for (const p of parts) {
    if (!isObj(p.body)) continue;
    if (p.perProcessUsage === false) perProcess = false;
    for (const u of (p.body.users as Obj[] | undefined) ?? []) {
      const list = byName.get(String(u.user));
      if (list) list.push(u);
      else byName.set(String(u.user), [u]);
    }
  }
  const users = [...byName.values()].map((l) => mergeUser(l, perProcess));
  users.sort((a, b) => num(b.bytesUp) + num(b.bytesDown) - (num(a.bytesUp) + num(a.bytesDown)));
  return { users: users.slice(0, limit) };
}

function mergeTraffic(parts: readonly WorkerReply[]): Obj {
  const bodies = parts.map((p) => p.body).filter(isObj);
  const seconds = new Map<number, Obj>();
  const totals: Obj = { reverse: 0, forward: 0, failures: 0 };
  const causes = new Map<string, Obj>();
  for (const b of bodies) {
    for (const s of (b.seconds as Obj[] | undefined) ?? []) {
      const m = seconds.get(num(s.t));
      if (m === undefined) {
        seconds.set(num(s.t), { t: s.t, reverse: num(s.reverse), forward: num(s.forward), errors: { ...(s.errors as Obj) } });
        continue;
      }
      sumFields(m, s, ['reverse', 'forward']);
      const errs = m.errors as Record<string, number>;
      for (const [c, n] of Object.entries((s.errors as Obj | undefined) ?? {})) errs[c] = (errs[c] ?? 0) + num(n);
    }
    sumFields(totals, (b.totals as Obj | undefined) ?? {}, ['reverse', 'forward', 'failures']);
    for (const c of (b.causes as Obj[] | undefined) ?? []) {
      const have = causes.get(String(c.code));
      if (have) sumFields(have, c, ['count', 'lastMinute']);
      else causes.set(String(c.code), { ...c });
    }
  }
  return {
    now: Math.max(...bodies.map((b) => num(b.now))),
    seconds: [...seconds.values()].sort((a, b) => num(a.t) - num(b.t)),
    totals,
    causes: [...causes.values()].sort((a, b) => num(b.count) - num(a.count)),
  };
}

function mergeFailures(parts: readonly WorkerReply[], limit: number): Obj {
  const all: Obj[] = [];
  for (const p of parts) if (isObj(p.body)) for (const f of (p.body.failures as Obj[] | undefined) ?? []) all.push({ ...f, worker: p.pid });
  all.sort((a, b) => num(b.time) - num(a.time));
  return { failures: all.slice(0, limit) };
}

function limitOf(url: URL, dflt: number, max: number): number {
  const v = Number(url.searchParams.get('limit') ?? dflt);
  return Number.isInteger(v) && v > 0 ? Math.min(v, max) : dflt;
}

/**
 * The merge of each route that answers for the group, by `METHOD /path/template`. Routes not
 * listed answer for the worker that took the request (the dashboard page, `/openapi.json`,
 * `/healthz`, `/ready`, `/config`: the same in every worker, or about this process).
 */
/**
 * The account list is the same in every worker once a change has reached them all (the users
 * file is re-read by every worker after each write): the first worker's list, and under
 * `workers` each worker's digest of its own, with `consistent` saying whether they agree.
 */
function mergeAccounts(parts: readonly WorkerReply[]): ReplyPart {
  const ok = parts.filter((p) => p.status === 200 && isObj(p.body));
  if (ok.length === 0) return first(parts);
  const workers = ok.map((p) => ({ worker: p.pid, digest: createHash('sha256').update(JSON.stringify((p.body as Obj).accounts)).digest('hex').slice(0, 16) }));
  return { status: 200, body: { ...(ok[0]!.body as Obj), workers, consistent: new Set(workers.map((w) => w.digest)).size === 1 } };
}

export const GROUP_MERGES: Readonly<Record<string, (parts: readonly WorkerReply[], url: URL) => ReplyPart>> = {
  'GET /accounts': (parts) => mergeAccounts(parts),
  'GET /status': (parts) => ({ status: 200, body: mergeStatus(parts) }),
  'GET /clusters': (parts) => (first(parts).status === 200 ? { status: 200, body: mergeClusters(parts.filter((p) => p.status === 200)) } : first(parts)),
  // Drain and undrain act in every worker (each has its own endpoints); 200 when one knew the endpoint.
  'POST /clusters/{cluster}/drain': (parts) => first(parts),
  'POST /clusters/{cluster}/undrain': (parts) => first(parts),
  'GET /exits': (parts) => (first(parts).status === 200 ? { status: 200, body: mergeExits(parts.filter((p) => p.status === 200)) } : first(parts)),
  'GET /sessions': (parts, url) => (first(parts).status === 200 ? { status: 200, body: mergeSessions(parts.filter((p) => p.status === 200), limitOf(url, 1000, 100_000)) } : first(parts)),
  'GET /users': (parts, url) => (first(parts).status === 200 ? { status: 200, body: mergeUsers(parts.filter((p) => p.status === 200), limitOf(url, 50, 1000)) } : first(parts)),
  'GET /users/{user}': (parts) => {
    const ok = parts.filter((p) => p.status === 200 && isObj(p.body));
    if (ok.length === 0) return first(parts);
    return { status: 200, body: mergeUser(ok.map((p) => p.body as Obj), ok.every((p) => p.perProcessUsage !== false)) };
  },
  'GET /traffic': (parts) => ({ status: 200, body: mergeTraffic(parts.filter((p) => p.status === 200)) }),
  'GET /failures': (parts, url) => ({ status: 200, body: mergeFailures(parts.filter((p) => p.status === 200), limitOf(url, 100, 100_000)) }),
  'GET /failures/{requestId}': (parts) => {
    const found = parts.find((p) => p.status === 200);
    return found ? { status: 200, body: { ...(found.body as Obj), worker: found.pid } } : first(parts);
  },
};
