import { randomBytes } from 'node:crypto';
import { existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { checkConfigText, isJsonFile } from '../config/check.js';
import { hashPassword } from '../tenants/index.js';
import { answerUsage, command, optionsError, parseCommand } from './commands.js';
import { UsageError } from './usage.js';

/**
 * `gatewise init`: a commented starter config for the two common cases, checked with the
 * same function as `gatewise check` before it is written. Existing files are kept unless
 * --force.
 */

function hostPort(s: string): { address: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen expects ADDRESS:PORT (for example 127.0.0.1:8080), got "${s}"`);
  return { address: m[1] ?? (m[2] || '127.0.0.1'), port };
}

const q = (s: string): string => JSON.stringify(s);

export function reverseSection(to: readonly string[], listen: { address: string; port: number }): string {
  return `# A reverse gateway: clients connect to the listener, requests go to the servers of
# cluster "app". Every failure it answers itself names its cause (Proxy-Status header,
# problem+json or an HTML page) and is logged.
listeners:
  - address: ${q(listen.address)}   # "0.0.0.0" accepts connections from other hosts
    port: ${listen.port}
clusters:
  app:
    endpoints:                   # scheme://host:port of each server; least-request balancing
${to.map((u) => `      - ${q(u)}`).join('\n')}
    timeouts:
      connect: 5s                # opening a connection (TCP + TLS); then 504
      response: 30s              # waiting for response headers; then 504
      idle: 60s                  # silence while a response body streams
    # healthCheck:               # active checks: uncomment when the servers have a cheap path
    #   path: /healthz
    #   interval: 5s
routes:
  - name: app
    match: { pathPrefix: / }     # add routes above this one for other paths or hosts
    cluster: app
    retry: { tries: 3 }          # idempotent requests retry on another endpoint (within a budget)
`;
}

export function proxySection(usersFile: string, listen: { address: string; port: number }): string {
  return `# A forward proxy service: HTTP proxy with CONNECT, SOCKS5 and SOCKS4 on one port.
# Clients authenticate as a user of the users file; each user has a plan.
forward:
  listeners:
    - address: ${q(listen.address)} # "0.0.0.0" serves other hosts (keep auth on then)
      port: ${listen.port}
      protocols: [http, socks5, socks4]
  auth:
    required: true
    usersFile: ${q(usersFile)}   # reloaded on change, no restart
  rules:
    allowPrivate: false          # private, loopback and metadata addresses are refused
    connectPorts: [443]          # ports CONNECT may open tunnels to
    # httpPorts: [80, 443, "1025-65535"]  # ports plain HTTP may reach; the default also leaves out text-protocol ports (6379, 11211, …)
  plans:                         # what a customer bought; over a limit: 429/403 with the reason
    basic:
      maxConnections: 20         # requests and tunnels open at once
      requestsPerSecond: 10
      bytesPerDay: { down: 1GB }
    pro:
      maxConnections: 200
      bytesPerMonth: { up: 100GB, down: 1TB }
`;
}

export function usersFileText(name: string, hash: string): string {
  return `# Users of the forward proxy; reloaded on change without a restart (a bad file keeps the
# old users). A password is a scrypt hash: make one with \`gatewise passwd\`.
users:
  - name: ${name}
    password: ${q(hash)}
    plan: basic
`;
}

export async function initCommand(argv: string[]): Promise<number> {
  const def = command('init');
  try {
    const v = parseCommand(def, argv).values as { reverse?: boolean; to?: string[]; proxy?: boolean; listen?: string; config: string; users: string; force?: boolean };
    const reverse = Boolean(v.reverse || v.to?.length);
    if (!reverse && !v.proxy) throw new UsageError('say what to start from: --reverse --to URL [--to URL ...] (a reverse gateway) or --proxy (a proxy service with users)');
    if (reverse && !v.to?.length) throw new UsageError('--reverse needs the servers: --to URL (repeatable), e.g. --to http://127.0.0.1:3000');
    const file = resolve(v.config);
    const usersFile = v.proxy ? (isAbsolute(v.users) || v.users.includes('/') ? resolve(v.users) : join(dirname(file), v.users)) : undefined;
    const listen = v.listen !== undefined ? hostPort(v.listen) : undefined;
    // One file for two contents would keep only the second (finding, session 29: the config was lost).
    if (usersFile === file) throw new UsageError(`--users and --config name the same file (${file}): the users file is a file of its own`);
    // A directory is no file to write, --force or not (finding, newcomer audit: "exists;
    // --force overwrites it", then --force failed to rename onto it and left its temporary file).
    for (const [f, flag, what] of [[file, '--config', 'config'], [usersFile, '--users', 'users file']] as const) {
      if (f !== undefined && statSync(f, { throwIfNoEntry: false })?.isDirectory()) {
        throw new UsageError(`${flag} ${f} is a directory; name a file for the ${what} (e.g. ${join(f, what === 'config' ? 'gatewise.yaml' : 'users.yaml')})`);
      }
    }
    for (const f of [file, usersFile]) {
      if (f && existsSync(f) && !v.force) {
        process.stderr.write(`gatewise init: ${f} exists; --force overwrites it\n`);
        return 1;
      }
    }
    const password = randomBytes(12).toString('base64url');
    const parts = [
      `# Gatewise starter config, written by \`gatewise init\`.\n# Check it: gatewise check -c ${v.config}   Run it: gatewise run -c ${v.config}\n# Every key, its default and meaning: docs/config-reference.md\n\nname: gatewise                   # in Via and Proxy-Status\n`,
    ];
    if (reverse) parts.push(reverseSection(v.to!, listen ?? { address: '127.0.0.1', port: 8080 }));
    if (v.proxy) parts.push(proxySection(usersFile!, reverse || !listen ? { address: '127.0.0.1', port: 3128 } : listen));
    parts.push(`log:
  access: true                   # one JSON line per request on standard output
  level: info
# admin:                         # JSON API, live dashboard at /, /metrics, /healthz, /ready; keep it private
#   address: 127.0.0.1
#   port: 9090
`);
    // A .json file gets JSON (without the comments), since a .json file is read as strict
    // JSON (finding, newcomer audit: init wrote YAML there, check passed, run failed).
    const text = asFormatOf(file, parts.join('\n'));
    // The same checks as \`gatewise check\`, short of the users file that is not written yet.
    const r = checkConfigText(text, v.config, { host: false });
    if (r.problems.length) throw optionsError(def, r.problems, parseYaml(text));
    // Both files or neither: each is written beside itself first and renamed into place once
    // both are written (finding, session 29: a users file that could not be written left a
    // config pointing at it, and the retry was refused because the config existed).
    const users = usersFile === undefined ? undefined : asFormatOf(usersFile, usersFileText('alice', await hashPassword(password)));
    const staged: Array<[string, string]> = [];
    try {
      staged.push(stage(file, text, 'config', '--config'));
      if (usersFile !== undefined) staged.push(stage(usersFile, users!, 'users file', '--users', 0o600));
    } catch (err) {
      for (const [tmp] of staged) rmSync(tmp, { force: true });
      throw err;
    }
    // A rename that fails (the target turned into a directory since) leaves no temporary file.
    let placing: string | undefined;
    try {
      for (const [tmp, to] of staged) {
        placing = to;
        renameSync(tmp, to);
      }
    } catch (err) {
      for (const [tmp] of staged) rmSync(tmp, { force: true });
      const e = err as NodeJS.ErrnoException;
      throw new UsageError(`cannot put ${placing} in place (${e.code ?? e.message})`);
    }
    const wrote = staged.map(([, to]) => to);
    process.stdout.write(`gatewise init: wrote ${wrote.join(' and ')}\n`);
    if (usersFile) process.stdout.write(`gatewise init: user alice, password ${password} (shown once; only its hash is stored)\n`);
    process.stdout.write(`next: gatewise check -c ${v.config} && gatewise run -c ${v.config}\n`);
    return 0;
  } catch (err) {
    const code = answerUsage(def, err, process.stdout, process.stderr);
    if (code !== undefined) return code;
    throw err;
  }
}

/** `yamlText` as `file`'s name asks: JSON for a .json file (its comments dropped), else as it is. */
function asFormatOf(file: string, yamlText: string): string {
  return isJsonFile(file) ? JSON.stringify(parseYaml(yamlText), null, 2) + '\n' : yamlText;
}

/** Write `text` beside `file` (a temporary name in its directory); a failure names the flag and the file. */
function stage(file: string, text: string, what: string, flag: string, mode?: number): [string, string] {
  const tmp = `${file}.${process.pid}.init.tmp`;
  try {
    writeFileSync(tmp, text, mode === undefined ? undefined : { mode });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`${flag} ${file}: cannot write the ${what} there (${e.code ?? e.message})`);
  }
  return [tmp, file];
}
