import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError } from './usage.js';
import { pathString } from '../config/load.js';
import { didYouMean } from '../config/schema-walk.js';

/**
 * One definition per command: the parser options, `gatewise <cmd> --help`, the top-level
 * help, the README's CLI synopsis, and the mapping of config problems back to the flags
 * that built the config all come from here.
 */
export interface OptionDef {
  /** Long flag without the dashes: `listen` for `--listen`. */
  flag: string;
  /** Name of the value in help (string options only): `ADDR:PORT`. */
  value?: string;
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  /** Applied by the parser and shown in help. */
  default?: string;
  required?: boolean;
  description: string;
  /**
   * Config paths this flag sets (in a config a one-liner builds); `[]` stands for any index.
   * A validation problem at (or under) such a path is reported as this flag.
   */
  configPaths?: readonly string[];
  /** A sample value, for the message when a required option is missing. */
  example?: string;
  /** Never echo the value (passwords). */
  secret?: boolean;
  /**
   * What a time this option takes is written in: `duration` (250ms, 2s: a number needs its
   * unit) or `ms` (a bare number of milliseconds). `gatewise help`'s note names both (CLI_NOTES).
   */
  unit?: 'duration' | 'ms';
  /** Better words for a config problem of this flag; `value` is the offending value as given. */
  explain?: (message: string, value: unknown) => string | undefined;
  /**
   * A whole number from `min` to `max` (no `max`: no bound), or one of `words`: `parseCommand`
   * refuses anything else (a negative, a fraction, a word) as a usage error naming the flag and
   * the range, the same for every command.
   */
  whole?: { min: number; max?: number; words?: readonly string[] };
}

export interface CommandDef {
  name: string;
  summary: string;
  /** Positional arguments in the usage line, e.g. `[PASSWORD]`. */
  positionals?: string;
  options: readonly OptionDef[];
  /** More words after the option list. */
  notes?: string;
  /** Exit code of a refused command line (default 2; diagnose uses 64, since its 2 means "your side fails"). */
  usageExit?: number;
}

const SHOW_VALUE_MAX = 60;

/** Better words for a bad --to URL. */
function endpointWords(message: string, value: unknown): string | undefined {
  if (!/not an http:\/\/ or https:\/\/ URL/.test(message) || typeof value !== 'string') return undefined;
  if (!value.includes('://')) return `must be an http:// or https:// URL, e.g. http://${value}`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a valid URL (the port is 1-65535), e.g. http://127.0.0.1:3000';
  }
  return `must be an http:// or https:// URL, not ${url.protocol}//, e.g. http://${url.host || '127.0.0.1:3000'}`;
}

