import { spawn } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, connect, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createLogger } from '../../src/observe/access-log.js';
import type { ForwardConfigInput } from '../../src/config/forward.js';
import type { LookupFunction, Resolver } from '../../src/egress/index.js';
import { startForwardProxy, type ForwardHooks, type ForwardProxy } from '../../src/forward/index.js';
import { hashPassword, type AuthProvider } from '../../src/tenants/index.js';
import { GUARD_MS } from '../helpers/time-bounds.js';

export const USER = 'alice';
export const PASSWORD = 'secret';
export const USER2 = 'bob';
export const PASSWORD2 = 'hunter2';

let hashes: Promise<[string, string]> | undefined;
export function userHashes(): Promise<[string, string]> {
  return (hashes ??= Promise.all([hashPassword(PASSWORD), hashPassword(PASSWORD2)]));
}

let quickHashes: Promise<[string, string]> | undefined;
/**
 * The test users with hashes whose check is cheap (scrypt N=16, r=1): for a test whose short
 * handshake time is about something else than the password check. The handshake time holds
 * the proxy's own check (docs/security.md), and `gatewise passwd`'s cost takes a loaded machine
 * ~50–300 ms, which a 150 ms handshake time would refuse 408.
 */
export async function quickCheckUsers(): Promise<Array<{ name: string; password: string }>> {
  const [h1, h2] = await (quickHashes ??= Promise.all([hashPassword(PASSWORD, { N: 16, r: 1, p: 1 }), hashPassword(PASSWORD2, { N: 16, r: 1, p: 1 })]));
  return [
    { name: USER, password: h1 },
    { name: USER2, password: h2 },
  ];
}

/** Environment for child clients: no proxy variables leaking in from the machine. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/_proxy$/i.test(k)) env[k] = v;
  env.NO_PROXY = '';
  env.no_proxy = '';
  return env;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a program with a hard time limit. */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {}); // the program may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Who waits for a new line of each memory logger's array (see `linesUntil`). */
const lineWaiters = new WeakMap<Array<Record<string, unknown>>, Set<() => void>>();

/** A logger whose JSON lines land in an array; `linesUntil` waits on that array's new lines. */
export function memoryLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  lineWaiters.set(lines, waiters);
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      for (const w of [...waiters]) w();
      cb();
    },
  });
  return { logger: createLogger({ destination: sink }), lines };
}

/**
 * Waits until `cond()` holds, checking it now and each time a line lands in `lines` (an
 * array from `memoryLogger`): the event a test synchronises on for "this was logged",
 * instead of polling. False once `guardMs` passed without it (a failure guard, long enough
 * for a loaded machine; never what the test waits for when things work).
 */
export function linesUntil(lines: Array<Record<string, unknown>>, cond: () => boolean, guardMs = GUARD_MS): Promise<boolean> {
  const waiters = lineWaiters.get(lines);
  if (waiters === undefined) throw new Error('linesUntil: not the lines of a memoryLogger');
  if (cond()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const check = (): void => {
      if (!cond()) return;
      done();
      resolve(true);
    };
    const timer = setTimeout(() => {
      done();
      resolve(cond());
    }, guardMs);
    const done = (): void => {
      clearTimeout(timer);
      waiters.delete(check);
    };
    waiters.add(check);
  });
}

/** The first access line that satisfies `pred`, waited for on the log's own lines (bounded by a failure guard). */
export async function accessLine(lines: Array<Record<string, unknown>>, pred: (l: Record<string, unknown>) => boolean, what = 'an access log line', guardMs = GUARD_MS): Promise<Record<string, unknown>> {
  const find = (): Record<string, unknown> | undefined => accessLines(lines).find(pred);
  if (!(await linesUntil(lines, () => find() !== undefined, guardMs))) {
    throw new Error(`${what}: not logged within ${guardMs} ms; access lines: ${JSON.stringify(accessLines(lines)).slice(0, 2000)}`);
  }
  return find()!;
}

export function accessLines(lines: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  return lines.filter((l) => l.type === 'access');
}

export interface TestProxy {
  proxy: ForwardProxy;
  port: number;
  lines: Array<Record<string, unknown>>;
  url: string;
  authUrl: string;
  close(): Promise<void>;
}

/** A forward proxy on 127.0.0.1:0 with alice/secret and bob/hunter2, loopback allowed unless overridden. */
export async function startTestProxy(overrides: Partial<ForwardConfigInput> = {}, deps: { resolver?: Resolver | LookupFunction; hooks?: ForwardHooks[]; hookTimeoutMs?: number; authProvider?: AuthProvider } = {}): Promise<TestProxy> {
  const [h1, h2] = await userHashes();
  const { logger, lines } = memoryLogger();
  const base: ForwardConfigInput = {
    listeners: [{ address: '127.0.0.1', port: 0 }],
    auth: { required: true, users: [{ name: USER, password: h1 }, { name: USER2, password: h2 }] },
    rules: { allowPrivate: true, connectPorts: ['1-65535'] },
    timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
  };
  const cfg: ForwardConfigInput = {
    ...base,
    ...overrides,
    auth: { ...base.auth, ...overrides.auth },
    rules: { ...base.rules, ...overrides.rules },
    timeouts: { ...base.timeouts, ...overrides.timeouts },
  };
  const proxy = await startForwardProxy(cfg, { logger, resolver: deps.resolver, hooks: deps.hooks, hookTimeoutMs: deps.hookTimeoutMs, authProvider: deps.authProvider });
  const port = proxy.addresses()[0]!.port;
  return {
    proxy,
    port,
    lines,
    url: `http://127.0.0.1:${port}`,
    authUrl: `http://${USER}:${PASSWORD}@127.0.0.1:${port}`,
    // As the reverse helper's (test/helpers/gateway.ts): a drain of 1 s, not the config's 30 s, for what a test leaves open.
    close: () => proxy.close(1000),
  };
}

