// Cache hit, 1 KiB body: Gatewise's response cache and nginx proxy_cache side by side, in one
// run (wrk, one thread, 50 connections, rounds interleaved). A short run on a shared machine:
// compare the two columns of one run, not runs of different days.
//   npm run bench:cache -- [seconds=5] [rounds=3]   (after a 1 s warm-up of each, not counted)
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../src/config/load.js';
import { Gateway } from '../src/gateway/server.js';
import { runWrk } from './wrk.js';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'gatewise-cache-bench-'));
// nginx's worker runs as another user when started as root: it must reach its cache directory.
chmodSync(dir, 0o755);
const body = Buffer.alloc(1024, 'x');
let originHits = 0;
const origin = createServer((_req, res) => {
  originHits++;
  res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=3600', 'content-length': String(body.length) });
  res.end(body);
});
await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
const originPort = (origin.address() as { port: number }).port;

const gw = new Gateway(validateConfig({ listeners: [{ address: '127.0.0.1', port: 0 }], clusters: { o: { endpoints: [`http://127.0.0.1:${originPort}`] } }, routes: [{ cluster: 'o', cache: {} }], log: { access: false } }));
const [addr] = await gw.listen();

const nginx = spawnSync('which', ['nginx']).status === 0;
let nginxPort = 0;
let ngx: ReturnType<typeof spawn> | undefined;
if (nginx) {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  nginxPort = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  for (const d of ['cache', 'tmp']) mkdirSync(join(dir, d));
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=c:8m max_size=100m;
  proxy_temp_path ${dir}/tmp; client_body_temp_path ${dir}/tmp; fastcgi_temp_path ${dir}/tmp; uwsgi_temp_path ${dir}/tmp; scgi_temp_path ${dir}/tmp;
  upstream o { server 127.0.0.1:${originPort}; keepalive 16; }
  server { listen 127.0.0.1:${nginxPort}; location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_cache c; } }
}`,
  );
  ngx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'inherit' });
  // Wait until it accepts (bounded), not for a fixed time.
  for (const until = Date.now() + 10_000; ; ) {
    const up = await new Promise<boolean>((r) => {
      const s = connect(nginxPort, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (up) break;
    if (Date.now() > until) throw new Error('nginx did not start listening in 10 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const request = { method: 'GET' as const, path: '/item-1k' };
const rows: Record<string, number[]> = { gatewise: [], nginx: [] };
// Warm-up, not counted: both fill the key, and Gatewise's code is compiled before the first round.
await runWrk({ port: addr!.port, connections: 50, durationS: 1, request, scriptDir: dir });
if (nginx) await runWrk({ port: nginxPort, connections: 50, durationS: 1, request, scriptDir: dir });
for (let i = 0; i < rounds; i++) {
  const g = await runWrk({ port: addr!.port, connections: 50, durationS: seconds, request, scriptDir: dir });
  if (g.errors.status + g.errors.connect + g.errors.read > 0) throw new Error(`Gatewise answered errors: ${JSON.stringify(g.errors)}`);
  rows.gatewise!.push(g.requests / g.durationS);
  if (nginx) {
    const n = await runWrk({ port: nginxPort, connections: 50, durationS: seconds, request, scriptDir: dir });
    if (n.errors.status + n.errors.connect + n.errors.read > 0) throw new Error(`nginx answered errors: ${JSON.stringify(n.errors)}`);
    rows.nginx!.push(n.requests / n.durationS);
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`| cache hit, 1 KiB, wrk -t1 -c50, ${seconds} s × ${rounds} rounds | req/s (median) | rounds |`);
console.log('|---|---|---|');
console.log(`| Gatewise (cache, no access log) | ${Math.round(median(rows.gatewise!))} | ${rows.gatewise!.map(Math.round).join(', ')} |`);
if (nginx) console.log(`| nginx proxy_cache (1 worker) | ${Math.round(median(rows.nginx!))} | ${rows.nginx!.map(Math.round).join(', ')} |`);
console.log(`origin requests: ${originHits} (Gatewise fills a key once, collapsing concurrent misses; nginx without proxy_cache_lock sends each concurrent miss)`);
ngx?.kill();
await gw.close(1000);
origin.close();
process.exit(0);
