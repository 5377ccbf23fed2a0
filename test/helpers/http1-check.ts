/**
 * A deliberately conservative HTTP/1.1 request-stream checker for tests: it walks the raw
 * bytes an upstream received on one connection and reports every message it can frame and
 * every construct that two parsers could read differently (request smuggling material).
 *
 * It is stricter than RFC 9112 where an intermediary's output should be: no obs-fold, no
 * bare CR/LF, no control bytes in values, exactly one framing (one Content-Length or a
 * Transfer-Encoding of exactly `chunked`), plain hex chunk sizes. After the first violation
 * it stops: the rest of the stream cannot be framed unambiguously anyway.
 */

export interface CheckedRequest {
  method: string;
  target: string;
  version: string;
  /** Header fields as received: [name, value] with the value's OWS trimmed. */
  headers: Array<[string, string]>;
  framing: 'none' | 'length' | 'chunked';
  /** Body bytes (decoded chunk data for chunked). */
  bodyLength: number;
  /** Offset of the request-line in the connection's stream. */
  offset: number;
  /** False when the stream ended inside this request's body. */
  complete: boolean;
}

export interface StreamCheck {
  requests: CheckedRequest[];
  violations: string[];
  /** Bytes at the end that are not a complete request head (0 when the stream ends cleanly). */
  incompleteHeadBytes: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) (HTTP\/1\.[01])$/;
const CHUNK_SIZE = /^[0-9A-Fa-f]{1,16}$/;

/** First header value (case-insensitive name), or undefined. */
export function headerValue(req: Pick<CheckedRequest, 'headers'>, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of req.headers) if (k.toLowerCase() === lower) return v;
  return undefined;
}

function snippet(s: string, at: number): string {
  return JSON.stringify(s.slice(Math.max(0, at - 40), at + 60));
}

/** Control bytes other than HTAB (NUL, CR, LF included) and DEL. */
function badValueByte(v: string): number {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return i;
  }
  return -1;
}

/**
 * Check one connection's received bytes. `buf` is taken as latin1 so every byte is one
 * code unit.
 */
export function checkRequestStream(buf: Buffer): StreamCheck {
  const s = buf.toString('latin1');
  const requests: CheckedRequest[] = [];
  const violations: string[] = [];
  let pos = 0;

  /** Next line without its CRLF; undefined when the stream ends first. Flags bare CR/LF. */
  const readLine = (): string | undefined => {
    const nl = s.indexOf('\n', pos);
    if (nl < 0) return undefined;
    const start = pos;
    pos = nl + 1;
    if (nl === start || s.charCodeAt(nl - 1) !== 0x0d) {
      violations.push(`bare LF as line terminator at ${nl}: ${snippet(s, nl)}`);
      return s.slice(start, nl);
    }
    const line = s.slice(start, nl - 1);
    const cr = line.indexOf('\r');
    if (cr >= 0) violations.push(`bare CR inside a line at ${start + cr}: ${snippet(s, start + cr)}`);
    return line;
  };

  /** Header/trailer field lines up to the empty line; undefined when incomplete. */
  const readFields = (what: string): Array<[string, string]> | undefined => {
    const fields: Array<[string, string]> = [];
    for (;;) {
      const lineStart = pos;
      const line = readLine();
      if (line === undefined) return undefined;
      if (violations.length) return fields;
      if (line === '') return fields;
      const c0 = line.charCodeAt(0);
      if (c0 === 0x20 || c0 === 0x09) {
        violations.push(`obs-fold (${what} line starts with SP/HTAB) at ${lineStart}: ${snippet(s, lineStart)}`);
        return fields;
      }
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      if (colon <= 0 || !TOKEN.test(name)) {
        violations.push(`invalid ${what} field name ${JSON.stringify(name)} at ${lineStart}`);
        return fields;
      }
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
      const bad = badValueByte(value);
      if (bad >= 0) {
        violations.push(`control byte 0x${value.charCodeAt(bad).toString(16).padStart(2, '0')} inside the value of ${name} at ${lineStart}: ${snippet(s, lineStart)}`);
        return fields;
      }
      fields.push([name, value]);
    }
  };

  while (pos < s.length && violations.length === 0) {
    const offset = pos;
    if (s.indexOf('\n', pos) < 0) break; // incomplete request-line
    const line = readLine()!;
    if (violations.length) break;
    if (line === '') {
      violations.push(`empty line before a request-line at ${offset}`);
      break;
    }
    const m = REQUEST_LINE.exec(line);
    if (!m) {
      violations.push(`invalid request-line at ${offset}: ${JSON.stringify(line.slice(0, 120))}`);
      break;
    }
    const headers = readFields('header');
    if (headers === undefined) {
      pos = offset;
      break;
    }
    if (violations.length) break;
    const req: CheckedRequest = { method: m[1]!, target: m[2]!, version: m[3]!, headers, framing: 'none', bodyLength: 0, offset, complete: false };
    const cl = headers.filter(([k]) => k.toLowerCase() === 'content-length');
    const te = headers.filter(([k]) => k.toLowerCase() === 'transfer-encoding');
    const hosts = headers.filter(([k]) => k.toLowerCase() === 'host');
    if (cl.length > 1) violations.push(`${cl.length} Content-Length fields at ${offset}: ${cl.map(([, v]) => JSON.stringify(v)).join(', ')}`);
    if (cl.length === 1 && !/^\d{1,15}$/.test(cl[0]![1])) violations.push(`Content-Length ${JSON.stringify(cl[0]![1])} is not a plain decimal at ${offset}`);
    if (cl.length > 0 && te.length > 0) violations.push(`Content-Length together with Transfer-Encoding at ${offset}`);
    if (te.length > 1) violations.push(`${te.length} Transfer-Encoding fields at ${offset}`);
    if (te.length === 1 && te[0]![1].toLowerCase() !== 'chunked') violations.push(`Transfer-Encoding ${JSON.stringify(te[0]![1])} is not exactly chunked at ${offset}`);
    if (hosts.length !== 1 && req.version === 'HTTP/1.1') violations.push(`${hosts.length} Host fields at ${offset}`);
    requests.push(req);
    if (violations.length) break;

    if (te.length === 1) {
      req.framing = 'chunked';
      let done = false;
      for (;;) {
        const sizeAt = pos;
        const sizeLine = readLine();
        if (sizeLine === undefined || violations.length) break;
        if (!CHUNK_SIZE.test(sizeLine)) {
          violations.push(`bad chunk size ${JSON.stringify(sizeLine.slice(0, 40))} at ${sizeAt}`);
          break;
        }
        const size = parseInt(sizeLine, 16);
        if (size === 0) {
          const trailers = readFields('trailer');
          if (trailers === undefined || violations.length) break;
          for (const [k] of trailers) {
            const lk = k.toLowerCase();
            if (lk === 'content-length' || lk === 'transfer-encoding' || lk === 'host') violations.push(`framing field ${k} in a trailer at ${sizeAt}`);
          }
          done = violations.length === 0;
          break;
        }
        if (pos + size + 2 > s.length) {
          req.bodyLength += Math.max(0, Math.min(size, s.length - pos));
          pos = s.length;
          break;
        }
        req.bodyLength += size;
        pos += size;
        if (s.charCodeAt(pos) !== 0x0d || s.charCodeAt(pos + 1) !== 0x0a) {
          violations.push(`chunk data not followed by CRLF at ${pos}: ${snippet(s, pos)}`);
          break;
        }
        pos += 2;
      }
      req.complete = done;
      if (!done) break;
    } else if (cl.length === 1) {
      req.framing = 'length';
      const n = Number(cl[0]![1]);
      const have = Math.min(n, s.length - pos);
      req.bodyLength = have;
      pos += have;
      req.complete = have === n;
      if (!req.complete) break;
    } else {
      req.complete = true;
    }
  }
  const last = requests[requests.length - 1];
  const incompleteHeadBytes = violations.length === 0 && (last === undefined || last.complete) ? s.length - pos : 0;
  return { requests, violations, incompleteHeadBytes };
}

