import { channel } from 'node:diagnostics_channel';
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { createSecureContext, type SecureContext, type SecureContextOptions, type Server as TlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import { ConfigError, type ConfigProblem } from '../config/load.js';
import { CertificateFileError, readCaFile, readCertificatePair, type CertificatePair } from '../config/tls-files.js';
import type { ListenerTlsConfig } from '../config/tls.js';
import { OcspStapler } from './ocsp.js';

/** A certificate loaded, reloaded, or a reload that failed (the old one stays). */
export interface CertificateEvent {
  event: 'loaded' | 'reloaded' | 'reload-failed';
  /** The listener (`address:port`, or its name before it is bound). */
  listener: string;
  /** The certificate file. */
  cert: string;
  /** The names it serves. */
  names: string[];
  /** When the certificate in use expires (ISO). */
  notAfter: string | undefined;
  detail: string | undefined;
}

export const CERTIFICATE_CHANNEL = 'gatewise:tls:certificate';
export const certificateEvents = channel(CERTIFICATE_CHANNEL);

/** The code of the error the SNI callback refuses an unknown server name with (strictSni). */
export const UNKNOWN_SERVER_NAME = 'GATEWISE_TLS_UNKNOWN_SERVER_NAME';

class UnknownServerNameError extends Error {
  readonly code = UNKNOWN_SERVER_NAME;
  readonly servername: string;

  constructor(servername: string) {
    super(`no certificate for server name ${servername}`);
    this.name = 'UnknownServerNameError';
    this.servername = servername;
  }
}

/** One configured certificate: its files, the names it serves, and the context in use. */
interface Entry {
  readonly certFile: string;
  readonly keyFile: string;
  /** Names from the config (fixed), or undefined: the certificate's own names (follow reloads). */
  readonly configured: readonly string[] | undefined;
  names: readonly string[];
  pair: CertificatePair;
  context: SecureContext;
  /** File signatures (mtime, size, inode) last loaded. */
  sig: string;
}

/** What the admin API and metrics show of a certificate in use. */
export interface CertificateInfo {
  readonly listener: string;
  readonly cert: string;
  readonly names: readonly string[];
  readonly notAfter: Date;
  readonly subject: string;
  readonly issuer: string;
}

function fileSig(file: string): string {
  try {
    const s = statSync(file);
    return `${s.mtimeMs}|${s.size}|${s.ino}`;
  } catch {
    return 'missing';
  }
}

/**
 * The certificates of one TLS listener: one secure context per certificate, chosen by the
 * client's server name (SNI: exact names first, then `*.example.com`), the first one the
 * default. Files are watched (their folders, so an editor's or certbot's rename-over is
 * seen; plus a periodic stat where watch events do not come) and reloaded: a new context
 * serves the next handshakes, connections already open keep theirs. A reload that fails
 * (a half-written file, a key that is not the certificate's) keeps the old certificate and
 * says why on `gatewise:tls:certificate`.
 */
export class CertificateStore {
  readonly #cfg: ListenerTlsConfig;
  readonly #entries: Entry[] = [];
  readonly #ca: string | undefined;
  #exact = new Map<string, Entry>();
  #wildcard = new Map<string, Entry>();
  #server: TlsServer | undefined;
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  /** The listener's name in events (set to address:port once bound). */
  listener: string;
  /** Stapled OCSP statuses (tls.ocspStapling), fetched once the listener is attached. */
  readonly #ocsp: OcspStapler | undefined;
  /** Reloads applied and refused since start. */
  reloads = 0;
  failedReloads = 0;

  /** Load every certificate now; a file that cannot be used is a ConfigError naming it (every problem at once). */
  constructor(cfg: ListenerTlsConfig, listener: string, configPath: string) {
    this.#cfg = cfg;
    this.listener = listener;
    const problems: ConfigProblem[] = [];
    let ca: string | undefined;
    if (cfg.clientAuth !== undefined) {
      try {
        ca = readCaFile(cfg.clientAuth.ca);
      } catch (err) {
        if (!(err instanceof CertificateFileError)) throw err;
        problems.push({ path: `${configPath}.clientAuth.ca`, message: err.message });
      }
    }
    this.#ca = ca;
    cfg.certificates.forEach((c, i) => {
      try {
        const sig = `${fileSig(c.cert)}/${fileSig(c.key)}`;
        const pair = readCertificatePair(c.cert, c.key);
        const context = this.#context(pair);
        this.#entries.push({ certFile: c.cert, keyFile: c.key, configured: c.hosts, names: c.hosts ?? pair.names, pair, context, sig });
      } catch (err) {
        if (err instanceof CertificateFileError) problems.push({ path: `${configPath}.certificates[${i}]`, message: err.message });
        else problems.push({ path: `${configPath}`, message: `the TLS settings are not usable: ${(err as Error).message}` });
      }
    });
    if (problems.length > 0) throw new ConfigError(problems);
    this.#ocsp = cfg.ocspStapling ? new OcspStapler({ listener }) : undefined;
    this.#index();
    for (const e of this.#entries) publish({ event: 'loaded', listener, cert: e.certFile, names: [...e.names], notAfter: e.pair.notAfter.toISOString(), detail: undefined });
  }

  /** A secure context for a certificate with the listener's policy (throws when the policy is not usable). */
  #context(pair: CertificatePair): SecureContext {
    return createSecureContext(this.#contextOptions(pair));
  }

  #contextOptions(pair: CertificatePair): SecureContextOptions {
    return {
      cert: pair.certPem,
      key: pair.keyPem,
      minVersion: this.#cfg.minVersion,
      ciphers: this.#cfg.ciphers,
      honorCipherOrder: true,
      // Client certificates are verified against this CA whichever certificate SNI chose.
      ...(this.#ca !== undefined ? { ca: this.#ca } : {}),
    };
  }

  #index(): void {
    const exact = new Map<string, Entry>();
    const wildcard = new Map<string, Entry>();
    for (const e of this.#entries) {
      for (const n of e.names) {
        if (n.startsWith('*.')) {
          if (!wildcard.has(n.slice(2))) wildcard.set(n.slice(2), e);
        } else if (!exact.has(n)) exact.set(n, e);
      }
    }
    this.#exact = exact;
    this.#wildcard = wildcard;
  }

  /** The certificate for a server name: exact, then a wildcard for its parent; undefined: none lists it. */
  lookup(servername: string): Entry | undefined {
    const name = servername.toLowerCase();
    const hit = this.#exact.get(name);
    if (hit !== undefined) return hit;
    const dot = name.indexOf('.');
    return dot > 0 ? this.#wildcard.get(name.slice(dot + 1)) : undefined;
  }

  /** Whether a server name has a certificate of its own (not just the default). */
  serves(servername: string | undefined | false | null): boolean {
    return typeof servername === 'string' && servername !== '' && this.lookup(servername) !== undefined;
  }

  /** Options for `https.createServer` / `tls.createServer` / `http2.createSecureServer`. */
  serverOptions(handshakeTimeoutMs: number): TlsOptions {
    const first = this.#entries[0]!;
    return {
      ...this.#contextOptions(first.pair),
      SNICallback: this.#sni,
      handshakeTimeout: handshakeTimeoutMs,
      // Client certificates are checked after the handshake (clientAuth.ts), so a failure is
      // named in the log; Node's own rejectUnauthorized closes the connection the same way, silently.
      requestCert: this.#cfg.clientAuth !== undefined,
      rejectUnauthorized: false,
    };
  }

  /** Called by OpenSSL (through Node) with the client's server name; `this` is the TLS socket. */
  readonly #sni = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const e = this.lookup(servername);
    if (e !== undefined) return cb(null, e.context);
    if (this.#cfg.strictSni) return cb(new UnknownServerNameError(servername));
    cb(null, this.#entries[0]!.context);
  };

  /** The server whose default certificate follows reloads of the first certificate; starts watching the files. */
  attach(server: TlsServer, opts: { intervalMs?: number; watch?: boolean } = {}): void {
    this.#server = server;
    const ocsp = this.#ocsp;
    if (ocsp !== undefined) {
      for (const e of this.#entries) ocsp.track(e.certFile, e.pair.certPem);
      // Node asks only when the client's hello asked for a status (status_request).
      server.on('OCSPRequest', (cert: Buffer, _issuer: Buffer | null, cb: (err: Error | null, resp: Buffer | null) => void) => cb(null, ocsp.responseFor(cert) ?? null));
    }
    if (opts.watch === false) return;
    const dirs = new Map<string, Set<string>>();
    for (const e of this.#entries) {
      for (const f of [e.certFile, e.keyFile]) {
        const d = dirname(f);
        if (!dirs.has(d)) dirs.set(d, new Set());
        dirs.get(d)!.add(basename(f));
      }
    }
    for (const [dir, names] of dirs) {
      try {
        const w = watch(dir, { persistent: false }, (_ev, file) => {
          if (file === null || names.has(String(file))) this.#soon();
        });
        w.on('error', () => {});
        this.#watchers.push(w);
      } catch {
        // The periodic check still sees changes.
      }
    }
    this.#timer = setInterval(() => this.check(), opts.intervalMs ?? 10_000);
    this.#timer.unref();
  }

  #soon(): void {
    clearTimeout(this.#debounce);
    // Writers replace a certificate and its key one after the other: wait for both.
    this.#debounce = setTimeout(() => this.check(), 100);
    this.#debounce.unref();
  }

  /** Reload the certificates whose files changed since they were loaded. */
  check(): void {
    for (const e of this.#entries) {
      const sig = `${fileSig(e.certFile)}/${fileSig(e.keyFile)}`;
      if (sig !== e.sig) this.#reload(e, sig);
    }
  }

  /** Reload every certificate now (config reload, admin); false when one failed (it keeps its old one). */
  reload(): boolean {
    let ok = true;
    for (const e of this.#entries) ok = this.#reload(e, `${fileSig(e.certFile)}/${fileSig(e.keyFile)}`) && ok;
    return ok;
  }

  #reload(e: Entry, sig: string): boolean {
    let pair: CertificatePair;
    let context: SecureContext;
    try {
      pair = readCertificatePair(e.certFile, e.keyFile);
      context = this.#context(pair);
    } catch (err) {
      // Keep the certificate in use; the next change (the key written after the certificate) tries again.
      this.failedReloads++;
      publish({ event: 'reload-failed', listener: this.listener, cert: e.certFile, names: [...e.names], notAfter: e.pair.notAfter.toISOString(), detail: (err as Error).message });
      return false;
    }
    e.sig = sig;
    e.pair = pair;
    e.context = context;
    if (e.configured === undefined) {
      e.names = pair.names;
      this.#index();
    }
    if (e === this.#entries[0] && this.#server !== undefined) this.#server.setSecureContext(this.#contextOptions(pair));
    if (this.#server !== undefined) this.#ocsp?.track(e.certFile, pair.certPem);
    this.reloads++;
    publish({ event: 'reloaded', listener: this.listener, cert: e.certFile, names: [...e.names], notAfter: pair.notAfter.toISOString(), detail: undefined });
    return true;
  }

  /** The certificates in use. */
  certificates(): CertificateInfo[] {
    return this.#entries.map((e) => ({ listener: this.listener, cert: e.certFile, names: e.names, notAfter: e.pair.notAfter, subject: e.pair.leaf.subject, issuer: e.pair.leaf.issuer }));
  }

  /** Fetch every stapled status now (tests, admin); resolves when each was tried. */
  refreshOcsp(): Promise<void> {
    return this.#ocsp?.refreshAll() ?? Promise.resolve();
  }

  close(): void {
    this.#ocsp?.close();
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
    clearInterval(this.#timer);
    clearTimeout(this.#debounce);
  }
}

function publish(e: CertificateEvent): void {
  if (certificateEvents.hasSubscribers) certificateEvents.publish(e);
}

/** The server name a TLS socket's client sent (undefined: none). */
export function servernameOf(socket: TLSSocket): string | undefined {
  const n = (socket as TLSSocket & { servername?: string | false | null }).servername;
  return typeof n === 'string' && n !== '' ? n : undefined;
}
