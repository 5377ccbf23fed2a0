import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * Reading a certificate and its key from PEM files, with a sentence naming the file when
 * something is wrong. `gatewise check` (check.ts) and the listeners (src/tls/) use the same
 * reader, so a file that passes the check loads, and a reload that fails says why.
 */

export interface CertificatePair {
  readonly certPem: string;
  readonly keyPem: string;
  /** The leaf (the first certificate of the chain). */
  readonly leaf: X509Certificate;
  /** The DNS names of the leaf's subjectAltName (its CN when it has none), lower-case. */
  readonly names: readonly string[];
  readonly notAfter: Date;
}

/** A problem reading a certificate pair: which file, and what. */
export class CertificateFileError extends Error {
  readonly code = 'GATEWISE_TLS_CERTIFICATE_FILE';
  readonly file: string;

  constructor(file: string, message: string) {
    super(message);
    this.name = 'CertificateFileError';
    this.file = file;
  }
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CertificateFileError(file, `${what} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'EIO'})`);
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The DNS names a leaf certificate is valid for (subjectAltName DNS entries, else its CN). */
export function certificateNames(leaf: X509Certificate): string[] {
  const san = leaf.subjectAltName;
  const names: string[] = [];
  if (san) {
    for (const part of san.split(', ')) {
      if (part.startsWith('DNS:')) names.push(part.slice(4).toLowerCase());
    }
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(leaf.subject)?.[1];
    if (cn) names.push(cn.toLowerCase());
  }
  return names;
}

/** Read and check a certificate chain and its key: both parse, and the key is the leaf's. Throws CertificateFileError. */
export function readCertificatePair(certFile: string, keyFile: string): CertificatePair {
  const certPem = readText(certFile, 'certificate file');
  const blocks = certPem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new CertificateFileError(certFile, `certificate file ${certFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(blocks[0]!);
  } catch (err) {
    throw new CertificateFileError(certFile, `certificate file ${certFile}: the certificate does not parse (${(err as Error).message})`);
  }
  const keyPem = readText(keyFile, 'key file');
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new CertificateFileError(keyFile, `key file ${keyFile} holds no usable private key (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!leaf.checkPrivateKey(key)) throw new CertificateFileError(keyFile, `key file ${keyFile} is not the key of the certificate in ${certFile}`);
  return { certPem, keyPem, leaf, names: certificateNames(leaf), notAfter: new Date(leaf.validTo) };
}

/** A PEM file of CA certificates: its text, or a CertificateFileError. */
export function readCaFile(file: string): string {
  const text = readText(file, 'CA file');
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new CertificateFileError(file, `CA file ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  for (const [i, b] of blocks.entries()) {
    try {
      new X509Certificate(b);
    } catch (err) {
      throw new CertificateFileError(file, `CA file ${file}: certificate ${i + 1} does not parse (${(err as Error).message})`);
    }
  }
  return text;
}