/**
 * A tolerant reader of what a client received: status codes and the value of one header,
 * per response, in order. Framing by Content-Length / chunked / close; stops quietly at
 * anything it cannot frame. `headFirst` marks the first response as one to a HEAD request.
 */
export interface ReceivedResponse {
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
  complete: boolean;
}

export function readResponses(buf: Buffer, opts: { closed: boolean; headRequests?: boolean } = { closed: false }): ReceivedResponse[] {
  const out: ReceivedResponse[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (headEnd < 0) break;
    const head = buf.subarray(pos, headEnd).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]!);
    if (!m) break;
    const status = Number(m[1]);
    const headers: Array<[string, string]> = [];
    for (const line of head.slice(1)) {
      const c = line.indexOf(':');
      if (c > 0) headers.push([line.slice(0, c).toLowerCase(), line.slice(c + 1).trim()]);
    }
    pos = headEnd + 4;
    const get = (k: string): string | undefined => headers.find(([n]) => n === k)?.[1];
    if (status < 200 || status === 204 || status === 304 || opts.headRequests) {
      out.push({ status, headers, body: Buffer.alloc(0), complete: true });
      continue;
    }
    const te = get('transfer-encoding');
    const cl = get('content-length');
    if (te && te.toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      let complete = false;
      for (;;) {
        const nl = buf.indexOf('\r\n', pos, 'latin1');
        if (nl < 0) break;
        const size = parseInt(buf.subarray(pos, nl).toString('latin1'), 16);
        if (!Number.isFinite(size)) break;
        if (size === 0) {
          const end = buf.indexOf('\r\n\r\n', nl, 'latin1');
          if (end < 0) break;
          pos = end + 4;
          complete = true;
          break;
        }
        if (nl + 2 + size + 2 > buf.length) break;
        parts.push(buf.subarray(nl + 2, nl + 2 + size));
        pos = nl + 2 + size + 2;
      }
      out.push({ status, headers, body: Buffer.concat(parts), complete });
      if (!complete) break;
    } else if (cl !== undefined) {
      const n = Number(cl);
      const body = buf.subarray(pos, pos + n);
      out.push({ status, headers, body, complete: body.length === n });
      pos += body.length;
      if (body.length < n) break;
    } else {
      out.push({ status, headers, body: buf.subarray(pos), complete: opts.closed });
      pos = buf.length;
    }
  }
  return out;
}

export function responseHeader(r: ReceivedResponse, name: string): string | undefined {
  return r.headers.find(([n]) => n === name)?.[1];
}
