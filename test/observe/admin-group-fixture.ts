import cluster from 'node:cluster';
import { subscribe } from 'node:diagnostics_channel';
import { existsSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { Gauge, Registry } from 'prom-client';
import { startAdmin } from '../../src/observe/admin.js';
import { AdminProblem } from '../../src/observe/admin-problem.js';
import { createLogger } from '../../src/observe/access-log.js';
import { relayGathers } from '../../src/observe/worker-ipc.js';

/**
 * A real node:cluster process group of two workers, each running the admin listener for the
 * group on one shared loopback port (as `gatewise run --workers 2` does), the primary relaying
 * the gathers (cli/workers.ts does the same two calls). What each worker's routes do is asked
 * through the routes themselves, so one group serves every case of admin-route-failure.test.ts:
 *
 * - `POST /clusters/fail/drain?endpoint=1,2`: the drain throws in the workers listed (by
 *   cluster worker id), with FIXTURE_SECRET in its message, and succeeds in the others.
 * - `POST /clusters/refuse/drain?endpoint=x`: the drain throws a refusal (`AdminProblem`
 *   not-found) in every worker.
 * - `POST /clusters/metrics/drain?endpoint=ok,hang`: sets each worker's metric collect (by
 *   position, worker 1 first) to succeed, throw (with the secret) or never finish.
 * - `POST /clusters/close/drain?endpoint=2`: the workers listed close their admin listener
 *   after answering (as a worker draining at SIGTERM does; its process and IPC stay up).
 * - `POST /clusters/count/drain?endpoint=TOKEN`: each worker that runs it prints
 *   `{"fixture":"drain","worker":…,"token":TOKEN}`: how many times each worker did a POST.
 * - Metric collect `held`: never finishes until `POST /clusters/release/drain?endpoint=x`, then
 *   succeeds (an answer that comes after the group's deadline).
 * - SIGUSR2 to the primary blocks its event loop (a primary too busy to relay) until the file
 *   FIXTURE_UNBLOCK_FILE exists (at most 30 s), printing `{"fixture":"blocked"}` before and
 *   `{"fixture":"unblocked"}` after (synchronous writes: its loop is blocked); while blocked,
 *   the file FIXTURE_UNBLOCK_FILE`.blocked` exists.
 * - `POST /clusters/stall/drain?endpoint=W:TOKEN`: each worker prints its `count` line for
 *   TOKEN; worker W then sends SIGUSR2 to the primary and answers only once the primary is
 *   blocked (its `.blocked` file exists; at most 30 s): the relay reached every worker in time,
 *   and the answers reach the primary, and its answer the asker, only once it is unblocked.
 * - `POST /clusters/ask/drain?endpoint=W:LEFT:TOKEN`: worker W sends the primary an ask of its
 *   own, as `gather` does, for `POST /clusters/count/drain?endpoint=TOKEN` with a deadline
 *   LEFT ms from now (an ask the primary reads with that little time left, less the hop).
 * - Every process prints what worker-ipc.ts publishes on its diagnostics channels
 *   (`gatewise:gather:*`) as `{"fixture":"gather","channel":…,"worker":…,"message":…}`.
 *
 * Each worker logs through `createLogger` to standard output (the test's pipe) and prints one
 * `{"fixture":"ready","url":…}` line once it listens. FIXTURE_RELAY_TIMEOUT_MS sets how long the
 * primary waits for the workers' answers, FIXTURE_GROUP_TIMEOUT_MS how long a worker waits for
 * the primary's (the defaults of cli/workers.ts and admin-group.ts otherwise): the first above
 * the second makes the primary's relay late.
 */

const secret = process.env.FIXTURE_SECRET ?? 'secret';
const ms = (name: string): number | undefined => (process.env[name] === undefined ? undefined : Number(process.env[name]));

const line = (o: object): void => void writeSync(1, JSON.stringify(o) + '\n');
for (const channel of ['gatewise:gather:dropped', 'gatewise:gather:late', 'gatewise:gather:expired']) {
  subscribe(channel, (message) => line({ fixture: 'gather', channel, worker: cluster.worker?.id ?? 0, message }));
}

if (cluster.isPrimary) {
  // As cli/workers.ts: the kernel hands each connection to a worker (no round-robin through the primary).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  relayGathers(ms('FIXTURE_RELAY_TIMEOUT_MS'));
  process.on('SIGUSR2', () => {
    const file = process.env.FIXTURE_UNBLOCK_FILE ?? '';
    line({ fixture: 'blocked' });
    writeFileSync(`${file}.blocked`, '');
    const until = Date.now() + 30_000;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (!existsSync(file) && Date.now() < until) Atomics.wait(pause, 0, 0, 5);
    rmSync(`${file}.blocked`, { force: true });
    line({ fixture: 'unblocked' });
  });
  for (let i = 0; i < 2; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    process.exit(0);
  });
} else {
  const id = cluster.worker!.id;
  let metrics: 'ok' | 'throw' | 'hang' | 'held' = 'ok';
  const held: Array<() => void> = [];
  let crafted = 0;
  const registry = new Registry();
  new Gauge({
    name: 'fixture_worker_up', help: 'one per worker that collected', registers: [registry],
    collect(): void | Promise<void> {
      if (metrics === 'throw') throw new Error(`metrics failed in worker ${id}: cannot read ${secret}`);
      if (metrics === 'hang') return new Promise<void>(() => {});
      if (metrics === 'held') return new Promise<void>((r) => held.push(r)).then(() => void this.set(1));
      this.set(1);
    },
  });
  const admin = await startAdmin({
    port: 0,
    registry,
    logger: createLogger({ sync: true }),
    group: { perProcessUsage: true, timeoutMs: ms('FIXTURE_GROUP_TIMEOUT_MS') },
    gateway: {
      status: () => ({}),
      drain(name, endpoint) {
        if (name === 'metrics') {
          metrics = endpoint.split(',')[id - 1] as typeof metrics;
          return true;
        }
        if (name === 'close') {
          if (endpoint.split(',').includes(String(id))) setImmediate(() => void admin.close());
          return true;
        }
        if (name === 'count') {
          line({ fixture: 'drain', worker: id, token: endpoint });
          return true;
        }
        if (name === 'stall') {
          const [w, token] = endpoint.split(':');
          line({ fixture: 'drain', worker: id, token });
          if (w === String(id)) {
            const blocked = `${process.env.FIXTURE_UNBLOCK_FILE ?? ''}.blocked`;
            process.kill(process.ppid, 'SIGUSR2');
            const until = Date.now() + 30_000;
            const pause = new Int32Array(new SharedArrayBuffer(4));
            while (!existsSync(blocked) && Date.now() < until) Atomics.wait(pause, 0, 0, 2);
            line({ fixture: 'stalled', worker: id, token, blocked: existsSync(blocked) });
          }
          return true;
        }
        if (name === 'ask') {
          const [w, left, token] = endpoint.split(':');
          if (w === String(id)) {
            process.send!({ type: 'gatewise:gather:ask', id: 1e9 + ++crafted, kind: 'admin', arg: { method: 'POST', url: `/clusters/count/drain?endpoint=${token}`, requestId: `crafted-${crafted}` }, deadline: Date.now() + Number(left) });
          }
          return true;
        }
        if (name === 'release') {
          for (const r of held.splice(0)) r();
          return true;
        }
        if (name === 'refuse') throw new AdminProblem('not-found', `worker ${id} refuses`);
        if (name === 'fail' && endpoint.split(',').includes(String(id))) throw new Error(`drain failed in worker ${id}: cannot open ${secret}`);
        return true;
      },
    },
  });
  process.stdout.write(JSON.stringify({ fixture: 'ready', worker: id, url: admin.url }) + '\n');
}
