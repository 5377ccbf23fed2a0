import cluster, { type Worker } from 'node:cluster';

/**
 * `--workers N`: one writer at a time for a file every worker may change (the users file of
 * the admin API's /accounts). The primary owns the order: a worker asks it for the named lock
 * (`{ gw: 'lock', op: 'acquire' }`), does its read-change-write while it holds it, and gives it
 * back (`op: 'release'`); the primary then tells the other workers the file changed
 * (`{ gw: 'lock-changed', name }`) so they re-read it at once. Without it, two workers each
 * read the same file, each wrote its own change, and the last rename won (a 200 for a change
 * that was lost). A lock rather than shipping the change to the primary: the change is a
 * closure over the worker's validation (config users, plans, allowlists), which the primary
 * does not have. Hand-written over node:cluster's own channel, as the IPC store is.
 */

interface LockMsg {
  gw: 'lock';
  op: 'acquire' | 'release';
  id: number;
  name: string;
}
interface GrantMsg {
  gw: 'lock-granted';
  id: number;
}
interface ChangedMsg {
  gw: 'lock-changed';
  name: string;
}

/** A lock not granted in time (the primary busy or gone): the caller refuses its change. */
export class IpcLockError extends Error {
  readonly code = 'GATEWISE_IPC_LOCK';
}

const waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
const changedListeners = new Map<string, Set<() => void>>();
let nextId = 1;
let listening = false;

function inGroup(): boolean {
  return cluster.isWorker && typeof process.send === 'function' && process.connected;
}

function listen(): void {
  if (listening) return;
  listening = true;
  process.on('message', (msg: unknown) => {
    const m = msg as GrantMsg | ChangedMsg;
    if (m === null || typeof m !== 'object') return;
    if (m.gw === 'lock-granted') {
      const w = waiting.get(m.id);
      if (!w) return;
      waiting.delete(m.id);
      clearTimeout(w.timer);
      w.resolve();
    } else if (m.gw === 'lock-changed') {
      for (const l of changedListeners.get(m.name) ?? []) l();
    }
  });
  process.on('disconnect', () => {
    for (const [id, w] of waiting) {
      waiting.delete(id);
      clearTimeout(w.timer);
      w.reject(new IpcLockError('the primary is gone'));
    }
  });
}

/**
 * Run `fn` holding the group-wide lock `name` (in a worker of `--workers N`); elsewhere, just
 * run it. Waits at most `timeoutMs` for the lock.
 */
export async function withIpcLock<T>(name: string, fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  if (!inGroup()) return fn();
  listen();
  const id = nextId++;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(id);
      // Given back if it is granted later (the primary then passes it on).
      process.send!({ gw: 'lock', op: 'release', id, name } satisfies LockMsg);
      reject(new IpcLockError(`no write lock for ${name} within ${timeoutMs} ms`));
    }, timeoutMs);
    waiting.set(id, { resolve, reject, timer });
    process.send!({ gw: 'lock', op: 'acquire', id, name } satisfies LockMsg);
  });
  try {
    return await fn();
  } finally {
    if (process.connected) process.send!({ gw: 'lock', op: 'release', id, name } satisfies LockMsg);
  }
}

/** In a worker: `listener` runs when another worker has changed what lock `name` guards. Returns a function that stops listening. */
export function onIpcLockChanged(name: string, listener: () => void): () => void {
  if (!inGroup()) return () => {};
  listen();
  let set = changedListeners.get(name);
  if (!set) changedListeners.set(name, (set = new Set()));
  set.add(listener);
  return () => set.delete(listener);
}

/**
 * The primary's side: grant each named lock to one worker at a time, in the order asked; on
 * release, pass it on and tell the other workers; a worker that exits gives back what it held
 * or waited for. Returns a function that stops serving.
 */
export function serveIpcLocks(): () => void {
  /** Per name: the holder first, then the waiters, as worker id + request id. */
  const queues = new Map<string, Array<{ worker: Worker; id: number }>>();
  const grant = (name: string): void => {
    const q = queues.get(name);
    const head = q?.[0];
    if (!head) {
      queues.delete(name);
      return;
    }
    if (head.worker.isConnected()) head.worker.send({ gw: 'lock-granted', id: head.id } satisfies GrantMsg);
    else {
      q!.shift();
      grant(name);
    }
  };
  const onMessage = (worker: Worker, msg: unknown): void => {
    const m = msg as LockMsg;
    if (m === null || typeof m !== 'object' || m.gw !== 'lock' || typeof m.name !== 'string' || typeof m.id !== 'number') return;
    let q = queues.get(m.name);
    if (m.op === 'acquire') {
      if (!q) queues.set(m.name, (q = []));
      q.push({ worker, id: m.id });
      if (q.length === 1) grant(m.name);
      return;
    }
    if (!q) return;
    const i = q.findIndex((e) => e.worker === worker && e.id === m.id);
    if (i < 0) return;
    q.splice(i, 1);
    if (i === 0) {
      // The holder wrote: the others re-read now rather than at their next poll.
      for (const w of Object.values(cluster.workers ?? {})) if (w && w !== worker && w.isConnected()) w.send({ gw: 'lock-changed', name: m.name } satisfies ChangedMsg);
      grant(m.name);
    }
  };
  const onExit = (worker: Worker): void => {
    for (const [name, q] of queues) {
      const held = q[0]?.worker === worker;
      const left = q.filter((e) => e.worker !== worker);
      queues.set(name, left);
      if (held) grant(name);
      else if (left.length === 0) queues.delete(name);
    }
  };
  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return () => {
    cluster.off('message', onMessage);
    cluster.off('exit', onExit);
  };
}
