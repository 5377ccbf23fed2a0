import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { needsNormalizing, normalizeSlow, refuseAsError } from '../../src/http/path.js';

/** The request path's normalisation as the gateway applies it (request-target.ts): a refusal throws. */
function normalizePath(p: string): string {
  return needsNormalizing(p) ? normalizeSlow(p, refuseAsError) : p;
}
import type { TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startOkClusters, type OkClusters } from '../helpers/routed.js';
import type { ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Issue 14, finding 5: paths were routed raw. `/public/../secret` and its percent-encoded
 * forms matched the `/public` route and reached its upstream unchanged; `#` reached the
 * upstream. The path is now normalised before matching (RFC 3986 §6.2.2) and forwarded
 * normalised; dot segments behind encoded slashes and fragments are refused.
 */

let rig: OkClusters<'pub' | 'secret' | 'rest'> | undefined;
let pub: ScriptedUpstream;
let secret: ScriptedUpstream;
let rest: ScriptedUpstream;
let gw: TestGateway;

before(async () => {
  rig = await startOkClusters(['pub', 'secret', 'rest'], {
    routes: [
      { match: { pathPrefix: '/public' }, cluster: 'pub' },
      { match: { pathPrefix: '/secret' }, cluster: 'secret' },
      { cluster: 'rest' },
    ],
  });
  ({ gateway: gw, upstreams: { pub, secret, rest } } = rig);
});

after(async () => {
  await rig?.close();
});

async function send(target: string): Promise<{ status: number; text: string }> {
  const conn = new RawConn(gw.port);
  await conn.write(`GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`);
  const text = await conn.closed(5000);
  conn.destroy();
  return { status: parseHead(text)?.status ?? 0, text };
}

/**
 * The most aggressive reading an upstream could make of a path it received: every
 * percent-encoding decoded (%2F and %5C too, backslash as a separator), then dot segments
 * removed. A request is safe when even this reading stays inside the route that got it.
 */
function aggressive(path: string): string {
  const p = path.split('?')[0]!;
  let d: string;
  try {
    d = decodeURIComponent(p);
  } catch {
    d = p;
  }
  d = d.replace(/\\/g, '/');
  const out: string[] = [];
  for (const s of d.split('/').slice(1)) {
    if (s === '.') continue;
    if (s === '..') out.pop();
    else out.push(s);
  }
  return '/' + out.join('/');
}

function inside(path: string, prefix: string): boolean {
  return path === prefix || path.startsWith(prefix + '/');
}

describe('paths are normalised before routing', () => {
  test('normalisation rules (RFC 3986 §6.2.2, §5.2.4)', () => {
    assert.equal(normalizePath('/public/../secret'), '/secret');
    assert.equal(normalizePath('/public/%2e%2e/secret'), '/secret');
    assert.equal(normalizePath('/public/.%2e/secret'), '/secret');
    assert.equal(normalizePath('/public/%2E./secret'), '/secret');
    assert.equal(normalizePath('/public/./a/%2e/b'), '/public/a/b');
    assert.equal(normalizePath('/public/a/..'), '/public/');
    assert.equal(normalizePath('/../../x'), '/x');
    assert.equal(normalizePath('/public/%7euser/%41%2f%2a'), '/public/~user/A%2F%2A');
    assert.equal(normalizePath('/plain/path'), '/plain/path');
    for (const bad of ['/public/..%2fsecret', '/public/..%2Fsecret', '/public/%2f..%2fsecret', '/public/.%2e%2fsecret', '/public/..%5csecret', '/public/..\\secret', '/public/%zz', '/public/%4']) {
      assert.throws(() => normalizePath(bad), /dot segment|percent-encoding|backslash/, bad);
    }
  });

  test('the issue\'s cases: traversal never reaches /public\'s upstream outside /public; "#" is refused', { timeout: 10_000 }, async () => {
    const p0 = pub.received.length;
    for (const t of ['/public/../secret', '/public/%2e%2e/secret', '/public/.%2e/secret']) {
      const r = await send(t);
      assert.equal(r.status, 200, `${t}: ${r.text.slice(0, 200)}`);
      assert.equal(secret.received.at(-1)!.url, '/secret', `${t} is /secret, routed and forwarded as such`);
    }
    for (const t of ['/public/..%2fsecret', '/public/x#frag', '/public/x?q#f']) {
      const r = await send(t);
      assert.equal(r.status, 400, `${t}: ${r.text.slice(0, 200)}`);
      assert.match(r.text, /proxy-status: [^\r]*error=http_request_error/i);
    }
    assert.equal(pub.received.length, p0, 'a traversal reached the /public upstream');
    const r = await send('/public/./a/%2e%2e/b%7e?x=%2e%2e');
    assert.equal(r.status, 200);
    assert.equal(pub.received.at(-1)!.url, '/public/b~?x=%2e%2e', 'forwarded normalised (the query untouched)');
  });

  test('property: no request reaches an upstream outside the route it matched (seeded random paths)', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    const parts = ['public', 'secret', 'x', '..', '.', '%2e%2e', '%2E.', '.%2e', '%2e', '..%2f', '%2f..', 'a%2fb', '%2F', '..%5c', '%5C..', '\\..', 'a\\b', '', '%41', '%7e', '~', '...', '.hidden', '%252e%252e'];
    await withSeed(rand, async () => {
      const seen = { pub: pub.received.length, secret: secret.received.length, rest: rest.received.length };
      for (let i = 0; i < 150; i++) {
        const n = 1 + rand.int(6);
        const segs: string[] = [];
        for (let j = 0; j < n; j++) {
          let s = rand.pick(parts);
          if (rand.next() < 0.3) s += rand.pick(parts);
          segs.push(s);
        }
        const start = rand.pick(['/public/', '/public', '/secret/', '/']);
        const target = start + segs.join('/') + (rand.next() < 0.2 ? '?q=../x' : '');
        const r = await send(target);
        assert.ok([200, 400, 404].includes(r.status), `${target}: ${r.text.slice(0, 200)}`);
        for (const [name, up, prefix] of [['pub', pub, '/public'], ['secret', secret, '/secret']] as const) {
          if (up.received.length > seen[name]) {
            seen[name] = up.received.length;
            const got = up.received.at(-1)!.url;
            assert.ok(inside(aggressive(got), prefix), `${target} reached the ${prefix} upstream as ${got}, which resolves to ${aggressive(got)}`);
          }
        }
        seen.rest = rest.received.length;
      }
    });
  });
});
