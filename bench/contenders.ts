// The contenders: how each is configured and started. Each `start` returns
// the port to load and the process to watch, or throws Skip with a reason.
import fs from 'node:fs';
import path from 'node:path';
import * as configs from './configs.js';
import { Proc, startProcess } from './procs.js';
import type { ToolStatus } from './system.js';
import { freePort, waitForPort } from './util.js';

export type Group = 'reverse' | 'forward' | 'socks';

export class Skip extends Error {}

export interface StartContext {
  /** Temp directory for this benchmark run. */
  dir: string;
  /** Project root (where bin/gatewise.js lives). */
  root: string;
  originPort: number;
  /** The origin process (the "direct" contender is the origin itself). */
  origin: Proc;
  tools: Map<string, ToolStatus>;
  /** CPU list for contenders; undefined = unpinned. */
  cpus: string | undefined;
}

export interface Running {
  port: number;
  /** Process tree to sample; undefined for "direct". */
  proc: Proc | undefined;
}

export interface Contender {
  id: string;
  label: string;
  groups: Group[];
  /** One line for the docs: how it is configured. */
  config: string;
  /** Gatewise itself (used as the reference for ratios). */
  isGatewise?: boolean;
  start(ctx: StartContext): Promise<Running>;
}

const STARTUP_MS = 10_000;

function requireTool(ctx: StartContext, bin: string): string {
  const st = ctx.tools.get(bin);
  if (!st?.path) throw new Skip(st?.problem ?? `${bin} not available`);
  return st.path;
}

function subdir(ctx: StartContext, name: string, mode = 0o755): string {
  const d = path.join(ctx.dir, name);
  fs.mkdirSync(d, { recursive: true });
  fs.chmodSync(d, mode); // some servers drop privileges (nobody, proxy) and must write here
  return d;
}

/** Start a process and wait until it listens; on failure stop it and throw Skip. */
async function launch(ctx: StartContext, name: string, cmd: string, args: string[], port: number, cwd?: string): Promise<Running> {
  const proc = startProcess(name, cmd, args, { cpus: ctx.cpus, ...(cwd ? { cwd } : {}) });
  const up = await waitForPort(port, STARTUP_MS, () => !proc.exited);
  if (!up) {
    await proc.stop();
    const why = proc.exitCode !== null ? `exited with code ${proc.exitCode}` : proc.exitSignal ? `killed by ${proc.exitSignal}` : `not listening after ${STARTUP_MS / 1000}s`;
    const problem = proc.problem();
    throw new Skip(`${why}${problem ? `: ${problem}` : ''}`);
  }
  return { port, proc };
}

function nodePeer(ctx: StartContext, name: string, script: string, args: string[], port: number): Promise<Running> {
  const file = path.join(ctx.root, 'dist', 'bench', 'peers', script);
  return launch(ctx, name, process.execPath, [file, ...args], port, ctx.root);
}

/**
 * The Gatewise command lines. The CLI is young: if it changes, change it here.
 * SOCKS5 is expected on the forward listener (protocol detected from the first byte).
 */
