import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { relayGathers } from '../observe/worker-ipc.js';
import { relayLockouts } from '../net/auth-lockout-group.js';
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
  // Wrong credentials counted for the whole group, lockouts told to every worker (net/auth-lockout-group.ts).
  relayLockouts();
  // Users-file changes from the admin API of any worker, one at a time (state/ipc-lock.ts).
  serveIpcLocks();
  let stopping = false;
  const fork = (): void => {
    cluster.fork();
  };
  for (let i = 0; i < n; i++) fork();
  // The primary serves its workers (state, gathers, locks) from here on (src/cli/young-generation.ts).
  releaseYoungGeneration();
  // Workers that started (all their listeners bound): one that exits before it did could not start.
  const listened = new Set<number>();
  cluster.on('message', (worker, msg: unknown) => {
    if ((msg as { gatewise?: unknown } | null)?.gatewise === STARTED) listened.add(worker.id);
  });
  // SIGHUP: every worker re-reads the config file and reloads in place (each checks it the
  // same way, so all take it or all refuse it; each logs its result).
  const hup = (): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  };
  process.on('SIGHUP', hup);
  const code = await new Promise<number>((resolve) => {
    const stop = (sig: NodeJS.Signals, exitCode = 0): void => {
      process.off('SIGHUP', hup);
      if (stopping) return;
      stopping = true;
      const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined && !w.isDead());
      let left = workers.length;
      if (left === 0) resolve(exitCode);
      for (const w of workers) {
        w!.once('exit', () => {
          if (--left === 0) resolve(exitCode);
        });
        w!.process.kill(sig);
      }
    };
    cluster.on('exit', (worker, code, signal) => {
      if (stopping) return;
      if (!listened.has(worker.id)) {
        // It could not start (it said why: a port in use, a file it cannot read): so will the
        // next one. Finding (session 29): the primary forked again every 250 ms for ever, and
        // a worker that failed stayed up on its IPC channel, so nothing ever exited.
        process.stderr.write(`gatewise: worker ${worker.process.pid} could not start (${signal ?? code}); stopping the others\n`);
        stop('SIGTERM', 1);
        return;
      }
      listened.delete(worker.id);
      process.stderr.write(`gatewise: worker ${worker.process.pid} exited (${signal ?? code}); starting another\n`);
      setTimeout(fork, 250).unref();
    });
    process.once('SIGTERM', (sig) => stop(sig));
    process.once('SIGINT', (sig) => stop(sig));
  });
  // Every worker has flushed its usage to the primary and exited: write the state file last.
  await held?.stop();
  return code;
}

const STARTED = 'started';

/** A worker has started (its runtime is up, every listener bound): its primary may replace it if it dies later. */
export function announceStarted(): void {
  if (cluster.isWorker) process.send?.({ gatewise: STARTED });
}

/**
 * A worker whose gateway has closed: leave the cluster, so the process can exit. (Its IPC
 * channel to the primary keeps the event loop alive; without this, a drained worker stayed
 * up, and the primary, waiting for it, ignored SIGTERM.)
 */
export function leaveCluster(): void {
  if (cluster.isWorker) cluster.worker?.disconnect();
}

/**
 * The `--workers` value as a count: parseCommand has already checked it against the flag's
 * `whole` range (1 to 256, or "auto"; commands.ts), the one place that refuses it.
 */
export function parseWorkers(v: string | undefined): number | 'auto' | undefined {
  if (v === undefined) return undefined;
  return v === 'auto' ? 'auto' : Number(v);
}
