import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { ConfigError, formatProblems, loadConfigFile, validateConfig } from '../config/load.js';
import type { ConfigProblem } from '../config/check.js';
import type { RuntimeOptions } from './runtime.js';
import { jsonSchema, type Config, type ConfigInput } from '../config/schema.js';
import { parseDuration } from '../config/duration.js';
import { UsageError } from './usage.js';
import { ListenFailure, bindWords, configBindWords } from './bind-failure.js';
import { COMMANDS, answerUsage, command, commandHelp, optionsError, parseCommand, topHelp } from './commands.js';
import { announceStarted, leaveCluster, parseWorkers, superviseWorkers, type WorkerStateOptions } from './workers.js';



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
  const values = parseCommand(command('proxy'), argv).values as {
    listen: string;
    to: string[];
    'connect-timeout'?: string;
    'response-timeout'?: string;
    'idle-timeout'?: string;
    name?: string;
    retries?: string;
    'health-path'?: string;
    'no-access-log'?: boolean;
    workers?: string;
  };
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
    retry = { tries: Number(values.retries) + 1 }; // 0-9, checked by parseCommand (`whole` in the definition)
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
  return { config, accessLog: !values['no-access-log'], workers: parseWorkers(values.workers) };
}

/** Warnings of a config that is otherwise fine, on stderr (once, in the primary with --workers). */
function warn(file: string): (w: readonly ConfigProblem[]) => void {
  return (w) => {
    if (!cluster.isWorker) process.stderr.write(formatProblems(w, file, 'warning') + '\n');
  };
}

/** The primary holds the forward proxy's state for its workers, unless it lives in Redis. */
function workerState(config: Config): WorkerStateOptions | undefined {
  const st = config.forward?.state;
  if (!st || st.redis) return undefined;
  return { file: st.file, flushIntervalMs: parseDuration(st.flushInterval) ?? 10_000 };
}

async function runCommand(argv: string[]): Promise<number> {
  const values = parseCommand(command('run'), argv).values as { config: string; workers?: string };
  const workers = parseWorkers(values.workers);
  // The same checks as `gatewise check` (one function): a bad config never forks or binds.
  const config = await loadConfigFile(values.config, { onWarnings: warn(values.config) });
  if (workers !== undefined) {
    const code = await superviseWorkers(workers, workerState(config));
    if (code !== undefined) return code;
  }
  return serve('run', config, { configFile: values.config });
}

/**
 * Run the runtime until a signal; in a worker, tell the primary once started, and leave its
 * channel at the end. A listener that cannot bind is said in `opts.bindWords`' words (the
 * config's entries by default), exit 1.
 */
async function serve(cmd: string, config: Config, opts: RuntimeOptions): Promise<number> {
  const { startRuntime, untilSignal } = await import('./runtime.js');
  try {
    let rt;
    try {
      rt = await startRuntime(config, opts);
    } catch (err) {
      const words = opts.bindWords !== undefined ? opts.bindWords(err) : configBindWords(config, err, opts.configFile);
      if (words === undefined) throw err;
      process.stderr.write(`gatewise ${cmd}: ${words}\n`);
      return 1;
    }
    announceStarted();
    return await untilSignal(rt);
  } finally {
    // Whether it served or could not start: the channel alone kept a worker up.
    leaveCluster();
  }
}

async function checkCommand(argv: string[]): Promise<number> {
  const values = parseCommand(command('check'), argv).values as { config: string };
  const config = await loadConfigFile(values.config, { onWarnings: warn(values.config) });
  process.stdout.write(`${values.config}: ok — ${checkSummary(config)}\n`);
  return 0;
}

/** What `check` says a good config will run: each part that listens, the forward proxy and admin with their addresses. */
export function checkSummary(config: Config): string {
  const at = (a: { address: string; port: number }) => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);
  const parts: string[] = [];
  if (config.listeners.length || !config.forward) {
    parts.push(`${config.listeners.length} listener(s), ${Object.keys(config.clusters).length} cluster(s), ${config.routes.length} route(s)`);
  }
  if (config.forward) parts.push(`forward proxy on ${config.forward.listeners.map(at).join(', ')}`);
  if (config.admin) parts.push(`admin on ${at(config.admin)}`);
  return parts.join('; ');
}

