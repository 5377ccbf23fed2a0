import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { classify, ERROR_TYPES, type Phase, type ProxyErrorType } from '../failure/index.js';

/** One address to connect to. */
export interface Address {
  address: string;
  family: 4 | 6;
}

/** A phase that failed, named as the taxonomy names it. */
export interface PhaseFailure {
  type: ProxyErrorType;
  phase: Phase;
  /** The low-level code (ECONNREFUSED, DEPTH_ZERO_SELF_SIGNED_CERT, HPE_INVALID_CONSTANT…). */
  code?: string;
  detail: string;
  /** The type's plain words (ERROR_TYPES). */
  explain: string;
  /** RFC 9209 parameters (rcode…). */
  params?: Record<string, string | number>;
}

export interface ConnectTry {
  address: string;
  family: 4 | 6;
  port: number;
  ms: number;
  ok: boolean;
  failure?: PhaseFailure;
  /** `proxy`: a connection to the --proxy, not to the site. */
  to: 'site' | 'proxy';
}

export interface CertInfo {
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
}

export interface TlsInfo {
  ms: number;
  protocol?: string;
  alpn?: string;
  cipher?: string;
  /** The chain verified against the trusted roots and the name matched. */
  trusted: boolean;
  /** Why not (Node's code: DEPTH_ZERO_SELF_SIGNED_CERT, CERT_HAS_EXPIRED, ERR_TLS_CERT_ALTNAME_INVALID…). */
  trustError?: string;
  names: string[];
  /** Whole days until the leaf expires (negative: expired). */
  daysLeft?: number;
  chain: CertInfo[];
}

export interface HttpInfo {
  status: number;
  statusText: string;
  httpVersion: string;
  headers: Record<string, string | string[] | undefined>;
  /** Request sent → first response byte. */
  ttfbMs?: number;
  /** Request sent → complete response head. */
  headersMs: number;
  bodyBytes: number;
  bodyMs?: number;
  /** The body ended as the head said it would (Content-Length or the last chunk). */
  complete: boolean;
  /** The first 64 KiB of the body, as text. */
  body: string;
}

export interface ProbeSpec {
  url: URL;
  method: string;
  headers: ReadonlyArray<readonly [string, string]>;
  /** Each wait (connect, TLS handshake, response head, gap in the body). */
  timeoutMs: number;
  insecure: boolean;
  /** Trusted CA certificates instead of the system's (tests, `--cacert`). */
  ca?: string | Buffer;
  /** Addresses of the site (or of the proxy, with `proxy`), tried in order until one connects. */
  addresses: readonly Address[];
  /** Go through this HTTP proxy (its addresses in `addresses`): absolute-form for http:, CONNECT for https:. */
  proxy?: URL;
}

export interface ProbeResult {
  via: 'direct' | 'proxy';
  connect: ConnectTry[];
  /** The CONNECT answer of the proxy, when it refused the tunnel. */
  tunnel?: { status: number; headers: Record<string, string | string[] | undefined>; body: string };
  tls?: TlsInfo;
  http?: HttpInfo;
  failure?: PhaseFailure;
  totalMs: number;
  /** The address the answer came from. */
  address?: string;
}

const BODY_KEEP = 64 * 1024;

export function portOf(u: URL): number {
  return u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
}

export function hostOf(u: URL): string {
  return u.hostname.replace(/^\[|\]$/g, '');
}

function failureOf(err: unknown, progress: { connected: boolean; responseStarted?: boolean; headersReceived?: boolean; bodyChunked?: boolean }, phase?: Phase): PhaseFailure {
  const f = classify(err, { responseStarted: false, headersReceived: false, ...progress });
  const code = (err as { code?: unknown })?.code;
  return {
    type: f.type,
    phase: phase ?? f.phase,
    ...(typeof code === 'string' && code ? { code } : {}),
    detail: f.detail,
    explain: ERROR_TYPES[f.type].explain,
    ...(f.params ? { params: f.params } : {}),
  };
}