export const GATEWISE_CLI = {
  reverse: (port: number, origin: number): string[] => ['proxy', '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${origin}`],
  // --connect-ports: CONNECT defaults to 443 only; the origin is elsewhere (Squid and Tinyproxy allow any port too).
  forward: (port: number): string[] => ['forward', '--listen', `127.0.0.1:${port}`, '--no-auth', '--allow-private', '--connect-ports', '1-65535'],
  quiet: '--no-access-log',
};

function gatewise(ctx: StartContext, name: string, args: string[], port: number): Promise<Running> {
  const bin = path.join(ctx.root, 'bin', 'gatewise.js');
  if (!fs.existsSync(bin)) throw new Skip('bin/gatewise.js not found');
  return launch(ctx, name, process.execPath, [bin, ...args], port, ctx.root);
}

function gatewiseContenders(): Contender[] {
  const variants = [
    { suffix: '', label: 'Gatewise', quiet: false, note: 'default logging (access log to /dev/null)' },
    { suffix: '-quiet', label: 'Gatewise (no access log)', quiet: true, note: `\`${GATEWISE_CLI.quiet}\`` },
  ];
  return variants.flatMap((v) => [
    {
      id: `gatewise${v.suffix}`,
      label: v.label,
      groups: ['reverse'] as Group[],
      isGatewise: true,
      config: `\`node bin/gatewise.js ${GATEWISE_CLI.reverse(1, 2).join(' ').replace('127.0.0.1:1', '127.0.0.1:PORT').replace('127.0.0.1:2', '127.0.0.1:ORIGIN')}${v.quiet ? ` ${GATEWISE_CLI.quiet}` : ''}\`, one process; ${v.note}`,
      async start(ctx: StartContext): Promise<Running> {
        const port = await freePort();
        const args = [...GATEWISE_CLI.reverse(port, ctx.originPort), ...(v.quiet ? [GATEWISE_CLI.quiet] : [])];
        return gatewise(ctx, `gatewise${v.suffix}`, args, port);
      },
    },
    {
      id: `gatewise-fwd${v.suffix}`,
      label: v.label,
      groups: ['forward', 'socks'] as Group[],
      isGatewise: true,
      config: `\`node bin/gatewise.js ${GATEWISE_CLI.forward(1).join(' ').replace('127.0.0.1:1', '127.0.0.1:PORT')}${v.quiet ? ` ${GATEWISE_CLI.quiet}` : ''}\`, one process; HTTP proxy, CONNECT and SOCKS5 on one listener; ${v.note}`,
      async start(ctx: StartContext): Promise<Running> {
        const port = await freePort();
        const args = [...GATEWISE_CLI.forward(port), ...(v.quiet ? [GATEWISE_CLI.quiet] : [])];
        return gatewise(ctx, `gatewise-fwd${v.suffix}`, args, port);
      },
    },
  ]);
}

export const CONTENDERS: Contender[] = [
  {
    id: 'direct',
    label: 'direct (no proxy)',
    groups: ['reverse', 'forward', 'socks'],
    config: 'load generator straight to the origin: the ceiling for everything else',
    start: async (ctx) => ({ port: ctx.originPort, proc: undefined }),
  },
  ...gatewiseContenders(),
  {
    id: 'nginx',
    label: 'nginx',
    groups: ['reverse'],
    config: '`worker_processes 1`, `proxy_pass` to an `upstream` with `keepalive 256`, `proxy_http_version 1.1`, `proxy_set_header Connection ""`, `access_log off`, `proxy_max_temp_file_size 0` (no disk buffering), `keepalive_requests 1000000`',
    async start(ctx) {
      const bin = requireTool(ctx, 'nginx');
      const dir = subdir(ctx, 'nginx-proxy');
      const port = await freePort();
      const conf = path.join(dir, 'nginx.conf');
      fs.writeFileSync(conf, configs.nginxProxy(dir, port, ctx.originPort));
      return launch(ctx, 'nginx', bin, ['-c', conf, '-p', dir, '-e', path.join(dir, 'error.log')], port);
    },
  },
  {
    id: 'haproxy',
    label: 'HAProxy',
    groups: ['reverse'],
    config: '`nbthread 1`, `mode http`, `option http-keep-alive`, `http-reuse always`, no logging; foreground (`-db`)',
    async start(ctx) {
      const bin = requireTool(ctx, 'haproxy');
      const dir = subdir(ctx, 'haproxy');
      const port = await freePort();
      const conf = path.join(dir, 'haproxy.cfg');
      fs.writeFileSync(conf, configs.haproxy(port, ctx.originPort));
      return launch(ctx, 'haproxy', bin, ['-db', '-f', conf], port);
    },
  },
  {
    id: 'http-proxy',
    label: 'node-http-proxy',
    groups: ['reverse'],
    config: '`bench/peers/http-proxy.ts`: `http.createServer` + `proxy.web()`, `http.Agent({ keepAlive: true })` to the origin, one process',
    async start(ctx) {
      const port = await freePort();
      return nodePeer(ctx, 'http-proxy', 'http-proxy.js', [String(port), String(ctx.originPort)], port);
    },
  },
  {
    id: 'fastify',
    label: '@fastify/http-proxy',
    groups: ['reverse'],
    config:
      '`bench/peers/fastify-proxy.ts`: fastify `logger: false`, @fastify/http-proxy with an undici pool (256 connections, pipelining 1) to the origin, one process. ' +
      'To a `Connection: close` request it copies the origin\'s `Connection: keep-alive` into its answer and then closes, so wrk reuses a closed connection (errors in `rev-close-c50`)',
    async start(ctx) {
      const port = await freePort();
      return nodePeer(ctx, 'fastify', 'fastify-proxy.js', [String(port), String(ctx.originPort)], port);
    },
  },
  {
    id: 'squid',
    label: 'Squid',
    groups: ['forward'],
    config: 'no-daemon single process (`-N`), `cache deny all`, no cache_dir, `access_log none`, persistent connections on both sides, `http_access allow all` on a loopback listener',
    async start(ctx) {
      const bin = requireTool(ctx, 'squid');
      const dir = subdir(ctx, 'squid', 0o777);
      const port = await freePort();
      const conf = path.join(dir, 'squid.conf');
      fs.writeFileSync(conf, configs.squid(dir, port));
      return launch(ctx, 'squid', bin, ['-N', '-f', conf], port);
    },
  },
  {
    id: 'tinyproxy',
    label: 'Tinyproxy',
    groups: ['forward'],
    config:
      'foreground (`-d`), `LogLevel Critical`, no `ConnectPort` (CONNECT to any port), `MaxClients 1000`; a thread per client connection. ' +
      'It does not keep client connections alive: it closes after every response without `Connection: close`, which wrk counts as a read error and answers by reconnecting',
    async start(ctx) {
      const bin = requireTool(ctx, 'tinyproxy');
      const dir = subdir(ctx, 'tinyproxy', 0o777);
      const port = await freePort();
      const conf = path.join(dir, 'tinyproxy.conf');
      fs.writeFileSync(conf, configs.tinyproxy(dir, port));
      return launch(ctx, 'tinyproxy', bin, ['-d', '-c', conf], port);
    },
  },
  {
    id: 'proxy-chain',
    label: 'proxy-chain',
    groups: ['forward'],
    config: '`bench/peers/proxy-chain.ts`: `new Server()` without authentication, keep-alive `http.Agent` for plain HTTP, one process',
    async start(ctx) {
      const port = await freePort();
      return nodePeer(ctx, 'proxy-chain', 'proxy-chain.js', [String(port)], port);
    },
  },
  {
    id: 'dante',
    label: 'Dante (danted)',
    groups: ['socks'],
    config:
      'SOCKS5 `socksmethod: none`, CONNECT only, loopback in and out, errors-only logging; foreground, `-N 1`. ' +
      'Dante forks helper processes (negotiate, request, i/o) as load grows; their RSS is summed, so pages they share are counted once per process',
    async start(ctx) {
      const bin = requireTool(ctx, 'danted');
      const dir = subdir(ctx, 'dante', 0o777);
      const port = await freePort();
      const conf = path.join(dir, 'danted.conf');
      fs.writeFileSync(conf, configs.danted(dir, port));
      return launch(ctx, 'danted', bin, ['-f', conf, '-p', path.join(dir, 'danted.pid'), '-N', '1'], port);
    },
  },
];

/** The origin: nginx, one worker, fixed bodies. Retries on another port if ours was taken meanwhile. */
export async function startOrigin(dir: string, nginx: string, cpus: string | undefined): Promise<{ port: number; proc: Proc }> {
  const odir = path.join(dir, 'origin');
  fs.mkdirSync(odir, { recursive: true });
  fs.chmodSync(odir, 0o755);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const conf = path.join(odir, 'nginx.conf');
    fs.writeFileSync(conf, configs.nginxOrigin(odir, port));
    const proc = startProcess('origin', nginx, ['-c', conf, '-p', odir, '-e', path.join(odir, 'error.log')], { cpus });
    if (await waitForPort(port, STARTUP_MS, () => !proc.exited)) return { port, proc };
    await proc.stop();
    const problem = proc.problem() ?? 'no output';
    if (attempt < 3 && /address already in use/i.test(problem)) continue;
    throw new Error(`origin nginx did not start: ${problem}`);
  }
}