export const COMMANDS: readonly CommandDef[] = [
  {
    name: 'run',
    summary: 'run a config; SIGHUP (or POST /reload on the admin listener) reloads it in place, an invalid one refused; SIGTERM/SIGINT drain in-flight requests, then exit',
    options: [
      { flag: 'config', short: 'c', value: 'FILE', type: 'string', required: true, description: 'the config file: YAML, or strict JSON when its name ends in .json' },
      { flag: 'workers', value: 'N|auto', type: 'string', whole: { min: 1, max: 256, words: ['auto'] }, description: 'run N processes on the same ports (node:cluster); auto: one per core' },
    ],
  },
  {
    name: 'check',
    summary: 'check a config as run does short of binding (schema, references, files, ports, addresses); every problem at once, by file and line; exit 1 if any',
    options: [{ flag: 'config', short: 'c', value: 'FILE', type: 'string', required: true, description: 'the config file: YAML, or strict JSON when its name ends in .json' }],
  },
  {
    name: 'init',
    summary: 'write a commented starter config: a reverse gateway (--to URL ...), a proxy service with users and plans (--proxy), or both (--to URL ... --proxy)',
    options: [
      { flag: 'reverse', type: 'boolean', description: 'a reverse gateway in front of the --to servers (implied by --to)' },
      {
        flag: 'to',
        value: 'URL',
        type: 'string',
        multiple: true,
        example: 'http://127.0.0.1:3000',
        description: 'a server behind the gateway, http:// or https:// (repeatable: one cluster)',
        configPaths: ['clusters.app.endpoints'],
        explain: endpointWords,
      },
      { flag: 'proxy', type: 'boolean', description: 'a forward proxy service with users (in a users file) and plans' },
      { flag: 'listen', value: 'ADDR:PORT', type: 'string', description: 'where the gateway listens (default 127.0.0.1:8080; --proxy alone: 127.0.0.1:3128)', configPaths: ['listeners[]', 'forward.listeners[]'] },
      { flag: 'config', short: 'c', value: 'FILE', type: 'string', default: 'gatewise.yaml', description: 'the config file to write' },
      { flag: 'users', value: 'FILE', type: 'string', default: 'users.yaml', description: 'the users file to write (--proxy), next to the config unless a path is given' },
      { flag: 'force', type: 'boolean', description: 'overwrite files that exist' },
    ],
    notes: 'Then: gatewise check -c FILE, and gatewise run -c FILE. --proxy prints the first user\'s password once.',
  },
  {
    name: 'schema',
    summary: "print the config's JSON Schema (point your editor's YAML/JSON plugin at it)",
    options: [],
  },
  {
    name: 'proxy',
    summary: 'a reverse proxy in one line',
    options: [
      { flag: 'listen', value: 'ADDR:PORT', type: 'string', default: '127.0.0.1:8080', description: 'where to listen', configPaths: ['listeners[]'] },
      {
        flag: 'to',
        value: 'URL',
        type: 'string',
        multiple: true,
        required: true,
        example: 'http://127.0.0.1:3000',
        description: 'an endpoint, http:// or https:// (repeatable: one cluster)',
        configPaths: ['clusters.default.endpoints'],
        explain: endpointWords,
      },
      { flag: 'connect-timeout', value: 'D', type: 'string', unit: 'duration', description: 'time to connect to an endpoint (default 5s)', configPaths: ['clusters.default.timeouts.connect'] },
      { flag: 'response-timeout', value: 'D', type: 'string', unit: 'duration', description: 'time to wait for response headers (default 30s)', configPaths: ['clusters.default.timeouts.response'] },
      { flag: 'idle-timeout', value: 'D', type: 'string', unit: 'duration', description: 'longest silence while a body streams (default 60s)', configPaths: ['clusters.default.timeouts.idle'] },
      { flag: 'retries', value: 'N', type: 'string', whole: { min: 0, max: 9 }, description: 'retries after the first attempt, 0-9 (default 2, where safe)', configPaths: ['routes[].retry'] },
      { flag: 'health-path', value: 'PATH', type: 'string', description: 'actively check every endpoint with GET PATH every 2s', configPaths: ['clusters.default.healthCheck'] },
      { flag: 'name', value: 'NAME', type: 'string', description: 'name in Via and Proxy-Status', configPaths: ['name'] },
      { flag: 'no-access-log', type: 'boolean', description: 'do not write access-log lines', configPaths: ['log'] },
      { flag: 'workers', value: 'N|auto', type: 'string', whole: { min: 1, max: 256, words: ['auto'] }, description: 'run N processes on the same port (node:cluster)' },
    ],
    notes: 'Durations: 250ms, 2s, 1m (a number needs its unit).',
  },
  {
    name: 'forward',
    summary: 'a forward proxy (HTTP, CONNECT, SOCKS5, SOCKS4) in one line; SIGTERM/SIGINT drain requests and tunnels in flight (up to 30s), then exit',
    options: [
      {
        flag: 'listen',
        value: 'ADDR:PORT',
        type: 'string',
        default: '127.0.0.1:3128',
        description: 'HTTP proxy listener; it also serves SOCKS5/SOCKS4 unless --socks is given',
        configPaths: ['listeners[0]'],
      },
      { flag: 'socks', value: 'ADDR:PORT', type: 'string', description: 'a separate SOCKS5/SOCKS4 listener', configPaths: ['listeners[1]'] },
      {
        flag: 'user',
        value: 'NAME:PASSWORD',
        type: 'string',
        multiple: true,
        secret: true,
        description: 'a user (repeatable); the password is hashed at start',
        configPaths: ['auth.users'],
        explain: (message) =>
          /no users are configured/.test(message) ? 'no users: give --user NAME:PASSWORD (repeatable), or --no-auth to allow use without credentials' : undefined,
      },
      { flag: 'no-auth', type: 'boolean', description: 'allow use without credentials (logs a warning)', configPaths: ['auth.required'] },
      { flag: 'allow-private', type: 'boolean', description: 'allow private, loopback and link-local destinations', configPaths: ['rules.allowPrivate'] },
      {
        flag: 'connect-ports',
        value: 'LIST',
        type: 'string',
        description: 'ports CONNECT may reach, e.g. 443,8443 or 1-65535 (default 443)',
        configPaths: ['rules.connectPorts'],
      },
      {
        flag: 'http-ports',
        value: 'LIST',
        type: 'string',
        description: 'ports plain HTTP requests may reach, e.g. 80,8000-8999 (default 80, 443 and 1025-65535 less text-protocol ports such as 6379)',
        configPaths: ['rules.httpPorts'],
      },
      { flag: 'no-access-log', type: 'boolean', description: 'do not write the access log', configPaths: ['accessLog'] },
      {
        flag: 'egress',
        value: 'ADDR[,ADDR...]',
        type: 'string',
        multiple: true,
        description: 'leave from these local addresses (an address pool)',
        configPaths: ['egress.pools.default.addresses'],
      },
      {
        flag: 'via',
        value: 'URL',
        type: 'string',
        multiple: true,
        description: 'leave through this upstream proxy (repeatable; together one rotating pool): http://user:pass@host:port or socks5://user:pass@host:port',
        configPaths: ['egress.pools.default.proxies'],
      },
      {
        flag: 'rotate',
        value: 'STRATEGY',
        type: 'string',
        description: 'request (default: a new exit each time), round-robin, random, least-used, hash, sticky',
        configPaths: ['egress.pools.default.strategy'],
      },
      { flag: 'session-ttl', value: 'DURATION', type: 'string', unit: 'duration', description: 'how long a session keeps its exit (default 10m)', configPaths: ['egress.pools.default.sessionTtl'] },
    ],
    notes: 'Username parameters pick sessions and pools: NAME-session-ID-ttl-10m-pool-NAME\n(each part optional; -debug-1 adds the Gatewise-Debug header). The --egress and --via exits form the pool "default".',
  },
  {
    name: 'passwd',
    summary: 'print a scrypt hash for a forward-proxy user (reads stdin without an argument)',
    positionals: '[PASSWORD]',
    options: [],
    notes:
      'Prints a scrypt hash (scrypt$N$r$p$salt$hash) for a forward proxy user\'s "password" field.\n' +
      'Without PASSWORD the password is read from standard input (first line); prefer that: an\n' +
      'argument is visible to other users in the process list.',
  },
  {
    name: 'usage',
    summary: "per-user usage from the forward proxy's state file",
    options: [
      { flag: 'state', value: 'FILE', type: 'string', required: true, description: 'the state file (forward config: state.file)' },
      { flag: 'user', value: 'NAME', type: 'string', description: 'only this user' },
      { flag: 'date', value: 'YYYY-MM-DD', type: 'string', description: 'report this day (and its month) instead of today' },
      { flag: 'json', type: 'boolean', description: 'machine-readable output' },
    ],
    notes:
      'Prints per-user usage of the forward proxy: bytes up and down and requests, today and\n' +
      'this month (UTC). Usage is read from the state file the forward proxy writes when its\n' +
      'config sets state.file (every state.flushInterval, and when it stops).',
  },
  {
    name: 'lab',
    summary: 'run the failure lab upstream standalone',
    options: [
      { flag: 'host', value: 'ADDR', type: 'string', default: '127.0.0.1', description: 'address to listen on' },
      { flag: 'port', value: 'N', type: 'string', default: '3000', whole: { min: 0, max: 65535 }, description: 'port of the plain HTTP listener (0: any free port)' },
      { flag: 'no-tls', type: 'boolean', description: 'no TLS listeners (self-signed and lab-CA certificates)' },
      { flag: 'capacity', value: 'N', type: 'string', default: '4', whole: { min: 1 }, description: '/work jobs the lab runs at once' },
      { flag: 'queue', value: 'N', type: 'string', default: '16', whole: { min: 0 }, description: '/work jobs that wait beyond capacity; beyond that: 503' },
      { flag: 'keep-alive-timeout', value: 'MS', type: 'string', unit: 'ms', default: '5000', whole: { min: 0 }, description: 'idle keep-alive timeout of the lab, in milliseconds' },
      { flag: 'idle-close', value: 'MIN-MAX', type: 'string', unit: 'ms', description: 'also close each idle keep-alive connection after a random MIN-MAX ms, unannounced' },
      { flag: 'max-requests', value: 'N', type: 'string', whole: { min: 1 }, description: 'close each connection after N answers (nginx keepalive_requests)' },
      { flag: 'close-header', type: 'boolean', description: 'with --max-requests: say Connection: close on the last answer' },
    ],
  },
  {
    name: 'demo',
    summary: 'the gateway in front of the lab, with a table of URLs to try',
    options: [
      { flag: 'port', value: 'N', type: 'string', default: '8080', whole: { min: 0, max: 65535 }, description: 'port of the gateway on 127.0.0.1' },
      { flag: 'admin-port', value: 'N', type: 'string', whole: { min: 0, max: 65535 }, description: 'port of the admin API and live dashboard on 127.0.0.1 (default: the gateway port + 1; any free port when --port is 0)' },
      { flag: 'once', type: 'boolean', description: 'probe every cause, print the table and exit (1 if an answer was unexpected)' },
      { flag: 'log', type: 'boolean', description: 'write access-log lines' },
    ],
  },
  {
    name: 'diagnose',
    summary: 'find which hop makes a URL fail (DNS, connect, TLS, HTTP; refresh, cache, client and path experiments) and whose side must act',
    positionals: 'URL',
    usageExit: 64,
    options: [
      { flag: 'proxy', value: 'URL', type: 'string', description: 'also try through this http:// proxy (is it your network or the site?)' },
      { flag: 'resolve', value: 'HOST:PORT:ADDR', type: 'string', multiple: true, description: 'connect to ADDR for HOST:PORT instead of looking HOST up (as curl --resolve)' },
      { flag: 'tries', value: 'N', type: 'string', default: '3', whole: { min: 1, max: 20 }, description: 'spaced tries of the refresh experiment, 1-20' },
      { flag: 'json', type: 'boolean', description: 'print one JSON object instead of text' },
      { flag: 'timeout', value: 'T', type: 'string', unit: 'duration', default: '10s', description: 'longest wait of each phase (DNS, connect, TLS, response head, a gap in the body)' },
      { flag: 'header', short: 'H', value: "'Name: value'", type: 'string', multiple: true, description: 'an extra request header (repeatable)' },
      { flag: 'method', value: 'M', type: 'string', default: 'GET', description: 'the request method' },
      { flag: 'insecure', type: 'boolean', description: 'go on past an untrusted certificate (it is still reported)' },
    ],
    notes:
      'Exit codes: 0 healthy, 1 failing on the site\'s side (its server or an intermediary),\n' +
      '2 failing on your side (this machine or its network), 3 could not tell, 64 bad command line.\n' +
      'Try it during `gatewise demo`: gatewise diagnose http://127.0.0.1:8080/hang',
  },
];

