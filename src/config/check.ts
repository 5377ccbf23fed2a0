import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { SocketAddress, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Document, LineCounter } from 'yaml';
import { z } from 'zod';
import { allowlistOverlaps, forwardCrossChecks, forwardUserSchema } from './forward.js';
import { CertificateFileError, readCaFile, readCertificatePair } from './tls-files.js';
import { configCrossChecks, configSchema, type Config } from './schema.js';
import { didYouMean, keysAt } from './schema-walk.js';
import { yaml } from '../text/index.js';
import { jsonSyntaxError } from './json-syntax.js';

/**
 * Everything `gatewise run` checks before it binds a socket, in one function that `check`
 * and `run` both call: the YAML, the schema, references across keys, the files the config
 * names (CA files, users files, state and log files), listeners that would collide, and
 * listen and egress addresses that are not this host's. Every problem is found in one pass
 * (type errors do not hide reference errors) and located by file and line.
 */

/** One problem in a config, located by path and (when known) file, line and column. */
export interface ConfigProblem {
  path: string;
  message: string;
  /** The file the problem is in when it is not the config itself (a users file). */
  file?: string;
  line?: number;
  column?: number;
}

export interface CheckResult {
  /** The validated config, when there are no problems. */
  config: Config | undefined;
  problems: ConfigProblem[];
  /** Worth saying but not fatal (an egress address that is not this host's). */
  warnings: ConfigProblem[];
}

export interface CheckOptions {
  /** The host's addresses (default: os.networkInterfaces()). */
  localAddresses?: readonly string[];
  /** false: the schema and references only, nothing read from this host (library use, doc samples). */
  host?: boolean;
  /** The hosts file that maps listener names to addresses (default /etc/hosts). */
  hostsFile?: string;
}