async function proxyCommand(argv: string[]): Promise<number> {
  const { config: input, accessLog, workers } = proxyConfig(argv);
  let config;
  try {
    config = validateConfig(input, 'gatewise proxy');
  } catch (err) {
    // The config is the flags' doing: say each problem as the flag that set it.
    if (err instanceof ConfigError) throw optionsError(command('proxy'), err.problems, input);
    throw err;
  }
  if (workers !== undefined) {
    const code = await superviseWorkers(workers, workerState(config));
    if (code !== undefined) return code;
  }
  // A port in use is named by its flag, not a config entry the user never wrote.
  return serve('proxy', config, { accessLog, bindWords: (err) => bindWords(err, [[config.listeners[0], '--listen']]) });
}

type CommandRunner = (argv: string[]) => Promise<number>;

/**
 * The commands whose module is loaded only when they run, so that `gatewise run` and
 * `gatewise check` do not load the lab, the diagnoser, the password hasher and the rest.
 */
const LAZY_COMMANDS: ReadonlyMap<string, () => Promise<CommandRunner>> = new Map([
  ['init', async () => (await import('./init.js')).initCommand],
  ['forward', async () => (await import('./forward.js')).forwardCommand],
  ['passwd', async () => (await import('./passwd.js')).passwdCommand],
  ['usage', async () => (await import('./usage-command.js')).usageCommand],
  ['lab', async () => (await import('./lab.js')).labCommand],
  ['diagnose', async () => (await import('./diagnose.js')).diagnoseCommand],
  ['demo', async () => (await import('./demo.js')).demoCommand],
]);

/**
 * The commands that print an answer and end. A reader that closes their output early
 * (`gatewise schema | head`) is not their failure: they end quietly with 0 instead of dying
 * on an unhandled EPIPE with a stack trace (`cat` dies by SIGPIPE, status 141; a shell
 * reports the pipeline's last command either way). A failed `check` still exits 1: its
 * problems go to standard error. The long-running ones log to standard output and keep
 * Node's behaviour.
 */
const ONE_SHOT = new Set(['check', 'schema', 'help', '--help', '-h', 'version', '--version', '-v', 'passwd', 'usage', 'init', undefined]);

function endQuietlyOnClosedOutput(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (ONE_SHOT.has(cmd)) endQuietlyOnClosedOutput();
  try {
    const lazy = cmd === undefined ? undefined : LAZY_COMMANDS.get(cmd);
    if (lazy) return await (await lazy())(rest);
    switch (cmd) {
      case 'run':
        return await runCommand(rest);
      case 'check':
        return await checkCommand(rest);
      case 'schema':
        parseCommand(command('schema'), rest);
        process.stdout.write(JSON.stringify(jsonSchema(), null, 2) + '\n');
        return 0;
      case 'proxy':
        return await proxyCommand(rest);
      case '--version':
      case '-v':
      case 'version':
        process.stdout.write(version() + '\n');
        return 0;
      case 'help': {
        // `gatewise help COMMAND` is `gatewise COMMAND --help`.
        const def = COMMANDS.find((c) => c.name === rest[0]);
        process.stdout.write(def ? commandHelp(def) : topHelp());
        return 0;
      }
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(topHelp());
        return 0;
      default:
        process.stderr.write(`gatewise: unknown command "${cmd}"\n\n${topHelp()}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      return 1;
    }
    if (err instanceof ListenFailure) {
      process.stderr.write(`gatewise ${cmd}: ${err.message}\n`);
      return 1;
    }
    const def = COMMANDS.find((c) => c.name === cmd);
    const answered = def ? answerUsage(def, err, process.stdout, process.stderr) : undefined;
    if (answered !== undefined) return answered;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      process.stderr.write(`gatewise ${cmd}: cannot listen: ${e.message}\n`);
      return 1;
    }
    throw err;
  }
}
