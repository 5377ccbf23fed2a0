import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The lab's TLS material (PEM), see certs/README.md. */
export interface LabCerts {
  /** The lab CA certificate: trust it to accept the CA-signed listener. */
  readonly ca: string;
  /** Leaf for localhost / 127.0.0.1 / ::1 signed by the lab CA. */
  readonly caSignedCert: string;
  readonly caSignedKey: string;
  /** Self-signed leaf for the same names (never trusted). */
  readonly selfSignedCert: string;
  readonly selfSignedKey: string;
  /** The folder they were read from. */
  readonly dir: string;
}

/** The PEM files ship in src/lab/certs/ (tsc does not copy them). */
export class LabCertsNotFoundError extends Error {
  readonly searched: readonly string[];

  constructor(searched: readonly string[]) {
    super(`lab certificates not found; looked in: ${searched.join(', ')}`);
    this.name = 'LabCertsNotFoundError';
    this.searched = searched;
  }
}

/**
 * Where the certificates may be, relative to the module's URL, in order:
 * `./certs/` (running the source, or certs copied beside the compiled module) and
 * `../../../src/lab/certs/` (running the compiled module from dist/src/lab/).
 */
export function labCertDirCandidates(moduleUrl: string | URL = import.meta.url): string[] {
  return [fileURLToPath(new URL('./certs/', moduleUrl)), fileURLToPath(new URL('../../../src/lab/certs/', moduleUrl))];
}

/** The first candidate folder that holds the lab certificates. */
export function findLabCertDir(moduleUrl: string | URL = import.meta.url): string {
  const candidates = labCertDirCandidates(moduleUrl);
  for (const dir of candidates) {
    if (existsSync(dir + 'ca.pem')) return dir;
  }
  throw new LabCertsNotFoundError(candidates);
}

let cached: LabCerts | undefined;

/** Read the lab certificates (once per process for the default location). */
export function loadLabCerts(moduleUrl?: string | URL): LabCerts {
  if (moduleUrl === undefined && cached !== undefined) return cached;
  const dir = findLabCertDir(moduleUrl ?? import.meta.url);
  const read = (name: string): string => readFileSync(dir + name, 'utf8');
  const certs: LabCerts = {
    ca: read('ca.pem'),
    caSignedCert: read('localhost-cert.pem'),
    caSignedKey: read('localhost-key.pem'),
    selfSignedCert: read('self-signed-cert.pem'),
    selfSignedKey: read('self-signed-key.pem'),
    dir,
  };
  if (moduleUrl === undefined) cached = certs;
  return certs;
}
