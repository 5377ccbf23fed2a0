// TLS and HTTP/2 at the front, 1 KiB: Gatewise beside nginx in one run, rounds interleaved
// (issue 22's benchmark rows). Three loads against each, on loopback only:
//  - TLS keep-alive: h2load --h1, 50 connections, each reused;
//  - TLS new connection per request: wrk with `Connection: close` (a full handshake each time);
//  - HTTP/2: h2load, 10 connections × 10 streams (ALPN h2).
// Both proxies answer from the same origin (node:http, 1 KiB) with a certificate made for
// the run (P-256). A short run on a shared machine: compare the columns of one run.
//   npm run bench:tls  [seconds=5] [rounds=3]
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../src/config/load.js';
import { Gateway } from '../src/gateway/server.js';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
for (const bin of ['h2load', 'wrk', 'openssl']) {
  if (spawnSync('which', [bin]).status !== 0) {
    console.error(`bench:tls needs ${bin} (apt-get install nghttp2-client wrk openssl)`);
    process.exit(2);
  }
}
const dir = mkdtempSync(join(tmpdir(), 'gatewise-tls-bench-'));
chmodSync(dir, 0o755); // nginx's worker runs as another user and reads the key
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test,IP:127.0.0.1'], { stdio: 'ignore' });
chmodSync(join(dir, 'key.pem'), 0o644);

const body = Buffer.alloc(1024, 'x');
const origin = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
  res.end(body);
});
await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
const originPort = (origin.address() as { port: number }).port;

const gw = new Gateway(
  validateConfig({
    listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }], ocspStapling: false }, http2: {} }],
    clusters: { o: { endpoints: [`http://127.0.0.1:${originPort}`] } },
    routes: [{ cluster: 'o' }],
    log: { access: false },
  }),
);
const [addr] = await gw.listen();

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
  const p = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  return p;
}
const nginxPort = await freePort();
// nginx 1.22 (Debian bookworm): `http2` on the listen line.
writeFileSync(
  join(dir, 'nginx.conf'),
  `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  upstream o { server 127.0.0.1:${originPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${nginxPort} ssl http2;
    ssl_certificate ${dir}/cert.pem; ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}`,
);
const ngx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: 'inherit' });
// Ready when its port accepts (bounded).
for (const end = Date.now() + 5000; ; ) {
  const ok = await new Promise<boolean>((r) => {
    const s = connect(nginxPort, '127.0.0.1');
    s.once('connect', () => (s.destroy(), r(true)));
    s.once('error', () => r(false));
  });
  if (ok) break;
  if (Date.now() > end) throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
  await new Promise((r) => setTimeout(r, 50));
}

// The load tools run asynchronously: Gatewise serves from this process's event loop.
const run = promisify(execFile);

/** h2load's req/s and its failed count. */
async function h2load(args: string[]): Promise<{ rps: number; failed: number }> {
  const { stdout: out } = await run('h2load', args, { encoding: 'utf8', maxBuffer: 1 << 24, timeout: (seconds + 30) * 1000 });
  const done = /finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(out);
  const reqs = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (!done || !reqs) throw new Error(`h2load output not understood:\n${out}`);
  return { rps: Number(done[1]), failed: Number(reqs[2]) + Number(reqs[3]) };
}

/** wrk with Connection: close: a new TLS connection per request. */
async function wrkClose(port: number): Promise<{ rps: number; errors: number }> {
  const { stdout: out } = await run('wrk', ['-t1', '-c20', `-d${seconds}s`, '-H', 'Connection: close', `https://127.0.0.1:${port}/`], { encoding: 'utf8', timeout: (seconds + 30) * 1000 });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const errs = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (!rps) throw new Error(`wrk output not understood:\n${out}`);
  return { rps: Number(rps[1]), errors: (errs ? Number(errs[1]) + Number(errs[3]) + Number(errs[4]) : 0) + (non2xx ? Number(non2xx[1]) : 0) };
}

const loads: Array<{ name: string; run(port: number): Promise<number> }> = [
  { name: 'TLS keep-alive (HTTP/1.1, h2load --h1 -c50)', run: async (p) => check(await h2load(['--h1', '-c50', '-t1', `-D${seconds}`, `https://127.0.0.1:${p}/`])) },
  { name: 'TLS new connection per request (wrk -c20, Connection: close)', run: async (p) => checkWrk(await wrkClose(p)) },
  { name: 'HTTP/2 (h2load -c10 -m10)', run: async (p) => check(await h2load(['-c10', '-m10', '-t1', `-D${seconds}`, `https://127.0.0.1:${p}/`])) },
];
function check(r: { rps: number; failed: number }): number {
  if (r.failed > 0) throw new Error(`${r.failed} requests failed`);
  return r.rps;
}
function checkWrk(r: { rps: number; errors: number }): number {
  // A few connect errors at the end of a run are wrk closing; more is a fault.
  if (r.errors > r.rps * seconds * 0.01) throw new Error(`${r.errors} errors`);
  return r.rps;
}

const rows = loads.map(() => ({ gatewise: [] as number[], nginx: [] as number[] }));
for (let i = 0; i < rounds; i++) {
  for (const [j, l] of loads.entries()) {
    rows[j]!.gatewise.push(await l.run(addr!.port));
    rows[j]!.nginx.push(await l.run(nginxPort));
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const span = (xs: number[]): string => `${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))}`;
console.log(`| load (1 KiB, ${seconds} s × ${rounds} rounds, interleaved) | Gatewise req/s (min–max, median) | nginx req/s (min–max, median) | Gatewise / nginx (median) |`);
console.log('|---|---|---|---|');
loads.forEach((l, j) => {
  const g = rows[j]!.gatewise;
  const n = rows[j]!.nginx;
  console.log(`| ${l.name} | ${span(g)} (${Math.round(median(g))}) | ${span(n)} (${Math.round(median(n))}) | ${(median(g) / median(n)).toFixed(2)}× |`);
});
ngx.kill();
await gw.close(1000);
origin.close();
process.exit(0);