/** A config path as the problems name it: `a.b[0].c`. */
export function pathString(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`;
    else s += s ? `.${String(p)}` : String(p);
  }
  return s;
}

interface Located {
  doc: Document;
  lc: LineCounter;
}

/** The line of the closest node in the YAML document for a path (the key's own line when `key` is given). */
function locate(src: Located | undefined, path: readonly PropertyKey[], key?: string): { line: number; column: number } | undefined {
  if (!src) return undefined;
  const { isMap, isNode, isScalar } = yaml();
  if (key !== undefined) {
    const parent = path.length ? src.doc.getIn(path as unknown[], true) : src.doc.contents;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
      if (pair && isNode(pair.key) && pair.key.range) {
        const pos = src.lc.linePos(pair.key.range[0]);
        return { line: pos.line, column: pos.col };
      }
    }
  }
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? src.doc.contents : src.doc.getIn(path.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) {
      const pos = src.lc.linePos(node.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return undefined;
}

/** zod issues as problems: unknown keys one by one, at the key's line, with "did you mean". */
export function issuesToProblems(issues: readonly z.core.$ZodIssue[], root: z.ZodType, src?: Located, prefix: readonly PropertyKey[] = []): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...(issue.path as PropertyKey[])];
    if (issue.code === 'unrecognized_keys') {
      const allowed = keysAt(root, issue.path as PropertyKey[]);
      for (const key of issue.keys) {
        const near = didYouMean(key, allowed);
        out.push({ path: pathString([...path, key]), message: `unknown key "${key}"${near ? ` (did you mean "${near}"?)` : ''}`, ...(locate(src, path, key) ?? {}) });
      }
      continue;
    }
    out.push({ path: pathString(path), message: issue.message, ...(locate(src, path) ?? {}) });
  }
  return out;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const listOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The addresses of this host, as os.networkInterfaces() lists them. */
export function hostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((i) => i.address);
}

/** Whether a socket can be bound to `address` here: one of the host's, a wildcard, localhost, or 127/8. */
export function isLocalAddress(address: string, local: readonly string[] = hostAddresses()): boolean {
  if (address === '0.0.0.0' || address === '::' || address === 'localhost') return true;
  if (isIP(address) === 4 && address.startsWith('127.')) return true;
  const bare = address.replace(/%.*$/, '').toLowerCase();
  return local.some((a) => a.replace(/%.*$/, '').toLowerCase() === bare);
}

function fileProblem(path: string, file: string, what: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return `${what} ${file} is not a file`;
    readFileSync(file);
    return undefined;
  } catch (err) {
    return `${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'EIO'})`;
  }
}

/** A PEM file of CA certificates: readable, and every certificate in it parses. */
function caProblem(file: string): string | undefined {
  const unreadable = fileProblem('', file, 'CA file');
  if (unreadable) return unreadable;
  const text = readFileSync(file, 'utf8');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return `CA file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`;
  for (const [i, b] of blocks.entries()) {
    try {
      new X509Certificate(b);
    } catch (err) {
      return `CA file ${file}: certificate ${i + 1} does not parse (${(err as Error).message})`;
    }
  }
  return undefined;
}

/** The sentence of a TLS file problem, or undefined when the files are fine. */
function tlsFileProblem(read: () => unknown): string | undefined {
  try {
    read();
    return undefined;
  } catch (err) {
    if (err instanceof CertificateFileError) return err.message;
    throw err;
  }
}

/** A directory a file will be written into must exist. */
function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The cache's directory: one that exists, or can be made (the nearest existing ancestor is a directory). */
function cacheDirProblem(dir: string): string | undefined {
  let at = resolve(dir);
  for (;;) {
    try {
      return statSync(at).isDirectory() ? undefined : `cache directory ${dir}: ${at} is not a directory`;
    } catch {
      const up = dirname(at);
      if (up === at) return undefined;
      at = up;
    }
  }
}

function writeDirProblem(file: string, what: string): string | undefined {
  const dir = dirname(file);
  try {
    if (!statSync(dir).isDirectory()) return `${what} ${file}: ${dir} is not a directory`;
  } catch {
    return `${what} ${file}: the directory ${dir} does not exist`;
  }
  return undefined;
}

const usersList = z.array(forwardUserSchema);

/** A forward users file: it reads, parses, and every user validates (problems located in that file). */
export function checkUsersFile(file: string, plans: Record<string, unknown> | undefined, configUsers: readonly unknown[] = []): ConfigProblem[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return [{ path: 'forward.auth.usersFile', message: `users file ${file} cannot be read ${readFailure(err)}` }];
  }
  const parsed = readYaml(text, file);
  if (Array.isArray(parsed)) return parsed.map((p) => ({ ...p, file }));
  const { doc, lc, raw } = parsed;
  const wrapped = isObj(raw) && 'users' in raw;
  const list = wrapped ? raw.users : raw;
  const prefix = wrapped ? ['users'] : [];
  const src = { doc, lc };
  if (isObj(raw) && !wrapped) {
    return [{ file, path: '', message: 'a users file is a list of users, or a mapping with the key "users"', ...(locate(src, []) ?? {}) }];
  }
  const r = usersList.safeParse(list);
  const out = r.success ? [] : issuesToProblems(r.error.issues, usersList, src, prefix).map((p) => ({ ...p, file }));
  const seen = new Set<unknown>();
  listOf(list).forEach((u, i) => {
    if (!isObj(u)) return;
    if (seen.has(u.name)) out.push({ file, path: pathString([...prefix, i, 'name']), message: `duplicate user ${String(u.name)}`, ...(locate(src, [...prefix, i, 'name']) ?? {}) });
    seen.add(u.name);
    if (typeof u.plan === 'string' && !(plans && Object.prototype.hasOwnProperty.call(plans, u.plan))) {
      out.push({ file, path: pathString([...prefix, i, 'plan']), message: `no plan named ${u.plan} (plans are set in the config's forward.plans)`, ...(locate(src, [...prefix, i, 'plan']) ?? {}) });
    }
  });
  // Allowlists of the file's users against each other and the config's users (whose own overlaps the schema reports).
  const asUser = (u: unknown): { name: string; allowFrom: unknown[] } => (isObj(u) ? { name: String(u.name), allowFrom: listOf(u.allowFrom) } : { name: '', allowFrom: [] });
  const cfg = configUsers.map(asUser);
  for (const o of allowlistOverlaps([...cfg, ...listOf(list).map(asUser)])) {
    if (o.b.user < cfg.length) continue;
    const at = [...prefix, o.b.user - cfg.length, 'allowFrom', o.b.index];
    out.push({ file, path: pathString(at), message: o.message, ...(locate(src, at) ?? {}) });
  }
  return out;
}