export function command(name: string): CommandDef {
  const def = COMMANDS.find((c) => c.name === name);
  if (!def) throw new Error(`no command definition for ${name}`);
  return def;
}

function flagText(o: OptionDef): string {
  return `--${o.flag}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
}

function synopsisTokens(def: CommandDef): string[] {
  const tokens = [`gatewise ${def.name}`];
  for (const o of def.options) {
    const name = o.short ? `-${o.short}` : `--${o.flag}`;
    const t = `${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    const more = o.multiple ? ` [${name} ...]` : '';
    tokens.push(o.required ? `${t}${more}` : `[${t}]${more}`);
  }
  if (def.positionals) tokens.push(def.positionals);
  return tokens;
}

const WIDTH = 100;

/** The usage line(s) of a command, wrapped, continuation lines indented under the first option. */
export function usageLine(def: CommandDef): string {
  const [head, ...rest] = synopsisTokens(def);
  const indent = ' '.repeat(head!.length + 1);
  const lines: string[] = [];
  let line = head!;
  for (const t of rest) {
    if (line.length + 1 + t.length > WIDTH && line.trim() !== '') {
      lines.push(line);
      line = indent + t;
    } else line += ` ${t}`;
  }
  lines.push(line);
  return lines.join('\n');
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const w of text.split(/\s+/)) {
    if (line && line.length + 1 + w.length > width) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out;
}

