import cluster, { type Worker } from 'node:cluster';
import { channel } from 'node:diagnostics_channel';

/**
 * Gathering a figure from every worker of a `--workers N` process group, over node:cluster's
 * IPC channel, with a bounded wait. Used by the admin listener so that a scrape or an API
 * call answers for the whole group, whichever worker the kernel handed the connection to.
 *
 * The primary only relays (it runs no gateway and holds no figures): a worker asks it
 * (`ask`, with its deadline), it asks every connected worker, the asking one included
 * (`req`), collects their answers (`res`) for at most `timeoutMs` and never past the deadline,
 * and hands them back (`done`) with how many did not answer in time. Each worker answers from handlers it registered by kind (`serveGather`).
 * This is a request/response relay for observation, not a shared store: nothing is kept.
 * Message types are prefixed `gatewise:gather:` so other IPC on the same channel (prom-client's
 * own, or a shared-state channel) passes by untouched.
 */

const ASK = 'gatewise:gather:ask';
const REQ = 'gatewise:gather:req';
const RES = 'gatewise:gather:res';
const DONE = 'gatewise:gather:done';

/** One worker's answer. */
export interface GatherPart<T = unknown> {
  pid: number;
  ok: boolean;
  value?: T;
  error?: string;
  /**
   * The worker serves no such figure (its admin listener closed: draining at SIGTERM while its
   * process and IPC stay up). Not a failure: the primary leaves it out of the group's answer,
   * as a worker that exited (review of session 35: it was counted failed and logged as an error).
   */
  absent?: true;
}

/** What a thrown value says, whatever was thrown (`throw undefined` included: reading its message threw). */
function thrownText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Every worker's answer, and how many of the workers asked did not answer in time. */
export interface Gathered<T = unknown> {
  parts: Array<GatherPart<T>>;
  /** Workers asked. */
  workers: number;
  /** Workers asked that did not answer within the wait. */
  missing: number;
}

type Handler = (arg: unknown) => unknown;

/**
 * One deadline per gather, as wall-clock milliseconds (`Date.now()`): the one clock every
 * process of the group reads alike. The asker sets it; the primary waits for the workers only
 * until its cut-off (its own wait, and never past the deadline less `hopMs`, the time its answer
 * needs to travel back) and relays nothing once too little is left; it tells each worker that
 * cut-off (`cutoff`, wall-clock as well), and a worker runs nothing past it and drops a run
 * still going at it: an answer after it would be thrown away by the primary, so it is counted
 * late where it comes (before, a run was dropped at the deadline alone, and an answer between
 * the cut-off and the deadline was thrown away silently).
 *
 * Wall-clock, not a relative budget (ms left at send): a budget is counted from when a message
 * is read, and cannot see the time it waited unread in a busy process (a primary whose event
 * loop was blocked would relay an ask whose asker already answered 503 `busy`, the case of
 * admin-group-deadline.test.ts's first test). A clock step errs towards doing less: forward, an
 * ask expires or a run is dropped early (503 `busy`, nothing done twice); backward, the primary
 * still waits no longer than its own `timeoutMs` and a worker's run is dropped later (its late
 * answer counted by the primary); the asker's own wait is a timer, which no step moves.
 */
interface AskMsg { type: typeof ASK; id: number; kind: string; arg: unknown; deadline: number }
interface ReqMsg { type: typeof REQ; id: number; kind: string; arg: unknown; deadline: number; cutoff: number; from: number; askId: number }
interface ResMsg { type: typeof RES; id: number; kind: string; part: GatherPart }
interface DoneMsg { type: typeof DONE; id: number; gathered: Gathered }

/** Diagnostics channels: a worker's run of a gather dropped at the primary's cut-off; an answer after it (ignored; in the primary, one read after its cut-off); an ask the primary received past its deadline or too near it (not relayed). */
export const GATHER_DROPPED_CHANNEL = 'gatewise:gather:dropped';
export const GATHER_LATE_CHANNEL = 'gatewise:gather:late';
export const GATHER_EXPIRED_CHANNEL = 'gatewise:gather:expired';
const droppedChannel = channel(GATHER_DROPPED_CHANNEL);
const lateChannel = channel(GATHER_LATE_CHANNEL);
const expiredChannel = channel(GATHER_EXPIRED_CHANNEL);

