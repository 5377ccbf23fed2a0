import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Certificates made for one test with openssl (P-256 keys, fast): a CA of its own, leaves
 * for names and addresses, client certificates, and expired ones (`openssl ca` sets any
 * validity window). Nothing is shared between test files.
 */

export interface IssuedCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

export interface TestCa extends IssuedCert {
  readonly name: string;
  /** A leaf signed by this CA. */
  issue(name: string, opts?: { dns?: string[]; ip?: string[]; client?: boolean; expired?: boolean; days?: number; /** An OCSP responder URL in the certificate (Authority Information Access). */ ocsp?: string }): IssuedCert;
  /** Revoke a certificate this CA issued (its database then says so to an OCSP responder). */
  revoke(cert: IssuedCert): void;
  /** The CA's database (index.txt), for `openssl ocsp -index`. */
  readonly index: string;
}

export interface CertDir {
  readonly dir: string;
  ca(name: string): TestCa;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

let serial = 1;

/** A temporary folder to make CAs and certificates in. */
export function certDir(prefix = 'gatewise-tls-'): CertDir {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    ca(name) {
      const base = join(dir, name);
      mkdirSync(base, { recursive: true });
      const keyFile = join(base, 'ca.key');
      const certFile = join(base, 'ca.pem');
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '30', '-subj', `/CN=${name}`], base);
      const db = join(base, 'db');
      mkdirSync(db, { recursive: true });
      writeFileSync(join(db, 'index.txt'), '');
      writeFileSync(join(db, 'serial'), `${(serial++).toString(16).padStart(4, '0')}\n`);
      writeFileSync(
        join(base, 'ca.cnf'),
        ['[ca]', 'default_ca = tca', '[tca]', `database = ${join(db, 'index.txt')}`, `new_certs_dir = ${db}`, `serial = ${join(db, 'serial')}`, 'default_md = sha256', 'policy = pol', 'unique_subject = no', 'copy_extensions = copy', '[pol]', 'commonName = supplied', ''].join('\n'),
      );
      let n = 0;
      return {
        name,
        certFile,
        keyFile,
        cert: readFileSync(certFile, 'utf8'),
        key: readFileSync(keyFile, 'utf8'),
        issue(cn, opts = {}) {
          n++;
          const stem = join(base, `${n}-${cn.replace(/[^a-z0-9.-]/gi, '_')}`);
          const key = `${stem}.key`;
          const csr = `${stem}.csr`;
          const crt = `${stem}.pem`;
          const ext = `${stem}.ext`;
          const san = [...(opts.dns ?? []).map((d) => `DNS:${d}`), ...(opts.ip ?? []).map((i) => `IP:${i}`)];
          const lines = [
            '[req]',
            'distinguished_name = dn',
            'req_extensions = ext',
            'prompt = no',
            '[dn]',
            `CN = ${cn}`,
            '[ext]',
            opts.client ? 'extendedKeyUsage = clientAuth' : 'extendedKeyUsage = serverAuth',
            ...(san.length ? [`subjectAltName = ${san.join(',')}`] : []),
            ...(opts.ocsp ? [`authorityInfoAccess = OCSP;URI:${opts.ocsp}`] : []),
            '',
          ];
          writeFileSync(ext, lines.join('\n'));
          openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-config', ext], base);
          const validity = opts.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200201000000Z'] : ['-days', String(opts.days ?? 5)];
          openssl(['ca', '-batch', '-config', join(base, 'ca.cnf'), '-cert', certFile, '-keyfile', keyFile, '-in', csr, '-out', crt, '-notext', ...validity], base);
          return { certFile: crt, keyFile: key, cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') };
        },
        revoke(cert) {
          openssl(['ca', '-config', join(base, 'ca.cnf'), '-cert', certFile, '-keyfile', keyFile, '-revoke', cert.certFile], base);
        },
        index: join(db, 'index.txt'),
      };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether openssl can be run here (the helper needs it). */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