/** `gatewise <cmd> --help`. */
export function commandHelp(def: CommandDef): string {
  const rows: Array<[string, string]> = def.options.map((o) => [
    `${o.short ? `-${o.short}, ` : ''}${flagText(o)}`,
    `${o.description}${o.multiple && !/repeatable/.test(o.description) ? ' (repeatable)' : ''}${o.required ? ' (required)' : ''}${o.default !== undefined ? ` (default ${o.default})` : ''}`,
  ]);
  rows.push(['-h, --help', 'this text']);
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  const lines = [`usage: ${usageLine(def).replace(/\n/g, '\n       ')}`, '', `${def.summary[0]!.toUpperCase()}${def.summary.slice(1)}.`, '', 'Options:'];
  for (const [f, d] of rows) {
    const text = wrap(d, Math.max(40, WIDTH - 2 - w));
    lines.push(`  ${f.padEnd(w)}${text[0] ?? ''}`);
    for (const more of text.slice(1)) lines.push(`  ${' '.repeat(w)}${more}`);
  }
  if (def.notes) lines.push('', def.notes);
  return lines.join('\n') + '\n';
}

/** Every command's usage line and summary: the heart of the README's CLI block and of `gatewise help`. */
export function synopsis(): string {
  return (
    COMMANDS.map((c) => {
      const defaults = c.options.filter((o) => o.default !== undefined).map((o) => `--${o.flag} ${o.default}`);
      return `${usageLine(c)}\n    ${c.summary}${defaults.length ? `\n    (default ${defaults.join(' ')})` : ''}`;
    }).join('\n') + '\n'
  );
}

