// A small, bounded load generator for tunnels through a forward proxy:
// HTTP CONNECT or SOCKS5 CONNECT (optionally with a user and password: Basic
// Proxy-Authorization, RFC 1929), spoken by hand.
//
//   per-tunnel: N workers each open a tunnel, send one GET through it, read
//               the response, close; repeat until the deadline. Counts tunnels/s.
//   in-tunnel:  N long-lived tunnels, each sending keep-alive GETs back to
//               back until the deadline. Counts requests/s.
//
// Run as its own process (so it can be pinned to a CPU):
//   node dist/bench/tunnel-load.js '{"proxyPort":..,"protocol":"connect",...}'
// It prints one line "TUNNELJSON {...}" and always exits within duration + 15 s.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { trackChild } from './procs.js';
import { percentileSorted } from './util.js';

export interface TunnelLoadOptions {
  /** The proxy; for protocol "direct", the origin itself (a baseline without proxy). */
  proxyPort: number;
  protocol: 'connect' | 'socks5' | 'direct';
  mode: 'per-tunnel' | 'in-tunnel';
  /** Origin that the tunnels lead to (127.0.0.1). */
  targetPort: number;
  /** Path requested inside the tunnel. */
  path: string;
  concurrency: number;
  durationS: number;
  /** Credentials for the proxy: Basic Proxy-Authorization on CONNECT, RFC 1929 on SOCKS5. */
  auth?: ProxyCredentials;
}

export interface ProxyCredentials {
  user: string;
  password: string;
}

/** The Basic Proxy-Authorization value for these credentials. */
export function basicAuthorization(c: ProxyCredentials): string {
  return `Basic ${Buffer.from(`${c.user}:${c.password}`).toString('base64')}`;
}

export interface TunnelLoadResult {
  /** Completed tunnels (per-tunnel) or requests (in-tunnel). */
  ok: number;
  errors: number;
  durationS: number;
  /** Latency of one tunnel (open + request + response) or one request, in microseconds. */
  latencyUs: { p50: number; p99: number; max: number };
  firstError?: string;
}

// TUNNEL_OP_TIMEOUT_MS: longer for a proxy under callgrind on a busy machine (bench/tunnel-icount.ts).
const OP_TIMEOUT_MS = Number(process.env.TUNNEL_OP_TIMEOUT_MS ?? 5000);

/** Buffers a socket's bytes and hands out delimited or fixed-size pieces. */
class Reader {
  #buf: Buffer = Buffer.alloc(0);
  #waiter: (() => void) | undefined;
  #error: Error | undefined;

  constructor(readonly sock: net.Socket) {
    sock.on('data', (chunk: Buffer) => {
      this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
      this.#wake();
    });
    const fail = (err: Error): void => {
      this.#error ??= err;
      this.#wake();
    };
    sock.on('error', fail);
    sock.on('end', () => fail(new Error('connection closed by peer')));
    sock.on('close', () => fail(new Error('connection closed')));
    sock.setTimeout(OP_TIMEOUT_MS, () => {
      fail(new Error('timeout'));
      sock.destroy();
    });
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  async #until(ready: () => number): Promise<Buffer> {
    for (;;) {
      const n = ready();
      if (n >= 0) {
        const piece = this.#buf.subarray(0, n);
        this.#buf = this.#buf.subarray(n);
        return piece;
      }
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }

  /** Bytes up to and including the delimiter. */
  readUntil(delim: string): Promise<Buffer> {
    return this.#until(() => {
      const i = this.#buf.indexOf(delim);
      return i < 0 ? -1 : i + delim.length;
    });
  }

  readExactly(n: number): Promise<Buffer> {
    return this.#until(() => (this.#buf.length >= n ? n : -1));
  }
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const onTimeout = (): void => {
      sock.destroy(new Error('connect timeout'));
    };
    sock.once('connect', () => {
      sock.removeListener('error', reject);
      sock.removeListener('timeout', onTimeout);
      resolve(sock);
    });
    sock.once('error', reject);
    sock.setTimeout(OP_TIMEOUT_MS, onTimeout);
  });
}

