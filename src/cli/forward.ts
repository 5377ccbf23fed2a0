import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { forwardSchema, type ForwardConfigInput } from '../config/forward.js';
import { startForwardProxy, type ForwardProxy } from '../forward/index.js';
import { hashPassword } from '../tenants/index.js';
import { flushLogger, logDestination } from '../observe/access-log.js';

const HELP = `usage: gatewise forward [options]

Run the forward proxy (HTTP proxy with CONNECT, SOCKS5, SOCKS4) from the command line.

  --listen ADDR:PORT       HTTP proxy listener (default 127.0.0.1:3128); it also serves
                           SOCKS5/SOCKS4 unless --socks is given
  --socks ADDR:PORT        a separate SOCKS5/SOCKS4 listener
  --user NAME:PASSWORD     a user (repeatable); the password is hashed at start
  --no-auth                allow use without credentials (logs a warning)
  --allow-private          allow private, loopback and link-local destinations
  --connect-ports LIST     ports CONNECT may reach, e.g. 443,8443 or 1-65535 (default 443)
  --no-access-log          do not write the access log
  --egress ADDR[,ADDR...]  leave from these local addresses (an address pool)
  --via URL                leave through this upstream proxy (repeatable; together
                           one rotating pool): http://user:pass@host:port or
                           socks5://user:pass@host:port
  --rotate STRATEGY        request (default: a new exit each time), round-robin,
                           random, least-used, hash, sticky
  --session-ttl DURATION   how long a session keeps its exit (default 10m)

Username parameters pick sessions and pools: NAME-session-ID-ttl-10m-pool-NAME
(each part optional). The --egress and --via exits form the pool "default".
  -h, --help               this text
`;

const STRATEGIES = ['request', 'round-robin', 'random', 'least-used', 'hash', 'sticky'] as const;
type Strategy = (typeof STRATEGIES)[number];

function splitHostPort(s: string, flag: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:]+):(\d{1,5})$/.exec(s) ?? /^()(\d{1,5})$/.exec(s);
  if (!m) throw new Error(`${flag} expects ADDRESS:PORT, got ${JSON.stringify(s)}`);
  return { address: m[1] || '127.0.0.1', port: Number(m[2]) };
}

/** Build and validate the config the flags describe. */
export async function forwardConfigFromArgs(argv: string[]): Promise<ForwardConfigInput> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string' },
      socks: { type: 'string' },
      user: { type: 'string', multiple: true },
      'no-auth': { type: 'boolean' },
      'allow-private': { type: 'boolean' },
      'connect-ports': { type: 'string' },
      'no-access-log': { type: 'boolean' },
      egress: { type: 'string', multiple: true },
      via: { type: 'string', multiple: true },
      rotate: { type: 'string' },
      'session-ttl': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) throw Object.assign(new Error('help'), { code: 'GATEWISE_HELP' });
  const http = splitHostPort(values.listen ?? '127.0.0.1:3128', '--listen');
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
    if (colon <= 0) throw new Error(`--user expects NAME:PASSWORD, got ${JSON.stringify(u.replace(/:.*/, ':…'))}`);
    users.push({ name: u.slice(0, colon), password: await hashPassword(u.slice(colon + 1)) });
  }
  const connectPorts = values['connect-ports']
    ? values['connect-ports'].split(',').map((p) => (/^\d+$/.test(p.trim()) ? Number(p.trim()) : p.trim()))
    : undefined;
  const input: ForwardConfigInput = {
    listeners,
    accessLog: !values['no-access-log'],
    auth: { required: !values['no-auth'], users },
    rules: { allowPrivate: Boolean(values['allow-private']), ...(connectPorts ? { connectPorts } : {}) },
  };
  const addresses = (values.egress ?? []).flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean);
  const proxies = values.via ?? [];
  if (values.rotate && !STRATEGIES.includes(values.rotate as Strategy)) {
    throw new Error(`--rotate expects one of ${STRATEGIES.join(', ')}, got ${JSON.stringify(values.rotate)}`);
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
    throw new Error('--rotate needs --egress or --via');
  }
  const checked = forwardSchema.safeParse(input);
  if (!checked.success) {
    // Never echo a proxy URL's credentials back.
    const lines = checked.error.issues.map((i) => `  ${i.path.join('.') || '(config)'}: ${i.message.replace(/\/\/[^@/\s]*@/g, '//…@')}`);
    throw Object.assign(new Error(`invalid options:\n${lines.join('\n')}`), { code: 'GATEWISE_INVALID_OPTIONS' });
  }
  return input;
}

function urlOf(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export async function forwardCommand(argv: string[]): Promise<number> {
  let input: ForwardConfigInput;
  try {
    input = await forwardConfigFromArgs(argv);
  } catch (err) {
    if ((err as { code?: string }).code === 'GATEWISE_HELP') {
      process.stdout.write(HELP);
      return 0;
    }
    process.stderr.write(`gatewise forward: ${(err as Error).message}\n`);
    // Options that parse but do not validate are listed by key; a wrong command line gets the help.
    if ((err as { code?: string }).code !== 'GATEWISE_INVALID_OPTIONS') process.stderr.write(HELP);
    return 2;
  }
  const logger = pino({ level: 'info' }, logDestination(1));
  let proxy: ForwardProxy;
  try {
    proxy = await startForwardProxy(input, { logger });
  } catch (err) {
    process.stderr.write(`gatewise forward: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
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
      const force = setTimeout(() => resolve(1), 5000);
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
