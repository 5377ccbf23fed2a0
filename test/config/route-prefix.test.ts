import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkConfigText } from '../../src/config/check.js';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { everyCase, seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * A route's `match.pathPrefix` is compared with the request path as the gateway normalises
 * it (docs/security.md, "Paths"): empty segments merged, `;` parameters removed, dot
 * segments resolved, unreserved characters decoded, percent-encodings in upper case; a
 * backslash, `%00`, a malformed encoding or `#` are refused with 400. A prefix that is not
 * in that form can never match (`//admin`, `/admin;x`, `/%61dmin`) and was accepted
 * silently: the route it was meant to protect took nothing, the catch-all route took its
 * requests. `gatewise check` and config load now refuse it, naming the route and why.
 */

const PLAIN = ['admin', 'api', 'v1', 'a-b', '.well-known', '~u', 'x_y', 'a%2Cb', 'files%2Fid', 'caf%C3%A9', 'A.B', '..a', 'a.'];

function configWith(prefixes: readonly string[]): string {
  const routes = prefixes.map((p) => `  - match: { pathPrefix: ${JSON.stringify(p)} }\n    cluster: api`).join('\n');
  return `listeners: [{ port: 8080 }]\nclusters:\n  api: { endpoints: ["http://127.0.0.1:3000"] }\nroutes:\n${routes}\n  - cluster: api\n`;
}

/** A plain prefix of 1 to 3 segments, with or without a trailing "/". */
function plainPrefix(rand: ReturnType<typeof seededRandom>): string {
  const segs: string[] = [];
  for (let n = 1 + rand.int(3); n > 0; n--) segs.push(rand.pick(PLAIN));
  return '/' + segs.join('/') + (rand.next() < 0.4 ? '/' : '');
}

/** Defects that make a prefix impossible to match, each with what the error must say. */
const DEFECTS: ReadonlyArray<{ make: (segs: string[], at: number, rand: ReturnType<typeof seededRandom>) => void; says: RegExp }> = [
  { make: (s, at) => s.splice(at, 0, ''), says: /empty segments merged/ },
  { make: (s, at) => (s[at] += ';x=1'), says: /without their ";" \(or "%3B"\) parameters/ },
  { make: (s, at) => (s[at] += ';'), says: /without their ";" \(or "%3B"\) parameters/ },
  { make: (s, at) => (s[at] += '%3Bx'), says: /without their ";" \(or "%3B"\) parameters/ },
  { make: (s, at) => s.splice(at, 0, '.'), says: /dot segments resolved/ },
  { make: (s, at) => s.splice(at, 0, '..'), says: /dot segments resolved/ },
  { make: (s, at) => s.splice(at, 0, '%2e%2E'), says: /dot segments resolved/ },
  {
    make: (s, at, r) => {
      const c = r.pick([...'azAZ09-._~']);
      const hex = c.charCodeAt(0).toString(16);
      s[at] += '%' + (r.next() < 0.5 ? hex : hex.toUpperCase());
    },
    says: /percent-encoded unreserved characters decoded/,
  },
  { make: (s, at, r) => (s[at] += r.pick(['%2f', '%3b', '%c3%a9'])), says: /percent-encodings in upper case/ },
  { make: (s, at) => (s[at] += '\\x'), says: /backslash/ },
  { make: (s, at) => (s[at] += '%00'), says: /%00/ },
  { make: (s, at, r) => (s[at] += r.pick(['%zz', '%4', '%'])), says: /malformed percent-encoding/ },
  { make: (s, at) => (s[at] += '#top'), says: /"#"/ },
  { make: (s, at) => (s[at] += '?q=1'), says: /is not a path: "\?" starts the query/ },
  { make: (s, at) => (s[at] += 'é'), says: /percent-encoded.*"[^"]*%C3%A9/ },
  { make: (s, at, r) => (s[at] += r.pick([' ', '\t', '\x7f'])), says: /space or control character/ },
];

function problemsAt(text: string): Array<{ path: string; message: string }> {
  return checkConfigText(text, 'c.yaml', { host: false }).problems.map((p) => ({ path: p.path, message: p.message }));
}

