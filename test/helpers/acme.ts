import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { ACME_CHANNEL, type AcmeEvent } from '../../src/tls/index.js';
import type { TestPebble } from './pebble.js';
import { freePort } from './redis.js';

/**
 * Helpers of the ACME tests (test/tls/acme*.test.ts, test/forward/https-proxy-acme.test.ts):
 * the `tls.acme` fields for a test Pebble, events on gatewise:tls:acme and the wait for an
 * order's end, Pebble's root for clients, curl through a name resolved to 127.0.0.1, and the
 * certificate a handshake gets.
 */

/** One gateway of an ACME test: its plain listener's port (HTTP-01), its TLS listener's port and its storage folder. */
export interface AcmeSite {
  httpPort: number;
  httpsPort: number;
  storage: string;
}

/** Free ports for a gateway's two listeners, and the storage folder `name` under `work`. */
export async function acmeSite(work: string, name: string): Promise<AcmeSite> {
  return { httpPort: await freePort(), httpsPort: await freePort(), storage: join(work, name) };
}

/** The `tls.acme` fields that point at a test Pebble (its directory and the CA of its TLS, terms accepted), then the test's own. */
export function pebbleAcme(pebble: TestPebble, fields: Record<string, unknown>): Record<string, unknown> {
  return { directory: pebble.dirUrl, directoryCa: pebble.directoryCaFile, acceptTerms: true, ...fields };
}

export type AcmeEvents = ReturnType<typeof acmeEvents>;

/**
 * Wait (bounded) for an order to end, `match` narrowing which, and assert it obtained its
 * certificate; a failure's message carries the event and Pebble's last output.
 */
export async function expectObtained(events: AcmeEvents, pebble: TestPebble, match: (e: AcmeEvent) => boolean = () => true): Promise<AcmeEvent> {
  const e = await events.next((x) => (x.event === 'obtained' || x.event === 'failed') && match(x));
  assert.equal(e.event, 'obtained', `${JSON.stringify(e)}\n${pebble.output.slice(-3000)}`);
  return e;
}

/** Pebble's root now (a restarted Pebble has a new one) written to `file`, for curl's --cacert; the PEM. */
export async function writePebbleRoot(pebble: TestPebble, file: string): Promise<string> {
  const root = await pebble.root();
  writeFileSync(file, root);
  return root;
}

/** Run curl with a 30 s limit (the code is curl's exit status). */
export function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', args, { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

/** curl --http2 https://host:port/path with host resolved to 127.0.0.1, trusting `rootFile` only; stdout is "2 200" when all is well. */
export function curlH2(host: string, port: number, rootFile: string, path = '/bytes?n=100'): Promise<{ code: number; stdout: string; stderr: string }> {
  return curl(['--silent', '--show-error', '--http2', '--cacert', rootFile, '--resolve', `${host}:${port}:127.0.0.1`, '--output', '/dev/null', '--write-out', '%{http_version} %{http_code}', `https://${host}:${port}${path}`]);
}

/** ACME events, recorded from now on; `next` waits (bounded) for one that matches. */
export function acmeEvents(): { list: AcmeEvent[]; next(match: (e: AcmeEvent) => boolean, ms?: number): Promise<AcmeEvent>; stop(): void } {
  const list: AcmeEvent[] = [];
  const waiters: Array<{ match: (e: AcmeEvent) => boolean; resolve: (e: AcmeEvent) => void }> = [];
  const onEvent = (m: unknown): void => {
    const e = m as AcmeEvent;
    list.push(e);
    for (const w of [...waiters]) {
      if (w.match(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  };
  subscribe(ACME_CHANNEL, onEvent);
  return {
    list,
    next(match, ms = 60_000) {
      const seen = list.find(match);
      if (seen !== undefined) {
        list.splice(list.indexOf(seen), 1);
        return Promise.resolve(seen);
      }
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching ACME event within ${ms} ms; saw ${JSON.stringify(list)}`)), ms);
        waiters.push({
          match,
          resolve: (e) => {
            clearTimeout(t);
            list.splice(list.indexOf(e), 1);
            resolve(e);
          },
        });
      });
    },
    stop: () => unsubscribe(ACME_CHANNEL, onEvent),
  };
}

/** The certificate a new TLS connection for `host` gets: serial and expiry. */
export function peerCert(host: string, port: number, root: string): Promise<{ serial: string; validTo: string; socket: TLSSocket }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: host, ca: root, ALPNProtocols: ['http/1.1'] }, () => {
      const c = s.getPeerCertificate();
      resolve({ serial: c.serialNumber, validTo: c.valid_to, socket: s });
    });
    s.once('error', reject);
  });
}

