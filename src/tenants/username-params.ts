/**
 * Username parameters in the style commercial proxy providers use:
 * `alice-session-abc123-ttl-10m-pool-residential`. The base name (`alice`) is what
 * authenticates; each `KEY-VALUE` pair after it is optional and in any order.
 */
import { editDistance } from '../text/index.js';
export interface UsernameGrammar {
  /** Between the base name, keys and values; default "-". */
  separator: string;
  /** The words that introduce each parameter (`debug` absent: no debug parameter). */
  keys: { session: string; ttl: string; pool: string; debug?: string };
  /**
   * The longest session lifetime a name may ask for, in ms (`usernameGrammar.maxTtl`); a longer
   * `-ttl-` does not parse and is refused as a parameter that cannot be used. Without a cap a
   * session held its exit for as long as it was kept busy (up to 999,999,999 days asked).
   */
  maxTtlMs: number;
}

/** The default cap of `-ttl-`: a day, longer than the sessions commercial providers sell. */
export const DEFAULT_MAX_TTL_MS = 86_400_000;

export const DEFAULT_GRAMMAR: UsernameGrammar = { separator: '-', keys: { session: 'session', ttl: 'ttl', pool: 'pool', debug: 'debug' }, maxTtlMs: DEFAULT_MAX_TTL_MS };

export interface UsernameParams {
  /** The user name that authenticates. */
  base: string;
  session?: string;
  /** Session lifetime asked for, in ms. */
  ttlMs?: number;
  pool?: string;
  /** `-debug-1`: the Gatewise-Debug response header for this request (`-debug-0`: none, even when the plan turns it on). */
  debug?: boolean;
}

const VALUE_RE = /^[A-Za-z0-9_.]{1,64}$/;
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "10m" → 600000; undefined when not a duration. */
export function parseShortDuration(s: string): number | undefined {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(s);
  return m ? Number(m[1]) * UNITS[m[2]!]! : undefined;
}

/** A lifetime as the parameter spells one, in the largest unit that divides it ("24h", "90m"). */
function shortDuration(ms: number): string {
  for (const u of ['d', 'h', 'm', 's'] as const) if (ms % UNITS[u]! === 0) return `${ms / UNITS[u]!}${u}`;
  return `${ms}ms`;
}

const KEYS = ['session', 'ttl', 'pool', 'debug'] as const;


/**
 * Why a presented name that is not a user does not parse, when it starts with a user's name
 * and the separator: the first parameter that is unknown (with the nearest known key), has
 * no value, or has a value that cannot be used. Undefined when no prefix is a user.
 */
export function explainUsername(name: string, isUser: (base: string) => boolean, grammar: UsernameGrammar = DEFAULT_GRAMMAR): { base: string; problem: string } | undefined {
  const sep = grammar.separator;
  const tokens = name.split(sep);
  const keys = KEYS.map((k) => grammar.keys[k]).filter((k): k is string => k !== undefined);
  const known = keys.map((k) => `${sep}${k}${sep}VALUE`).join(', ');
  for (let i = 1; i < tokens.length; i++) {
    const base = tokens.slice(0, i).join(sep);
    if (!isUser(base)) continue;
    const rest = tokens.slice(i);
    const seen = new Set<string>();
    for (let j = 0; j < rest.length; j += 2) {
      const key = rest[j]!;
      const value = rest[j + 1];
      if (!keys.includes(key)) {
        const near = keys.map((k) => [k, editDistance(key.toLowerCase(), k)] as const).sort((a, b) => a[1] - b[1])[0]!;
        const hint = near[1] <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean "${near[0]}"?)` : '';
        return { base, problem: `unknown username parameter "${key}"${hint}; the parameters are ${known}` };
      }
      if (value === undefined || value === '') return { base, problem: `username parameter "${key}" has no value (${sep}${key}${sep}VALUE)` };
      // A parameter's name where a value belongs: the value was left out (alice-session-pool-dc).
      if (keys.includes(value)) return { base, problem: `username parameter "${key}" has no value: "${value}" is a parameter name (${sep}${key}${sep}VALUE)` };
      if (seen.has(key)) return { base, problem: `username parameter "${key}" is given twice` };
      seen.add(key);
      if (!VALUE_RE.test(value)) return { base, problem: `username parameter "${key}" has a value that is not 1-64 letters, digits, "_" or "."` };
      if (key === grammar.keys.debug && value !== '1' && value !== '0') {
        return { base, problem: `username parameter "${key}" expects 1 (on) or 0 (off), got "${value}"` };
      }
      if (key === grammar.keys.ttl) {
        const ms = parseShortDuration(value) ?? 0;
        if (!(ms > 0)) return { base, problem: `username parameter "${key}" expects a duration such as 10m, 30s or 1h, got "${value}"` };
        if (ms > grammar.maxTtlMs) return { base, problem: `username parameter "${key}" asks for ${value}; sessions last at most ${shortDuration(grammar.maxTtlMs)}` };
      }
    }
    return { base, problem: 'the user name does not parse as NAME followed by parameters' };
  }
  return undefined;
}

/**
 * Split a presented username into its base name and parameters. The shortest base that
 * leaves only well-formed KEY-VALUE pairs wins; when nothing parses, the whole name is
 * the base (and simply will not authenticate if it is not a user).
 *
 * A value is never a parameter's name (`alice-session-pool-dc` is a session whose value was
 * left out, not the session "pool"), and a key appears once. With `isUser`, only a base that
 * is a user counts: `alice-pool-dc-pool-dc` does not parse as the user "alice-pool-dc" with
 * pool dc unless there is such a user (review finding: it did, and a repeated parameter was
 * refused as a wrong password); `explainUsername` then names the parameter.
 */
export function parseUsername(name: string, grammar: UsernameGrammar = DEFAULT_GRAMMAR, isUser?: (base: string) => boolean): UsernameParams {
  const sep = grammar.separator;
  const tokens = name.split(sep);
  const keyOf = new Map<string, 'session' | 'ttl' | 'pool' | 'debug'>([
    [grammar.keys.session, 'session'],
    [grammar.keys.ttl, 'ttl'],
    [grammar.keys.pool, 'pool'],
  ]);
  if (grammar.keys.debug !== undefined) keyOf.set(grammar.keys.debug, 'debug');
  outer: for (let i = 1; i < tokens.length; i++) {
    const rest = tokens.slice(i);
    if (rest.length % 2 !== 0 || !keyOf.has(rest[0]!)) continue;
    const out: UsernameParams = { base: tokens.slice(0, i).join(sep) };
    const seen = new Set<string>();
    for (let j = 0; j < rest.length; j += 2) {
      const key = keyOf.get(rest[j]!);
      const value = rest[j + 1]!;
      if (!key || seen.has(key) || !VALUE_RE.test(value) || keyOf.has(value)) continue outer;
      seen.add(key);
      if (key === 'ttl') {
        const ms = parseShortDuration(value);
        if (ms === undefined || ms <= 0 || ms > grammar.maxTtlMs) continue outer;
        out.ttlMs = ms;
      } else if (key === 'debug') {
        if (value !== '1' && value !== '0') continue outer;
        out.debug = value === '1';
      } else {
        out[key] = value;
      }
    }
    if (out.base.length === 0 || (isUser !== undefined && !isUser(out.base))) continue;
    return out;
  }
  return { base: name };
}
