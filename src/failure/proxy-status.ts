import type { Failure } from './failure.js';

/**
 * RFC 9209 `Proxy-Status` members in RFC 8941 (Structured Field Values) syntax.
 * Hand-written: the field is a list of tokens/strings with a few parameters, and the
 * hot path needs it without a general structured-field library.
 */

const TOKEN_RE = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/;

/**
 * The most characters of a string parameter (`details`, `next-hop`, ...) this gateway writes.
 * A detail may quote what the client sent (a path, a Via); unbounded, it made the field as long
 * as the request head, past what clients read (16 KiB heads). Longer values end in `...`.
 */
export const PROXY_STATUS_PARAM_MAX = 256;

/** Serialize an sf-string: printable ASCII only, `\` and `"` escaped; other bytes become `?`. */
export function sfString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += '\\' + s[i];
    else if (c >= 0x20 && c <= 0x7e) out += s[i];
    else out += '?';
  }
  return out + '"';
}

/** An sf-token when the value is a valid token, else an sf-string. */
export function sfTokenOrString(s: string): string {
  return TOKEN_RE.test(s) ? s : sfString(s);
}

function sfParam(key: string, value: string | number): string {
  if (typeof value === 'number') return `;${key}=${Math.trunc(value)}`;
  return `;${key}=${sfString(value.length > PROXY_STATUS_PARAM_MAX ? `${value.slice(0, PROXY_STATUS_PARAM_MAX - 3)}...` : value)}`;
}

export interface ProxyStatusOptions {
  /** This intermediary's name in the list. */
  name: string;
  /** Include next-hop and details (topology): only for trusted clients. */
  revealTopology: boolean;
  /** Prefix of the problem+json `type` (the type's anchor in docs/errors.md follows). Default PROBLEM_TYPE_BASE. */
  problemTypeBase?: string;
}

/**
 * The member for a failure the gateway produced itself. The type's own RFC 9209 parameters
 * (TYPE_PARAMS below: `rcode` and `info-code` of dns_error, `alert-id`/`alert-message` of
 * tls_alert_received, `status-code` of http_request_error) are sent to every client: each says
 * only the class of what went wrong, which the error type already half says, never a host, an
 * address or the gateway's internals. `next-hop` and `details` are the topology RFC 9209 §6
 * lets an intermediary withhold, and are sent only when `revealTopology` (finding, error-story
 * probe: rcode="NXDOMAIN" was dropped with details under the forward proxy's revealDetails
 * false, while status-code was kept).
 */
export function failureMember(f: Failure, opts: ProxyStatusOptions): string {
  let m = `${sfTokenOrString(opts.name)};error=${f.type}`;
  if (opts.revealTopology && f.nextHop) m += sfParam('next-hop', f.nextHop);
  if (f.params) for (const k in f.params) if (opts.revealTopology || TYPE_PARAMS.has(k)) m += sfParam(k, f.params[k]!);
  if (opts.revealTopology) m += sfParam('details', f.detail);
  return m;
}

/**
 * The parameters RFC 9209 §2.3 defines for an error type itself (in the sections of dns_error,
 * tls_alert_received and http_request_error), sent to every client.
 * `received-status` (what an upstream proxy of an egress answered) is not among them: it
 * tells there is one, which is topology.
 */
const TYPE_PARAMS: ReadonlySet<string> = new Set(['rcode', 'info-code', 'alert-id', 'alert-message', 'status-code']);

/** The member for an upstream response passed through (no `error`). */
export function receivedMember(status: number, nextHop: string | undefined, opts: ProxyStatusOptions): string {
  let m = `${sfTokenOrString(opts.name)};received-status=${status}`;
  if (opts.revealTopology && nextHop) m += sfParam('next-hop', nextHop);
  return m;
}

/** Append our member to what earlier intermediaries (closer to the origin) said. */
export function appendMember(existing: string | string[] | undefined, member: string): string {
  if (existing === undefined || existing.length === 0) return member;
  const prior = Array.isArray(existing) ? existing.join(', ') : existing;
  if (!prior.trim()) return member;
  // A received list that does not parse is ignored whole by its readers (RFC 8941 §4.2), and
  // ours with it once appended (finding, session 29: an upstream's unterminated string hid the
  // gateway's member from every client and from `gatewise diagnose`): it is dropped.
  try {
    parseProxyStatus(prior);
  } catch {
    return member;
  }
  return `${prior}, ${member}`;
}

/** One member of a received `Proxy-Status` list: the intermediary's name and its parameters. */
export interface ProxyStatusMember {
  /** The intermediary's name (an sf-token or sf-string). */
  name: string;
  /** Parameters in order of appearance: error, next-hop, received-status, details, rcode, … */
  params: Record<string, string | number | boolean>;
}

/** A `Proxy-Status` value that is not a valid RFC 8941 list; `at` is the offset of the problem. */
export class ProxyStatusSyntaxError extends Error {
  readonly code = 'GATEWISE_PROXY_STATUS_SYNTAX';
  constructor(
    message: string,
    readonly at: number,
  ) {
    super(`${message} at offset ${at}`);
    this.name = 'ProxyStatusSyntaxError';
  }
}