describe('route path prefixes that can never match are refused', () => {
  test('the examples: each names the route, the prefix, the rule and the form that would match', () => {
    const cases: Array<[string, RegExp]> = [
      ['//admin', /"\/\/admin" can never match: request paths are matched with empty segments merged \("\/admin"\)/],
      ['/admin;x', /"\/admin;x" can never match: request paths are matched without their ";" \(or "%3B"\) parameters \("\/admin"\)/],
      ['/admin%3Bx', /"\/admin%3Bx" can never match: request paths are matched without their ";" \(or "%3B"\) parameters \("\/admin"\)/],
      ['/a/./b', /with dot segments resolved \("\/a\/b"\)/],
      ['/a/../admin', /with dot segments resolved \("\/admin"\)/],
      ['/%61dmin', /with percent-encoded unreserved characters decoded \("\/admin"\)/],
      ['/files%2fx', /with percent-encodings in upper case \("\/files%2Fx"\)/],
      ['/a\\admin', /backslash/],
      ['admin', /start with "\/"/],
    ];
    const text = configWith(cases.map((c) => c[0]));
    const problems = problemsAt(text);
    assert.equal(problems.length, cases.length, JSON.stringify(problems, null, 1));
    cases.forEach(([, says], i) => {
      const p = problems.find((q) => q.path === `routes[${i}].match.pathPrefix`);
      assert.ok(p, `no problem at routes[${i}].match.pathPrefix: ${JSON.stringify(problems)}`);
      assert.match(p.message, says);
    });
    assert.throws(() => validateConfig({ listeners: [{ port: 8080 }], clusters: { api: { endpoints: ['http://127.0.0.1:3000'] } }, routes: [{ match: { pathPrefix: '//admin' }, cluster: 'api' }] }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /routes\[0\]\.match\.pathPrefix: "\/\/admin" can never match/);
      return true;
    });
  });

  test('property: seeded plain prefixes are accepted; each with one defect is refused at its route', () => {
    const rand = seededRandom();
    return withSeed(rand, async () => {
      for (let i = 0; i < 150; i++) {
        const good = plainPrefix(rand);
        assert.deepEqual(problemsAt(configWith([good])), [], `plain prefix ${JSON.stringify(good)} refused`);
        const d = rand.pick(DEFECTS);
        const segs = good.slice(1).split('/');
        const at = rand.int(segs.length);
        d.make(segs, at, rand);
        const bad = '/' + segs.join('/');
        const others = [plainPrefix(rand), plainPrefix(rand)];
        const index = rand.int(3);
        const prefixes = [...others];
        prefixes.splice(index, 0, bad);
        const problems = problemsAt(configWith(prefixes));
        assert.equal(problems.length, 1, `${JSON.stringify(bad)} among ${JSON.stringify(prefixes)}: ${JSON.stringify(problems)}`);
        assert.equal(problems[0]!.path, `routes[${index}].match.pathPrefix`, JSON.stringify(bad));
        assert.ok(problems[0]!.message.includes(JSON.stringify(bad)), `${problems[0]!.message} does not name ${JSON.stringify(bad)}`);
        assert.match(problems[0]!.message, /can never match|is not a path/, JSON.stringify(bad));
        assert.match(problems[0]!.message, d.says, JSON.stringify(bad));
      }
    });
  });

  test('prefixes the router can match stay accepted (guard)', async () => {
    await everyCase(['/', '/admin', '/admin/', '/.well-known/acme-challenge/', '/a%2Cb', '/files%2Fid', '/caf%C3%A9', '/~user', '/a..b/..c/', '/a./'], async (p) => {
      assert.deepEqual(problemsAt(configWith([p])), [], p);
    }, 'prefixes');
  });
});

describe('escapedSlashes and route prefixes', () => {
  const withMode = (mode: string | undefined, prefix: string): string => (mode === undefined ? '' : `escapedSlashes: ${mode}\n`) + configWith([prefix]);

  test('a prefix with %2F or %5C can match only under keep: refused under reject and decode, naming the route and the setting', async () => {
    const cases: Array<[string | undefined, string, RegExp | undefined]> = [
      [undefined, '/files%2Fid', undefined],
      ['keep', '/files%2Fid/', undefined],
      ['keep', '/a%5Cb', undefined],
      ['reject', '/files%2Fid', /"\/files%2Fid" can never match: escapedSlashes: reject refuses a request path with "%2F" or "%5C"/],
      ['reject', '/a%5Cb', /escapedSlashes: reject refuses/],
      ['decode', '/files%2Fid', /"\/files%2Fid" can never match: escapedSlashes: decode reads "%2F" in a request path as "\/" \("\/files\/id"\)/],
      ['decode', '/a%5Cb', /escapedSlashes: decode reads "%5C" in a request path as "\\", and a path with a backslash is refused \(400\)/],
      ['decode', '/files/id', undefined],
      ['reject', '/a%252Fb', undefined],
    ];
    await everyCase(cases, async ([mode, prefix, says]) => {
      const problems = problemsAt(withMode(mode, prefix));
      if (says === undefined) return assert.deepEqual(problems, [], `${mode} ${prefix}`);
      assert.equal(problems.length, 1, `${mode} ${prefix}: ${JSON.stringify(problems)}`);
      assert.equal(problems[0]!.path, 'routes[0].match.pathPrefix', `${mode} ${prefix}`);
      assert.match(problems[0]!.message, says, `${mode} ${prefix}`);
    }, 'cases');
  });

  test('an unknown setting names the key and the choices', () => {
    const problems = problemsAt(withMode('drop', '/'));
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.equal(problems[0]!.path, 'escapedSlashes');
    assert.match(problems[0]!.message, /keep.*reject.*decode/);
  });
});