const handlers = new Map<string, Handler>();
/** This worker's gathers waiting for the primary's answer; `own`: this worker's part, once its run for this ask has answered. */
const asks = new Map<number, { resolve(g: Gathered): void; timer: NodeJS.Timeout; own?: GatherPart }>();
/** This worker's runs of the group's gathers (the primary's request id) not yet answered, each dropped at the primary's cut-off. */
const running = new Map<number, NodeJS.Timeout>();
let askIds = 0;
let late = 0;
let dropped = 0;
let workerListening = false;
let relaying = false;

/**
 * What this process holds for gathers in progress (`asks`: its own, waiting for the primary;
 * `running`: its runs of the group's, waiting for a route) and, since it started, how many
 * runs it dropped at their cut-off and how many answers came after it (ignored).
 */
export function gatherPending(): { asks: number; running: number; dropped: number; late: number } {
  return { asks: asks.size, running: running.size, dropped, late };
}

/** Time the primary leaves for its answer to reach the asker before the deadline. */
export function hopMs(timeoutMs: number): number {
  return Math.min(250, Math.max(20, Math.floor(timeoutMs / 10)));
}

/** Whether this process is a worker of a process group that can be gathered from. */
export function inWorkerGroup(): boolean {
  return cluster.isWorker && typeof process.send === 'function' && process.connected;
}

function send(msg: object): void {
  if (process.connected) process.send!(msg);
}

/**
 * Runs the group's request `m` here, once, and answers the primary; at the primary's cut-off
 * the run is dropped (the primary answered the asker without it) and what it answers later is
 * ignored, counted and published. Past the cut-off already (a primary that relayed late),
 * nothing runs.
 */
function answer(m: ReqMsg): void {
  const left = Math.min(m.cutoff, m.deadline) - Date.now();
  if (left <= 0) return;
  const timer = setTimeout(() => {
    running.delete(m.id);
    dropped++;
    droppedChannel.publish({ kind: m.kind, pid: process.pid, pending: { asks: asks.size, running: running.size } });
  }, left);
  timer.unref();
  running.set(m.id, timer);
  void local(m.kind, m.arg).then((part) => {
    if (!running.delete(m.id)) {
      late++;
      lateChannel.publish({ kind: m.kind, pid: process.pid, ok: part.ok, late, pending: { asks: asks.size, running: running.size } });
      return;
    }
    clearTimeout(timer);
    // This worker's own ask: its part is known here should the primary's answer come late.
    if (m.from === process.pid) {
      const a = asks.get(m.askId);
      if (a !== undefined) a.own = part;
    }
    send({ type: RES, id: m.id, kind: m.kind, part } satisfies ResMsg);
  });
}

function onWorkerMessage(msg: unknown): void {
  const m = msg as { type?: unknown };
  if (m === null || typeof m !== 'object') return;
  if (m.type === REQ) answer(m as ReqMsg);
  else if (m.type === DONE) {
    const d = m as DoneMsg;
    const a = asks.get(d.id);
    if (a === undefined) return; // answered after our own wait ended
    asks.delete(d.id);
    clearTimeout(a.timer);
    a.resolve(d.gathered);
  }
}

function listenInWorker(): void {
  if (workerListening) return;
  workerListening = true;
  process.on('message', onWorkerMessage);
}

/**
 * In a worker: answer the group's gathers of `kind` with `handler` (its value must survive
 * structured JSON: plain objects, arrays, strings, numbers). Returns a function that stops.
 */
export function serveGather(kind: string, handler: Handler): () => void {
  handlers.set(kind, handler);
  if (cluster.isWorker) listenInWorker();
  return () => {
    if (handlers.get(kind) === handler) handlers.delete(kind);
  };
}

/**
 * In a worker: `kind` from every worker of the group (this one included), within `timeoutMs`
 * in all: relay and answers under one deadline. Each worker runs the handler at most once per
 * gather, and only when the primary's relay reaches it before the deadline. When the primary
 * has not handed the answers back by the deadline, the result is `late`, with `missing` -1
 * (unknown) and in `parts` this worker's own answer alone if its run had answered by then:
 * this worker never runs the handler a second time. Before, it ran it itself as well (a
 * state-changing route done twice there), and waited as long again for it (an answer within
 * twice `timeoutMs`): test/observe/admin-group-deadline.test.ts.
 */
