/** DNS message pieces the lab's DNS server needs (RFC 1035), built by hand. */

export const DNS_TYPE_A = 1;
export const DNS_TYPE_AAAA = 28;
export const DNS_TYPE_ANY = 255;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;

const HEADER_LEN = 12;
const MAX_LABELS = 128;

/** A query with exactly one question. */
export interface DnsQuery {
  readonly id: number;
  readonly opcode: number;
  readonly recursionDesired: boolean;
  /** Lower-case, without the trailing dot. */
  readonly name: string;
  readonly type: number;
  /** The question section exactly as received (echoed in the answer). */
  readonly question: Buffer;
}

/** A packet that is a query but not one the lab can read: answered FORMERR. */
export interface DnsMalformed {
  readonly id: number;
  readonly malformed: true;
}

/** Read a query; undefined for packets to ignore (too short, or a response). */
export function parseDnsQuery(msg: Buffer): DnsQuery | DnsMalformed | undefined {
  if (msg.length < HEADER_LEN) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if ((flags & 0x8000) !== 0) return undefined;
  if (msg.readUInt16BE(4) !== 1) return { id, malformed: true };
  let offset = HEADER_LEN;
  let name = '';
  for (let labels = 0; ; labels++) {
    if (labels > MAX_LABELS || offset >= msg.length) return { id, malformed: true };
    const len = msg[offset]!;
    offset++;
    if (len === 0) break;
    // Compression pointers (0xC0) and the reserved label types have no place in a question.
    if ((len & 0xc0) !== 0 || offset + len > msg.length) return { id, malformed: true };
    if (name.length > 0) name += '.';
    name += msg.toString('latin1', offset, offset + len).toLowerCase();
    offset += len;
  }
  if (offset + 4 > msg.length) return { id, malformed: true };
  const type = msg.readUInt16BE(offset);
  offset += 4;
  return {
    id,
    opcode: (flags >> 11) & 0x0f,
    recursionDesired: (flags & 0x0100) !== 0,
    name,
    type,
    question: msg.subarray(HEADER_LEN, offset),
  };
}

function header(id: number, opcode: number, rd: boolean, rcode: number, qd: number, an: number): Buffer {
  const h = Buffer.alloc(HEADER_LEN);
  h.writeUInt16BE(id, 0);
  // QR=1, opcode, AA=1, RD as asked, RA=1, rcode.
  h.writeUInt16BE(0x8000 | (opcode << 11) | 0x0400 | (rd ? 0x0100 : 0) | 0x0080 | (rcode & 0x0f), 2);
  h.writeUInt16BE(qd, 4);
  h.writeUInt16BE(an, 6);
  return h;
}

/** The answer to `query`: its question echoed, `rcode`, and one A record per address. */
export function buildDnsResponse(query: DnsQuery, rcode: number, addresses: readonly Uint8Array[], ttl: number): Buffer {
  const parts: Buffer[] = [header(query.id, query.opcode, query.recursionDesired, rcode, 1, addresses.length), query.question];
  for (const addr of addresses) {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question's name
    rr.writeUInt16BE(DNS_TYPE_A, 2);
    rr.writeUInt16BE(1, 4); // class IN
    rr.writeUInt32BE(ttl, 6);
    rr.writeUInt16BE(4, 10);
    rr.set(addr, 12);
    parts.push(rr);
  }
  return Buffer.concat(parts);
}

/** FORMERR with no question (the question could not be read). */
export function buildFormErr(id: number): Buffer {
  return header(id, 0, false, RCODE_FORMERR, 0, 0);
}

/** Dotted-quad to 4 bytes; the caller checked it with net.isIPv4. */
export function ipv4Bytes(ip: string): Uint8Array {
  const out = new Uint8Array(4);
  const parts = ip.split('.');
  for (let i = 0; i < 4; i++) out[i] = Number(parts[i]);
  return out;
}

/** Lower-case, no trailing dot: the form names are compared in. */
export function normalizeDnsName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