async function handshakeConnect(sock: net.Socket, rd: Reader, port: number, auth: ProxyCredentials | undefined): Promise<void> {
  const credentials = auth ? `Proxy-Authorization: ${basicAuthorization(auth)}\r\n` : '';
  sock.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${credentials}\r\n`);
  const head = (await rd.readUntil('\r\n\r\n')).toString('latin1');
  if (!/^HTTP\/1\.[01] 200/.test(head)) throw new Error(`CONNECT refused: ${head.split('\r\n')[0]}`);
}

async function handshakeSocks5(sock: net.Socket, rd: Reader, port: number, auth: ProxyCredentials | undefined): Promise<void> {
  // Version 5, one method: no authentication (0) or user/password (2, RFC 1929).
  const method = auth ? 2 : 0;
  sock.write(Buffer.from([5, 1, method]));
  const choice = await rd.readExactly(2);
  if (choice[0] !== 5 || choice[1] !== method) throw new Error(`SOCKS5 method refused: ${choice.toString('hex')}`);
  if (auth) {
    const u = Buffer.from(auth.user);
    const pw = Buffer.from(auth.password);
    sock.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([pw.length]), pw]));
    const status = await rd.readExactly(2);
    if (status[1] !== 0) throw new Error(`SOCKS5 authentication failed: ${status.toString('hex')}`);
  }
  sock.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff])); // CONNECT 127.0.0.1:port
  const head = await rd.readExactly(4);
  if (head[0] !== 5 || head[1] !== 0) throw new Error(`SOCKS5 CONNECT failed: reply ${head[1]}`);
  const addrLen = head[3] === 1 ? 4 : head[3] === 4 ? 16 : (await rd.readExactly(1))[0]!;
  await rd.readExactly(addrLen + 2);
}

/** One HTTP/1.1 GET over an established tunnel; reads the whole response. */
async function request(sock: net.Socket, rd: Reader, opts: TunnelLoadOptions, close: boolean): Promise<void> {
  sock.write(`GET ${opts.path} HTTP/1.1\r\nHost: 127.0.0.1:${opts.targetPort}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
  const head = (await rd.readUntil('\r\n\r\n')).toString('latin1');
  if (!/^HTTP\/1\.[01] 200/.test(head)) throw new Error(`origin answered: ${head.split('\r\n')[0]}`);
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (!m) throw new Error('origin response without Content-Length');
  await rd.readExactly(Number(m[1]));
}

async function openTunnel(opts: TunnelLoadOptions): Promise<{ sock: net.Socket; rd: Reader }> {
  const sock = await connect(opts.proxyPort);
  const rd = new Reader(sock);
  try {
    if (opts.protocol === 'connect') await handshakeConnect(sock, rd, opts.targetPort, opts.auth);
    else if (opts.protocol === 'socks5') await handshakeSocks5(sock, rd, opts.targetPort, opts.auth);
  } catch (err) {
    sock.destroy();
    throw err;
  }
  return { sock, rd };
}

/** Open one tunnel and send one request through it; throws on any failure. */
export async function probeTunnel(opts: TunnelLoadOptions): Promise<void> {
  const t = await openTunnel(opts);
  try {
    await request(t.sock, t.rd, opts, true);
  } finally {
    t.sock.destroy();
  }
}

export async function runTunnelLoad(opts: TunnelLoadOptions): Promise<TunnelLoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const noteError = (err: unknown): void => {
    errors++;
    firstError ??= err instanceof Error ? err.message : String(err);
  };
  const t0 = performance.now();
  const deadline = t0 + opts.durationS * 1000;

  const perTunnelWorker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const start = performance.now();
      let sock: net.Socket | undefined;
      try {
        const t = await openTunnel(opts);
        sock = t.sock;
        await request(t.sock, t.rd, opts, true);
        latencies.push((performance.now() - start) * 1000);
      } catch (err) {
        noteError(err);
        if (errors > 1000 && latencies.length === 0) return; // nothing works: stop early
      } finally {
        sock?.destroy();
      }
    }
  };

  const inTunnelWorker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      let t: { sock: net.Socket; rd: Reader } | undefined;
      try {
        t = await openTunnel(opts);
        while (performance.now() < deadline) {
          const start = performance.now();
          await request(t.sock, t.rd, opts, false);
          latencies.push((performance.now() - start) * 1000);
        }
      } catch (err) {
        noteError(err);
        if (errors > 1000 && latencies.length === 0) return;
      } finally {
        t?.sock.destroy();
      }
    }
  };

  const worker = opts.mode === 'per-tunnel' ? perTunnelWorker : inTunnelWorker;
  await Promise.all(Array.from({ length: opts.concurrency }, () => worker()));
  const durationS = (performance.now() - t0) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    ok: latencies.length,
    errors,
    durationS,
    latencyUs: {
      p50: percentileSorted(sorted, 50),
      p99: percentileSorted(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    },
    ...(firstError !== undefined ? { firstError } : {}),
  };
}

/** Run the generator in its own (optionally CPU-pinned) process. */
export function runTunnelLoadProcess(opts: TunnelLoadOptions, cpus?: string): Promise<TunnelLoadResult> {
  const script = fileURLToPath(import.meta.url);
  const args = [script, JSON.stringify(opts)];
  const [file, argv] = cpus !== undefined ? ['taskset', ['-c', cpus, process.execPath, ...args]] : [process.execPath, args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), (opts.durationS + 20) * 1000);
    child.on('error', (e) => {
      clearTimeout(killer);
      reject(e);
    });
    child.on('close', (code) => { // 'close': all of stdout read (see wrk.ts)
      clearTimeout(killer);
      const line = out.split('\n').find((l) => l.startsWith('TUNNELJSON '));
      if (!line) reject(new Error(`tunnel load generator exited ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      else resolve(JSON.parse(line.slice(11)) as TunnelLoadResult);
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const opts = JSON.parse(process.argv[2] ?? '{}') as TunnelLoadOptions;
  // Hard bound: whatever happens, this process ends.
  setTimeout(() => {
    process.stderr.write('tunnel-load: hard deadline reached\n');
    process.exit(2);
  }, (opts.durationS + 15) * 1000).unref();
  runTunnelLoad(opts).then(
    (r) => {
      process.stdout.write(`TUNNELJSON ${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (e: unknown) => {
      process.stderr.write(`tunnel-load: ${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