interface Bind {
  path: Array<string | number>;
  address: string;
  port: number;
  forward: boolean;
  /** The default forward listener: no node of its own in the file. */
  implied?: boolean;
}

function binds(raw: Record<string, unknown>): Bind[] {
  const out: Bind[] = [];
  const add = (path: Array<string | number>, l: unknown, forward: boolean, implied = false): void => {
    if (!isObj(l) || typeof l.port !== 'number' || !Number.isInteger(l.port) || l.port === 0) return;
    out.push({ path, address: typeof l.address === 'string' ? l.address : '127.0.0.1', port: l.port, forward, implied });
  };
  listOf(raw.listeners).forEach((l, i) => add(['listeners', i], l, false));
  if (isObj(raw.forward)) {
    const fl = raw.forward.listeners;
    if (fl === undefined) add(['forward'], { address: '127.0.0.1', port: 3128 }, true, true);
    else listOf(fl).forEach((l, i) => add(['forward', 'listeners', i], l, true));
  }
  if (isObj(raw.admin)) add(['admin'], raw.admin, false);
  return out;
}

const WILDCARD = new Set(['0.0.0.0', '::']);

/** Names and their addresses in a hosts file (names lower-case, no trailing dot); empty when it cannot be read. */
function hostsFileMap(file: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return map;
  }
  for (const line of text.split('\n')) {
    const [address, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (address === undefined || isIP(address) === 0) continue;
    const canonical = canonicalAddress(address);
    for (const n of names) {
      const key = n.toLowerCase();
      const list = map.get(key) ?? map.set(key, []).get(key)!;
      if (!list.includes(canonical)) list.push(canonical);
    }
  }
  return map;
}

/** An IP address in one spelling (IPv6 lower-case and shortened, zone kept). */
function canonicalAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  const zone = address.indexOf('%');
  const bare = zone < 0 ? address : address.slice(0, zone);
  return new SocketAddress({ address: bare, family: 'ipv6' }).address + (zone < 0 ? '' : address.slice(zone));
}

/** The addresses a listener's `address` may bind: itself when an IP, else the hosts file's for the name, else the name. */
function boundAddresses(address: string, hosts: Map<string, string[]>): string[] {
  if (isIP(address) !== 0) return [canonicalAddress(address)];
  const name = address.toLowerCase().replace(/\.$/, '');
  return hosts.get(name) ?? [name];
}

