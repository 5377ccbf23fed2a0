/**
 * Cache-Control directives (RFC 9111 §5.2) and the header helpers the cache needs.
 * Written here rather than taken from http-cache-semantics: its parser is not exported,
 * and the cache reads directives of requests, stored responses and 304 answers alike.
 */

/** Directives by lower-case name; a value-less directive is `true`. Duplicates: the first wins. */
export type Directives = ReadonlyMap<string, string | true>;

const EMPTY: Directives = new Map();

export function parseCacheControl(value: string | string[] | undefined): Directives {
  if (value === undefined) return EMPTY;
  const s = Array.isArray(value) ? value.join(',') : value;
  if (s.length === 0) return EMPTY;
  const out = new Map<string, string | true>();
  // Quoted values may hold commas (no-cache="set-cookie, foo"): split outside quotes only.
  let i = 0;
  while (i < s.length) {
    let j = i;
    let quoted = false;
    while (j < s.length && (quoted || s[j] !== ',')) {
      if (s[j] === '"') quoted = !quoted;
      else if (s[j] === '\\' && quoted) j++;
      j++;
    }
    const part = s.slice(i, j).trim();
    i = j + 1;
    if (part.length === 0) continue;
    const eq = part.indexOf('=');
    // No whitespace around "=" (RFC 9111 §5.2: directive = token [ "=" ( token / quoted-string ) ]):
    // "max-age = 5" is not a max-age.
    const name = (eq < 0 ? part : part.slice(0, eq)).toLowerCase();
    if (name.length === 0 || !/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name) || out.has(name)) continue;
    let v: string | true = true;
    if (eq >= 0) {
      v = part.slice(eq + 1);
      if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    }
    out.set(name, v);
  }
  return out;
}

/**
 * A delta-seconds directive (max-age, s-maxage, stale-if-error, ...): its value as an
 * integer number of seconds, or undefined when absent or invalid (RFC 9111 §1.2.2: a
 * value that is not delta-seconds makes the directive invalid; a huge one is capped).
 */
export function deltaSeconds(d: Directives, name: string): number | undefined {
  const v = d.get(name);
  if (v === undefined || v === true) return undefined;
  if (!/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return n > 2_147_483_648 ? 2_147_483_648 : n;
}

const RFC850 = /^\s*(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT\s*$/;
const ASCTIME = /^\s*(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})\s*$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * An HTTP-date (RFC 9110 §5.6.7) in ms since the epoch, or NaN. IMF-fixdate is left to
 * `Date.parse`; the two obsolete forms are read here: `Date.parse` reads an asctime-date in the
 * process's local time zone (HTTP-dates are GMT), and puts an rfc850-date's two-digit year in
 * the 1900s while §5.6.7 says a year more than 50 years ahead is the most recent past year with
 * those digits (so "50" is 2050 until 2000 + 50 is more than 50 years away).
 */
export function httpDate(v: string | undefined, now = Date.now()): number {
  if (v === undefined) return NaN;
  const a = ASCTIME.exec(v);
  if (a !== null) return utc(Number(a[6]), a[1]!, Number(a[2]!.trim()), a[3]!, a[4]!, a[5]!);
  const m = RFC850.exec(v);
  if (m === null) return Date.parse(v);
  const thisYear = new Date(now).getUTCFullYear();
  let year = Math.floor(thisYear / 100) * 100 + Number(m[3]);
  if (year > thisYear + 50) year -= 100;
  else if (year <= thisYear - 50) year += 100;
  return utc(year, m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!);
}

function utc(year: number, month: string, day: number, h: string, m: string, s: string): number {
  const t = Date.UTC(year, MONTHS.indexOf(month), day, Number(h), Number(m), Number(s));
  return new Date(t).getUTCDate() === day ? t : NaN; // 31-Feb is not a date
}

/** A header's value as one string (list fields joined with ", "). */
export function oneValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}
