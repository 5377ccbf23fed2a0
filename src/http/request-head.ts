import { METHODS } from 'node:http';
import { TCHAR, VALUE_BYTE, lowerCase, nameIs } from './token.js';
import { versionFramingProblem } from './framing.js';

/**
 * A strict HTTP/1.1 request-head parser written for speed (RFC 9112), for the `net` front of
 * the reverse gateway (src/gateway/net-front.ts). It refuses what Node's llhttp refuses with
 * its lenient flags off, with llhttp's error codes (so `parserRefusal` answers with the same
 * statuses): a bare LF, obs-fold, a byte outside a token in a method or a field name, control
 * bytes in a target or a value, duplicate Content-Length, Transfer-Encoding with
 * Content-Length, Transfer-Encoding not ending in chunked, too large a head. Differences from
 * llhttp found by test/fuzz/net-front-differential.test.ts are fixed or allowlisted there.
 *
 * The parser is incremental: each complete line is parsed once, and a line still arriving is
 * checked only past where the last read left it, so a head trickled byte by byte costs time
 * linear in its length (with the connection's buffer grown by doubling, net-front.ts
 * `#append`; `npm run bench:trickle`).
 */

export interface ParsedHead {
  method: string;
  url: string;
  /** '1.0' or '1.1' ('0.9': a request line without a version, which the exchange refuses by name as today). */
  httpVersion: string;
  /** Name, value pairs as received, all of them (as Node's rawHeaders: the exchange counts them for its 431). */
  rawHeaders: string[];
  /** How many fields IncomingMessage#headers takes (Node's maxHeadersCount; the rest are only in rawHeaders). */
  keep: number;
  /** Body framing: -1 none given, else the Content-Length. */
  contentLength: number;
  chunked: boolean;
  /** The connection closes after this request (Connection: close, or HTTP/1.0 without keep-alive). */
  close: boolean;
  /** Connection: upgrade with an Upgrade field (Node's 'upgrade' event). */
  upgrade: boolean;
  /** The Expect field's value, when there is one. */
  expect: string | undefined;
}

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;

/**
 * Bytes a request-target may hold, as llhttp takes them: visible ASCII, no obs-text, no
 * SP or control byte. (llhttp's URL states refuse these; the gateway checks the form.)
 */
const TARGET = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) TARGET[c] = 1;
/**
 * The bytes llhttp takes in an absolute-form target's authority (its url_server states):
 * letters, digits, `-._~`, the sub-delims, `%`, `:`, `@`, `[` and `]`. The rest of TARGET
 * (`"#<>\^`{|}`) is HPE_INVALID_URL there, though the path takes it.
 */
const AUTHORITY = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) AUTHORITY[c] = 1;
for (const ch of '"#<>\\^`{|}') AUTHORITY[ch.charCodeAt(0)] = 0;

/**
 * Whether a request target may start with byte `f` on the line starting at `s` (its method
 * then SP): llhttp's URL start takes a path, `*` or a scheme's letter (absolute-form), and any
 * byte for CONNECT's authority.
 */
function targetMayStart(f: number, line: Buffer, s: number): boolean {
  if (f === 0x2f || f === 0x2a || ((f | 0x20) >= 0x61 && (f | 0x20) <= 0x7a)) return true;
  return line[s] === 0x43 && line[s + 7] === SP && line.toString('latin1', s, s + 7) === 'CONNECT';
}

/** The methods llhttp parses for HTTP (Node's list), less PRI (the HTTP/2 preface, which llhttp refuses as a request). */
const VERSION_PREFIXES = ['HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0'];

const KNOWN_METHODS = new Set(METHODS.filter((m) => m !== 'PRI'));
/** Every prefix of a known method: llhttp refuses a method at its first byte that leads to none. */
const METHOD_PREFIXES = new Set([...KNOWN_METHODS].flatMap((m) => Array.from({ length: m.length }, (_, i) => m.slice(0, i + 1))));

export interface HeadLimits {
  /** Node's maxHeaderSize: bytes of the target, the field names and the values together. */
  maxHeaderSize: number;
  /** Fields the headers object takes (Node's maxHeadersCount); rawHeaders has them all. */
  keep: number;
}

