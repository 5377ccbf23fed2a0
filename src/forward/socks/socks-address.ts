import { isIP } from 'node:net';
import { canonicalAddress, ipv6Groups } from '../../net/ip-canonical.js';
import type { ByteReader } from './byte-reader.js';

/** RFC 1928 address types. */
export const ATYP = { ipv4: 0x01, domain: 0x03, ipv6: 0x04 } as const;

export interface SocksTarget {
  host: string;
  port: number;
  atyp: number;
}

export class AddressTypeError extends Error {
  readonly code = 'GATEWISE_SOCKS_ATYP';
  constructor(atyp: number) {
    super(`address type ${atyp} not supported`);
    this.name = 'AddressTypeError';
  }
}

export class BadAddressError extends Error {
  readonly code = 'GATEWISE_SOCKS_BAD_ADDRESS';
  constructor(what: string) {
    super(what);
    this.name = 'BadAddressError';
  }
}

/** Compressed text form of 16 IPv6 bytes. */
export function formatIPv6(b: Buffer): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

const DOMAIN_RE = /^[A-Za-z0-9_\-.]+$/;

/** Host from a domain-name field: printable name characters only. */
export function checkDomain(name: Buffer): string {
  if (name.length === 0) throw new BadAddressError('empty domain name');
  const s = name.toString('latin1');
  if (!DOMAIN_RE.test(s)) {
    // An IPv6 literal sent as a name is accepted as the literal, without a zone id
    // (`fe80::1%eth0`: Node's isIP accepts one; it names an interface of this host).
    if (isIP(s) === 6 && !s.includes('%')) return s;
    throw new BadAddressError('invalid character in domain name');
  }
  return s.toLowerCase();
}

/** Read ATYP + DST.ADDR + DST.PORT from a handshake. */
export async function readAddress(r: ByteReader): Promise<SocksTarget> {
  const atyp = await r.byte();
  let host: string;
  if (atyp === ATYP.ipv4) {
    const b = await r.read(4);
    host = `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  } else if (atyp === ATYP.ipv6) {
    host = formatIPv6(await r.read(16));
  } else if (atyp === ATYP.domain) {
    const len = await r.byte();
    host = checkDomain(await r.read(len));
  } else {
    throw new AddressTypeError(atyp);
  }
  const port = (await r.read(2)).readUInt16BE(0);
  return { host, port, atyp };
}

/** Parse ATYP + ADDR + PORT from a buffer at `offset` (UDP headers). */
export function parseAddress(buf: Buffer, offset: number): { target: SocksTarget; next: number } {
  if (offset >= buf.length) throw new BadAddressError('truncated address');
  const atyp = buf[offset]!;
  let host: string;
  let p = offset + 1;
  if (atyp === ATYP.ipv4) {
    if (p + 4 > buf.length) throw new BadAddressError('truncated address');
    host = `${buf[p]}.${buf[p + 1]}.${buf[p + 2]}.${buf[p + 3]}`;
    p += 4;
  } else if (atyp === ATYP.ipv6) {
    if (p + 16 > buf.length) throw new BadAddressError('truncated address');
    host = formatIPv6(buf.subarray(p, p + 16));
    p += 16;
  } else if (atyp === ATYP.domain) {
    if (p >= buf.length) throw new BadAddressError('truncated address');
    const len = buf[p]!;
    p++;
    if (p + len > buf.length) throw new BadAddressError('truncated address');
    host = checkDomain(buf.subarray(p, p + len));
    p += len;
  } else {
    throw new AddressTypeError(atyp);
  }
  if (p + 2 > buf.length) throw new BadAddressError('truncated address');
  const port = buf.readUInt16BE(p);
  return { target: { host, port, atyp }, next: p + 2 };
}

/** ATYP + ADDR + PORT for an address (IPv4-mapped IPv6 written as IPv4). */
export function encodeAddress(address: string | undefined, port: number): Buffer {
  const canon = address ? canonicalAddress(address) : undefined;
  const portBuf = Buffer.alloc(2);
  portBuf.writeUInt16BE(port & 0xffff, 0);
  if (!canon) {
    if (address && isIP(address) === 0 && address.length <= 255) {
      const name = Buffer.from(address, 'latin1');
      return Buffer.concat([Buffer.from([ATYP.domain, name.length]), name, portBuf]);
    }
    return Buffer.concat([Buffer.from([ATYP.ipv4, 0, 0, 0, 0]), portBuf]);
  }
  if (canon.family === 4) {
    return Buffer.concat([Buffer.from([ATYP.ipv4, ...canon.address.split('.').map(Number)]), portBuf]);
  }
  const g = ipv6Groups(canon.address)!;
  const b = Buffer.alloc(17);
  b[0] = ATYP.ipv6;
  g.forEach((x, i) => b.writeUInt16BE(x, 1 + i * 2));
  return Buffer.concat([b, portBuf]);
}