export function typedFailure(type: ProxyErrorType, phase: Phase, detail: string, code?: string): PhaseFailure {
  return { type, phase, detail, explain: ERROR_TYPES[type].explain, ...(code ? { code } : {}) };
}

function elapsed(t0: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - t0) / 1e4) / 100;
}

/**
 * One TCP connect, bounded by the timeout. A plain timer: diagnose is a short-lived
 * command with a handful of waits, not the gateway's hot path and its deadline list.
 */
function connectOnce(a: Address, port: number, timeoutMs: number, to: 'site' | 'proxy'): Promise<{ socket?: Socket; attempt: ConnectTry }> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const socket = netConnect({ host: a.address, port, family: a.family, noDelay: true });
    const done = (err?: unknown): void => {
      clearTimeout(timer);
      socket.removeAllListeners('connect');
      const attempt: ConnectTry = { address: a.address, family: a.family, port, ms: elapsed(t0), ok: err === undefined, to };
      if (err !== undefined) {
        socket.destroy();
        attempt.failure = failureOf(err, { connected: false }, 'connect');
        resolve({ attempt });
      } else resolve({ socket, attempt });
    };
    const timer = setTimeout(() => done(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      socket.on('error', () => undefined); // later errors are the next phase's to report
      done();
    });
    socket.once('error', (err) => done(err));
  });
}

function certName(o: Record<string, string | string[] | undefined> | undefined): string {
  if (!o) return '';
  return Object.entries(o)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
    .join(', ');
}

function tlsInfo(s: TLSSocket, ms: number): TlsInfo {
  const info: TlsInfo = { ms, trusted: s.authorized, names: [], chain: [] };
  if (!s.authorized && s.authorizationError) info.trustError = String((s.authorizationError as unknown as { code?: string }).code ?? s.authorizationError);
  info.protocol = s.getProtocol() ?? undefined;
  if (s.alpnProtocol) info.alpn = s.alpnProtocol;
  info.cipher = s.getCipher()?.name;
  const leaf = s.getPeerCertificate(true) as DetailedPeerCertificate;
  if (leaf && Object.keys(leaf).length) {
    info.names = (leaf.subjectaltname ?? '').split(', ').filter(Boolean);
    info.daysLeft = Math.floor((Date.parse(leaf.valid_to) - Date.now()) / 86_400_000);
    let c: DetailedPeerCertificate | undefined = leaf;
    const seen = new Set<string>();
    while (c && Object.keys(c).length && !seen.has(c.fingerprint256)) {
      seen.add(c.fingerprint256);
      info.chain.push({ subject: certName(c.subject as unknown as Record<string, string>), issuer: certName(c.issuer as unknown as Record<string, string>), validFrom: c.valid_from, validTo: c.valid_to });
      c = c.issuerCertificate;
    }
  }
  return info;
}

function handshake(raw: Socket, spec: ProbeSpec): Promise<{ socket?: TLSSocket; info?: TlsInfo; failure?: PhaseFailure }> {
  return new Promise((resolve) => {
    const host = hostOf(spec.url);
    const t0 = process.hrtime.bigint();
    const s = tlsConnect({
      socket: raw,
      host,
      ...(isIP(host) ? {} : { servername: host }),
      ALPNProtocols: ['http/1.1'],
      // Trust is judged below, so that the certificate can be reported even when it is not trusted.
      rejectUnauthorized: false,
      ...(spec.ca !== undefined ? { ca: spec.ca } : {}),
    });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ failure: typedFailure('connection_timeout', 'tls', 'the TLS handshake did not finish in time', 'ETIMEDOUT') });
    }, spec.timeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.on('error', () => undefined);
      const info = tlsInfo(s, elapsed(t0));
      if (!info.trusted && !spec.insecure) {
        s.destroy();
        resolve({ info, failure: failureOf({ code: info.trustError ?? 'CERT_UNTRUSTED' }, { connected: false }, 'tls') });
        return;
      }
      resolve({ socket: s, info });
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ failure: failureOf(err, { connected: false }, 'tls') });
    });
  });
}

