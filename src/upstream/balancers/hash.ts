/**
 * 32-bit string hash for consistent hashing: FNV-1a over UTF-16 code units, then murmur3's
 * finalizer so that keys differing in one character spread over the whole range. It reads
 * the string in place (no encoding buffer), so hashing a request key allocates nothing. Every
 * gateway node computes the same value, so the same key reaches the same endpoint everywhere.
 */
export function hash32(s: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A uniformly random 32-bit value: stands in for the hash when the caller has no key. */
export function randomHash(): number {
  return (Math.random() * 0x1_0000_0000) >>> 0;
}