/** The checks that look at this host: files, listeners, addresses. */
function hostChecks(raw: Record<string, unknown>, opts: CheckOptions): { problems: Array<ConfigProblem & { at: PropertyKey[] }>; warnings: Array<ConfigProblem & { at: PropertyKey[] }>; files: ConfigProblem[] } {
  const problems: Array<ConfigProblem & { at: PropertyKey[] }> = [];
  const warnings: Array<ConfigProblem & { at: PropertyKey[] }> = [];
  const files: ConfigProblem[] = [];
  const local = opts.localAddresses ?? hostAddresses();
  const push = (list: typeof problems, at: PropertyKey[], message: string | undefined): void => {
    if (message) list.push({ at, path: pathString(at), message });
  };
  // Files the config names.
  if (isObj(raw.clusters)) {
    for (const [name, c] of Object.entries(raw.clusters)) {
      if (isObj(c) && isObj(c.tls) && typeof c.tls.ca === 'string') push(problems, ['clusters', name, 'tls', 'ca'], caProblem(c.tls.ca));
    }
  }
  // TLS listeners: every certificate and key reads, parses and pairs; client CA files parse.
  const tlsOf = (l: unknown, at: PropertyKey[]): void => {
    if (!isObj(l) || !isObj(l.tls)) return;
    listOf(l.tls.certificates).forEach((c, i) => {
      if (!isObj(c) || typeof c.cert !== 'string' || typeof c.key !== 'string') return;
      push(problems, [...at, 'tls', 'certificates', i], tlsFileProblem(() => readCertificatePair(c.cert as string, c.key as string)));
    });
    if (isObj(l.tls.clientAuth) && typeof l.tls.clientAuth.ca === 'string') {
      const ca = l.tls.clientAuth.ca;
      push(problems, [...at, 'tls', 'clientAuth', 'ca'], tlsFileProblem(() => readCaFile(ca)));
    }
    if (isObj(l.tls.acme) && typeof l.tls.acme.directoryCa === 'string') {
      const ca = l.tls.acme.directoryCa;
      push(problems, [...at, 'tls', 'acme', 'directoryCa'], tlsFileProblem(() => readCaFile(ca)));
    }
  };
  listOf(raw.listeners).forEach((l, i) => tlsOf(l, ['listeners', i]));
  if (isObj(raw.forward)) listOf(raw.forward.listeners).forEach((l, i) => tlsOf(l, ['forward', 'listeners', i]));
  // What `run` would open or create, looked at here so that `check` says it (finding, session 29:
  // each passed check and failed run with a bare ENOTDIR, EISDIR or "Cannot find module").
  if (isObj(raw.log) && typeof raw.log.file === 'string') push(problems, ['log', 'file'], isDirectory(raw.log.file) ? `log file ${raw.log.file} is a directory` : writeDirProblem(raw.log.file, 'log file'));
  if (isObj(raw.cache) && typeof raw.cache.dir === 'string') push(problems, ['cache', 'dir'], cacheDirProblem(raw.cache.dir));
  if (isObj(raw.tracing) && raw.tracing.enabled === true && typeof raw.tracing.setup === 'string') {
    const setup = raw.tracing.setup;
    if ((setup.startsWith('.') || isAbsolute(setup)) && !existsSync(resolve(setup))) push(problems, ['tracing', 'setup'], `tracing setup module ${setup} does not exist (${resolve(setup)})`);
  }
  const fwd = isObj(raw.forward) ? raw.forward : undefined;
  if (fwd) {
    const auth = isObj(fwd.auth) ? fwd.auth : {};
    if (typeof auth.usersFile === 'string') {
      const found = checkUsersFile(auth.usersFile, isObj(fwd.plans) ? fwd.plans : undefined, listOf(auth.users));
      for (const p of found) {
        if (p.file) files.push(p);
        else push(problems, ['forward', 'auth', 'usersFile'], p.message);
      }
    }
    const state = isObj(fwd.state) ? fwd.state : {};
    if (typeof state.file === 'string') {
      if (existsSync(state.file)) {
        try {
          JSON.parse(readFileSync(state.file, 'utf8'));
        } catch (err) {
          push(problems, ['forward', 'state', 'file'], `state file ${state.file} is not JSON (${(err as Error).message})`);
        }
      } else push(problems, ['forward', 'state', 'file'], writeDirProblem(state.file, 'state file'));
    }
    // Egress source addresses must be this host's to bind: a warning (an address may be added later).
    const pools = isObj(fwd.egress) && isObj(fwd.egress.pools) ? fwd.egress.pools : {};
    for (const [name, pool] of Object.entries(pools)) {
      if (!isObj(pool)) continue;
      listOf(pool.addresses).forEach((a, i) => {
        const addr = typeof a === 'string' ? a : isObj(a) && typeof a.address === 'string' ? a.address : undefined;
        if (addr !== undefined && isIP(addr) !== 0 && !isLocalAddress(addr, local)) {
          push(warnings, ['forward', 'egress', 'pools', name, 'addresses', i], `egress address ${addr} is not an address of this host: connections from it will fail until it is configured here`);
        }
      });
    }
  }
  // Listeners: every address this host's, no host:port twice (reverse, forward and admin together).
  const all = binds(raw);
  for (const b of all) {
    if (isIP(b.address) !== 0 && !isLocalAddress(b.address, local)) {
      push(problems, [...b.path, ...(b.implied ? [] : ['address'])], `cannot listen on ${b.address}: not an address of this host (it has ${['0.0.0.0', '::', ...local].join(', ')})`);
    }
  }
  // Each address as a socket would bind it: a name through the hosts file (finding: `localhost`
  // and 127.0.0.1 on one port passed check and failed run with EADDRINUSE), IPv6 canonical.
  const hosts = hostsFileMap(opts.hostsFile ?? '/etc/hosts');
  const bound = all.map((b) => boundAddresses(b.address, hosts));
  all.forEach((b, i) => {
    for (let j = 0; j < i; j++) {
      const a = all[j]!;
      if (a.port !== b.port) continue;
      const as = bound[j]!;
      const bs = bound[i]!;
      const wildcard = as.some((x) => WILDCARD.has(x)) || bs.some((x) => WILDCARD.has(x));
      const overlap = as.some((x) => bs.includes(x));
      if (!wildcard && !overlap) continue;
      const same = a.address === b.address;
      // Two forward listeners on one address:port is the forward schema's own problem.
      if (same && a.forward && b.forward && !a.implied && !b.implied) continue;
      const where = (x: Bind): string => `${x.address.includes(':') ? `[${x.address}]` : x.address}:${x.port}`;
      const at = [...b.path, ...(b.implied ? [] : ['port'])];
      if (wildcard || (as.length === 1 && bs.length === 1)) {
        push(problems, at, `${where(b)}${b.implied ? ' (the default forward listener)' : ''} collides with ${pathString(a.path)} (${where(a)}): one socket cannot be bound twice`);
      } else {
        // A name with several addresses binds the first the resolver gives: which one is not known here.
        const named = (x: Bind, xs: readonly string[]): string => (xs.length > 1 ? `${x.address} (${xs.join(', ')})` : x.address);
        push(warnings, at, `${named(b, bs)} may collide with ${pathString(a.path)} (${named(a, as)}) on port ${b.port}: a name is bound at the first address the resolver gives`);
      }
    }
  });
  return { problems, warnings, files };
}

