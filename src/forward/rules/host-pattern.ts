/**
 * Host name patterns: `example.com` (exactly), `*.example.com` (any subdomain, any depth,
 * not the apex), `*` (anything). Case-insensitive; a trailing dot is ignored.
 */

export function normalizeHostName(host: string): string {
  let h = host.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  while (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

export function isValidHostPattern(p: string): boolean {
  if (p === '*') return true;
  const body = p.startsWith('*.') ? p.slice(2) : p;
  return body.length > 0 && body.length <= 253 && /^[A-Za-z0-9_:.\-]+\.?$/.test(body) && !body.includes('*');
}

export class HostPattern {
  readonly #exact: string | undefined;
  readonly #suffix: string | undefined;
  readonly #any: boolean;
  readonly source: string;

  constructor(pattern: string) {
    if (!isValidHostPattern(pattern)) throw new TypeError(`not a host pattern: ${JSON.stringify(pattern)}`);
    this.source = pattern;
    this.#any = pattern === '*';
    if (pattern.startsWith('*.')) this.#suffix = '.' + normalizeHostName(pattern.slice(2));
    else if (!this.#any) this.#exact = normalizeHostName(pattern);
  }

  matches(host: string): boolean {
    if (this.#any) return true;
    const h = normalizeHostName(host);
    if (this.#exact !== undefined) return h === this.#exact;
    return h.length > this.#suffix!.length && h.endsWith(this.#suffix!);
  }
}
