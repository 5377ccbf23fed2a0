// The contenders: how each is configured and started. Each `start` returns
// the port to load and the process to watch, or throws Skip with a reason.
import fs from 'node:fs';
import path from 'node:path';
import * as configs from './configs.js';
import { Proc, startProcess } from './procs.js';
import type { ToolStatus } from './system.js';
import { freePort, waitForPort } from './util.js';
import type { ProxyCredentials } from './tunnel-load.js';
import { hashPassword } from '../src/tenants/index.js';

/** `scaling`: the same reverse load with 1 and 2 workers, contenders not pinned to a CPU. */
export type Group = 'reverse' | 'forward' | 'socks' | 'scaling';

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
  /** Credentials the load must present (a forward proxy with authentication). */
  auth?: ProxyCredentials;
}

export interface Contender {
  id: string;
  label: string;
  groups: Group[];
  /** One line for the docs: how it is configured. */
  config: string;
  /** Gatewise itself (used as the reference for ratios). */
  isGatewise?: boolean;
  /** Only these scenarios (default: every scenario of its groups). */
  scenarios?: string[];
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
async function launch(ctx: StartContext, name: string, cmd: string, args: string[], port: number, cwd?: string, stdoutFile?: string): Promise<Running> {
  const proc = startProcess(name, cmd, args, { cpus: ctx.cpus, ...(cwd ? { cwd } : {}), ...(stdoutFile ? { stdoutFile } : {}) });
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

/** A reverse peer of bench/peers/ taking `PORT ORIGIN_PORT`, on a free port. */
async function reversePeer(ctx: StartContext, name: string, script: string): Promise<Running> {
  const port = await freePort();
  return nodePeer(ctx, name, script, [String(port), String(ctx.originPort)], port);
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
  workers: (n: number): string[] => ['--workers', String(n)],
};

/** The reverse command line as the docs show it (PORT and ORIGIN instead of numbers). */
function reverseCommandText(extra: string[]): string {
  const args = GATEWISE_CLI.reverse(1, 2).join(' ').replace('127.0.0.1:1', '127.0.0.1:PORT').replace('127.0.0.1:2', '127.0.0.1:ORIGIN');
  return `\`node bin/gatewise.js ${[args, ...extra].join(' ')}\``;
}

/**
 * Which Gatewise stands for Gatewise in a group ("vs Gatewise", the targets):
 * the first of these that was measured. Without access log where it ran, as the
 * other contenders log nothing either; in the scaling group the single worker.
 */
export const GATEWISE_REFERENCE: Record<Group, string[]> = {
  // Issue 17: targets are judged on the default configuration (access log on, metrics as
  // shipped); the second, the quiet build, is shown beside it.
  reverse: ['gatewise', 'gatewise-quiet'],
  forward: ['gatewise-fwd', 'gatewise-fwd-quiet'],
  socks: ['gatewise-fwd', 'gatewise-fwd-quiet'],
  scaling: ['gatewise-w1', 'gatewise-w2'],
};

function gatewise(ctx: StartContext, name: string, args: string[], port: number, root = ctx.root, stdoutFile?: string): Promise<Running> {
  const bin = path.join(root, 'bin', 'gatewise.js');
  if (!fs.existsSync(bin)) throw new Skip(`${bin} not found`);
  return launch(ctx, name, process.execPath, [bin, ...args], port, root, stdoutFile);
}

/**
 * `BENCH_BASELINE=DIR`: a built checkout of an earlier commit (e.g. `git worktree add
 * DIR REV && (cd DIR && npm ci && npm run build)`), run as `gatewise-base`, `gatewise-base-quiet`,
 * `gatewise-fwd-base` and `gatewise-fwd-base-quiet`, so a change can be duelled against the code before it.
 */
export const BASELINE_ROOT = process.env.BENCH_BASELINE;

function baselineContenders(): Contender[] {
  const root = BASELINE_ROOT;
  if (!root) return [];
  // The same four variants as this build's: reverse and forward, default logging and quiet.
  return [false, true].flatMap((quiet) => {
    const suffix = quiet ? '-quiet' : '';
    const how = quiet ? 'no access log' : 'default logging';
    return [
      {
        id: `gatewise-base${suffix}`,
        label: `Gatewise baseline (${how})`,
        groups: [] as Group[],
        isGatewise: true,
        config: `the checkout in ${root}, as gatewise${suffix}`,
        async start(ctx: StartContext): Promise<Running> {
          const port = await freePort();
          return gatewise(ctx, `gatewise-base${suffix}`, [...GATEWISE_CLI.reverse(port, ctx.originPort), ...(quiet ? [GATEWISE_CLI.quiet] : [])], port, root);
        },
      },
      {
        id: `gatewise-fwd-base${suffix}`,
        label: `Gatewise baseline forward (${how})`,
        groups: [] as Group[],
        isGatewise: true,
        config: `the checkout in ${root}, as gatewise-fwd${suffix}`,
        async start(ctx: StartContext): Promise<Running> {
          const port = await freePort();
          return gatewise(ctx, `gatewise-fwd-base${suffix}`, [...GATEWISE_CLI.forward(port), ...(quiet ? [GATEWISE_CLI.quiet] : [])], port, root);
        },
      },
    ];
  });
}

function gatewiseContenders(): Contender[] {
  const variants = [
    { suffix: '', label: 'Gatewise (default)', quiet: false, note: 'default logging (access log to /dev/null)' },
    { suffix: '-quiet', label: 'Gatewise (no access log)', quiet: true, note: `\`${GATEWISE_CLI.quiet}\`` },
  ];
  return variants.flatMap((v) => [
    {
      id: `gatewise${v.suffix}`,
      label: v.label,
      groups: ['reverse'] as Group[],
      isGatewise: true,
      config: `${reverseCommandText(v.quiet ? [GATEWISE_CLI.quiet] : [])}, one process; ${v.note}`,
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

/**
 * The default configuration as it runs in production: the access log on standard output
 * redirected to a regular file (here in the run's temp directory, removed with it), not to
 * /dev/null, so the write(2) into the page cache is counted too. Duel pairs only.
 */
function fileLogContender(): Contender {
  return {
    id: 'gatewise-filelog',
    label: 'Gatewise (default, access log to a file)',
    groups: [],
    isGatewise: true,
    config: `${reverseCommandText([])}, one process; default logging, standard output appended to a regular file on the benchmark's disk`,
    async start(ctx: StartContext): Promise<Running> {
      const port = await freePort();
      return gatewise(ctx, 'gatewise-filelog', GATEWISE_CLI.reverse(port, ctx.originPort), port, ctx.root, path.join(ctx.dir, `gatewise-filelog-${port}.log`));
    },
  };
}

/**
 * The hand-written upstream client (issue 17, src/pool/native-client.ts): gatewise and
 * gatewise-quiet with the bench cluster's `client: native`, started from a config file that
 * `gatewise proxy` would build (bench/configs.ts reverseClientConfig). Only in the duels (no group).
 */
function nativeClientContenders(): Contender[] {
  return [false, true].map((quiet) => {
    const id = `gatewise-native${quiet ? '-quiet' : ''}`;
    return {
      id,
      label: `Gatewise, native upstream client${quiet ? ' (no access log)' : ''}`,
      groups: [] as Group[],
      isGatewise: true,
      config: `\`node bin/gatewise.js run -c FILE\`: gatewise${quiet ? '-quiet' : ''}'s config with \`client: native\` on its cluster`,
      async start(ctx: StartContext): Promise<Running> {
        const port = await freePort();
        const file = path.join(subdir(ctx, id), 'gatewise.yaml');
        fs.writeFileSync(file, configs.reverseClientConfig(port, ctx.originPort, 'native', !quiet));
        return gatewise(ctx, id, ['run', '-c', file], port);
      },
    };
  });
}

/**
 * The server front of the reverse listener (issue 17, src/gateway/net-front.ts): gatewise's
 * config (`gatewise proxy` as a file, bench/configs.ts reverseFrontConfig) with `front: node`
 * (`gatewise-nodefront`, what gatewise runs) or `front: net` (`gatewise-netfront`), each with
 * default logging and quiet (`-quiet`). Started the same way, so a duel differs in the front
 * only. Only in the duels (no group).
 */
function frontContenders(): Contender[] {
  return (['node', 'net'] as const).flatMap((front) =>
    [false, true].map((quiet) => {
      const id = `gatewise-${front}front${quiet ? '-quiet' : ''}`;
      return {
        id,
        label: `Gatewise, ${front} front${quiet ? ' (no access log)' : ''}`,
        groups: [] as Group[],
        isGatewise: true,
        config: `\`node bin/gatewise.js run -c FILE\`: gatewise${quiet ? '-quiet' : ''}'s config with \`front: ${front}\` on its listener`,
        async start(ctx: StartContext): Promise<Running> {
          const port = await freePort();
          const file = path.join(subdir(ctx, id), 'gatewise.yaml');
          fs.writeFileSync(file, configs.reverseFrontConfig(port, ctx.originPort, front, !quiet));
          return gatewise(ctx, id, ['run', '-c', file], port);
        },
      };
    }),
  );
}

/**
 * Metrics on and off (issue 18: metrics on must cost ≤ 5 %): the same `run -c FILE` config,
 * access log off, with and without the admin listener. With it, prom-client's metrics and
 * the admin API's live view (per-second counts, the failure ring, users) subscribe to every
 * record; without it nothing does. Reverse: `gatewise-metrics` / `gatewise-nometrics`;
 * forward: `gatewise-fwd-metrics` / `gatewise-fwd-nometrics`. Only in the duels (no group).
 */
function metricsContenders(): Contender[] {
  const reverse = configs.metricsReverseConfig;
  const forward = (port: number, admin: number | undefined): string =>
    [
      'log: { access: false }',
      ...(admin === undefined ? [] : [`admin: { port: ${admin} }`]),
      'forward:',
      `  listeners: [{ address: 127.0.0.1, port: ${port} }]`,
      '  accessLog: false',
      '  auth: { required: false }',
      '  rules: { allowPrivate: true, connectPorts: ["1-65535"] }',
      '',
    ].join('\n');
  return [true, false].flatMap((on) => {
    const suffix = on ? '-metrics' : '-nometrics';
    const how = on ? 'admin listener on (metrics and the live view)' : 'no admin listener (no metrics)';
    return [
      {
        id: `gatewise${suffix}`,
        label: `Gatewise (${how})`,
        groups: [] as Group[],
        isGatewise: true,
        config: `\`node bin/gatewise.js run -c FILE\`: one cluster, access log off, ${how}`,
        async start(ctx: StartContext): Promise<Running> {
          const port = await freePort();
          const file = path.join(subdir(ctx, `gatewise${suffix}`), 'gatewise.yaml');
          fs.writeFileSync(file, reverse(port, ctx.originPort, on ? await freePort() : undefined));
          return gatewise(ctx, `gatewise${suffix}`, ['run', '-c', file], port);
        },
      },
      {
        id: `gatewise-fwd${suffix}`,
        label: `Gatewise forward (${how})`,
        groups: [] as Group[],
        isGatewise: true,
        config: `\`node bin/gatewise.js run -c FILE\`: the forward proxy without authentication, access log off, ${how}`,
        async start(ctx: StartContext): Promise<Running> {
          const port = await freePort();
          const file = path.join(subdir(ctx, `gatewise-fwd${suffix}`), 'gatewise.yaml');
          fs.writeFileSync(file, forward(port, on ? await freePort() : undefined));
          return gatewise(ctx, `gatewise-fwd${suffix}`, ['run', '-c', file], port);
        },
      },
    ];
  });
}

/** The user the "service" Gatewise is loaded as. */
const SERVICE_USER: ProxyCredentials = { user: 'bench', password: 'bench-password' };

/** The forward proxy as a proxy service runs it: authentication, a plan, the access log. */
function gatewiseServiceConfig(port: number, passwordHash: string, redisUrl?: string): string {
  return [
    'forward:',
    '  name: bench',
    `  listeners: [{ address: 127.0.0.1, port: ${port} }]`,
    '  auth:',
    `    users: [{ name: ${SERVICE_USER.user}, password: "${passwordHash}", plan: service }]`,
    '  rules: { allowPrivate: true, connectPorts: ["1-65535"] }',
    '  plans:',
    '    service: { maxConnections: 100000, requestsPerSecond: 1000000, bytesPerDay: { up: 1TB, down: 1TB }, bytesPerMonth: { up: 10TB, down: 10TB } }',
    ...(redisUrl ? ['  state:', `    redis: { url: "${redisUrl}" }`] : []),
    '',
  ].join('\n');
}

/**
 * The same service with its state in Redis (a redis-server of its own, on the load
 * generators' CPU, outside the contender's process tree: in a fleet Redis runs elsewhere,
 * and what is compared is what the node pays to use it). Every tunnel then takes a rate
 * cell (one Lua script) and a connection lease (one script, one HSET at its end) in Redis,
 * and the usage goes there in batches.
 */
function gatewiseServiceRedisContender(): Contender {
  return {
    id: 'gatewise-fwd-service-redis',
    label: 'Gatewise (auth + plan, state in Redis)',
    groups: [],
    isGatewise: true,
    config: 'as gatewise-fwd-service, plus `state: { redis: { url } }` to a local redis-server (no persistence) pinned to the load generators\' CPU',
    async start(ctx: StartContext): Promise<Running> {
      const bin = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((f) => fs.existsSync(f));
      if (!bin) throw new Skip('redis-server is not installed');
      const redisPort = await freePort();
      const redis = startProcess('redis-for-gatewise', bin, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { cpus: '0' });
      if (!(await waitForPort(redisPort, STARTUP_MS, () => !redis.exited))) throw new Skip('redis-server did not start');
      const port = await freePort();
      const dir = subdir(ctx, 'gatewise-service-redis');
      const file = path.join(dir, 'gatewise.yaml');
      fs.writeFileSync(file, gatewiseServiceConfig(port, await hashPassword(SERVICE_USER.password), `redis://127.0.0.1:${redisPort}`));
      const r = await gatewise(ctx, 'gatewise-fwd-service-redis', ['run', '-c', file], port);
      return { ...r, auth: SERVICE_USER };
    },
  };
}

function gatewiseServiceContender(): Contender {
  return {
    id: 'gatewise-fwd-service',
    label: 'Gatewise (auth + plan)',
    groups: ['forward', 'socks'],
    isGatewise: true,
    config:
      '`node bin/gatewise.js run -c FILE`: a forward config with one user (scrypt hash; Basic `Proxy-Authorization`, RFC 1929 for SOCKS5) on a plan with ' +
      'connection, rate, daily and monthly byte limits that the load never reaches, default logging (access log to /dev/null): the forward proxy as a proxy service runs it. ' +
      'The load generators send the credentials; not a target, it shows what authentication and plan accounting cost',
    async start(ctx: StartContext): Promise<Running> {
      const port = await freePort();
      const dir = subdir(ctx, 'gatewise-service');
      const file = path.join(dir, 'gatewise.yaml');
      fs.writeFileSync(file, gatewiseServiceConfig(port, await hashPassword(SERVICE_USER.password)));
      const r = await gatewise(ctx, 'gatewise-fwd-service', ['run', '-c', file], port);
      return { ...r, auth: SERVICE_USER };
    },
  };
}

function nginxConfigText(workers: number): string {
  return (
    `\`worker_processes ${workers}\`, \`proxy_pass\` to an \`upstream\` with \`keepalive 256\`, \`proxy_http_version 1.1\`, \`proxy_set_header Connection ""\`, ` +
    '`access_log off`, `proxy_max_temp_file_size 0` (no disk buffering), `keepalive_requests 1000000`'
  );
}

/** nginx as reverse proxy (configs.nginxProxy) with the given number of workers. */
async function nginxReverse(ctx: StartContext, name: string, workers: number): Promise<Running> {
  const bin = requireTool(ctx, 'nginx');
  const dir = subdir(ctx, `${name}-proxy`);
  const port = await freePort();
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, configs.nginxProxy(dir, port, ctx.originPort, workers));
  return launch(ctx, name, bin, ['-c', conf, '-p', dir, '-e', path.join(dir, 'error.log')], port);
}

/**
 * The scaling group: Gatewise and nginx with 1 and 2 workers. Both spread
 * connections the same way (workers accepting on one shared socket), and the
 * 1-worker variants run the same way as the 2-worker ones (Gatewise: a cluster
 * primary with one worker), so the ratio 2 workers / 1 worker is the second worker.
 */
function scalingContenders(): Contender[] {
  const workers = (n: number): string => `${n} worker${n > 1 ? 's' : ''}`;
  const gatewiseW = (n: number): Contender => ({
    id: `gatewise-w${n}`,
    label: `Gatewise, ${workers(n)}`,
    groups: ['scaling'],
    isGatewise: true,
    config:
      `${reverseCommandText([GATEWISE_CLI.quiet, ...GATEWISE_CLI.workers(n)])}: a cluster primary that forks ${workers(n)} sharing the listening socket ` +
      '(the kernel hands out connections, no round-robin through the primary); not pinned',
    async start(ctx) {
      const port = await freePort();
      return gatewise(ctx, `gatewise-w${n}`, [...GATEWISE_CLI.reverse(port, ctx.originPort), GATEWISE_CLI.quiet, ...GATEWISE_CLI.workers(n)], port);
    },
  });
  const nginxW = (n: number): Contender => ({
    id: `nginx-w${n}`,
    label: `nginx, ${workers(n)}`,
    groups: ['scaling'],
    config: `${nginxConfigText(n)}; the workers accept on one shared socket (no \`reuseport\`); not pinned`,
    start: (ctx) => nginxReverse(ctx, `nginx-w${n}`, n),
  });
  return [gatewiseW(1), gatewiseW(2), nginxW(1), nginxW(2)];
}

export const CONTENDERS: Contender[] = [
  {
    id: 'direct',
    label: 'direct (no proxy)',
    groups: ['reverse', 'forward', 'socks', 'scaling'],
    config: 'load generator straight to the origin: the ceiling for everything else',
    start: async (ctx) => ({ port: ctx.originPort, proc: undefined }),
  },
  ...gatewiseContenders(),
  fileLogContender(),
  ...metricsContenders(),
  ...nativeClientContenders(),
  ...frontContenders(),
  ...baselineContenders(),
  gatewiseServiceContender(),
  gatewiseServiceRedisContender(),
  {
    id: 'nginx',
    label: 'nginx',
    groups: ['reverse'],
    config: nginxConfigText(1),
    start: (ctx) => nginxReverse(ctx, 'nginx', 1),
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
      return reversePeer(ctx, 'http-proxy', 'http-proxy.js');
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
      return reversePeer(ctx, 'fastify', 'fastify-proxy.js');
    },
  },
  {
    id: 'undici-stream',
    label: 'undici Pool.stream (bare)',
    groups: ['reverse'],
    config:
      "`bench/peers/undici-stream.ts`: `http.createServer` + undici `Pool.stream()` writing into the response, no routing, header rules, retries or error pages: " +
      "the cost of any undici-based Node proxy before it does anything (the issue's 'bare undici streaming pass-through')",
    async start(ctx) {
      return reversePeer(ctx, 'undici-stream', 'undici-stream.js');
    },
  },
  {
    id: 'net-front',
    label: 'node:net front + undici (bare)',
    groups: [],
    config:
      '`bench/peers/net-front.ts`: the bare undici engine of `undici-stream`, with the server side on `node:net` (a strict head parser for body-less requests, ' +
      'the response head built once and written corked with the body; no IncomingMessage or ServerResponse): the "faster front" experiment, duel pairs only',
    async start(ctx) {
      return reversePeer(ctx, 'net-front', 'net-front.js');
    },
  },
  {
    id: 'raw-client',
    label: 'node:http + raw keep-alive client (bare)',
    groups: [],
    config:
      '`bench/peers/raw-client.ts`: the server side of `undici-stream` (node:http), with the upstream side a raw keep-alive client on `node:net` (a strict response-head parser, ' +
      'Content-Length/chunked/close framing, idle sockets in a stack; no undici): the upstream half of the "faster front" study, duel pairs only',
    async start(ctx) {
      return reversePeer(ctx, 'raw-client', 'raw-client.js');
    },
  },
  {
    id: 'native-layer',
    label: "node:http + Gatewise's pool and native client (bare)",
    groups: [],
    config:
      "`bench/peers/native-layer.ts`: raw-client's server side (node:http), with Gatewise's own upstream socket layer (a `ConnectionPool` of `NativeClient`s over its cleartext connector) " +
      'driven by a handler of a few lines; no exchange, checks, rewrites, timers, retries or record: what that layer costs against raw-client, duel pairs only',
    async start(ctx) {
      return reversePeer(ctx, 'native-layer', 'native-layer.js');
    },
  },
  {
    id: 'floor-proxy',
    label: 'node:net both sides (bare floor)',
    groups: [],
    config:
      '`bench/peers/floor-proxy.ts`: node:net on both sides with the least a reverse proxy must do (a strict head parser for body-less requests, hop-by-hop fields dropped, ' +
      'idle upstream sockets in a stack, Content-Length answers only, the head rebuilt and written corked with the body; no timers, logging or error pages): what any Node proxy costs per request, duel pairs only',
    async start(ctx) {
      return reversePeer(ctx, 'floor-proxy', 'floor-proxy.js');
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
    id: 'connect-floor',
    label: 'Node CONNECT floor (bare)',
    groups: ['forward'],
    scenarios: ['fwd-connect-c50', 'fwd-intunnel-c50'],
    config:
      '`bench/peers/connect-floor.ts`: `net.createServer`, the target cut out of the first read, `net.connect`, then `data` → `write()` both ways with backpressure; ' +
      'no authentication, rules, metering, logging, timeouts or error answers: what Node sockets cost per tunnel before a proxy does anything (CONNECT scenarios only)',
    async start(ctx) {
      const port = await freePort();
      return nodePeer(ctx, 'connect-floor', 'connect-floor.js', [String(port)], port);
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
  ...scalingContenders(),
];

/**
 * `BENCH_BASELINE=DIR`: `base-<id>` runs any Gatewise contender of this list (same config,
 * written by this checkout's bench) from DIR's build, so a pair such as metrics on/off or
 * Redis/memory can be duelled before and after a change in one run
 * (`DUEL_PAIRS=base-gatewise-metrics:base-gatewise-nometrics@get-1k,…`).
 */
if (BASELINE_ROOT !== undefined) {
  for (const c of CONTENDERS.filter((x) => x.isGatewise === true && !x.id.startsWith('gatewise-base'))) {
    CONTENDERS.push({ ...c, id: `base-${c.id}`, label: `${c.label}, baseline build`, groups: [], start: (ctx) => c.start({ ...ctx, root: BASELINE_ROOT }) });
  }
}

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