/** The value names of the options that take a time in `unit` (`OptionDef.unit`), in order of first use. */
function valuesIn(unit: 'duration' | 'ms'): string {
  return [...new Set(COMMANDS.flatMap((c) => c.options.filter((o) => o.unit === unit).map((o) => o.value!)))].join(', ');
}

/**
 * The notes `gatewise help` (and the README's CLI block) end with. Which values are durations is
 * read from the definitions: before the review of session 37 it said every duration needs a
 * unit, while lab's `--keep-alive-timeout MS` and `--idle-close MIN-MAX` take bare milliseconds.
 */
const CLI_NOTES =
  `'gatewise COMMAND --help' describes a command's options. Durations (${valuesIn('duration')}): 250ms, 2s, 1m, 1h (a number needs its unit);\n` +
  `${valuesIn('ms')}: milliseconds, a bare number.\n` +
  'Exit codes: 0 ok, 1 failed (bad config, cannot listen: the address and the flag or config entry that named it),\n' +
  '2 bad command line (the reason, naming the flag and for a number its range, and the usage on stderr);\n' +
  'diagnose has its own (see its --help).\n';

/** The README's CLI block: every command's synopsis, then the notes `gatewise help` ends with. */
export function readmeCli(): string {
  return `${synopsis()}\n${CLI_NOTES}`;
}