/** What `feed` found: a head (`head`, `end` where it ended), more bytes needed, or an llhttp error code. */
export type FeedResult = 0 | 1 | string;
export const NEED_MORE = 0;
export const HEAD_DONE = 1;

/**
 * One connection's head parser. `feed(buf, start)` parses complete lines from `start` on and
 * returns NEED_MORE (the caller keeps buf[pos..] and calls again with more bytes appended),
 * HEAD_DONE (`head` is set; the head's last byte is before `pos`), or an error code.
 */
export class RequestHeadParser {
  readonly limits: HeadLimits;
  /** Where the next unparsed line starts in the buffer last fed. */
  pos = 0;
  head: ParsedHead | undefined;
  #size = 0;
  #line0 = true;
  #fields = 0;
  #method = '';
  #url = '';
  #version = '';
  #raw: string[] = [];
  #cl = -1;
  #clSeen = false;
  #te = false;
  #chunked = false;
  #connClose = false;
  #connKeepAlive = false;
  #connUpgrade = false;
  #upgradeField = false;
  #expect: string | undefined;
  /**
   * A line still arriving was checked up to this many bytes from its start, in phase `#phase`
   * (request line: 0 method, 1 spaces, 2 target, 3 version, its start `#versionAt`; field: 0
   * name, 1 value): the next read checks only what came after. Before, each read of a line
   * trickled a few bytes at a time checked the whole line again, quadratic in its length up
   * to maxHeaderSize (adversarial review, session 26: 3.3× node:http's CPU for such clients).
   */
  #resume = 0;
  #phase = 0;
  #versionAt = 0;

  constructor(limits: HeadLimits) {
    this.limits = limits;
  }

  /** Ready for the next head (the buffer position is the caller's). */
  reset(pos: number): void {
    this.pos = pos;
    this.head = undefined;
    this.#size = 0;
    this.#line0 = true;
    this.#fields = 0;
    this.#raw = [];
    this.#cl = -1;
    this.#clSeen = false;
    this.#te = false;
    this.#chunked = false;
    this.#connClose = false;
    this.#connKeepAlive = false;
    this.#connUpgrade = false;
    this.#upgradeField = false;
    this.#expect = undefined;
    this.#resume = 0;
    this.#phase = 0;
  }

  /** The method of the request line read so far ('' before it): a refused HEAD is answered without a body. */
  get methodSoFar(): string {
    return this.#method;
  }

