import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';

/**
 * `--workers N`: the primary forks N processes that each run the same gateway on
 * shared listening sockets (node:cluster). The kernel spreads connections
 * (SCHED_NONE: no round-robin hop through the primary). SIGTERM/SIGINT to the
 * primary drain every worker; SIGHUP to the primary reloads every worker's config; a worker that dies unexpectedly is replaced.
 * Returns undefined in a worker (the caller then runs the gateway as usual).
 */
export async function superviseWorkers(requested: number | 'auto'): Promise<number | undefined> {
  if (cluster.isWorker) return undefined;
  const n = requested === 'auto' ? availableParallelism() : requested;
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  let stopping = false;
  const fork = (): void => {
    cluster.fork();
  };
  for (let i = 0; i < n; i++) fork();
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
  return new Promise<number>((resolve) => {
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
