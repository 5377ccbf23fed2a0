import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { ACME_CHANNEL, type AcmeEvent } from '../../src/tls/index.js';

/** Helpers of the ACME tests (test/tls/acme*.test.ts): events on gatewise:tls:acme, and the certificate a handshake gets. */

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