/** `gatewise help`. */
export function topHelp(): string {
  const body = synopsis()
    .trimEnd()
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
  return (
    'gatewise — a gateway and proxy server that explains every failure it produces\n\n' +
    `Usage:\n${body}\n  gatewise help | --version\n\n` +
    CLI_NOTES
  );
}

/** What `gatewise <cmd>` prints (on stderr) after the reason a command line was refused. */
export function shortUsage(def: CommandDef): string {
  return `usage: ${usageLine(def).replace(/\n/g, '\n       ')}\n'gatewise ${def.name} --help' ${def.options.length ? 'describes every option' : 'describes the command'}.\n`;
}

/** Thrown for `--help` / `-h`: the caller prints the command's help on stdout and exits 0. */
export class HelpRequested extends Error {
  readonly code = 'GATEWISE_HELP';
  constructor(readonly command: CommandDef) {
    super('help');
  }
}

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** The `parseArgs` options a definition describes (with `--help`/`-h`). */
export function parseOptions(def: CommandDef): Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string; default?: string }> {
  const opts: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string; default?: string }> = {};
  for (const o of def.options) {
    opts[o.flag] = { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}), ...(o.default !== undefined ? { default: o.default } : {}) };
  }
  opts.help = { type: 'boolean', short: 'h' };
  return opts;
}

/** parseArgs' reasons, in the words the rest of the CLI uses. */
function parseErrorWords(def: CommandDef, argv: readonly string[], err: Error & { code?: string }): string {
  const message = err.message.replace(/\. To specify a positional argument starting with a '-'.*$/s, '').trim();
  const missing = /^Option '(?:-(\w), )?--([\w-]+) <value>' argument missing/.exec(message);
  if (missing) {
    const o = def.options.find((x) => x.flag === missing[2]);
    if (o) return `${o.short && argv.at(-1) === `-${o.short}` ? `-${o.short}` : `--${o.flag}`} needs a value (${o.value ?? 'VALUE'})`;
  }
  // A mistyped flag is said as a mistyped config key is: named, with the nearest flag of the command.
  const unknown = /^Unknown option '(--?)([^'=]*)/.exec(message);
  if (unknown) {
    const near = unknown[1] === '--' ? didYouMean(unknown[2]!, [...def.options.map((o) => o.flag), 'help']) : undefined;
    return `unknown option ${unknown[1]}${unknown[2]}${near ? ` (did you mean --${near}?)` : ''}`;
  }
  const stray = /^Unexpected argument '(.*?)'(?:\.|$)/.exec(message);
  if (stray) return `unexpected argument '${stray[1]}': gatewise ${def.name} takes ${def.positionals ? `at most ${def.positionals}` : 'no arguments'} besides its options`;
  return message;
}

/**
 * The command line with a negative number after an option that takes a value joined to it
 * (`--retries -1` as `--retries=-1`): parseArgs refuses such a value as "ambiguous" (it could be
 * a forgotten value and a short option), and the flag's own check then says its range (finding,
 * session 37: `proxy --retries -1`, `lab --port -5` got parseArgs' words). Only what reads as a
 * number: `-c -x` stays a missing value.
 */