/**
 * Parse a received `Proxy-Status` field (RFC 9209 §2: an RFC 8941 List) into its members,
 * first member nearest the origin, as sent. Several field lines are joined with ", " first
 * (RFC 8941 §4.2). Hand-written for the same reason as the serialiser above: the grammar is
 * small and `failure/` imports nothing; it follows RFC 8941 §4.2 (items: token, string,
 * integer, decimal, boolean, byte sequence; parameters; inner lists are skipped over, since
 * RFC 9209 members are items). Throws ProxyStatusSyntaxError on a malformed value, as the
 * RFC asks a recipient to treat the whole field as invalid.
 */
export function parseProxyStatus(value: string | readonly string[]): ProxyStatusMember[] {
  const s = (typeof value === 'string' ? value : value.join(', ')).replace(/^[ \t]+|[ \t]+$/g, '');
  const p = new SfParser(s);
  const out: ProxyStatusMember[] = [];
  if (s === '') return out;
  for (;;) {
    if (s[p.i] === '(') {
      p.innerList();
      p.params();
    } else {
      const name = p.bareItem();
      const params = p.params();
      out.push({ name: typeof name === 'string' ? name : String(name), params });
    }
    p.ows();
    if (p.i >= s.length) return out;
    if (s[p.i] !== ',') throw new ProxyStatusSyntaxError('expected "," between members', p.i);
    p.i++;
    p.ows();
    if (p.i >= s.length) throw new ProxyStatusSyntaxError('a trailing ","', p.i);
  }
}

class SfParser {
  i = 0;
  constructor(readonly s: string) {}

  ows(): void {
    while (this.s[this.i] === ' ' || this.s[this.i] === '\t') this.i++;
  }

  bareItem(): string | number | boolean {
    const c = this.s[this.i];
    if (c === undefined) throw new ProxyStatusSyntaxError('an item is missing', this.i);
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (c === '?') {
      const b = this.s[this.i + 1];
      if (b !== '0' && b !== '1') throw new ProxyStatusSyntaxError('a boolean is ?0 or ?1', this.i);
      this.i += 2;
      return b === '1';
    }
    if (c === ':') {
      const end = this.s.indexOf(':', this.i + 1);
      if (end < 0) throw new ProxyStatusSyntaxError('an unterminated byte sequence', this.i);
      const b64 = this.s.slice(this.i + 1, end);
      if (!/^[A-Za-z0-9+/=]*$/.test(b64)) throw new ProxyStatusSyntaxError('a byte sequence holds a character outside base64', this.i);
      this.i = end + 1;
      return b64;
    }
    if (/[A-Za-z*]/.test(c)) {
      const m = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(this.s.slice(this.i))!;
      this.i += m[0].length;
      return m[0];
    }
    throw new ProxyStatusSyntaxError(`unexpected character ${JSON.stringify(c)}`, this.i);
  }

  string(): string {
    let out = '';
    this.i++; // the opening quote
    for (;;) {
      const c = this.s[this.i++];
      if (c === undefined) throw new ProxyStatusSyntaxError('an unterminated string', this.i - 1);
      if (c === '"') return out;
      if (c === '\\') {
        const n = this.s[this.i++];
        if (n !== '"' && n !== '\\') throw new ProxyStatusSyntaxError('a backslash escapes only " or \\ in a string', this.i - 1);
        out += n;
        continue;
      }
      const code = c.charCodeAt(0);
      if (code < 0x20 || code > 0x7e) throw new ProxyStatusSyntaxError('a string holds a character outside printable ASCII', this.i - 1);
      out += c;
    }
  }

  number(): number {
    const m = /^-?\d{1,15}(\.\d{1,3})?/.exec(this.s.slice(this.i));
    if (!m) throw new ProxyStatusSyntaxError('a number expected', this.i);
    if (m[1] === undefined && m[0].replace('-', '').length > 15) throw new ProxyStatusSyntaxError('an integer longer than 15 digits', this.i);
    this.i += m[0].length;
    return Number(m[0]);
  }

  params(): Record<string, string | number | boolean> {
    const out: Record<string, string | number | boolean> = {};
    while (this.s[this.i] === ';') {
      this.i++;
      while (this.s[this.i] === ' ') this.i++;
      const m = /^[a-z*][a-z0-9_\-.*]*/.exec(this.s.slice(this.i));
      if (!m) throw new ProxyStatusSyntaxError('a parameter key expected', this.i);
      this.i += m[0].length;
      let v: string | number | boolean = true;
      if (this.s[this.i] === '=') {
        this.i++;
        v = this.bareItem();
      }
      out[m[0]] = v;
    }
    return out;
  }

  innerList(): void {
    this.i++; // (
    for (;;) {
      while (this.s[this.i] === ' ') this.i++;
      if (this.s[this.i] === ')') {
        this.i++;
        return;
      }
      this.bareItem();
      this.params();
      const c = this.s[this.i];
      if (c !== ' ' && c !== ')') throw new ProxyStatusSyntaxError('an inner list item must be followed by a space or ")"', this.i);
    }
  }
}