  /** The value of the first field read so far named `name` (lower-case): a refused head's Accept, for its answer's format. */
  fieldSoFar(name: string): string | undefined {
    const raw = this.#raw;
    for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name) return raw[i + 1];
    return undefined;
  }

  /** Whether any byte of a head has been taken (a keep-alive connection between requests has none). */
  get started(): boolean {
    return !this.#line0;
  }

  feed(buf: Buffer): FeedResult {
    let s = this.pos;
    const len = buf.length;
    for (;;) {
      if (this.#line0) {
        // RFC 9112 §2.2: empty lines before a request line are ignored (llhttp does the same).
        while (s + 1 < len && buf[s] === CR && buf[s + 1] === LF) s += 2;
        if (s < len && buf[s] === LF) return 'HPE_INVALID_METHOD';
      }
      // The part of a line checked by an earlier read has no LF (it was searched then).
      const lf = buf.indexOf(LF, s + this.#resume);
      if (lf < 0) {
        this.pos = s;
        // A line still arriving: its bytes count toward the limit already (as llhttp's do).
        if (this.#size + (len - s) - 2 >= this.limits.maxHeaderSize) return 'HPE_HEADER_OVERFLOW';
        const r = this.#line0 ? this.#partialRequestLine(buf, s, len) : this.#partialField(buf, s, len);
        if (r !== undefined) return r;
        return NEED_MORE;
      }
      if (lf === s || buf[lf - 1] !== CR) return this.#line0 ? 'HPE_INVALID_VERSION' : 'HPE_LF_EXPECTED';
      this.#resume = 0;
      this.#phase = 0;
      const e = lf - 1;
      if (this.#line0) {
        const r = this.#requestLine(buf, s, e);
        if (r !== undefined) return r;
        this.#line0 = false;
        s = lf + 1;
        continue;
      }
      if (e === s) return this.#end(lf + 1);
      const r = this.#field(buf, s, e);
      if (r !== undefined) return r;
      s = lf + 1;
    }
  }

  /**
   * Errors llhttp finds before a line ends (it refuses byte by byte; waiting for the LF would
   * turn its 400 into a 408): a method byte that is no tchar, a bad version prefix, a bare CR.
   */
  #partialRequestLine(buf: Buffer, s: number, e: number): string | undefined {
    // Nothing yet after empty lines, or a CR whose LF is still to come: wait (both were refused
    // as a bad method when a read ended there; node:http waits).
    if (e === s || (e - s === 1 && buf[s] === CR)) return undefined;
    let i = s + this.#resume;
    let phase = this.#phase;
    if (phase === 0) {
      // The method is checked whole each time: at most 20 bytes.
      i = s;
      while (i < e && TCHAR[buf[i]!] === 1) i++;
      if (i - s > 20 || !METHOD_PREFIXES.has(buf.toString('latin1', s, i))) return 'HPE_INVALID_METHOD';
      if (i === e) return undefined;
      if (buf[i] !== SP || i === s) return 'HPE_INVALID_METHOD';
      phase = 1;
    }
    if (phase === 1) {
      while (i < e && buf[i] === SP) i++;
      if (i === e) return this.#wait(s, i, 1);
      // The target's first byte, as #requestLine judges it: llhttp refuses a wrong one at once.
      if (!targetMayStart(buf[i]!, buf, s)) return 'HPE_INVALID_URL';
      phase = 2;
    }
    if (phase === 2) {
      while (i < e && TARGET[buf[i]!] === 1) i++;
      if (i === e) return this.#wait(s, i, 2);
      if (buf[i] !== SP) return buf[i] === CR && i + 1 === e ? this.#wait(s, i, 2) : 'HPE_INVALID_URL';
      this.#versionAt = i + 1 - s;
    }
    // The version: at most 8 bytes, checked whole each time.
    i = s + this.#versionAt;
    for (let k = 0; i < e && k < 8; k++, i++) {
      const c = buf[i]!;
      if (c === CR && i + 1 === e) return this.#wait(s, s + this.#versionAt, 3);
      if (!VERSION_PREFIXES.some((v) => v.charCodeAt(k) === c)) return 'HPE_INVALID_VERSION';
    }
    if (i < e && !(buf[i] === CR && i + 1 === e)) return 'HPE_INVALID_VERSION';
    return this.#wait(s, s + this.#versionAt, 3);
  }

  /** A partial line checked up to `at` (absolute) in `phase`: the next read goes on from there. */
  #wait(s: number, at: number, phase: number): undefined {
    this.#resume = at - s;
    this.#phase = phase;
    return undefined;
  }

  /** A field line still arriving: obs-fold, a byte outside the name's token, a control byte in the value, a bare CR. */
  #partialField(buf: Buffer, s: number, e: number): string | undefined {
    let i = s + this.#resume;
    let phase = this.#phase;
    if (i === s) {
      const c0 = buf[s]!;
      if (c0 === SP || c0 === HTAB) return 'HPE_INVALID_HEADER_TOKEN';
      if (c0 === CR) return s + 1 === e ? undefined : 'HPE_LF_EXPECTED';
      phase = 0;
    }
    if (phase === 0) {
      while (i < e && TCHAR[buf[i]!] === 1) i++;
      if (i === e) return this.#wait(s, i, 0);
      if (buf[i] !== COLON || i === s) return 'HPE_INVALID_HEADER_TOKEN';
      i++;
    }
    for (; i < e; i++) {
      const c = buf[i]!;
      // A CR at the end may be the line's end: checked again with the byte after it.
      if (VALUE_BYTE[c] === 0) return c === CR && i + 1 === e ? this.#wait(s, i, 1) : 'HPE_INVALID_HEADER_TOKEN';
    }
    return this.#wait(s, i, 1);
  }

  #requestLine(buf: Buffer, s: number, e: number): string | undefined {
    let i = s;
    while (i < e && TCHAR[buf[i]!] === 1) i++;
    if (i === s || i >= e || buf[i] !== SP) return 'HPE_INVALID_METHOD';
    const method = buf.toString('latin1', s, i);
    if (!KNOWN_METHODS.has(method)) return 'HPE_INVALID_METHOD';
    this.#method = method;
    // llhttp takes more than one SP before the target.
    while (i < e && buf[i] === SP) i++;
    const t0 = i;
    // llhttp's URL start: a path, `*`, or a scheme (absolute-form); CONNECT takes an authority.
    const f = buf[i]!;
    if (i < e && !targetMayStart(f, buf, s)) return 'HPE_INVALID_URL';
    if (method !== 'CONNECT' && (f | 0x20) >= 0x61 && (f | 0x20) <= 0x7a) {
      // An absolute-form target as llhttp takes it (its url_schema state): a scheme of letters
      // only, then "://". `ca/b`, `ca:b`, `c1://b` and `a-b://x` are HPE_INVALID_URL there.
      let j = i + 1;
      while (j < e && (buf[j]! | 0x20) >= 0x61 && (buf[j]! | 0x20) <= 0x7a) j++;
      if (e - j < 3 || buf[j] !== 0x3a || buf[j + 1] !== 0x2f || buf[j + 2] !== 0x2f) return 'HPE_INVALID_URL';
      // Its authority ends at the path's `/`, the query's `?` or the SP before the version; two
      // `@` in a row are HPE_INVALID_URL there too ("Double @ in url"; `a@b@c` passes).
      for (j += 3; j < e; j++) {
        const c = buf[j]!;
        if (c === 0x2f || c === 0x3f || c === SP) break;
        if (AUTHORITY[c] !== 1 || (c === 0x40 && buf[j - 1] === 0x40)) return 'HPE_INVALID_URL';
      }
    }
    while (i < e && TARGET[buf[i]!] === 1) i++;
    if (i === t0) return 'HPE_INVALID_URL';
    this.#url = buf.toString('latin1', t0, i);
    this.#size += i - t0;
    if (this.#size >= this.limits.maxHeaderSize) return 'HPE_HEADER_OVERFLOW';
    if (i === e) {
      // HTTP/0.9 (no version): llhttp takes it with any method but CONNECT, then reads fields as
      // usual; the exchange refuses it by name (505), as it does behind node:http.
      if (this.#method === 'CONNECT') return 'HPE_INVALID_CONSTANT';
      this.#version = '0.9';
      return undefined;
    }
    if (buf[i] !== SP) return 'HPE_INVALID_URL';
    i++;
    if (e - i !== 8 || buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 || buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f || buf[i + 6] !== 0x2e) return 'HPE_INVALID_CONSTANT';
    const major = buf[i + 5]!;
    const minor = buf[i + 7]!;
    if (major === 0x31 && minor === 0x31) this.#version = '1.1';
    else if (major === 0x31 && minor === 0x30) this.#version = '1.0';
    else if (major === 0x32 && minor === 0x30) this.#version = '2.0'; // llhttp takes it; the gateway treats it as 1.1
    else return 'HPE_INVALID_VERSION';
    return undefined;
  }

  #field(buf: Buffer, s: number, e: number): string | undefined {
    const c0 = buf[s]!;
    // obs-fold (RFC 9112 §5.2): refused, as llhttp does.
    if (c0 === SP || c0 === HTAB) return 'HPE_INVALID_HEADER_TOKEN';
    let i = s;
    while (i < e && TCHAR[buf[i]!] === 1) i++;
    if (i === s || i >= e || buf[i] !== COLON) return 'HPE_INVALID_HEADER_TOKEN';
    const colon = i;
    i++;
    while (i < e && (buf[i] === SP || buf[i] === HTAB)) i++;
    const v0 = i;
    for (; i < e; i++) if (VALUE_BYTE[buf[i]!] === 0) return 'HPE_INVALID_HEADER_TOKEN';
    let v1 = e;
    while (v1 > v0 && (buf[v1 - 1] === SP || buf[v1 - 1] === HTAB)) v1--;
    this.#size += colon - s + (e - v0);
    if (this.#size >= this.limits.maxHeaderSize) return 'HPE_HEADER_OVERFLOW';
    const name = buf.toString('latin1', s, colon);
    const value = buf.toString('latin1', v0, v1);
    this.#fields++;
    this.#raw.push(name, value);
    const n = colon - s;
    // The fields that frame the message or steer the connection (by length first: one compare for most).
    if (n === 14 && nameIs(name, 'content-length')) {
      if (this.#clSeen) return 'HPE_UNEXPECTED_CONTENT_LENGTH';
      if (this.#te) return 'HPE_INVALID_TRANSFER_ENCODING';
      this.#clSeen = true;
      // llhttp refuses a tab around the number (and so does this parser, to agree with the node front).
      for (let k = colon + 1; k < e; k++) if (buf[k] === HTAB) return 'HPE_INVALID_CONTENT_LENGTH';
      if (value.length === 0 || value.length > 15) return 'HPE_INVALID_CONTENT_LENGTH';
      let cl = 0;
      for (let k = 0; k < value.length; k++) {
        const d = value.charCodeAt(k) - 48;
        if (d < 0 || d > 9) return 'HPE_INVALID_CONTENT_LENGTH';
        cl = cl * 10 + d;
      }
      this.#cl = cl;
    } else if (n === 17 && nameIs(name, 'transfer-encoding')) {
      if (this.#clSeen) return 'HPE_INVALID_TRANSFER_ENCODING';
      this.#te = true;
      // Codings are a list over every field: chunked counts when it is the last one.
      const parts = value.split(',');
      let last = '';
      for (const p of parts) {
        const c = p.trim().toLowerCase();
        if (c === '') {
          // An empty element after chunked in the same field (`chunked,`): llhttp reads chunked
          // as not the last coding and refuses the request; taking it as chunked let the two
          // fronts frame one body two ways (adversarial probe, session attack;
          // test/gateway/chunked-framing-strict.test.ts). An empty field after one that ended
          // in chunked stays chunked, as in llhttp.
          if (last === 'chunked') return 'HPE_INVALID_TRANSFER_ENCODING';
          continue;
        }
        last = c;
        // chunked must be the last coding, applied once (llhttp refuses a coding after it).
        if (this.#chunked) return 'HPE_INVALID_TRANSFER_ENCODING';
        this.#chunked = c === 'chunked';
      }
    } else if (n === 10 && nameIs(name, 'connection')) {
      for (const p of value.split(',')) {
        const c = p.trim().toLowerCase();
        if (c === 'close') this.#connClose = true;
        else if (c === 'keep-alive') this.#connKeepAlive = true;
        else if (c === 'upgrade') this.#connUpgrade = true;
      }
    } else if (n === 7 && nameIs(name, 'upgrade')) this.#upgradeField = true;
    else if (n === 6 && this.#fields <= this.limits.keep && nameIs(name, 'expect')) this.#expect = this.#expect === undefined ? value : `${this.#expect}, ${value}`;
    return undefined;
  }

  /** The empty line: the head is complete. */
  #end(next: number): FeedResult {
    // HTTP/1.0 with Transfer-Encoding: faulty framing (RFC 9112 §6.1), the rule of both faces (framing.ts).
    if (this.#te) {
      const framing = versionFramingProblem(this.#version, true);
      if (framing !== undefined) return framing;
    }
    // A request with Transfer-Encoding whose last coding is not chunked has no length (RFC 9112 §6.3).
    if (this.#te && !this.#chunked) return 'HPE_INVALID_TRANSFER_ENCODING';
    return this.#done(next);
  }

  #done(next: number): FeedResult {
    const v = this.#version;
    this.head = {
      method: this.#method,
      url: this.#url,
      httpVersion: v,
      rawHeaders: this.#raw,
      keep: this.limits.keep,
      contentLength: this.#cl,
      chunked: this.#chunked,
      close: v === '0.9' || this.#connClose || (v === '1.0' && !this.#connKeepAlive),
      upgrade: this.#connUpgrade && this.#upgradeField,
      expect: this.#expect,
    };
    this.pos = next;
    return HEAD_DONE;
  }
}

/** Fields Node keeps the first of when repeated (IncomingMessage#headers); others are joined with ', ' (cookie with '; '). */
const FIRST_WINS = new Set(['content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization', 'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag', 'last-modified', 'server', 'age', 'expires']);

/** Node's IncomingMessage#headers from raw name, value pairs (lower-case names; duplicates as Node joins them). */
export function headersObject(raw: readonly string[], keep = Infinity): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  const n = Math.min(raw.length, keep * 2);
  for (let i = 0; i < n; i += 2) {
    const k = lowerCase(raw[i]!);
    const v = raw[i + 1]!;
    const prev = out[k];
    if (prev === undefined) out[k] = k === 'set-cookie' ? [v] : v;
    else if (k === 'set-cookie') (prev as string[]).push(v);
    else if (FIRST_WINS.has(k)) continue;
    else out[k] = `${prev as string}${k === 'cookie' ? '; ' : ', '}${v}`;
  }
  return out;
}

/**
 * The longest chunk-size line (the size and its extensions, without CRLF). node:http refuses
 * more than 16 KiB of extensions on one chunk (HPE_CHUNK_EXTENSIONS_OVERFLOW, CVE-2024-22019);
 * a line within this bound carries no more than that, so the net front refuses whatever the
 * node front does (and, near the bound, a few lines of many one-byte extensions it takes).
 */
const MAX_CHUNK_LINE = 16 * 1024;

/** Chunked body decoder (RFC 9112 §7.1) for request bodies, incremental over reads. */
export class ChunkedDecoder {
  /** 0 size line, 1 data, 2 CRLF after data, 3 trailer lines, 4 done. */
  state = 0;
  #left = 0;
  /** Trailer fields (name, value pairs) once done. */
  trailers: string[] = [];
  #trailerSize = 0;
  /**
   * Bytes of the line held from the last read that were searched for its LF already: the next
   * read's search starts past them. Without it a line trickled a few bytes per read (a trailer
   * may grow to maxHeaderSize) was searched from its start on each read, time quadratic in its
   * length (review of session 40: 16-byte reads of a 1 MiB trailer line, ~0.5 s of CPU).
   */
  #scanned = 0;
  readonly #maxTrailer: number;

  constructor(maxTrailerSize: number) {
    this.#maxTrailer = maxTrailerSize;
  }

  /**
   * Decode from buf[s..]: calls `data` for each piece of body; returns where it stopped (the
   * caller keeps buf[pos..] for the next read; `state` 4 when the body and its trailers are
   * done, pos then after the last CRLF), or an llhttp error code.
   */
  decode(buf: Buffer, s: number, data: (b: Buffer) => void): number | string {
    const len = buf.length;
    while (s < len) {
      const st = this.state;
      if (st === 1) {
        const n = Math.min(this.#left, len - s);
        data(s === 0 && n === len ? buf : buf.subarray(s, s + n));
        s += n;
        this.#left -= n;
        if (this.#left === 0) this.state = 2;
        continue;
      }
      if (st === 4) return s;
      if (st === 2 && buf[s] !== CR) return 'HPE_STRICT';
      const lf = buf.indexOf(LF, s + this.#scanned);
      if (lf < 0) {
        this.#scanned = len - s;
        // A line still arriving is held to the bound its complete form is held to below (its
        // last byte may be the CR): the verdict must not depend on how the reads cut it
        // (adversarial probe, session attack: a bound of 4096 held only here, so a long
        // extension or trailer line passed in one read and was refused in two).
        if (st === 3) {
          if (this.#trailerSize + (len - s - 1) > this.#maxTrailer) return 'HPE_HEADER_OVERFLOW';
        } else if (st === 2) {
          if (len - s > 1) return 'HPE_STRICT'; // the CR after a chunk's data is not followed by its LF
        } else if (len - s - 1 > MAX_CHUNK_LINE) return 'HPE_CHUNK_EXTENSIONS_OVERFLOW';
        return s; // the rest of the line comes with the next read
      }
      this.#scanned = 0;
      if (lf === s || buf[lf - 1] !== CR) return 'HPE_LF_EXPECTED';
      const e = lf - 1;
      if (st === 0 && e - s > MAX_CHUNK_LINE) return 'HPE_CHUNK_EXTENSIONS_OVERFLOW';
      if (st === 2) {
        if (e !== s) return 'HPE_STRICT';
        this.state = 0;
        s = lf + 1;
        continue;
      }
      if (st === 0) {
        const r = this.#sizeLine(buf, s, e);
        if (typeof r === 'string') return r;
        s = lf + 1;
        if (r === 0) this.state = 3;
        else {
          this.#left = r;
          this.state = 1;
        }
        continue;
      }
      // trailers
      if (e === s) {
        this.state = 4;
        return lf + 1;
      }
      const c0 = buf[s]!;
      if (c0 === SP || c0 === HTAB) return 'HPE_INVALID_HEADER_TOKEN';
      let i = s;
      while (i < e && TCHAR[buf[i]!] === 1) i++;
      if (i === s || buf[i] !== COLON) return 'HPE_INVALID_HEADER_TOKEN';
      const colon = i++;
      const name = buf.toString('latin1', s, colon);
      // Framing fields are never trailers (RFC 9110 §6.5.1); llhttp refuses them there by these codes.
      if (nameIs(name, 'content-length')) return 'HPE_INVALID_CONTENT_LENGTH';
      if (nameIs(name, 'transfer-encoding')) return 'HPE_INVALID_TRANSFER_ENCODING';
      while (i < e && (buf[i] === SP || buf[i] === HTAB)) i++;
      const v0 = i;
      for (; i < e; i++) if (VALUE_BYTE[buf[i]!] === 0) return 'HPE_INVALID_HEADER_TOKEN';
      let v1 = e;
      while (v1 > v0 && (buf[v1 - 1] === SP || buf[v1 - 1] === HTAB)) v1--;
      this.#trailerSize += e - s;
      if (this.#trailerSize > this.#maxTrailer) return 'HPE_HEADER_OVERFLOW';
      this.trailers.push(name, buf.toString('latin1', v0, v1));
      s = lf + 1;
    }
    return s;
  }

  /** A chunk-size line [s, e): hex size, then optional extensions (`;name[=value]`). */
  #sizeLine(buf: Buffer, s: number, e: number): number | string {
    let i = s;
    let size = 0;
    for (; i < e; i++) {
      const c = buf[i]!;
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) break;
      size = size * 16 + d;
      if (size > Number.MAX_SAFE_INTEGER) return 'HPE_INVALID_CHUNK_SIZE';
    }
    if (i === s) return 'HPE_INVALID_CHUNK_SIZE';
    if (i === e) return size;
    // Extensions (RFC 9112 §7.1.1): `;` name [ `=` token / quoted-string ], with no whitespace
    // anywhere: RFC 9112 allows it around each part (BWS), llhttp's strict mode (node:http)
    // refuses it, and a front laxer than the parser behind it about chunk framing is how
    // smuggling starts. A size followed by anything but `;` is HPE_INVALID_CHUNK_SIZE, a fault
    // after the `;` HPE_STRICT, as llhttp names them.
    if (buf[i] !== 0x3b /* ; */) return 'HPE_INVALID_CHUNK_SIZE';
    while (i < e) {
      if (buf[i] !== 0x3b /* ; */) return 'HPE_STRICT';
      i++;
      const n0 = i;
      while (i < e && TCHAR[buf[i]!] === 1) i++;
      if (i === n0) return 'HPE_STRICT';
      if (i < e && buf[i] === 0x3d /* = */) {
        i++;
        if (i < e && buf[i] === 0x22 /* " */) {
          for (i++; i < e && buf[i] !== 0x22; i++) {
            // quoted-pair (RFC 9110 §5.6.4): the escaped byte is HTAB, SP, VCHAR or obs-text, as
            // llhttp requires. Unchecked, `\<CR>` (or NUL, DEL) passed inside a chunk-size line
            // that the node front refuses (adversarial probe, session attack).
            if (buf[i] === 0x5c) i++;
            if (i >= e || VALUE_BYTE[buf[i]!] === 0) return 'HPE_STRICT';
          }
          if (i >= e) return 'HPE_STRICT';
          i++;
        } else {
          const v0 = i;
          while (i < e && TCHAR[buf[i]!] === 1) i++;
          if (i === v0) return 'HPE_STRICT';
        }
      }
    }
    return size;
  }
}
