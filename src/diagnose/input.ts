import { isIP } from 'node:net';

/** What `diagnose` is asked to do. */
export interface DiagnoseOptions {
  url: string;
  /** An http:// proxy to try the site through (the network-path experiment). */
  proxy?: string;
  /** curl's --resolve: HOST:PORT:ADDR, connect there instead of looking HOST up. */
  resolve?: readonly string[];
  /** Spaced tries of the refresh experiment (default 3). */
  tries?: number;
  /** Each wait (DNS, connect, TLS, response head, gap in the body), in ms (default 10000). */
  timeoutMs?: number;
  /** Extra request headers, `Name: value`. */
  headers?: readonly string[];
  /** Default GET. */
  method?: string;
  /** Go on past an untrusted certificate (still reported). */
  insecure?: boolean;
  /** Trusted CA certificates (PEM) instead of the system's. */
  ca?: string | Buffer;
  /** Time between the starts of the refresh tries, ms (default 1000). */
  spacingMs?: number;
  /** Resolve over DNS at these servers (`ip` or `ip:port`) instead of the system resolver. */
  dnsServers?: readonly string[];
}

/** A flag or value diagnose cannot run with; the CLI answers it with exit 64. */
export class DiagnoseInputError extends Error {
  readonly code = 'GATEWISE_DIAGNOSE_INPUT';
  constructor(
    /** The flag (or `URL`) at fault. */
    readonly flag: string,
    message: string,
  ) {
    super(message);
    this.name = 'DiagnoseInputError';
  }
}

export interface CheckedInput {
  url: URL;
  proxy?: URL;
  /** `host:port` → address. */
  resolve: Map<string, string>;
  tries: number;
  timeoutMs: number;
  headers: Array<[string, string]>;
  method: string;
  insecure: boolean;
  spacingMs: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseUrl(flag: string, value: string, schemes: readonly string[], example: string): URL {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    throw new DiagnoseInputError(flag, `${flag} ${JSON.stringify(value)} is not a URL: it needs a scheme, e.g. ${example.replace('HOST', value || '127.0.0.1:8080')}`);
  }
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new DiagnoseInputError(flag, `${flag} ${JSON.stringify(value)} is not a valid URL (a host, and a port from 1 to 65535), e.g. ${example.replace('HOST', '127.0.0.1:8080')}`);
  }
  if (!schemes.includes(u.protocol)) {
    throw new DiagnoseInputError(flag, `${flag} ${JSON.stringify(value)}: the scheme ${u.protocol}// is not supported; use ${schemes.map((s) => `${s}//`).join(' or ')}`);
  }
  if (!u.hostname) throw new DiagnoseInputError(flag, `${flag} ${JSON.stringify(value)} has no host`);
  if (u.port === '0') throw new DiagnoseInputError(flag, `${flag} ${JSON.stringify(value)}: port 0 cannot be connected to`);
  return u;
}

/** Check every option before anything is sent; throws DiagnoseInputError naming the flag. */
export function checkInput(o: DiagnoseOptions): CheckedInput {
  const url = parseUrl('URL', o.url, ['http:', 'https:'], 'http://HOST/');
  const proxy = o.proxy === undefined ? undefined : parseUrl('--proxy', o.proxy, ['http:'], 'http://HOST');
  const resolve = new Map<string, string>();
  for (const r of o.resolve ?? []) {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5}):(\[[^\]]+\]|.+)$/.exec(r);
    const addr = m?.[3]?.replace(/^\[|\]$/g, '');
    const port = Number(m?.[2]);
    if (!m || !addr || !isIP(addr) || port < 1 || port > 65535) {
      throw new DiagnoseInputError('--resolve', `--resolve ${JSON.stringify(r)}: expected HOST:PORT:ADDRESS with an IP address, e.g. --resolve example.com:443:127.0.0.1`);
    }
    resolve.set(`${m[1]!.replace(/^\[|\]$/g, '').toLowerCase()}:${port}`, addr);
  }
  const tries = o.tries ?? 3;
  if (!Number.isInteger(tries) || tries < 1 || tries > 20) throw new DiagnoseInputError('--tries', `--tries expects a whole number from 1 to 20, got ${JSON.stringify(String(o.tries))}`);
  const timeoutMs = o.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > 600_000) throw new DiagnoseInputError('--timeout', `--timeout expects a duration from 1ms to 10m, got ${JSON.stringify(String(o.timeoutMs))}`);
  const headers: Array<[string, string]> = [];
  for (const h of o.headers ?? []) {
    const i = h.indexOf(':');
    const name = i > 0 ? h.slice(0, i).trim() : '';
    const value = i > 0 ? h.slice(i + 1).trim() : '';
    if (!name || !TOKEN.test(name) || /[\r\n\0]/.test(value)) {
      throw new DiagnoseInputError('-H', `-H ${JSON.stringify(h)}: expected 'Name: value' with a header name of letters, digits and - (e.g. -H 'Accept: text/html')`);
    }
    if (/^(host|connection|content-length|transfer-encoding)$/i.test(name)) throw new DiagnoseInputError('-H', `-H ${JSON.stringify(h)}: diagnose sets ${name} itself`);
    headers.push([name, value]);
  }
  const method = (o.method ?? 'GET').toUpperCase();
  if (!TOKEN.test(method) || method === 'CONNECT') throw new DiagnoseInputError('--method', `--method ${JSON.stringify(o.method)}: expected an HTTP method such as GET, HEAD or POST`);
  const spacingMs = o.spacingMs ?? 1000;
  return { url, ...(proxy ? { proxy } : {}), resolve, tries, timeoutMs, headers, method, insecure: Boolean(o.insecure), spacingMs };
}
