import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { AlpnResponder, isAlpnValidation, peekClientHello } from './alpn.js';

/** The path HTTP-01 validations ask for (RFC 8555 §8.3), followed by the token. */
export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/**
 * The HTTP-01 challenges pending for a gateway: token → key authorization. The ACME
 * managers of its TLS listeners write it while an order is being validated; the plain
 * listeners read it before routing (gateway/exchange.ts), also when they redirect to HTTPS.
 * And the TLS-ALPN-01 challenges pending: host name → the challenge certificate's context,
 * answered on the TLS listeners whose acme lists tls-alpn-01 (`route`).
 * One per gateway (or forward proxy), kept across config reloads.
 */
export class AcmeChallenges {
  readonly #tokens = new Map<string, string>();
  readonly #alpn = new Map<string, SecureContext>();
  #responder: AlpnResponder | undefined;
  /** TLS-ALPN-01 validation handshakes completed with a challenge certificate (since start). */
  get alpnAnswered(): number {
    return this.#responder?.answered ?? 0;
  }
  /** Storage folders shared with other processes: a token one of them is being validated for is answered too. */
  readonly #shared = new Set<{ readChallenge(token: string): string | undefined }>();

  /** Answer the tokens another process writes to this storage as well (workers, nodes on a shared disk). */
  share(storage: { readChallenge(token: string): string | undefined }): void {
    this.#shared.add(storage);
  }

  set(token: string, keyAuthorization: string): void {
    this.#tokens.set(token, keyAuthorization);
  }

  delete(token: string): void {
    this.#tokens.delete(token);
  }

  /** The key authorization for a request path under ACME_CHALLENGE_PREFIX (query ignored), or undefined. */
  answer(path: string): string | undefined {
    let token = path.slice(ACME_CHALLENGE_PREFIX.length);
    const q = token.indexOf('?');
    if (q >= 0) token = token.slice(0, q);
    const mine = this.#tokens.get(token);
    if (mine !== undefined) return mine;
    // Only requests for this path get here (validations, or a scan): a file read is no cost to traffic.
    for (const s of this.#shared) {
      const theirs = s.readChallenge(token);
      if (theirs !== undefined) return theirs;
    }
    return undefined;
  }

  get size(): number {
    return this.#tokens.size;
  }

  /** A TLS-ALPN-01 challenge for `name` (RFC 8737): its certificate and key (PEM, from acme-client) answer validations until `deleteAlpn`. */
  setAlpn(name: string, certPem: string, keyPem: string): void {
    this.#alpn.set(name.toLowerCase(), createSecureContext({ cert: certPem, key: keyPem, minVersion: 'TLSv1.2' }));
  }

  deleteAlpn(name: string): void {
    this.#alpn.delete(name.toLowerCase());
  }

  /** TLS-ALPN-01 challenges pending (0: a TLS listener hands every connection on untouched). */
  get alpnPending(): number {
    return this.#alpn.size;
  }

  /**
   * A new connection of a TLS listener that answers TLS-ALPN-01: while a challenge is pending,
   * its ClientHello is read first, and a validation (acme-tls/1 only, for a pending name) is
   * answered with the challenge certificate; everything else goes to `normal` with its bytes
   * put back. With none pending, `normal` at once (one field test). `head`: bytes the caller
   * already read (put back before `normal` in every case).
   */
  route(socket: Socket, waitMs: number, normal: () => void, head?: Buffer): void {
    if (this.#alpn.size === 0) {
      if (head !== undefined) {
        socket.pause();
        socket.unshift(head);
      }
      return normal();
    }
    peekClientHello(socket, waitMs, (hello) => {
      if (socket.destroyed) return;
      if (hello !== undefined && isAlpnValidation(hello) && this.#alpn.has(hello.servername)) {
        this.#responder ??= new AlpnResponder((n) => this.#alpn.get(n));
        this.#responder.take(socket);
      } else normal();
    }, head);
  }
}
