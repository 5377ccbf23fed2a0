import { channel } from 'node:diagnostics_channel';
import { X509Certificate, webcrypto } from 'node:crypto';
import type * as Pkijs from 'pkijs';
import { undici } from '../http/undici.js';

/**
 * OCSP stapling for the certificates of TLS listeners (RFC 6960, stapled per RFC 6066 §8):
 * for each certificate whose leaf names an OCSP responder (Authority Information Access)
 * and whose file carries its issuer, the status is fetched, checked, kept, and handed to
 * clients that ask for it in their handshake (Node's `OCSPRequest` event; Node cannot
 * staple without being asked). Refreshed half-way through its validity (as Caddy's
 * certmagic does); a failed fetch keeps the last good answer until its `nextUpdate` and
 * tries again with back-off. A revoked or unknown status is never stapled, and is logged.
 *
 * pkijs builds the request and checks the answer (ASN.1 and the responder's signature,
 * including a responder certificate delegated by the issuer): Node has no OCSP of its own.
 */

/**
 * pkijs, loaded on the first OCSP fetch or check, not with this module: only TLS listeners
 * with OCSP use it, and imported it cost every process 3–5 MiB of idle RSS (`gatewise proxy`
 * 108–111 → 105–107.5 MiB, three starts each; ~16 MiB when imported alone).
 */
let pkijsModule: Promise<typeof Pkijs> | undefined;
function loadPkijs(): Promise<typeof Pkijs> {
  return (pkijsModule ??= import('pkijs').then((pkijs) => {
    pkijs.setEngine('node', new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto as unknown as Crypto }));
    return pkijs;
  }));
}

/** What happened to a certificate's stapled status. */
export interface OcspEvent {
  event: 'stapled' | 'failed' | 'revoked' | 'unavailable';
  listener: string;
  cert: string;
  /** The responder asked. */
  url: string | undefined;
  detail: string | undefined;
  /** When the status stapled now must be refreshed by (ISO). */
  nextUpdate: string | undefined;
}

export const OCSP_CHANNEL = 'gatewise:tls:ocsp';
const ocspEvents = channel(OCSP_CHANNEL);

function publish(e: OcspEvent): void {
  if (ocspEvents.hasSubscribers) ocspEvents.publish(e);
}

/** The OCSP responder URL of a certificate (Authority Information Access), if any. */
export function ocspUrlOf(cert: X509Certificate): string | undefined {
  const aia = cert.infoAccess;
  if (aia === undefined) return undefined;
  for (const line of aia.split('\n')) {
    const m = /^OCSP - URI:(https?:\/\/\S+)$/.exec(line.trim());
    if (m) return m[1];
  }
  return undefined;
}

/** The certificates of a PEM chain, in order. */
function chainOf(pem: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) out.push(new X509Certificate(m[0]));
  return out;
}

function toPkijs(pkijs: typeof Pkijs, c: X509Certificate): Pkijs.Certificate {
  return pkijs.Certificate.fromBER(new Uint8Array(c.raw));
}

/** A status checked and ready to staple. */
interface Staple {
  readonly der: Buffer;
  readonly thisUpdate: number;
  readonly nextUpdate: number;
}

class Tracked {
  staple: Staple | undefined;
  timer: NodeJS.Timeout | undefined;
  failures = 0;
  constructor(
    readonly certFile: string,
    readonly leaf: X509Certificate,
    readonly issuer: X509Certificate,
    readonly url: string,
  ) {}
}

export interface OcspOptions {
  listener: string;
  /** Longest wait for a responder. */
  timeoutMs?: number;
  /** First retry after a failed fetch; doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  now?: () => number;
}

/** The stapled statuses of one listener's certificates, keyed by the leaf's DER. */
export class OcspStapler {
  readonly #opts: Required<Omit<OcspOptions, 'now'>> & { now: () => number };
  readonly #byLeaf = new Map<string, Tracked>();
  #closed = false;

  constructor(opts: OcspOptions) {
    this.#opts = { timeoutMs: 5000, retryMs: 60_000, maxRetryMs: 3_600_000, now: Date.now, ...opts };
  }

