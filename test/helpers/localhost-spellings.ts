import type { Rand } from './seeded.js';

/**
 * Spellings of RFC 6761 §6.3's loopback names for a seeded property test: `localhost` and
 * names under it, in any case, with or without the trailing dot of an absolute name. The
 * three named in the finding always; `extra` more drawn from the seed (case per letter,
 * 0–3 labels under `localhost`, a trailing dot or not). Every one ends in the label
 * `localhost`, so none is a name any DNS server may answer for.
 */
export function localhostSpellings(rand: Rand, extra: number): string[] {
  const names = ['localhost', 'LOCALHOST.', 'foo.localhost'];
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const mixCase = (s: string): string => [...s].map((c) => (rand.int(2) === 0 ? c.toUpperCase() : c)).join('');
  for (let i = 0; i < extra; i++) {
    const labels: string[] = [];
    for (let n = rand.int(4); n > 0; n--) {
      let l = '';
      for (let k = 1 + rand.int(8); k > 0; k--) l += alphabet[rand.int(alphabet.length)];
      labels.push(mixCase(l));
    }
    labels.push(mixCase('localhost'));
    names.push(labels.join('.') + (rand.int(2) === 0 ? '.' : ''));
  }
  return names;
}
