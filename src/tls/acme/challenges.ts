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
    return this.#tokens.get(token);
  }

  get size(): number {
    return this.#tokens.size;
  }
}
