// `node dist/bench/redis-trips.js`: Redis commands per CONNECT tunnel of the Redis-backed
// forward service (issue 19), a figure a busy machine cannot blur: a redis-server of its
// own, the service config of the `gatewise-fwd-service-redis` contender (one user on a plan
// with maxConnections, requestsPerSecond and byte quotas the load never reaches), a bounded
// CONNECT-per-tunnel load (REDIS_TRIPS_SECONDS, default 3; 50 at once), and Redis's
// `INFO commandstats` before and after. Once with credit blocks off (`state.credit.max: 0`,
// one admission script per tunnel) and once with the defaults. Loopback only.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { hashPassword } from '../src/tenants/index.js';
import { installCleanupHandlers, startProcess, stopAll } from './procs.js';
import { runTunnelLoadProcess } from './tunnel-load.js';
import { envNumber, freePort, log, waitForPort } from './util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SECONDS = envNumber('REDIS_TRIPS_SECONDS', 3);
const USER = { user: 'bench', password: 'bench-password' };

async function commandCalls(r: Redis): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await r.info('commandstats')).matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

async function run(origin: number, redisUrl: string, creditMax: number | undefined, dir: string): Promise<{ tunnels: number; errors: number; calls: Map<string, number> }> {
  const port = await freePort();
  const file = path.join(dir, `gatewise-${creditMax ?? 'default'}.yaml`);
  fs.writeFileSync(
    file,
    [
      'forward:',
      '  name: bench',
      `  listeners: [{ address: 127.0.0.1, port: ${port} }]`,
      '  auth:',
      `    users: [{ name: ${USER.user}, password: "${await hashPassword(USER.password)}", plan: service }]`,
      '  rules: { allowPrivate: true, connectPorts: ["1-65535"] }',
      '  plans:',
      '    service: { maxConnections: 100000, requestsPerSecond: 1000000, bytesPerDay: { up: 1TB, down: 1TB }, bytesPerMonth: { up: 10TB, down: 10TB } }',
      '  state:',
      `    redis: { url: "${redisUrl}", keyPrefix: "trips${creditMax ?? 'd'}:" }`,
      ...(creditMax !== undefined ? [`    credit: { max: ${creditMax} }`] : []),
      '',
    ].join('\n'),
  );
  const proc = startProcess('gatewise', process.execPath, [path.join(ROOT, 'bin', 'gatewise.js'), 'run', '-c', file]);
  if (!(await waitForPort(port, 15_000, () => !proc.exited))) throw new Error('gatewise did not start');
  const r = new Redis(redisUrl);
  try {
    const before = await commandCalls(r);
    const load = await runTunnelLoadProcess({ proxyPort: port, protocol: 'connect', mode: 'per-tunnel', targetPort: origin, path: '/1k', concurrency: 50, durationS: SECONDS, auth: USER });
    // The last release batch (20 ms) and the usage ledger's write (1 s) belong to this run.
    await new Promise((res) => setTimeout(res, 1500));
    const after = await commandCalls(r);
    const calls = new Map<string, number>();
    for (const [k, v] of after) if (v - (before.get(k) ?? 0) > 0 && k !== 'info') calls.set(k, v - (before.get(k) ?? 0));
    return { tunnels: load.ok, errors: load.errors, calls };
  } finally {
    r.disconnect();
    await proc.stop();
  }
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const bin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((f) => fs.existsSync(f));
  if (!bin) throw new Error('redis-server is not installed');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-trips-'));
  const body = Buffer.alloc(1024, 'x');
  const origin = http.createServer((_q, s) => s.end(body)).listen(0, '127.0.0.1');
  await new Promise((r) => origin.once('listening', r));
  const originPort = (origin.address() as { port: number }).port;
  const redisPort = await freePort();
  const redis = startProcess('redis', bin, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  try {
    if (!(await waitForPort(redisPort, 10_000, () => !redis.exited))) throw new Error('redis-server did not start');
    for (const credit of [0, undefined]) {
      const r = await run(originPort, `redis://127.0.0.1:${redisPort}`, credit, dir);
      const total = [...r.calls.values()].reduce((a, b) => a + b, 0);
      const per = (n: number): string => (n / Math.max(1, r.tunnels)).toFixed(3);
      log(`credit ${credit === 0 ? 'off (max 0)' : 'default'}: ${r.tunnels} tunnels (${r.errors} errors), ${total} Redis commands, ${per(total)} per tunnel: ${[...r.calls].map(([k, v]) => `${k} ${v} (${per(v)})`).join(', ')}`);
    }
  } finally {
    origin.close();
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