function joinNegativeValues(def: CommandDef, argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!;
    if (t === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const o = t.startsWith('--') ? def.options.find((x) => `--${x.flag}` === t) : t.length === 2 ? def.options.find((x) => x.short !== undefined && `-${x.short}` === t) : undefined;
    const next = argv[i + 1];
    if (o?.type === 'string' && next !== undefined && /^-\.?\d/.test(next)) {
      out.push(`--${o.flag}=${next}`);
      i++;
    } else out.push(t);
  }
  return out;
}

/** A value of a `whole` flag: a whole number in its range (digits only: not 1e3, 0x10, +4 or 1.0), or one of its words. */
function wholeProblem(o: OptionDef, v: string): string | undefined {
  const w = o.whole!;
  if (w.words?.includes(v)) return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (n >= w.min && (w.max === undefined || n <= w.max)) return undefined;
  return `--${o.flag} expects a whole number from ${w.min}${w.max !== undefined ? ` to ${w.max}` : ''}${w.words?.length ? ` or ${w.words.map((x) => `"${x}"`).join(', ')}` : ''}, got "${v}"`;
}

/**
 * Parse a command line by its definition. `--help` throws HelpRequested; an unknown option,
 * a missing value, a stray argument, a missing required option or a value out of a `whole`
 * flag's range throws UsageError.
 */
export function parseCommand(def: CommandDef, argv: string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(def, argv), options: parseOptions(def), strict: true, allowPositionals: def.positionals !== undefined });
  } catch (err) {
    // `--help` still wins over a mistake elsewhere on the line.
    if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested(def);
    throw new UsageError(parseErrorWords(def, argv, err as Error & { code?: string }));
  }
  if (parsed.values.help) throw new HelpRequested(def);
  for (const o of def.options) {
    const v = parsed.values[o.flag];
    if (o.required && (v === undefined || (Array.isArray(v) && v.length === 0))) {
      const name = o.short ? `-${o.short}` : `--${o.flag}`;
      throw new UsageError(`${flagText(o).replace(/^--[^ ]+/, name)} is required${o.example ? ` (e.g. ${name} ${o.example})` : ''}`);
    }
    if (o.whole !== undefined && typeof v === 'string') {
      const problem = wholeProblem(o, v);
      if (problem !== undefined) throw new UsageError(problem);
    }
  }
  return { values: parsed.values as Parsed['values'], positionals: parsed.positionals };
}

/**
 * The reply to a refused command line or a `--help`: writes to `out`/`err` and returns the exit
 * code, or undefined when the error is not one of those.
 */