export interface Origin {
  server: HttpServer;
  port: number;
  /** Every connection accepted (to prove a refusal happened before connecting). */
  connections: number;
  requests: Array<{ method: string; url: string; headers: IncomingMessage['headers']; rawHeaders: string[]; body: string }>;
  close(): Promise<void>;
}

/** An HTTP origin on loopback that answers with a JSON echo of the request. */
export async function startOrigin(host = '127.0.0.1'): Promise<Origin> {
  const o: Origin = {
    server: undefined as unknown as HttpServer,
    port: 0,
    connections: 0,
    requests: [],
    close: async () => {
      o.server.closeAllConnections();
      await new Promise<void>((r) => o.server.close(() => r()));
    },
  };
  o.server = createHttpServer(async (req, res) => {
    const chunks: Buffer[] = [];
    try {
      for await (const c of req) chunks.push(c as Buffer);
    } catch {
      // The proxy cut the upload (a refused or timed-out request): nothing to answer, and no
      // unhandled rejection ("aborted") from this handler.
      return;
    }
    const body = Buffer.concat(chunks).toString('utf8');
    o.requests.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
    if (req.url?.startsWith('/big/')) {
      const n = Number(req.url.slice(5));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
      res.end(Buffer.alloc(n, 0x61));
      return;
    }
    if (req.url === '/broken') {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', connection: /close/i.test(req.headers.connection ?? '') ? 'close, x-secret' : 'x-secret', 'x-secret': 'hop', 'keep-alive': 'timeout=5' });
    res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body }));
  });
  o.server.on('connection', () => o.connections++);
  o.server.listen(0, host);
  await once(o.server, 'listening');
  o.port = (o.server.address() as AddressInfo).port;
  return o;
}

/** A port that refuses connections: bound, then closed. */
export async function refusedPort(): Promise<number> {
  const s = createNetServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A UDP "DNS server" that never answers. */
export async function silentUdpServer(): Promise<{ port: number; received: number; close(): void }> {
  const s = createSocket('udp4');
  const state = { port: 0, received: 0, close: () => s.close() };
  s.on('message', () => state.received++);
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  state.port = s.address().port;
  return state;
}

/** A UDP echo server on loopback. */
export async function udpEcho(host = '127.0.0.1'): Promise<{ socket: UdpSocket; port: number; received: Buffer[]; close(): void }> {
  const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const received: Buffer[] = [];
  s.on('message', (m, r) => {
    received.push(m);
    s.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address);
  });
  s.bind(0, host);
  await once(s, 'listening');
  return { socket: s, port: s.address().port, received, close: () => s.close() };
}

/** Fixed-table resolver: names map to addresses; anything else is NXDOMAIN, without any network traffic. */
export function tableResolver(table: Record<string, string[]>): Resolver {
  return async (name) => {
    const list = table[name.toLowerCase()];
    if (!list) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: name });
    return list.map((a) => ({ address: a, family: a.includes(':') ? (6 as const) : (4 as const) }));
  };
}

/** Open a TCP connection to the proxy. */
export async function dial(port: number, host = '127.0.0.1'): Promise<Socket> {
  const s = connect(port, host);
  await once(s, 'connect');
  return s;
}

/**
 * Collect bytes from a socket until `done(buf)` is true or the socket closes.
 *
 * Without `timeoutMs` this waits for an event that must come: up to GUARD_MS (a failure
 * guard, never a synchronisation), and rejects then with what was awaited (`what`, or the
 * predicate's source) and what had come, rather than handing back a partial buffer for the
 * caller's assertion to misread (it was a hidden 3 s, short of a loaded machine's delays).
 * With `timeoutMs` it is a reading window: what came within it is the result.
 */
export function readUntil(s: Socket, done: (b: Buffer) => boolean, timeoutMs?: number, what?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const stop = (): void => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', finish);
    };
    const finish = (): void => {
      stop();
      resolve(buf);
    };
    const expire = (): void => {
      if (timeoutMs !== undefined) return finish();
      stop();
      const awaited = what ?? `bytes satisfying ${done.toString()}`;
      reject(new Error(`readUntil: ${awaited} not seen within ${GUARD_MS} ms (the socket still open); ${buf.length} bytes came: ${JSON.stringify(buf.toString('latin1').slice(-300))}`));
    };
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (done(buf)) finish();
    };
    const t = setTimeout(expire, timeoutMs ?? GUARD_MS);
    s.on('data', onData);
    s.once('close', finish);
  });
}

/**
 * Wait until `cond()` holds, polling; false when the time runs out. The default is GUARD_MS,
 * a failure guard for an event that must come (it was a hidden 3 s, short of a loaded
 * machine's delays): the caller asserts the result, saying what was awaited.
 */
export async function waitFor(cond: () => boolean, timeoutMs = GUARD_MS, stepMs = 10): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}

export function basic(user = USER, password = PASSWORD): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

/** One raw HTTP exchange on a fresh connection: send bytes, read until the peer closes or a full response arrived. */
export async function rawExchange(port: number, bytes: Buffer | string, timeoutMs = 3000): Promise<string> {
  const s = await dial(port);
  s.on('error', () => {});
  s.write(bytes);
  const buf = await readUntil(s, (b) => completeResponse(b.toString('latin1')), timeoutMs);
  s.destroy();
  return buf.toString('latin1');
}

/** True when `text` holds a complete response with Content-Length framing. */
export function completeResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
  if (!m) return false;
  return text.length - end - 4 >= Number(m[1]);
}
