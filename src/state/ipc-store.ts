import cluster, { type Worker } from 'node:cluster';
import type { MemoryStore } from './memory-store.js';
import type { SessionPick, Store } from './store.js';

/**
 * `--workers N` without Redis: the primary holds one MemoryStore and every worker reaches it
 * over the cluster's IPC channel, so a plan's limits, sticky sessions, leases and usage mean
 * the same at 1 and N workers. Messages are `{ gw: 'state', id, op, args }` one way and
 * `{ gw: 'state', id, ok, value | error }` back; cool-downs go out to every other worker as
 * `{ gw: 'state-cooldown', scope, until }`. Hand-written rather than a library because it is
 * a dozen lines over node:cluster's own channel (an RPC library would add a framing layer
 * the channel already has).
 */

type Op = 'incrby' | 'get' | 'hincrby' | 'hgetall' | 'keys' | 'pttl' | 'del' | 'rate' | 'sessionPick' | 'leaseAcquire' | 'leaseSet' | 'heartbeat' | 'publishCooldown';

interface Request {
  gw: 'state';
  id: number;
  op: Op;
  args: unknown[];
}
interface Reply {
  gw: 'state';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}
interface CooldownNote {
  gw: 'state-cooldown';
  scope: string;
  until: number;
}

const OPS = new Set<string>(['incrby', 'get', 'hincrby', 'hgetall', 'keys', 'pttl', 'del', 'rate', 'sessionPick', 'leaseAcquire', 'leaseSet', 'heartbeat', 'publishCooldown']);

/** The worker's side: a Store whose every call is answered by the primary. */
export class IpcStore implements Store {
  readonly shared = true;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly #cooldownListeners: Array<(scope: string, forMs: number) => void> = [];
  #next = 1;
  #closed = false;
  readonly #onMessage = (msg: unknown): void => {
    const m = msg as Reply | CooldownNote;
    if (m === null || typeof m !== 'object') return;
    if (m.gw === 'state') {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(Object.assign(new Error(m.error ?? 'state operation failed'), { code: 'GATEWISE_IPC_STATE' }));
    } else if (m.gw === 'state-cooldown') {
      for (const l of this.#cooldownListeners) l(m.scope, m.until);
    }
  };
  readonly #onDisconnect = (): void => {
    this.#closed = true;
    for (const p of this.#pending.values()) p.reject(Object.assign(new Error('the primary is gone'), { code: 'GATEWISE_IPC_CLOSED' }));
    this.#pending.clear();
  };

  constructor() {
    if (!process.send) throw new TypeError('IpcStore runs in a cluster worker (process.send is missing)');
    process.on('message', this.#onMessage);
    process.on('disconnect', this.#onDisconnect);
  }

  #call<T>(op: Op, args: unknown[]): Promise<T> {
    if (this.#closed || !process.connected) return Promise.reject(Object.assign(new Error('the primary is gone'), { code: 'GATEWISE_IPC_CLOSED' }));
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const req: Request = { gw: 'state', id, op, args };
      process.send!(req, undefined, undefined, (err: Error | null) => {
        if (err) {
          this.#pending.delete(id);
          reject(err);
        }
      });
    });
  }

  incrby(key: string, n: number, ttlMs?: number): Promise<number> {
    return this.#call('incrby', [key, n, ttlMs]);
  }
  get(key: string): Promise<number | undefined> {
    return this.#call('get', [key]);
  }
  hincrby(key: string, field: string, n: number, ttlMs?: number): Promise<number> {
    return this.#call('hincrby', [key, field, n, ttlMs]);
  }
  hgetall(key: string): Promise<Record<string, number>> {
    return this.#call('hgetall', [key]);
  }
  keys(prefix: string): Promise<string[]> {
    return this.#call('keys', [prefix]);
  }
  pttl(key: string): Promise<number | undefined> {
    return this.#call('pttl', [key]);
  }
  del(key: string): Promise<void> {
    return this.#call('del', [key]);
  }
  rate(key: string, perSecond: number, burst: number): Promise<number> {
    return this.#call('rate', [key, perSecond, burst]);
  }
  sessionPick(key: string, candidate: string, unusable: readonly string[], ttlMs: number, idleMs: number): Promise<SessionPick | undefined> {
    return this.#call('sessionPick', [key, candidate, unusable, ttlMs, idleMs]);
  }
  leaseAcquire(key: string, holder: string, count: number, max: number): Promise<boolean> {
    return this.#call('leaseAcquire', [key, holder, count, max]);
  }
  leaseSet(key: string, holder: string, count: number): Promise<void> {
    return this.#call('leaseSet', [key, holder, count]);
  }
  heartbeat(holder: string, ttlMs: number): Promise<void> {
    return this.#call('heartbeat', [holder, ttlMs]);
  }
  publishCooldown(scope: string, forMs: number): Promise<void> {
    return this.#call('publishCooldown', [scope, forMs]);
  }
  onCooldown(listener: (scope: string, forMs: number) => void): void {
    this.#cooldownListeners.push(listener);
  }
  async close(): Promise<void> {
    process.off('message', this.#onMessage);
    process.off('disconnect', this.#onDisconnect);
  }
}

/**
 * The primary's side: answer every worker's state calls from `store`; pass cool-downs on to
 * the other workers; drop a worker's leases when it exits (its heartbeat would lapse anyway).
 * Returns a function that stops serving.
 */
export function serveIpcState(store: MemoryStore): () => void {
  const holders = new Map<number, string>();
  const onMessage = (worker: Worker, msg: unknown): void => {
    const m = msg as Request;
    if (m === null || typeof m !== 'object' || m.gw !== 'state' || !OPS.has(m.op) || !Array.isArray(m.args)) return;
    if (m.op === 'heartbeat' && typeof m.args[0] === 'string') holders.set(worker.id, m.args[0]);
    if (m.op === 'publishCooldown') {
      const note: CooldownNote = { gw: 'state-cooldown', scope: String(m.args[0]), until: Number(m.args[1]) };
      for (const w of Object.values(cluster.workers ?? {})) if (w && w !== worker && w.isConnected()) w.send(note);
    }
    const fn = (store[m.op] as (...a: unknown[]) => Promise<unknown>).bind(store);
    fn(...m.args).then(
      (value) => reply(worker, { gw: 'state', id: m.id, ok: true, value }),
      (err: unknown) => reply(worker, { gw: 'state', id: m.id, ok: false, error: (err as Error).message }),
    );
  };
  const onExit = (worker: Worker): void => {
    const h = holders.get(worker.id);
    if (h !== undefined) store.dropHolder(h);
    holders.delete(worker.id);
  };
  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return () => {
    cluster.off('message', onMessage);
    cluster.off('exit', onExit);
  };
}

function reply(worker: Worker, r: Reply): void {
  if (worker.isConnected()) worker.send(r);
}