export function answerUsage(def: CommandDef, err: unknown, out: { write(s: string): unknown }, errOut: { write(s: string): unknown }): number | undefined {
  if (err instanceof HelpRequested) {
    out.write(commandHelp(err.command));
    return 0;
  }
  if (err instanceof UsageError || (err as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS')) {
    errOut.write(`gatewise ${def.name}: ${(err as Error).message}\n${shortUsage(def)}`);
    return def.usageExit ?? 2;
  }
  return undefined;
}

// ---- config problems back to flags -------------------------------------------------------

export interface PathProblem {
  /** `a.b[0].c` (the config loader's form) or the raw path array. */
  path: string | readonly PropertyKey[];
  message: string;
}

function patternRe(pattern: string): RegExp {
  const body = pattern.replace(/[.*+?^${}()|\\]/g, '\\$&').replace(/\[\]/g, '\\[\\d+\\]').replace(/\[(\d+)\]/g, '\\[$1\\]');
  // The pattern, then optionally one index (the element of a list the flag fills), then the rest.
  return new RegExp(`^(${body}(?:\\[\\d+\\])?)(?=$|[.[])`);
}

function valueAt(config: unknown, path: string): unknown {
  let v: unknown = config;
  for (const m of path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[m[1] ?? m[2]!];
  }
  return v;
}

/** Never echo a proxy URL's credentials. */
function hideCredentials(s: string): string {
  return s.replace(/\/\/[^@/\s]*@/g, '//…@');
}

/**
 * Say each problem of a config a command line built in terms of the flag that set it:
 * `--to 127.0.0.1:30300: must be an http:// or https:// URL, e.g. http://127.0.0.1:30300`.
 * Problems no flag owns keep their config path.
 */
export function flagProblems(def: CommandDef, problems: readonly PathProblem[], config: unknown): string[] {
  const byPath = new Map<string, string[]>();
  for (const p of problems) {
    const path = typeof p.path === 'string' ? p.path : pathString(p.path);
    const list = byPath.get(path) ?? [];
    list.push(hideCredentials(p.message));
    byPath.set(path, list);
  }
  const lines: string[] = [];
  for (const [path, messages] of byPath) {
    // zod's generic words ("Too small: ...") next to a specific one for the same value say less.
    const specific = messages.filter((m) => !/^(Too small|Too big|Invalid input|Invalid option)\b/.test(m));
    const kept = specific.length ? specific : messages;
    let owner: OptionDef | undefined;
    let at = '';
    for (const o of def.options) {
      for (const pat of o.configPaths ?? []) {
        const m = patternRe(pat).exec(path);
        if (m && m[1]!.length > at.length) {
          owner = o;
          at = m[1]!;
        }
      }
    }
    for (const message of kept) {
      if (!owner) {
        lines.push(`${path || '(config)'}: ${message}`);
        continue;
      }
      const value = valueAt(config, at);
      const shown = !owner.secret && owner.type === 'string' && (typeof value === 'string' || typeof value === 'number') ? hideCredentials(String(value)) : undefined;
      let words = owner.explain?.(message, value) ?? message;
      // The value leads the line already: `endpoint "x" must be …` says it twice.
      if (shown !== undefined) {
        const quoted = JSON.stringify(shown);
        const at0 = words.indexOf(`${quoted} `);
        if (at0 === 0 || (at0 > 0 && /^\w+ $/.test(words.slice(0, at0)))) words = words.slice(at0 + quoted.length + 1);
      }
      const rest = path.length > at.length && !owner.explain?.(message, value) ? ` (${path.slice(at.length).replace(/^\./, '')})` : '';
      lines.push(`--${owner.flag}${shown !== undefined && shown.length <= SHOW_VALUE_MAX ? ` ${shown}` : ''}${rest}: ${words}`);
    }
  }
  return lines;
}

/** A UsageError listing the problems of a built config by flag. */
export function optionsError(def: CommandDef, problems: readonly PathProblem[], config: unknown): UsageError {
  return problemsError(flagProblems(def, problems, config));
}

/** A UsageError of one problem, or of several counted, one per indented line. */
export function problemsError(lines: readonly string[]): UsageError {
  return new UsageError(lines.length === 1 ? lines[0]! : `${lines.length} problems:\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

// ---- the README ---------------------------------------------------------------------------

const README = new URL('../../../README.md', import.meta.url);

/** The README's CLI block: the first ``` block after "## CLI". */
export function readmeCliBlock(text: string): { start: number; end: number; body: string } | undefined {
  const section = text.indexOf('\n## CLI\n');
  if (section < 0) return undefined;
  const open = text.indexOf('\n```\n', section);
  if (open < 0) return undefined;
  const start = open + 5;
  const end = text.indexOf('\n```\n', start - 1);
  if (end < 0) return undefined;
  return { start, end: end + 1, body: text.slice(start, end + 1) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--readme') process.stdout.write(readmeCli());
  else if (process.argv[2] === '--update-readme') {
    const text = readFileSync(README, 'utf8');
    const block = readmeCliBlock(text);
    if (!block) throw new Error('README.md has no ## CLI code block');
    writeFileSync(README, text.slice(0, block.start) + readmeCli() + text.slice(block.end));
    process.stdout.write('README.md: CLI block updated\n');
  } else {
    process.stderr.write('usage: node dist/src/cli/commands.js --readme | --update-readme\n');
    process.exitCode = 2;
  }
}
