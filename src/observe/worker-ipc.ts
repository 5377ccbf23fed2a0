import cluster, { type Worker } from 'node:cluster';

/**
 * Gathering a figure from every worker of a `--workers N` process group, over node:cluster's
 * IPC channel, with a bounded wait. Used by the admin listener so that a scrape or an API
 * call answers for the whole group, whichever worker the kernel handed the connection to.
 *
 * The primary only relays (it runs no gateway and holds no figures): a worker asks it
 * (`ask`), it asks every connected worker, the asking one included (`req`), collects their
 * answers (`res`) for at most `timeoutMs`, and hands them back (`done`) with how many did
 * not answer in time. Each worker answers from handlers it registered by kind (`serveGather`).
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

interface AskMsg { type: typeof ASK; id: number; kind: string; arg: unknown }
interface ReqMsg { type: typeof REQ; id: number; kind: string; arg: unknown }
interface ResMsg { type: typeof RES; id: number; part: GatherPart }
interface DoneMsg { type: typeof DONE; id: number; gathered: Gathered }

const handlers = new Map<string, Handler>();
const asks = new Map<number, { resolve(g: Gathered): void; timer: NodeJS.Timeout }>();
let askIds = 0;
let workerListening = false;
let relaying = false;

/** Whether this process is a worker of a process group that can be gathered from. */
export function inWorkerGroup(): boolean {
  return cluster.isWorker && typeof process.send === 'function' && process.connected;
}

function send(msg: object): void {
  if (process.connected) process.send!(msg);
}

async function answer(m: ReqMsg): Promise<void> {
  const h = handlers.get(m.kind);
  let part: GatherPart;
  if (h === undefined) part = { pid: process.pid, ok: false, error: `no ${m.kind} here`, absent: true };
  else {
    try {
      part = { pid: process.pid, ok: true, value: await h(m.arg) };
    } catch (err) {
      part = { pid: process.pid, ok: false, error: thrownText(err) };
    }
  }
  send({ type: RES, id: m.id, part } satisfies ResMsg);
}

function onWorkerMessage(msg: unknown): void {
  const m = msg as { type?: unknown };
  if (m === null || typeof m !== 'object') return;
  if (m.type === REQ) void answer(m as ReqMsg);
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
 * In a worker: `kind` from every worker of the group (this one included). When the primary
 * does not hand the answers back within `timeoutMs` (it waits less itself), only this
 * worker's own answer, with `missing` counting the others as unknown (-1); and when its own
 * handler has not answered within `timeoutMs` more either, no answer at all (`parts` empty):
 * every gather ends within twice `timeoutMs`. Before, this worker's own handler was waited for
 * without a bound, and one that never finished (a metric's collect) left the asker's client
 * without an answer (test/observe/admin-route-failure.test.ts).
 */
export function gather<T>(kind: string, arg: unknown, timeoutMs = 2500): Promise<Gathered<T>> {
  listenInWorker();
  const id = ++askIds;
  return new Promise<Gathered<T>>((resolve) => {
    const timer = setTimeout(() => {
      asks.delete(id);
      const late = setTimeout(() => resolve({ parts: [], workers: 1, missing: -1 }), timeoutMs);
      late.unref();
      void local<T>(kind, arg).then((part) => {
        clearTimeout(late);
        resolve({ parts: part.absent ? [] : [part], workers: 1, missing: -1 });
      });
    }, timeoutMs);
    timer.unref();
    asks.set(id, { resolve: resolve as (g: Gathered) => void, timer });
    send({ type: ASK, id, kind, arg } satisfies AskMsg);
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
 * answers (a worker that hangs or died costs the asker this long, never more).
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
      const id = ++reqIds;
      const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
      const p = { from: worker, askId: a.id, waiting: new Set(live.map((w) => w.id)), parts: [] as GatherPart[], asked: live.length, timer: setTimeout(() => finish(id), timeoutMs) };
      p.timer.unref();
      pending.set(id, p);
      for (const w of live) w.send({ type: REQ, id, kind: a.kind, arg: a.arg } satisfies ReqMsg);
      if (live.length === 0) finish(id);
    } else if (m.type === RES) {
      const r = m as ResMsg;
      const p = pending.get(r.id);
      if (p === undefined || !p.waiting.delete(worker.id)) return;
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
