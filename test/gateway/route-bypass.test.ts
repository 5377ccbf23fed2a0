import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startOkClusters, type OkClusters } from '../helpers/routed.js';
import type { ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { everyCase, seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * An attacker's probe of route matching (session probe of the reverse request path): a
 * gateway with `/admin` and `/private/` on their own clusters and `/` on a public one. A
 * request the gateway routes to the public cluster must not reach it with a path that a
 * common upstream reads as `/admin` or `/private/…`:
 * - empty segments merged (nginx `merge_slashes`, Spring, Go's ServeMux redirect):
 *   `//admin` was forwarded to the public cluster as `//admin`;
 * - `;` path parameters dropped from each segment (Tomcat, Jetty, Spring): `/admin;x` and
 *   `/private;x/a` reached the public cluster, and `/x/..;/admin` too (Tomcat's `..;`);
 * - a backslash read as a slash (IIS, Windows file servers): `/\admin`;
 * - `%00`, which a C or PHP upstream reads as the end of the path (`/admin%00` went to the
 *   public cluster; nginx refuses it with 400).
 */

let rig: OkClusters<'admin' | 'priv' | 'pub'> | undefined;
let admin: ScriptedUpstream;
let priv: ScriptedUpstream;
let pub: ScriptedUpstream;
let gw: TestGateway;

before(async () => {
  rig = await startOkClusters(['admin', 'priv', 'pub'], {
    routes: [
      { match: { pathPrefix: '/admin' }, cluster: 'admin' },
      { match: { pathPrefix: '/private/' }, cluster: 'priv' },
      { match: { pathPrefix: '/rw' }, cluster: 'admin', rewritePrefix: '/v2' },
      { match: { pathPrefix: '/strip/' }, cluster: 'priv', stripPrefix: true },
      { cluster: 'pub' },
    ],
  });
  ({ gateway: gw, upstreams: { admin, priv, pub } } = rig);
});

after(async () => {
  await rig?.close();
});

async function send(target: string): Promise<{ status: number; text: string }> {
  const conn = new RawConn(gw.port);
  try {
    await conn.write(`GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`);
    const text = await conn.closed(10_000);
    return { status: parseHead(text)?.status ?? 0, text };
  } finally {
    conn.destroy();
  }
}

/**
 * How lenient upstreams read a path: percent-decoded (but for `%2F`, `%5C`), `\` as `/`, `;…` cut from each
 * segment, empty segments merged, dot segments removed.
 */
function lenient(path: string): string {
  // %2F and %5C stay encoded: the gateway never reads them as separators (docs/security.md).
  const d = path.split('?')[0]!.replace(/%(?!2[fF]|5[cC])([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  const out: string[] = [];
  for (let s of d.replace(/\\/g, '/').split('/').slice(1)) {
    const semi = s.indexOf(';');
    if (semi >= 0) s = s.slice(0, semi);
    if (s === '' || s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  return '/' + out.join('/');
}

function protectedPath(p: string): boolean {
  return p === '/admin' || p.startsWith('/admin/') || p.startsWith('/private/');
}

/** Send `target`; if it reached the public upstream, the path it got must not read as a protected one. */
async function probe(target: string): Promise<{ status: number; got: string | undefined }> {
  const before = pub.received.length;
  const r = await send(target);
  assert.ok([200, 400, 404].includes(r.status), `${target}: ${r.text.slice(0, 200)}`);
  const got = pub.received.length > before ? pub.received.at(-1)!.url : undefined;
  if (got !== undefined) {
    assert.ok(!protectedPath(lenient(got)), `${JSON.stringify(target)} was routed to the public cluster, which got ${JSON.stringify(got)}: read as ${lenient(got)}`);
  }
  return { status: r.status, got };
}

describe('route matching: a public route never carries a protected path', () => {
  test('the probes that reached the public cluster (merged slashes, path parameters, backslash)', { timeout: 60_000 }, async () => {
    await everyCase(
      ['//admin', '///admin/x', '/admin;x', '/admin;jsessionid=1/x', '/private;x/a', '/x/..;/admin', '/x/.;/../admin', '/\\admin', '/x\\..\\admin', '//private//a', '/x/..%3B/admin', '/x/..%3b/admin', '/admin%3Bx', '/private%3bx/a', '/x/.%3bx/../admin', '/x/%2e%2e%3B/admin'],
      async (t) => {
        await probe(t);
      },
      'probes',
    );
  });

  test('what the routed upstream gets: slashes merged, parameters kept, the prefix rewrite past them; refusals', { timeout: 60_000 }, async () => {
    const cases: Array<[string, ScriptedUpstream | 400, string?]> = [
      ['//admin', admin, '/admin'],
      ['/admin//x//', admin, '/admin/x/'],
      ['/admin;x', admin, '/admin;x'],
      ['/admin;jsessionid=1/x?a=;b', admin, '/admin;jsessionid=1/x?a=;b'],
      ['/private;x/a', priv, '/private;x/a'],
      ['/rw;x/y?q=1', admin, '/v2/y?q=1'],
      ['/rw;x?q=1', admin, '/v2?q=1'],
      ['/strip;k=v/a;b/c', priv, '/a;b/c'],
      ['/x;y', pub, '/x;y'],
      ['/admin%3Bx', admin, '/admin%3Bx'],
      ['/admin%3bjsessionid=1/x', admin, '/admin%3Bjsessionid=1/x'],
      ['/private%3Bx/a', priv, '/private%3Bx/a'],
      ['/rw%3Bx/y?q=1', admin, '/v2/y?q=1'],
      ['/strip%3Bk=v/a%3Bb/c', priv, '/a%3Bb/c'],
      ['/x/..;/admin', 400],
      ['/x/.;a/../admin', 400],
      ['/x/%2e%2e;/admin', 400],
      ['/x/a%2F..;/admin', 400],
      ['/;x/admin', 400],
      ['/%3B/admin', 400],
      ['/%3bx=1/admin/y', 400],
      ['/x/%3B/admin', 400],
      ['/admin%00', 400],
      ['/x/a%00.html', 400],
      ['/;jsessionid=1', pub, '/;jsessionid=1'],
      ['/\\admin', 400],
      ['/x\\..\\admin', 400],
    ];
    await everyCase(cases, async ([target, where, path]) => {
      const counts = [admin, priv, pub].map((u) => u.received.length);
      const r = await send(target);
      if (where === 400) {
        assert.equal(r.status, 400, `${target}: ${r.text.slice(0, 200)}`);
        assert.match(r.text, /proxy-status: [^\r]*error=http_request_error/i, target);
        assert.deepEqual([admin, priv, pub].map((u) => u.received.length), counts, `${target} reached an upstream`);
        return;
      }
      assert.equal(r.status, 200, `${target}: ${r.text.slice(0, 200)}`);
      assert.equal(where.received.length, counts[[admin, priv, pub].indexOf(where)]! + 1, `${target} went to another cluster`);
      assert.equal(where.received.at(-1)!.url, path, target);
    }, 'targets');
  });

  test('property: seeded paths built from slashes, parameters, dots, backslashes and encodings', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    const parts = ['admin', 'private', 'x', '', '.', '..', '%2e%2e', ';', ';x', '..;', '.;', 'admin;a', '\\', '%5C', '%2F', 'a;b=c', 'Admin', '%61dmin', 'private;', '..;x', '%3B', '..%3B', '..%3b', '.%3Bx'];
    await withSeed(rand, async () => {
      for (let i = 0; i < 120; i++) {
        const segs: string[] = [];
        for (let j = 1 + rand.int(5); j > 0; j--) segs.push(rand.pick(parts) + (rand.next() < 0.3 ? rand.pick(parts) : ''));
        await probe('/' + segs.join('/') + (rand.next() < 0.2 ? '?q=/admin' : ''));
      }
    });
  });
});
