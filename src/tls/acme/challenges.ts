/** The path HTTP-01 validations ask for (RFC 8555 §8.3), followed by the token. */
export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/**
 * The HTTP-01 challenges pending for a gateway: token → key authorization. The ACME
 * managers of its TLS listeners write it while an order is being validated; the plain
 * listeners read it before routing (gateway/exchange.ts), also when they redirect to HTTPS.
 * One per gateway, kept across config reloads.
 */
export class AcmeChallenges {
  readonly #tokens = new Map<string, string>();
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
}
