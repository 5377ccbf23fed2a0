/**
 * Username parameters in the style commercial proxy providers use:
 * `alice-session-abc123-ttl-10m-pool-residential`. The base name (`alice`) is what
 * authenticates; each `KEY-VALUE` pair after it is optional and in any order.
 */
export interface UsernameGrammar {
  /** Between the base name, keys and values; default "-". */
  separator: string;
  /** The words that introduce each parameter. */
  keys: { session: string; ttl: string; pool: string };
}

export const DEFAULT_GRAMMAR: UsernameGrammar = { separator: '-', keys: { session: 'session', ttl: 'ttl', pool: 'pool' } };

export interface UsernameParams {
  /** The user name that authenticates. */
  base: string;
  session?: string;
  /** Session lifetime asked for, in ms. */
  ttlMs?: number;
  pool?: string;
}

const VALUE_RE = /^[A-Za-z0-9_.]{1,64}$/;
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "10m" → 600000; undefined when not a duration. */
export function parseShortDuration(s: string): number | undefined {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(s);
  return m ? Number(m[1]) * UNITS[m[2]!]! : undefined;
}

/**
 * Split a presented username into its base name and parameters. The shortest base that
 * leaves only well-formed KEY-VALUE pairs wins; when nothing parses, the whole name is
 * the base (and simply will not authenticate if it is not a user).
 */
export function parseUsername(name: string, grammar: UsernameGrammar = DEFAULT_GRAMMAR): UsernameParams {
  const sep = grammar.separator;
  const tokens = name.split(sep);
  const keyOf = new Map<string, 'session' | 'ttl' | 'pool'>([
    [grammar.keys.session, 'session'],
    [grammar.keys.ttl, 'ttl'],
    [grammar.keys.pool, 'pool'],
  ]);
  outer: for (let i = 1; i < tokens.length; i++) {
    const rest = tokens.slice(i);
    if (rest.length % 2 !== 0 || !keyOf.has(rest[0]!)) continue;
    const out: UsernameParams = { base: tokens.slice(0, i).join(sep) };
    const seen = new Set<string>();
    for (let j = 0; j < rest.length; j += 2) {
      const key = keyOf.get(rest[j]!);
      const value = rest[j + 1]!;
      if (!key || seen.has(key) || !VALUE_RE.test(value)) continue outer;
      seen.add(key);
      if (key === 'ttl') {
        const ms = parseShortDuration(value);
        if (ms === undefined || ms <= 0) continue outer;
        out.ttlMs = ms;
      } else {
        out[key] = value;
      }
    }
    if (out.base.length === 0) continue;
    return out;
  }
  return { base: name };
}
