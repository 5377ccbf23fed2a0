// `npm run soak:mixed`: one Gatewise process (reverse gateway + forward proxy, `gatewise run -c`)
// under a mixed load for SOAK_SECONDS (default 600), all on loopback:
//
//   reverse      keep-alive GETs through the gateway to a local origin (the legitimate load
//                whose latency is judged)
//   connect      CONNECT tunnels (Basic auth), one GET inside each, then closed
//   socks5       SOCKS5 tunnels (RFC 1929 auth), one GET inside each, then closed
//   udp          SOCKS5 UDP datagrams to a local echo server on one association (renewed each minute)
//   auth-fail    wrong passwords, alternately CONNECT (407) and SOCKS5 (auth failure)
//   slow-head    request heads sent a byte a second (gateway and forward proxy)
//   slow-body    POST bodies sent 10 bytes a second (gateway), given up by the client after 20 s
//   non-reader   GET of 4 MiB never read (gateway), given up by the client after 20 s
//
// Every 10 s: the process's RSS and open fds (/proc/PID), heap used (admin /metrics), and
// reverse-request latency p50/p99 in that window. At the end:
//   memory flat   median RSS of the last minute within ±10 % of the minute after warm-up (60 s)
//   fds           after the load stops, the fd count returns to the pre-load baseline ± 8
//                 within 30 s
//   p99 bounded   reverse p99 over the whole run ≤ SOAK_P99_MS (default 250 ms), and no
//                 10-s window above 4× that
// Writes SOAK_OUT (default docs/soak.md) and exits 1 when a check fails.
//
// Knobs: SOAK_SECONDS, SOAK_RATE (multiplies every rate, default 1), SOAK_P99_MS, SOAK_OUT.
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashPassword } from '../src/tenants/index.js';
import { installCleanupHandlers, startProcess } from './procs.js';
import { freePort, median, percentileSorted, waitForPort } from './util.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const RATE = Number(process.env.SOAK_RATE ?? 1);
const P99_MS = Number(process.env.SOAK_P99_MS ?? 250);
const OUT = process.env.SOAK_OUT ?? path.join(root, 'docs', 'soak.md');
const WARMUP_S = Math.min(60, Math.round(SECONDS * 0.2));
const SAMPLE_S = 10;
const USER = 'soak';
const PASSWORD = 'soak-password';
const SLOW_MAX = 5;
const GIVE_UP_MS = 20_000;

const log = (m: string): void => void process.stdout.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

// --- the local origin (HTTP) and UDP echo --------------------------------------------------
const BIG = Buffer.alloc(4 * 1024 * 1024, 0x62);
const SMALL = Buffer.alloc(1024, 0x61);
const origin = http.createServer((req, res) => {
  req.on('error', () => {});
  res.on('error', () => {});
  if (req.url === '/big') {
    res.writeHead(200, { 'content-length': String(BIG.length) });
    res.end(BIG);
    return;
  }
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-length': String(SMALL.length), 'content-type': 'application/octet-stream' });
    res.end(SMALL);
  });
});
origin.keepAliveTimeout = 10_000;
const echo = createSocket('udp4');
echo.on('message', (m, r) => echo.send(m, r.port, r.address));

// --- counters ----------------------------------------------------------------------------
const counts: Record<string, { ok: number; err: number }> = {};
const count = (k: string, ok: boolean): void => {
  const c = (counts[k] ??= { ok: 0, err: 0 });
  if (ok) c.ok++;
  else c.err++;
};
let windowLat: number[] = [];
const allLat: number[] = [];
let running = true;

/** Run `fn` `perSecond` times a second (paced, never overlapping itself) until the load stops. */
async function paced(perSecond: number, fn: () => Promise<void>, until = Infinity): Promise<void> {
  const gap = 1000 / Math.max(0.01, perSecond * RATE);
  let next = Date.now();
  while (running && Date.now() < until) {
    await fn().catch(() => {});
    next += gap;
    const wait = next - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    else next = Date.now();
  }
}

/** Keep up to `max` instances of a long-lived client going until the load stops. */
async function bounded(max: number, fn: () => Promise<void>, startEveryMs: number): Promise<void> {
  const live = new Set<Promise<void>>();
  while (running) {
    if (live.size < max) {
      const p = fn().catch(() => {});
      live.add(p);
      void p.finally(() => live.delete(p));
    }
    await new Promise((r) => setTimeout(r, startEveryMs));
  }
  await Promise.all(live);
}

