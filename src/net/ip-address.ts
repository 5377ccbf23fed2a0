import { SocketAddress, isIP } from 'node:net';

/**
 * The 16 bytes of an IPv6 address, which the caller has checked with `isIPv6`: `::` expanded,
 * an embedded IPv4 tail (`::ffff:1.2.3.4`) as its two groups, a zone id (`%eth0`) dropped.
 */
export function ipv6Bytes(host: string): Buffer {
  const out = Buffer.alloc(16);
  const zone = host.indexOf('%');
  let h = zone < 0 ? host : host.slice(0, zone);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    h = h.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = h.split('::') as [string, string | undefined];
  const a = head ? head.split(':') : [];
  const b = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? a : [...a, ...new Array<string>(8 - a.length - b.length).fill('0'), ...b];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** An IP address (checked with `isIP`) as a number: 32 bits for IPv4, 128 for IPv6. */
export function ipValue(address: string, family: 'ipv4' | 'ipv6'): bigint {
  if (family === 'ipv4') return BigInt(address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0));
  return BigInt(`0x${ipv6Bytes(address).toString('hex')}`);
}

/** Whether an address (as `admin.address` is given) is this host's loopback: 127.0.0.0/8, ::1 (or its IPv4-mapped form of 127.x), `localhost`. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (a === 'localhost' || a.endsWith('.localhost')) return true;
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (v4) return v4.slice(1).every((o) => Number(o) <= 255) && Number(v4[1]) === 127;
  if (isIP(a) === 6) return new SocketAddress({ address: a, family: 'ipv6' }).address === '::1';
  return false;
}