export function gather<T>(kind: string, arg: unknown, timeoutMs = 2500): Promise<Gathered<T> & { late?: true }> {
  listenInWorker();
  const id = ++askIds;
  const deadline = Date.now() + timeoutMs;
  return new Promise<Gathered<T> & { late?: true }>((resolve) => {
    const timer = setTimeout(() => {
      const own = asks.get(id)?.own;
      asks.delete(id);
      resolve({ parts: own === undefined || own.absent ? [] : [own as GatherPart<T>], workers: 1, missing: -1, late: true });
    }, timeoutMs);
    timer.unref();
    asks.set(id, { resolve: resolve as (g: Gathered) => void, timer });
    send({ type: ASK, id, kind, arg, deadline } satisfies AskMsg);
  });
}

async function local<T>(kind: string, arg: unknown): Promise<GatherPart<T>> {
  const h = handlers.get(kind);
  if (h === undefined) return { pid: process.pid, ok: false, error: `no ${kind} here`, absent: true };
  try {
    return { pid: process.pid, ok: true, value: (await h(arg)) as T };
  } catch (err) {
    return { pid: process.pid, ok: false, error: thrownText(err) };
  }
}

/**
 * In the primary: relay gathers between workers, waiting at most `timeoutMs` for their
 * answers (a worker that hangs or died costs the asker this long, never more), and never past
 * the asker's deadline (less `hopMs`): an ask received with less than two hops left (its
 * deadline passed, or too near for the workers to answer by the cut-off) is not relayed
 * (published on `gatewise:gather:expired`, with `leftMs` and `minMs`), so a late relay does not
 * run a route the asker answers without.
 */
export function relayGathers(timeoutMs = 1500): void {
  if (relaying || !cluster.isPrimary) return;
  relaying = true;
  let reqIds = 0;
  const pending = new Map<number, { from: Worker; askId: number; waiting: Set<number>; parts: GatherPart[]; asked: number; timer: NodeJS.Timeout }>();
  const finish = (id: number): void => {
    const p = pending.get(id);
    if (p === undefined) return;
    pending.delete(id);
    clearTimeout(p.timer);
    if (p.from.isConnected()) p.from.send({ type: DONE, id: p.askId, gathered: { parts: p.parts, workers: p.asked, missing: p.waiting.size } } satisfies DoneMsg);
  };
  cluster.on('message', (worker: Worker, msg: unknown) => {
    const m = msg as { type?: unknown };
    if (m === null || typeof m !== 'object') return;
    if (m.type === ASK) {
      const a = m as AskMsg;
      const left = a.deadline - Date.now();
      const hop = hopMs(left);
      // The workers get at least a hop before the cut-off, or nothing runs: a relay with a few
      // ms left ran a drain in every worker that the primary gave up on almost at once.
      if (left - hop < hop) {
        expiredChannel.publish({ kind: a.kind, from: worker.process.pid, lateMs: -left, leftMs: left, minMs: 2 * hop });
        return;
      }
      const wait = Math.min(timeoutMs, left - hop);
      const cutoff = Date.now() + wait;
      const id = ++reqIds;
      const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
      const p = { from: worker, askId: a.id, waiting: new Set(live.map((w) => w.id)), parts: [] as GatherPart[], asked: live.length, timer: setTimeout(() => finish(id), wait) };
      p.timer.unref();
      pending.set(id, p);
      for (const w of live) w.send({ type: REQ, id, kind: a.kind, arg: a.arg, deadline: a.deadline, cutoff, from: worker.process.pid!, askId: a.id } satisfies ReqMsg);
      if (live.length === 0) finish(id);
    } else if (m.type === RES) {
      const r = m as ResMsg;
      const p = pending.get(r.id);
      if (p === undefined) {
        // Sent before the worker's cut-off, read here after it: late, as the worker's own late answers.
        if (r.part.absent) return;
        late++;
        lateChannel.publish({ kind: r.kind, pid: r.part.pid, ok: r.part.ok, late, pending: { asks: asks.size, running: running.size }, at: 'primary' });
        return;
      }
      if (!p.waiting.delete(worker.id)) return;
      if (r.part.absent) p.asked--;
      else p.parts.push(r.part);
      if (p.waiting.size === 0) finish(r.id);
    }
  });
  // A worker that exits is not waited for.
  cluster.on('exit', (worker: Worker) => {
    for (const [id, p] of pending) if (p.waiting.delete(worker.id) && p.waiting.size === 0) finish(id);
  });
}