/** Read a proxy's answer to CONNECT: up to the end of its head (and a little body when it refuses). */
function openTunnel(socket: Socket, spec: ProbeSpec): Promise<{ ok: boolean; status?: number; headers: Record<string, string | string[] | undefined>; body: string; failure?: PhaseFailure }> {
  return new Promise((resolve) => {
    const authority = `${spec.url.hostname}:${portOf(spec.url)}`;
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(typedFailure('http_response_timeout', 'headers', 'the proxy did not answer CONNECT in time')), spec.timeoutMs);
    const finish = (failure?: PhaseFailure): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.pause();
      if (failure) {
        resolve({ ok: false, headers: {}, body: '', failure });
        return;
      }
      const end = buf.indexOf('\r\n\r\n');
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
      const headers: Record<string, string | string[] | undefined> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i <= 0) continue;
        const k = l.slice(0, i).trim().toLowerCase();
        const v = l.slice(i + 1).trim();
        const prev = headers[k];
        headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
      const rest = buf.subarray(end + 4);
      if (!status) {
        resolve({ ok: false, headers, body: '', failure: typedFailure('http_protocol_error', 'headers', 'the proxy answered CONNECT with something that is not HTTP') });
        return;
      }
      if (rest.length) socket.unshift(rest);
      resolve({ ok: status >= 200 && status < 300, status, headers, body: rest.toString('utf8') });
    };
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.indexOf('\r\n\r\n') >= 0) finish();
      else if (buf.length > 64 * 1024) finish(typedFailure('http_response_header_section_size', 'headers', "the proxy's answer to CONNECT has an endless head"));
    };
    socket.on('data', onData);
    socket.once('close', () => {
      if (buf.indexOf('\r\n\r\n') < 0) finish(failureOf(Object.assign(new Error('closed'), { code: 'ECONNRESET' }), { connected: true, responseStarted: buf.length > 0 }, 'headers'));
    });
    const auth = proxyAuthorization(spec.proxy);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`);
  });
}

/** `Proxy-Authorization` from the proxy URL's user and password, if it has them. */
function proxyAuthorization(proxy: URL | undefined): string | undefined {
  if (!proxy || (!proxy.username && !proxy.password)) return undefined;
  return `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`;
}

function exchange(socket: Socket, spec: ProbeSpec, absolute: boolean): Promise<{ http?: HttpInfo; failure?: PhaseFailure }> {
  return new Promise((resolve) => {
    let bytesIn = 0;
    let t0 = process.hrtime.bigint();
    let ttfb: number | undefined;
    let info: HttpInfo | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const chunks: Buffer[] = [];
    let kept = 0;
    const onSocketData = (c: Buffer): void => {
      if (bytesIn === 0) ttfb = elapsed(t0);
      bytesIn += c.length;
    };
    socket.on('data', onSocketData);
    const finish = (failure?: PhaseFailure): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onSocketData);
      if (info) info.body = Buffer.concat(chunks).toString('utf8');
      socket.destroy();
      resolve({ ...(info ? { http: info } : {}), ...(failure ? { failure } : {}) });
    };
    const arm = (f: () => PhaseFailure): void => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(f()), spec.timeoutMs);
    };
    const headers: Record<string, string> = { host: spec.url.host };
    for (const [k, v] of spec.headers) headers[k.toLowerCase()] = v;
    headers.connection = 'close';
    const auth = absolute ? proxyAuthorization(spec.proxy) : undefined;
    if (auth) headers['proxy-authorization'] = auth;
    const req = httpRequest({
      createConnection: () => socket,
      method: spec.method,
      path: absolute ? spec.url.href : spec.url.pathname + spec.url.search,
      headers,
      setHost: false,
    });
    let res: IncomingMessage | undefined;
    req.on('error', (err) => {
      const chunked = /chunked/i.test(String(res?.headers['transfer-encoding'] ?? ''));
      finish(failureOf(err, { connected: true, responseStarted: bytesIn > 0, headersReceived: res !== undefined, bodyChunked: chunked }));
    });
    req.on('finish', () => {
      t0 = process.hrtime.bigint();
      arm(() => typedFailure('http_response_timeout', 'headers', `no response head within ${spec.timeoutMs} ms`));
    });
    req.on('response', (r) => {
      res = r;
      info = {
        status: r.statusCode ?? 0,
        statusText: r.statusMessage ?? '',
        httpVersion: r.httpVersion,
        headers: { ...r.headers },
        ...(ttfb !== undefined ? { ttfbMs: ttfb } : {}),
        headersMs: elapsed(t0),
        bodyBytes: 0,
        complete: false,
        body: '',
      };
      const tb = process.hrtime.bigint();
      const idle = (): PhaseFailure => typedFailure('connection_read_timeout', 'body', `the body stopped for ${spec.timeoutMs} ms after ${info!.bodyBytes} bytes`);
      arm(idle);
      r.on('data', (c: Buffer) => {
        info!.bodyBytes += c.length;
        if (kept < BODY_KEEP) {
          chunks.push(c.subarray(0, BODY_KEEP - kept));
          kept += Math.min(c.length, BODY_KEEP - kept);
        }
        arm(idle);
      });
      r.on('end', () => {
        info!.complete = true;
        info!.bodyMs = elapsed(tb);
        finish();
      });
      const cut = (err?: unknown): void => {
        const chunked = /chunked/i.test(String(r.headers['transfer-encoding'] ?? ''));
        info!.bodyMs = elapsed(tb);
        finish(failureOf(err ?? Object.assign(new Error('aborted'), { code: 'ECONNRESET' }), { connected: true, responseStarted: true, headersReceived: true, bodyChunked: chunked }));
      };
      r.on('aborted', () => cut());
      r.on('error', (err) => cut(err));
      r.on('close', () => {
        if (!info!.complete) cut();
      });
    });
    req.end();
  });
}

/** One try at the URL, phase by phase: connect (each address until one connects), TLS, HTTP. */
export async function probe(spec: ProbeSpec): Promise<ProbeResult> {
  const t0 = process.hrtime.bigint();
  const result: ProbeResult = { via: spec.proxy ? 'proxy' : 'direct', connect: [], totalMs: 0 };
  const done = (failure?: PhaseFailure): ProbeResult => {
    if (failure) result.failure = failure;
    result.totalMs = elapsed(t0);
    return result;
  };
  const to = spec.proxy ? 'proxy' : 'site';
  const port = spec.proxy ? portOf(spec.proxy) : portOf(spec.url);
  let socket: Socket | undefined;
  for (const a of spec.addresses) {
    const c = await connectOnce(a, port, spec.timeoutMs, to);
    result.connect.push(c.attempt);
    if (c.socket) {
      socket = c.socket;
      result.address = a.address;
      break;
    }
  }
  if (!socket) return done(result.connect.at(-1)?.failure ?? typedFailure('dns_error', 'dns', 'no address to connect to'));
  const https = spec.url.protocol === 'https:';
  if (spec.proxy && https) {
    const t = await openTunnel(socket, spec);
    if (!t.ok) {
      socket.destroy();
      if (t.status) result.tunnel = { status: t.status, headers: t.headers, body: t.body };
      return done(t.failure ?? typedFailure('http_request_denied', 'connect', `the proxy refused the tunnel (${t.status})`));
    }
  }
  if (https) {
    const h = await handshake(socket, spec);
    if (h.info) result.tls = h.info;
    if (!h.socket) {
      socket.destroy();
      return done(h.failure);
    }
    socket = h.socket;
  }
  const x = await exchange(socket, spec, spec.proxy !== undefined && !https);
  if (x.http) result.http = x.http;
  return done(x.failure);
}