function byFileAndLine(file: string | undefined): (a: ConfigProblem, b: ConfigProblem) => number {
  return (a, b) => {
    const fa = a.file ?? file ?? '';
    const fb = b.file ?? file ?? '';
    if (fa !== fb) return (a.file === undefined ? -1 : 0) - (b.file === undefined ? -1 : 0) || fa.localeCompare(fb);
    return (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0) || a.path.localeCompare(b.path);
  };
}

/** How many alias expansions a config may make (the yaml library's count, which weighs nested aliases). */
const MAX_ALIASES = 1000;

/**
 * YAML (or JSON) text as a document, its line counter and its value; or its problems, each
 * with its line. One reading for the config and the users file.
 */
function readYaml(text: string, file: string | undefined): { doc: import('yaml').Document.Parsed; lc: import('yaml').LineCounter; raw: unknown } | ConfigProblem[] {
  // A .json file is JSON: what the YAML parser would let through besides (trailing commas,
  // comments, unquoted keys) is refused here, where it is (finding, newcomer audit: a users
  // file passed the check and failed the running proxy's JSON.parse). Its values and lines
  // come from the YAML parser, as a YAML file's do.
  if (file !== undefined && isJsonFile(file)) {
    const bad = jsonSyntaxError(text);
    if (bad) return [{ path: '', message: `not valid JSON: ${bad.message}`, ...offsetLineColumn(text, bad.offset) }];
  }
  const { LineCounter, parseDocument } = yaml();
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return doc.errors.map((e) => {
      const pos = lc.linePos(e.pos[0]);
      const first = e.message.split('\n')[0]!;
      // Name the key: the position alone left a newcomer looking for which one (session 29).
      const key = e.code === 'DUPLICATE_KEY' ? /^(?:"[^"]*"|'[^']*'|[^\s:,{}]+)/.exec(text.slice(e.pos[0]))?.[0] : undefined;
      const message = key !== undefined ? `the key ${key.startsWith('"') || key.startsWith("'") ? key : JSON.stringify(key)} appears twice in one mapping (${first})` : first;
      return { path: '', message, line: pos.line, column: pos.col };
    });
  }
  try {
    return { doc, lc, raw: doc.toJS({ maxAliasCount: MAX_ALIASES }) };
  } catch (err) {
    // The yaml library's guard against alias bombs, said as a problem of this file (finding,
    // session 29: it escaped as a bare "Excessive alias count" with no file or line).
    return [{ path: '', message: `the file expands YAML aliases (*name) more than ${MAX_ALIASES} times, the limit that guards against alias bombs; write some of the repeated values out (${(err as Error).message})`, line: 1, column: 1 }];
  }
}

