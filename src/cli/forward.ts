import { isIP } from 'node:net';
import { hostAddresses, isLocalAddress } from '../config/check.js';
import { forwardSchema, type ForwardConfigInput } from '../config/forward.js';
import { parseDuration } from '../config/duration.js';
import { startForwardProxy, type ForwardProxy } from '../forward/index.js';
import { hashPassword } from '../tenants/index.js';
import { createLogger, flushLogger } from '../observe/access-log.js';
import { answerUsage, command, optionsError, parseCommand, problemsError } from './commands.js';
import { UsageError } from './usage.js';
import { bindWords } from './bind-failure.js';
import { raiseMallocTrimThreshold } from './malloc-tuning.js';
import { releaseYoungGeneration } from './young-generation.js';

const STRATEGIES = ['request', 'round-robin', 'random', 'least-used', 'hash', 'sticky'] as const;
type Strategy = (typeof STRATEGIES)[number];

function splitHostPort(s: string, flag: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:]+):(\d{1,5})$/.exec(s) ?? /^()(\d{1,5})$/.exec(s);
  if (!m) throw new UsageError(`${flag} expects ADDRESS:PORT, got ${JSON.stringify(s)}`);
  return { address: m[1] || '127.0.0.1', port: Number(m[2]) };
}

/** Build and validate the config the flags describe. */
export async function forwardConfigFromArgs(argv: string[]): Promise<ForwardConfigInput> {
  const values = parseCommand(command('forward'), argv).values as {
    listen: string;
    socks?: string;
    user?: string[];
    'no-auth'?: boolean;
    'allow-private'?: boolean;
    'connect-ports'?: string;
    'http-ports'?: string;
    'no-access-log'?: boolean;
    egress?: string[];
    via?: string[];
    rotate?: string;
    'session-ttl'?: string;
  };
  const http = splitHostPort(values.listen, '--listen');
  const listeners: NonNullable<ForwardConfigInput['listeners']> = [];
  if (values.socks) {
    listeners.push({ ...http, protocols: ['http'] });
    listeners.push({ ...splitHostPort(values.socks, '--socks'), protocols: ['socks5', 'socks4'] });
  } else {
    listeners.push({ ...http, protocols: ['http', 'socks5', 'socks4'] });
  }
  const users = [];
  for (const u of values.user ?? []) {
    const colon = u.indexOf(':');
    if (colon <= 0) throw new UsageError(`--user expects NAME:PASSWORD, got ${JSON.stringify(u.replace(/:.*/, ':…'))}`);
    users.push({ name: u.slice(0, colon), password: await hashPassword(u.slice(colon + 1)) });
  }
  const connectPorts = portList(values['connect-ports']);
  const httpPorts = portList(values['http-ports']);
  const input: ForwardConfigInput = {
    listeners,
    accessLog: !values['no-access-log'],
    auth: { required: !values['no-auth'], users },
    rules: { allowPrivate: Boolean(values['allow-private']), ...(connectPorts ? { connectPorts } : {}), ...(httpPorts ? { httpPorts } : {}) },
  };
  const addresses = (values.egress ?? []).flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean);
  const proxies = values.via ?? [];
  if (values.rotate && !STRATEGIES.includes(values.rotate as Strategy)) {
    throw new UsageError(`--rotate expects one of ${STRATEGIES.join(', ')}, got ${JSON.stringify(values.rotate)}`);
  }
  if (addresses.length || proxies.length) {
    input.egress = {
      pools: {
        default: {
          ...(addresses.length ? { addresses } : {}),
          ...(proxies.length ? { proxies } : {}),
          strategy: (values.rotate as Strategy | undefined) ?? 'request',
          ...(values['session-ttl'] ? { sessionTtl: values['session-ttl'] } : {}),
        },
      },
      defaultPool: 'default',
    };
  } else if (values.rotate) {
    throw new UsageError('--rotate needs --egress or --via');
  } else if (values['session-ttl']) {
    // A flag that would do nothing is said, not dropped (finding, session 29).
    throw new UsageError('--session-ttl needs --egress or --via (sticky sessions are kept per pool)');
  }
  if (values['no-auth'] && users.length > 0) throw new UsageError('--user and --no-auth together: with --no-auth nobody is asked for a password, so the users would not be used');
  const checked = forwardSchema.safeParse(input);
  // Problems are said as the flags that set them, never echoing a proxy URL's credentials.
  if (!checked.success) throw optionsError(command('forward'), checked.error.issues, input);
  // A source address must be this host's, or every connection from it fails: refuse at start.
  const local = hostAddresses();
  const foreign = addresses.filter((a) => isIP(a) !== 0 && !isLocalAddress(a, local));
  if (foreign.length) {
    throw problemsError(foreign.map((a) => `--egress ${a}: not an address of this host, so no connection can leave from it (this host has ${local.join(', ')})`));
  }
  return input;
}