function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Read from a socket until `done(buf)` gives a length, the socket ends, or 5 s pass. */
function readUntil(s: net.Socket, done: (b: Buffer) => boolean, ms = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => finish(new Error('timeout')), ms);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (done(buf)) finish();
    };
    const onEnd = (): void => finish(new Error('closed'));
    function finish(err?: Error): void {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', onEnd);
      s.off('error', onEnd);
      if (err) reject(err);
      else resolve(buf);
    }
    s.on('data', onData);
    s.once('close', onEnd);
    s.once('error', onEnd);
  });
}

const httpResponseDone = (b: Buffer): boolean => {
  const end = b.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const m = /content-length:\s*(\d+)/i.exec(b.toString('latin1', 0, end));
  return m ? b.length >= end + 4 + Number(m[1]) : true;
};

function socks5Hello(user: string, password: string): Buffer {
  return Buffer.from([0x05, 0x01, 0x02, 0x01, user.length, ...Buffer.from(user), password.length, ...Buffer.from(password)]);
}

async function main(): Promise<void> {
  installCleanupHandlers();
  origin.listen(0, '127.0.0.1');
  await once(origin, 'listening');
  echo.bind(0, '127.0.0.1');
  await once(echo, 'listening');
  const originPort = (origin.address() as net.AddressInfo).port;
  const echoPort = echo.address().port;
  const [gwPort, fwdPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-soak-'));
  const file = path.join(dir, 'gatewise.yaml');
  const hash = await hashPassword(PASSWORD);
  fs.writeFileSync(
    file,
    [
      'name: soak',
      `listeners: [{ address: 127.0.0.1, port: ${gwPort}, requestHeaderTimeout: 5s }]`,
      `clusters: { origin: { endpoints: ["http://127.0.0.1:${originPort}"] } }`,
      'routes: [{ cluster: origin }]',
      'log: { access: true, file: /dev/null }',
      `admin: { address: 127.0.0.1, port: ${adminPort} }`,
      'forward:',
      `  listeners: [{ address: 127.0.0.1, port: ${fwdPort} }]`,
      `  auth: { users: [{ name: ${USER}, password: "${hash}" }] }`,
      `  rules: { allowPrivate: false, defaultAction: deny, allow: [{ cidrs: [127.0.0.1/32], ports: [${originPort}, ${echoPort}] }], connectPorts: [${originPort}] }`,
      '  timeouts: { handshake: 5s }',
      '',
    ].join('\n'),
  );
  const proc = startProcess('gatewise-soak', process.execPath, [path.join(root, 'bin', 'gatewise.js'), 'run', '-c', file], { cwd: root });
  for (const p of [gwPort, fwdPort, adminPort]) {
    if (!(await waitForPort(p, 15_000, () => !proc.exited))) throw new Error(`gatewise did not listen on ${p}: ${proc.problem() ?? 'no output'}`);
  }
  const pid = proc.pid;
  const rssKb = (): number => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  const fds = (): number => fs.readdirSync(`/proc/${pid}/fd`).length;
  const heapMb = async (): Promise<number> => {
    const text = await new Promise<string>((resolve) => {
      http
        .get({ host: '127.0.0.1', port: adminPort, path: '/metrics', agent: false }, (res) => {
          let t = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (t += d));
          res.on('end', () => resolve(t));
          res.on('error', () => resolve(''));
        })
        .on('error', () => resolve(''));
    });
    const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
    return m ? Number(m[1]) / 1e6 : NaN;
  };
  const baselineFds = fds();
  log(`gatewise pid ${pid}: gateway :${gwPort}, forward :${fwdPort}, admin :${adminPort}; ${SECONDS}s at rate ×${RATE}; baseline ${baselineFds} fds, ${rssKb()} kB RSS`);

  const basic = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const inner = Buffer.from(`GET /small HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n`);

  const reverse = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.get({ host: '127.0.0.1', port: gwPort, path: '/small', agent, headers: { host: 'app.soak' } }, (res) => {
        res.resume();
        res.on('end', () => {
          const ms = performance.now() - t0;
          windowLat.push(ms);
          allLat.push(ms);
          count('reverse', res.statusCode === 200);
          resolve();
        });
        res.on('error', () => (count('reverse', false), resolve()));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', () => (count('reverse', false), resolve()));
    });

  const connectTunnel = async (): Promise<void> => {
    const s = await connectTcp(fwdPort);
    try {
      s.write(`CONNECT 127.0.0.1:${originPort} HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\nProxy-Authorization: ${basic}\r\n\r\n`);
      const head = await readUntil(s, (b) => b.includes('\r\n\r\n'));
      if (!head.toString('latin1').startsWith('HTTP/1.1 200')) throw new Error('refused');
      s.write(inner);
      await readUntil(s, httpResponseDone);
      count('connect', true);
    } catch {
      count('connect', false);
    } finally {
      s.destroy();
    }
  };

  const socksTunnel = async (): Promise<void> => {
    const s = await connectTcp(fwdPort);
    try {
      s.write(Buffer.concat([socks5Hello(USER, PASSWORD), Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, originPort >> 8, originPort & 0xff])]));
      const r = await readUntil(s, (b) => b.length >= 14);
      if (r[0] !== 0x05 || r[1] !== 0x02 || r[3] !== 0x00 || r[5] !== 0x00) throw new Error('refused');
      s.write(inner);
      await readUntil(s, (b) => httpResponseDone(b.length >= 14 ? b.subarray(14) : Buffer.alloc(0)));
      count('socks5', true);
    } catch {
      count('socks5', false);
    } finally {
      s.destroy();
    }
  };

  const authFailure = async (n: number): Promise<void> => {
    const s = await connectTcp(fwdPort);
    const wrong = `wrong-${n % 50}`;
    try {
      if (n % 2 === 0) {
        s.write(`CONNECT 127.0.0.1:${originPort} HTTP/1.1\r\nProxy-Authorization: Basic ${Buffer.from(`${USER}:${wrong}`).toString('base64')}\r\n\r\n`);
        const r = await readUntil(s, (b) => b.includes('\r\n\r\n'));
        count('auth-fail', /^HTTP\/1\.1 (407|429|503) /.test(r.toString('latin1')));
      } else {
        s.write(socks5Hello(USER, wrong));
        const r = await readUntil(s, (b) => b.length >= 4);
        count('auth-fail', r[2] === 0x01 && r[3] !== 0x00);
      }
    } catch {
      count('auth-fail', false);
    } finally {
      s.destroy();
    }
  };

  const udp = async (): Promise<void> => {
    // One association for a minute: 20 datagrams a second, echoes counted.
    const control = await connectTcp(fwdPort);
    const client = createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    const cp = client.address().port;
    try {
      control.write(Buffer.concat([socks5Hello(USER, PASSWORD), Buffer.from([0x05, 0x03, 0x00, 0x01, 127, 0, 0, 1, cp >> 8, cp & 0xff])]));
      const r = await readUntil(control, (b) => b.length >= 14);
      if (r[3] !== 0x00 || r[5] !== 0x00) throw new Error('refused');
      const relayPort = r.readUInt16BE(12);
      client.on('message', () => count('udp-echo', true));
      const dgram = Buffer.from([0x00, 0x00, 0x00, 0x01, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff, ...Buffer.from('soak datagram')]);
      await paced(
        20,
        async () => {
          client.send(dgram, relayPort, '127.0.0.1');
          count('udp-sent', true);
        },
        Date.now() + 60_000,
      );
    } catch {
      count('udp-assoc', false);
    } finally {
      control.destroy();
      client.close();
    }
  };
  const udpLoop = async (): Promise<void> => {
    while (running) await udp();
  };

  const slowHead = async (port: number): Promise<void> => {
    const s = await connectTcp(port);
    s.on('error', () => {});
    s.on('data', () => {});
    const closed = once(s, 'close');
    s.write('GET http://127.0.0.1/ HTTP/1.1\r\nHost: slow\r\nX-Slow: ');
    const t = setInterval(() => s.write('a'), 1000);
    let gaveUp = false;
    const giveUp = setTimeout(() => ((gaveUp = true), s.destroy()), GIVE_UP_MS);
    await closed;
    clearInterval(t);
    clearTimeout(giveUp);
    // ok: the proxy closed it (408 or a silent close); err: still open when the client gave up.
    count('slow-head', !gaveUp);
  };

  const slowBody = async (): Promise<void> => {
    const s = await connectTcp(gwPort);
    s.on('error', () => {});
    s.on('data', () => {});
    const closed = once(s, 'close');
    s.write('POST /upload HTTP/1.1\r\nHost: app.soak\r\nContent-Length: 100000\r\n\r\n');
    const t = setInterval(() => s.write('0123456789'), 1000);
    const giveUp = setTimeout(() => s.destroy(), GIVE_UP_MS);
    await closed;
    clearInterval(t);
    clearTimeout(giveUp);
    count('slow-body', true);
  };

  const nonReader = async (): Promise<void> => {
    const s = await connectTcp(gwPort);
    s.on('error', () => {});
    s.pause(); // never read: the gateway's writes back up
    const closed = once(s, 'close');
    s.write('GET /big HTTP/1.1\r\nHost: app.soak\r\n\r\n');
    const giveUp = setTimeout(() => s.destroy(), GIVE_UP_MS);
    await closed;
    clearTimeout(giveUp);
    count('non-reader', true);
  };

  // --- sampling -----------------------------------------------------------------------------
  interface Sample {
    t: number;
    rssMb: number;
    heapMb: number;
    fds: number;
    p50: number;
    p99: number;
    n: number;
  }
  const samples: Sample[] = [];
  const t0 = Date.now();
  const sampler = setInterval(() => {
    const lat = windowLat.sort((a, b) => a - b);
    windowLat = [];
    void heapMb().then((h) => {
      const s = { t: Math.round((Date.now() - t0) / 1000), rssMb: rssKb() / 1024, heapMb: h, fds: fds(), p50: lat.length ? percentileSorted(lat, 50) : NaN, p99: lat.length ? percentileSorted(lat, 99) : NaN, n: lat.length };
      samples.push(s);
      log(`t=${s.t}s rss ${s.rssMb.toFixed(1)} MB heap ${s.heapMb.toFixed(1)} MB fds ${s.fds} reverse p50 ${s.p50.toFixed(2)} ms p99 ${s.p99.toFixed(2)} ms (${s.n})`);
    });
  }, SAMPLE_S * 1000);

  let authN = 0;
  const stopAt = setTimeout(() => (running = false), SECONDS * 1000);
  const loads = [
    ...Array.from({ length: 4 }, () => paced(25, reverse)),
    paced(5, connectTunnel),
    paced(5, connectTunnel),
    paced(5, socksTunnel),
    paced(5, socksTunnel),
    paced(1, () => authFailure(authN++)),
    udpLoop(),
    bounded(SLOW_MAX, () => slowHead(gwPort), 1000),
    bounded(SLOW_MAX, () => slowHead(fwdPort), 1000),
    bounded(SLOW_MAX, slowBody, 1000),
    bounded(SLOW_MAX, nonReader, 1000),
  ];
  // Bounded: the load ends at SECONDS; anything still running is cut 30 s later.
  await Promise.race([Promise.all(loads), new Promise((r) => setTimeout(r, (SECONDS + 30) * 1000))]);
  clearTimeout(stopAt);
  running = false;
  clearInterval(sampler);
  agent.destroy();
  const loadEnd = Date.now();
  log('load stopped; waiting for fds to return to the baseline');
  let afterFds = fds();
  const fdDeadline = Date.now() + 30_000;
  while (Math.abs(afterFds - baselineFds) > 8 && Date.now() < fdDeadline) {
    await new Promise((r) => setTimeout(r, 1000)); // polling a /proc count: there is no event for it
    afterFds = fds();
  }
  const fdSettleS = (Date.now() - loadEnd) / 1000;
  const finalRss = rssKb() / 1024;
  const exitedEarly = proc.exited;
  await proc.stop();
  origin.close();
  echo.close();

  // --- verdicts -------------------------------------------------------------------------------
  const rssIn = (from: number, to: number): number[] => samples.filter((s) => s.t > from && s.t <= to).map((s) => s.rssMb);
  const firstMin = rssIn(WARMUP_S, WARMUP_S + 60);
  const lastMin = rssIn(SECONDS - 60, SECONDS + 30);
  const mFirst = median(firstMin);
  const mLast = median(lastMin);
  const flat = firstMin.length > 0 && lastMin.length > 0 && Math.abs(mLast / mFirst - 1) <= 0.1;
  const sorted = allLat.sort((a, b) => a - b);
  const p50 = percentileSorted(sorted, 50);
  const p99 = percentileSorted(sorted, 99);
  const worstWindow = Math.max(...samples.map((s) => (Number.isFinite(s.p99) ? s.p99 : 0)));
  const p99ok = p99 <= P99_MS && worstWindow <= 4 * P99_MS;
  const fdOk = Math.abs(afterFds - baselineFds) <= 8;
  const ok = flat && fdOk && p99ok && !exitedEarly;
  const verdict = (b: boolean): string => (b ? 'pass' : '**FAIL**');

  const countRows = Object.entries(counts)
    .sort()
    .map(([k, c]) => `| ${k} | ${c.ok} | ${c.err} |`);
  const md = [
    '# Soak under mixed load',
    '',
    'Written by `npm run soak:mixed` (`bench/soak-mixed.ts`); the figures below are from its last run.',
    '',
    '```',
    `SOAK_SECONDS=${SECONDS} SOAK_RATE=${RATE} SOAK_P99_MS=${P99_MS} npm run soak:mixed`,
    '```',
    '',
    `One Gatewise process (\`gatewise run -c FILE\`: reverse gateway, forward proxy with one scrypt user, admin listener, access log to /dev/null) on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), shared with other work; Node ${process.version}; run ${new Date(t0).toISOString()}.`,
    'The load generator, the origin (HTTP, 1 KiB answers; 4 MiB for /big) and the UDP echo server run in the script\'s process, all on 127.0.0.1.',
    '',
    '| load | rate or bound |',
    '|---|---|',
    `| reverse GET /small (keep-alive, 8 sockets) | ${100 * RATE}/s — the latency judged below |`,
    `| CONNECT tunnel + one GET inside | ${10 * RATE}/s |`,
    `| SOCKS5 tunnel + one GET inside | ${10 * RATE}/s |`,
    `| SOCKS5 UDP datagrams to an echo server | ${20 * RATE}/s on one association, renewed each minute |`,
    `| wrong passwords (CONNECT 407, SOCKS5 auth failure) | ${1 * RATE}/s, 50 distinct wrong passwords |`,
    `| slow request heads (1 byte/s), gateway and forward proxy | ${SLOW_MAX} at a time each |`,
    `| slow request bodies (10 bytes/s), gateway | ${SLOW_MAX} at a time, given up after ${GIVE_UP_MS / 1000} s |`,
    `| clients that never read a 4 MiB response, gateway | ${SLOW_MAX} at a time, given up after ${GIVE_UP_MS / 1000} s |`,
    '',
    '## Verdicts',
    '',
    '| check | definition | figures | verdict |',
    '|---|---|---|---|',
    `| memory flat | median RSS of the last minute within ±10 % of the minute after the ${WARMUP_S}-s warm-up | ${mFirst.toFixed(1)} MB → ${mLast.toFixed(1)} MB (${((mLast / mFirst - 1) * 100).toFixed(1)} %) | ${verdict(flat)} |`,
    `| no fd growth | fds back to the pre-load baseline ± 8 within 30 s of the load stopping | baseline ${baselineFds}, after ${afterFds} (${fdSettleS.toFixed(0)} s) | ${verdict(fdOk)} |`,
    `| legitimate p99 bounded | reverse p99 over the run ≤ ${P99_MS} ms and no 10-s window above ${4 * P99_MS} ms | p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, worst window p99 ${worstWindow.toFixed(2)} ms (${sorted.length} requests) | ${verdict(p99ok)} |`,
    `| process alive | Gatewise did not exit during the run | ${exitedEarly ? `exited (${proc.exitCode ?? proc.exitSignal})` : 'alive'}; RSS at the end ${finalRss.toFixed(1)} MB | ${verdict(!exitedEarly)} |`,
    '',
    '## Outcomes by kind',
    '',
    '`err` for slow-head: a slow head still open when the client gave up after 20 s (the proxy did not close it). For slow-body and non-reader the client gives up by design after 20 s, before the limits of the gateway would cut it (clientBodyTimeout 30 s then 500 B/s, sendTimeout 60 s, both tested in test/gateway/slow-clients.test.ts); they are counted when their connection closed.',
    '',
    '| kind | ok | err |',
    '|---|---|---|',
    ...countRows,
    '',
    '## Every 10 s',
    '',
    '| t (s) | RSS (MB) | heap used (MB) | open fds | reverse p50 (ms) | reverse p99 (ms) | requests |',
    '|---|---|---|---|---|---|---|',
    ...samples.map((s) => `| ${s.t} | ${s.rssMb.toFixed(1)} | ${s.heapMb.toFixed(1)} | ${s.fds} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.n} |`),
    '',
  ].join('\n');
  fs.writeFileSync(OUT, md);
  fs.rmSync(dir, { recursive: true, force: true });
  log(`memory flat ${verdict(flat)}, fds ${verdict(fdOk)}, p99 ${verdict(p99ok)}; written ${OUT}`);
  process.exit(ok ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`soak failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(2);
});