/** A file whose name says JSON (`.json`, any case): read as strict JSON. */
export function isJsonFile(file: string): boolean {
  return /\.json$/i.test(file);
}

/** An offset in `text` as a 1-based line and column (UTF-16 code units, as the YAML parser counts). */
function offsetLineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

/** Check config text (YAML or JSON) and everything it names on this host. Never throws for a bad config. */
export function checkConfigText(text: string, file?: string, opts: CheckOptions = {}): CheckResult {
  const parsed = readYaml(text, file);
  if (Array.isArray(parsed)) return { config: undefined, problems: parsed, warnings: [] };
  const { doc, lc, raw } = parsed;
  if (!isObj(raw)) {
    return { config: undefined, problems: [{ path: '', message: 'the config must be a mapping (an object) at the top level', line: 1, column: 1 }], warnings: [] };
  }
  const src = { doc, lc };
  const result = configSchema.safeParse(raw);
  const problems: ConfigProblem[] = result.success ? [] : issuesToProblems(result.error.issues, configSchema, src);
  // References and the other checks across keys, also when the types are wrong somewhere else.
  const seen = new Set(problems.map((p) => `${p.path}\n${p.message}`));
  const cross = [...configCrossChecks(raw), ...(raw.forward !== undefined ? forwardCrossChecks(raw.forward).map((p) => ({ ...p, path: ['forward', ...p.path] })) : [])];
  for (const c of cross) {
    const path = pathString(c.path);
    if (seen.has(`${path}\n${c.message}`)) continue;
    seen.add(`${path}\n${c.message}`);
    problems.push({ path, message: c.message, ...(locate(src, c.path) ?? {}) });
  }
  const host = opts.host === false ? { problems: [], warnings: [], files: [] } : hostChecks(raw, opts);
  for (const p of host.problems) problems.push({ path: p.path, message: p.message, ...(locate(src, p.at) ?? {}) });
  problems.push(...host.files);
  const warnings = host.warnings.map((p) => ({ path: p.path, message: p.message, ...(locate(src, p.at) ?? {}) }));
  problems.sort(byFileAndLine(file));
  warnings.sort(byFileAndLine(file));
  return { config: problems.length === 0 && result.success ? result.data : undefined, problems, warnings };
}

/** Why a file could not be read: its code (scripts match it), then in words (finding, newcomer audit: codes alone). */
function readFailure(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  const words = READ_FAILURES[code];
  return words ? `(${code}): ${words}` : `(${code})`;
}

const READ_FAILURES: Record<string, string> = {
  ENOENT: 'no such file',
  EISDIR: 'it is a directory, not a file',
  EACCES: 'permission denied',
  ENOTDIR: 'a part of the path is not a directory',
};

/** Read and check a config file. */
export function checkConfigFile(file: string, opts: CheckOptions = {}): CheckResult {
  if (file === '') return { config: undefined, problems: [{ path: '', message: 'no file named: the config path is empty (--config needs a file)' }], warnings: [] };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { config: undefined, problems: [{ path: '', message: `cannot read the file ${readFailure(err)}` }], warnings: [] };
  }
  return checkConfigText(text, file, opts);
}
