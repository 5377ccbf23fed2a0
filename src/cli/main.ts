import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile, validateConfig } from '../config/load.js';
import { jsonSchema, type ConfigInput } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { startRuntime, untilSignal } from './runtime.js';
import { UsageError } from './usage.js';
import { leaveCluster, parseWorkers, superviseWorkers } from './workers.js';

const HELP = `gatewise — a gateway and proxy server that explains every failure it produces

Usage:
  gatewise run -c gatewise.yaml [--workers N|auto]
                                       run a config (SIGTERM drains in-flight requests, then exits)
  gatewise check -c gatewise.yaml      validate a config without starting anything
  gatewise schema                      print the config's JSON Schema (for editors)
  gatewise proxy --listen ADDR:PORT --to URL [--to URL ...] [options]
                                       a reverse proxy in one line
  gatewise forward --listen ADDR:PORT [--socks ADDR:PORT] [--user NAME:PASSWORD ...] [--no-auth] [--allow-private]
                                       a forward proxy (HTTP, CONNECT, SOCKS) in one line
  gatewise passwd [PASSWORD]           print a scrypt hash for a forward-proxy user
  gatewise usage --state FILE [--user NAME] [--date D] [--json]
                                       per-user usage from the forward proxy's state file
  gatewise lab [--port N]              run the failure lab upstream standalone
  gatewise demo                        the gateway in front of the lab, with a table of URLs to try
  gatewise help | --version

proxy options:
  --connect-timeout D    time to connect to an endpoint (default 5s)
  --response-timeout D   time to wait for response headers (default 30s)
  --idle-timeout D       longest silence while a body streams (default 60s)
  --retries N            retries after the first attempt (default 2, where safe)
  --health-path P        actively check every endpoint with GET P every 2s
  --name NAME            name in Via and Proxy-Status
  --no-access-log        do not write access-log lines
  --workers N|auto       run N processes on the same port (node:cluster)
Durations: 250ms, 2s, 1m.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function splitHostPort(s: string, flag: string): { address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${flag} expects ADDRESS:PORT (for example 127.0.0.1:8080), got "${s}"`);
  return { address: m[1] ?? (m[2] || '127.0.0.1'), port };
}


function durationFlag(v: string | undefined, flag: string): string | undefined {
  if (v === undefined) return undefined;
  if (parseDuration(v) === undefined) throw new UsageError(`${flag} expects a duration such as 500ms, 2s or 1m, got "${v}"`);
  return v;
}

/** `gatewise proxy` builds a config like any other, so it is validated the same way. */
export function proxyConfig(argv: string[]): { config: ConfigInput; accessLog: boolean; workers: number | 'auto' | undefined } {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: '127.0.0.1:8080' },
      to: { type: 'string', multiple: true },
      'connect-timeout': { type: 'string' },
      'response-timeout': { type: 'string' },
      'idle-timeout': { type: 'string' },
      name: { type: 'string' },
      retries: { type: 'string' },
      'health-path': { type: 'string' },
      'no-access-log': { type: 'boolean', default: false },
      workers: { type: 'string' },
    },
    strict: true,
  });
  if (!values.to || values.to.length === 0) throw new UsageError('proxy needs at least one --to URL (for example --to http://127.0.0.1:3000)');
  const listen = splitHostPort(values.listen!, '--listen');
  const timeouts: Record<string, string> = {};
  const ct = durationFlag(values['connect-timeout'], '--connect-timeout');
  const rt = durationFlag(values['response-timeout'], '--response-timeout');
  const it = durationFlag(values['idle-timeout'], '--idle-timeout');
  if (ct) timeouts.connect = ct;
  if (rt) timeouts.response = rt;
  if (it) timeouts.idle = it;
  let retry: { tries: number } | undefined;
  if (values.retries !== undefined) {
    const n = Number(values.retries);
    if (!Number.isInteger(n) || n < 0 || n > 9) throw new UsageError(`--retries expects a whole number from 0 to 9, got "${values.retries}"`);
    retry = { tries: n + 1 };
  }
  const hp = values['health-path'];
  if (hp !== undefined && !hp.startsWith('/')) throw new UsageError(`--health-path expects a path starting with /, got "${hp}"`);
  const config: ConfigInput = {
    listeners: [{ address: listen.address, port: listen.port }],
    clusters: { default: { endpoints: values.to, timeouts, ...(hp ? { healthCheck: { path: hp, interval: '2s', timeout: '1s' } } : {}) } },
    routes: [{ name: 'default', cluster: 'default', ...(retry ? { retry } : {}) }],
    log: { access: !values['no-access-log'] },
  };
  if (values.name) config.name = values.name;
  return { config, accessLog: !values['no-access-log'], workers: workersFlag(values.workers) };
}

function workersFlag(v: string | undefined): number | 'auto' | undefined {
  const w = parseWorkers(v);
  if (Number.isNaN(w)) throw new UsageError(`--workers expects a number from 1 to 256 or "auto", got "${v}"`);
  return w;
}

async function runCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, workers: { type: 'string' } }, strict: true });
  if (!values.config) throw new UsageError('run needs -c FILE');
  const workers = workersFlag(values.workers);
  const config = await loadConfigFile(values.config); // validated in the primary too: a bad config never forks
  if (workers !== undefined) {
    const code = await superviseWorkers(workers);
    if (code !== undefined) return code;
  }
  const rt = await startRuntime(config);
  const code = await untilSignal(rt);
  leaveCluster();
  return code;
}

async function checkCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' } }, strict: true });
  if (!values.config) throw new UsageError('check needs -c FILE');
  const config = await loadConfigFile(values.config);
  process.stdout.write(
    `${values.config}: ok — ${config.listeners.length} listener(s), ${Object.keys(config.clusters).length} cluster(s), ${config.routes.length} route(s)${config.forward ? ', forward proxy' : ''}\n`,
  );
  return 0;
}

async function proxyCommand(argv: string[]): Promise<number> {
  const { config: input, accessLog, workers } = proxyConfig(argv);
  const config = validateConfig(input, 'gatewise proxy');
  if (workers !== undefined) {
    const code = await superviseWorkers(workers);
    if (code !== undefined) return code;
  }
  const rt = await startRuntime(config, { accessLog });
  const code = await untilSignal(rt);
  leaveCluster();
  return code;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'run':
        return await runCommand(rest);
      case 'check':
        return await checkCommand(rest);
      case 'schema':
        process.stdout.write(JSON.stringify(jsonSchema(), null, 2) + '\n');
        return 0;
      case 'proxy':
        return await proxyCommand(rest);
      case 'forward': {
        const { forwardCommand } = await import('./forward.js');
        return await forwardCommand(rest);
      }
      case 'passwd': {
        const { passwdCommand } = await import('./passwd.js');
        return await passwdCommand(rest);
      }
      case 'usage': {
        const { usageCommand } = await import('./usage-command.js');
        return await usageCommand(rest);
      }
      case 'lab': {
        const { labCommand } = await import('./lab.js');
        return await labCommand(rest);
      }
      case 'demo': {
        const { demoCommand } = await import('./demo.js');
        return await demoCommand(rest);
      }
      case '--version':
      case '-v':
      case 'version':
        process.stdout.write(version() + '\n');
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(HELP + '\n');
        return 0;
      default:
        process.stderr.write(`gatewise: unknown command "${cmd}"\n\n${HELP}\n`);
        return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      return 1;
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`gatewise ${cmd}: ${(err as Error).message}\n`);
      return 2;
    }
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      process.stderr.write(`gatewise ${cmd}: cannot listen: ${e.message}\n`);
      return 1;
    }
    throw err;
  }
}
