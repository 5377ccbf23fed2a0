import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { relayGathers } from '../observe/worker-ipc.js';
import { releaseYoungGeneration } from './young-generation.js';
import { MemoryStore, serveIpcLocks, serveIpcState } from '../state/index.js';

/** What the primary holds for its workers: the forward proxy's state, unless it lives in Redis. */
export interface WorkerStateOptions {
  /** The state file (usage), loaded at start and written every `flushIntervalMs` and at stop. */
  file?: string;
  flushIntervalMs: number;
}

/**
 * The primary's half of shared state for `--workers N` without Redis: one MemoryStore that
 * every worker reaches over IPC (src/state/ipc-store.ts), and the state file, which only the
 * primary reads and writes (workers flush their usage to it before they exit).
 */
async function hostState(opts: WorkerStateOptions): Promise<{ stop(): Promise<void> }> {
  const store = new MemoryStore();
  if (opts.file) {
    try {
      await store.load(opts.file);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') process.stderr.write(`gatewise: state file ${opts.file} unreadable (${(err as Error).message}); starting with empty usage\n`);
    }
  }
  const unserve = serveIpcState(store);
  const save = async (): Promise<void> => {
    if (opts.file) await store.save(opts.file).catch((err: unknown) => process.stderr.write(`gatewise: cannot write the state file: ${(err as Error).message}\n`));
  };
  const timer = opts.file ? setInterval(() => void save(), opts.flushIntervalMs) : undefined;
  timer?.unref();
  return {
    async stop() {
      clearInterval(timer);
      unserve();
      await save();
      await store.close();
    },
  };
}

/**
 * `--workers N`: the primary forks N processes that each run the same gateway on
 * shared listening sockets (node:cluster). The kernel spreads connections
 * (SCHED_NONE: no round-robin hop through the primary). SIGTERM/SIGINT to the
 * primary drain every worker; SIGHUP to the primary reloads every worker's config; a worker that dies unexpectedly is replaced.
 * Returns undefined in a worker (the caller then runs the gateway as usual).
 */
export async function superviseWorkers(requested: number | 'auto', state?: WorkerStateOptions): Promise<number | undefined> {
  if (cluster.isWorker) return undefined;
  const n = requested === 'auto' ? availableParallelism() : requested;
  // Serving before the first fork: a worker's first call may come before its listener is up.
  const held = state ? await hostState(state) : undefined;
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // The admin listener of whichever worker takes a scrape asks every worker through here (observe/worker-ipc.ts).
  relayGathers();
  // Users-file changes from the admin API of any worker, one at a time (state/ipc-lock.ts).
  serveIpcLocks();
  let stopping = false;
  const fork = (): void => {
    cluster.fork();
  };
  for (let i = 0; i < n; i++) fork();
  // The primary serves its workers (state, gathers, locks) from here on (src/cli/young-generation.ts).
  releaseYoungGeneration();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    process.stderr.write(`gatewise: worker ${worker.process.pid} exited (${signal ?? code}); starting another\n`);
    setTimeout(fork, 250).unref();
  });
  // SIGHUP: every worker re-reads the config file and reloads in place (each checks it the
  // same way, so all take it or all refuse it; each logs its result).
  const hup = (): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  };
  process.on('SIGHUP', hup);
  const code = await new Promise<number>((resolve) => {
    const stop = (sig: NodeJS.Signals): void => {
      process.off('SIGHUP', hup);
      if (stopping) return;
      stopping = true;
      const workers = Object.values(cluster.workers ?? {});
      let left = workers.length;
      if (left === 0) resolve(0);
      for (const w of workers) {
        w?.once('exit', () => {
          if (--left === 0) resolve(0);
        });
        w?.process.kill(sig);
      }
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // Every worker has flushed its usage to the primary and exited: write the state file last.
  await held?.stop();
  return code;
}

/**
 * A worker whose gateway has closed: leave the cluster, so the process can exit. (Its IPC
 * channel to the primary keeps the event loop alive; without this, a drained worker stayed
 * up, and the primary, waiting for it, ignored SIGTERM.)
 */
export function leaveCluster(): void {
  if (cluster.isWorker) cluster.worker?.disconnect();
}

export function parseWorkers(v: string | undefined): number | 'auto' | undefined {
  if (v === undefined) return undefined;
  if (v === 'auto') return 'auto';
  const n = Number(v);
  return Number.isInteger(n) && n >= 1 && n <= 256 ? n : NaN;
}