/** A --connect-ports / --http-ports value: "443,8000-8999" as port specs (numbers and ranges); undefined when not given. */
function portList(v: string | undefined): Array<number | string> | undefined {
  return v ? v.split(',').map((p) => (/^\d+$/.test(p.trim()) ? Number(p.trim()) : p.trim())) : undefined;
}

function urlOf(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export async function forwardCommand(argv: string[]): Promise<number> {
  let input: ForwardConfigInput;
  try {
    input = await forwardConfigFromArgs(argv);
  } catch (err) {
    const code = answerUsage(command('forward'), err, process.stdout, process.stderr);
    if (code !== undefined) return code;
    process.stderr.write(`gatewise forward: ${(err as Error).message}\n`);
    return 2;
  }
  void raiseMallocTrimThreshold(); // resolves once its scratch input is released; nothing waits for it
  const logger = createLogger();
  let proxy: ForwardProxy;
  try {
    proxy = await startForwardProxy(input, { logger });
  } catch (err) {
    // A port in use is named by its flag (as `proxy`, `lab` and `demo` do), not Node's "listen EADDRINUSE".
    const [http, socks] = input.listeners ?? [];
    const words = bindWords(err, [[http, '--listen'], [socks, '--socks']]);
    process.stderr.write(`gatewise forward: ${words ?? `cannot start: ${(err as Error).message}`}\n`);
    // The log says it too, in the line `run` and `proxy` write (cli/runtime.ts): an operator
    // reading only the log saw nothing of a start that failed (finding, error-story probe).
    logger.error({ component: 'runtime', type: 'lifecycle', event: 'start-failed', code: (err as NodeJS.ErrnoException)?.code }, `not started: ${words ?? (err as Error)?.message ?? String(err)}`);
    flushLogger(logger);
    return 1;
  }
  releaseYoungGeneration(); // started: traffic gets V8's own young-generation growth
  for (const a of proxy.addresses()) {
    const kinds = a.protocols.map((p) => (p === 'http' ? `http://${urlOf(a)}` : `${p}://${urlOf(a)}`));
    process.stderr.write(`gatewise forward: listening on ${kinds.join(' ')}\n`);
  }
  for (const [name, pool] of proxy.egress.pools) {
    process.stderr.write(`gatewise forward: egress pool ${name}: ${pool.exits.map((e) => e.label).join(', ')} (${pool.strategy})\n`);
  }
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.stderr.write(`gatewise forward: ${signal}, stopping\n`);
      // The drain has its own bound (forward.shutdown.drainTimeout); this one is for a close that hangs past it.
      const force = setTimeout(() => resolve(1), (parseDuration(proxy.config.shutdown.drainTimeout) ?? 0) + 5000);
      force.unref();
      proxy.close().then(
        () => {
          clearTimeout(force);
          flushLogger(logger);
          resolve(0);
        },
        () => resolve(1),
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