  /**
   * Staple the status of this certificate (its file's PEM chain). Replaces what was tracked
   * for the same file (a reload). Without a responder URL or an issuer in the chain there
   * is nothing to fetch: said once on the channel, and nothing stapled.
   */
  track(certFile: string, chainPem: string): void {
    for (const [k, t] of this.#byLeaf) {
      if (t.certFile === certFile) {
        clearTimeout(t.timer);
        this.#byLeaf.delete(k);
      }
    }
    const chain = chainOf(chainPem);
    const leaf = chain[0];
    if (leaf === undefined) return;
    const url = ocspUrlOf(leaf);
    const issuer = chain.slice(1).find((c) => leaf.checkIssued(c));
    if (url === undefined || issuer === undefined) {
      publish({ event: 'unavailable', listener: this.#opts.listener, cert: certFile, url, nextUpdate: undefined, detail: url === undefined ? 'the certificate names no OCSP responder' : 'the certificate file does not hold its issuer (append the intermediate to the chain)' });
      return;
    }
    const t = new Tracked(certFile, leaf, issuer, url);
    this.#byLeaf.set(leaf.raw.toString('base64'), t);
    void this.#refresh(t);
  }

  /** The status to staple for the certificate a handshake uses (Node's `OCSPRequest` gives its DER). */
  responseFor(leafDer: Buffer): Buffer | undefined {
    const t = this.#byLeaf.get(leafDer.toString('base64'));
    const s = t?.staple;
    if (s === undefined) return undefined;
    return s.nextUpdate > this.#opts.now() ? s.der : undefined;
  }

  /** Fetch every tracked status now (tests, admin). Resolves when each has been tried once. */
  async refreshAll(): Promise<void> {
    await Promise.all([...this.#byLeaf.values()].map((t) => this.#refresh(t)));
  }

  async #refresh(t: Tracked): Promise<void> {
    clearTimeout(t.timer);
    if (this.#closed) return;
    try {
      const s = await this.#fetch(t);
      if (this.#byLeaf.get(t.leaf.raw.toString('base64')) !== t) return; // replaced meanwhile
      t.staple = s;
      t.failures = 0;
      publish({ event: 'stapled', listener: this.#opts.listener, cert: t.certFile, url: t.url, nextUpdate: new Date(s.nextUpdate).toISOString(), detail: undefined });
      // Half-way through its validity, never sooner than a minute.
      this.#schedule(t, Math.max(60_000, (s.thisUpdate + (s.nextUpdate - s.thisUpdate) / 2) - this.#opts.now()));
    } catch (err) {
      const e = err as OcspError;
      if (e.code === 'revoked' || e.code === 'unknown') t.staple = undefined; // never staple it
      else if (t.staple !== undefined && t.staple.nextUpdate <= this.#opts.now()) t.staple = undefined; // stale: drop it
      t.failures++;
      publish({ event: e.code === 'revoked' ? 'revoked' : 'failed', listener: this.#opts.listener, cert: t.certFile, url: t.url, nextUpdate: t.staple ? new Date(t.staple.nextUpdate).toISOString() : undefined, detail: e.message });
      this.#schedule(t, Math.min(this.#opts.maxRetryMs, this.#opts.retryMs * 2 ** (t.failures - 1)));
    }
  }

  #schedule(t: Tracked, ms: number): void {
    if (this.#closed) return;
    t.timer = setTimeout(() => void this.#refresh(t), Math.min(ms, 2 ** 31 - 1));
    t.timer.unref();
  }

  async #fetch(t: Tracked): Promise<Staple> {
    const pkijs = await loadPkijs();
    const leaf = toPkijs(pkijs, t.leaf);
    const issuer = toPkijs(pkijs, t.issuer);
    const req = new pkijs.OCSPRequest();
    await req.createForCertificate(leaf, { hashAlgorithm: 'SHA-1', issuerCertificate: issuer });
    const body = Buffer.from(req.toSchema(true).toBER(false));
    let der: Buffer;
    try {
      const res = await undici().request(t.url, {
        method: 'POST',
        headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
        body,
        headersTimeout: this.#opts.timeoutMs,
        bodyTimeout: this.#opts.timeoutMs,
      });
      der = Buffer.from(await res.body.arrayBuffer());
      if (res.statusCode !== 200) throw new OcspError('fetch', `the responder answered HTTP ${res.statusCode}`);
    } catch (err) {
      if (err instanceof OcspError) throw err;
      throw new OcspError('fetch', `the responder at ${t.url} could not be reached: ${(err as Error).message}`);
    }
    return checkResponse(der, leaf, issuer, this.#opts.now());
  }

  close(): void {
    this.#closed = true;
    for (const t of this.#byLeaf.values()) clearTimeout(t.timer);
  }
}

export class OcspError extends Error {
  constructor(
    readonly code: 'fetch' | 'invalid' | 'revoked' | 'unknown',
    message: string,
  ) {
    super(message);
    this.name = 'OcspError';
  }
}

/** Check an OCSP answer for `leaf`: successful, signed by the issuer (or its delegate), good, current. */
export async function checkResponse(der: Buffer, leaf: Pkijs.Certificate, issuer: Pkijs.Certificate, now: number): Promise<Staple> {
  const pkijs = await loadPkijs();
  let ocsp: Pkijs.OCSPResponse;
  try {
    ocsp = pkijs.OCSPResponse.fromBER(new Uint8Array(der));
  } catch (err) {
    throw new OcspError('invalid', `the answer is not an OCSP response: ${(err as Error).message}`);
  }
  const status = ocsp.responseStatus.valueBlock.valueDec;
  if (status !== 0) throw new OcspError('invalid', `the responder refused: status ${status} (RFC 6960 §4.2.1)`);
  if (ocsp.responseBytes === undefined) throw new OcspError('invalid', 'the answer has no response bytes');
  const basic = pkijs.BasicOCSPResponse.fromBER(new Uint8Array(ocsp.responseBytes.response.valueBlock.valueHexView));
  let signed = false;
  try {
    signed = await basic.verify({ trustedCerts: [issuer] });
  } catch (err) {
    throw new OcspError('invalid', `the answer's signature cannot be checked: ${(err as Error).message}`);
  }
  if (!signed) throw new OcspError('invalid', 'the answer is not signed by the issuer or a responder it delegated');
  const { isForCertificate, status: certStatus } = await basic.getCertificateStatus(leaf, issuer);
  if (!isForCertificate) throw new OcspError('invalid', 'the answer is about another certificate');
  if (certStatus === 1) throw new OcspError('revoked', 'the certificate is revoked');
  if (certStatus !== 0) throw new OcspError('unknown', 'the responder does not know the certificate');
  const single = basic.tbsResponseData.responses.find((r) => r.certID.serialNumber.isEqual(leaf.serialNumber));
  if (single === undefined) throw new OcspError('invalid', 'the answer is about another certificate');
  const thisUpdate = single.thisUpdate.getTime();
  const nextUpdate = single.nextUpdate?.getTime() ?? thisUpdate + 86_400_000; // none given: a day (certmagic does the same)
  if (thisUpdate > now + 5 * 60_000) throw new OcspError('invalid', 'the answer is from the future (thisUpdate)');
  if (nextUpdate <= now) throw new OcspError('invalid', 'the answer is already out of date (nextUpdate passed)');
  return { der, thisUpdate, nextUpdate };
}
