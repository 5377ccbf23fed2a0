import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';

/**
 * The reverse gateway names what it serves as a whole in one `Allow`: the 405 it answers
 * CONNECT with (RFC 9110 §9.3.6: the target is an authority, the server itself, not one of its
 * resources; §15.5.6: a 405 MUST list the methods its target supports) and its 204 to
 * `OPTIONS *` (§9.3.7: the server in general). They listed different methods (the 405 had
 * TRACE, OPTIONS * had not), both fixed whatever the routes took. Now both come from the route
 * table: every method some route takes (HEAD beside GET), OPTIONS (the gateway answers it
 * itself), and, when a route takes any method, every method the gateway forwards (the
 * standard ones and PATCH) — never CONNECT. Checked on both HTTP/1.1 fronts over a seeded
 * family of route tables, and that each method listed for a route that takes any is really
 * forwarded to the upstream.
 */

/** RFC 9110 §9.3's order, then others alphabetically (router.ts ALLOW_ORDER). */
const ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE'];
const FORWARDED = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'PATCH'];
const NAMED = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PURGE', 'REPORT', 'CONNECT'];

function ordered(methods: Iterable<string>): string {
  const rank = (m: string): number => (ORDER.includes(m) ? ORDER.indexOf(m) : ORDER.length);
  return [...new Set(methods)].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0)).join(', ');
}

interface RouteSpec {
  methods?: string[];
  host?: string;
  prefix: string;
}

/** What the server as a whole supports for a route table, computed apart from src/. */
function expectedAllow(routes: readonly RouteSpec[]): string {
  const out = new Set<string>(['OPTIONS']);
  for (const r of routes) {
    if (r.methods === undefined) for (const m of FORWARDED) out.add(m);
    else for (const m of r.methods) out.add(m);
    if (r.methods?.includes('GET')) out.add('HEAD');
  }
  out.delete('CONNECT');
  return ordered(out);
}

async function exchange(port: number, bytes: string): Promise<{ status: number; allow: string | undefined; proxyStatus: string | undefined }> {
  const c = new RawConn(port);
  try {
    await c.write(bytes);
    const text = await c.waitFor((t) => parseHead(t) !== undefined, 5000, 'a response head');
    const head = parseHead(text)!;
    return { status: head.status, allow: head.get('allow'), proxyStatus: head.get('proxy-status') };
  } finally {
    c.destroy();
  }
}

describe('CONNECT\'s 405 and OPTIONS * list one Allow: what the gateway serves as a whole', () => {
  let upstream: Server;
  let upstreamPort = 0;
  const seen: string[] = [];
  before(async () => {
    upstream = createServer((req, res) => {
      seen.push(req.method!);
      req.resume();
      req.on('end', () => res.end(req.method === 'HEAD' ? undefined : 'ok'));
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    upstreamPort = (upstream.address() as AddressInfo).port;
  });
  after(async () => {
    upstream.closeAllConnections();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  for (const front of ['node', 'net'] as const) {
    test(`${front} front: seeded route tables`, async () => {
      await seededRun(`server Allow, ${front} front`, async (rand) => {
        const tables: RouteSpec[][] = [];
        for (let t = 0; t < 6; t++) {
          const n = between(rand, 1, 4);
          const routes: RouteSpec[] = [];
          for (let i = 0; i < n; i++) {
            // One route in five takes any method.
            const any = rand() < 0.2;
            const methods = any ? undefined : NAMED.filter(() => rand() < 0.35);
            routes.push({ methods: methods !== undefined && methods.length === 0 ? ['POST'] : methods, host: rand() < 0.3 ? `h${i}.test` : undefined, prefix: `/r${i}/` });
          }
          tables.push(routes);
        }
        // One table with a route that takes any method, always: its list is checked against what is forwarded.
        tables.push([{ prefix: '/any/' }, { methods: ['GET', 'PURGE'], prefix: '/named/' }]);
        await everyCase(tables, async (routes) => {
          const what = `${front} routes ${JSON.stringify(routes)}`;
          const gw = await startTestGateway({
            listeners: [{ address: '127.0.0.1', port: 0, front }],
            clusters: { up: { endpoints: [`http://127.0.0.1:${upstreamPort}`], outlierDetection: { enabled: false } } },
            routes: routes.map((r) => ({ cluster: 'up', match: { pathPrefix: r.prefix, ...(r.methods ? { methods: r.methods } : {}), ...(r.host ? { host: [r.host] } : {}) } })),
          } as never);
          try {
            const want = expectedAllow(routes);
            const options = await exchange(gw.port, 'OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
            assert.equal(options.status, 204, `${what}: OPTIONS *`);
            const connect = await exchange(gw.port, 'CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n');
            assert.equal(connect.status, 405, `${what}: CONNECT`);
            assert.match(connect.proxyStatus ?? '', /error=http_request_error/, `${what}: CONNECT's Proxy-Status`);
            assert.equal(connect.allow, options.allow, `${what}: CONNECT's Allow and OPTIONS *'s`);
            assert.equal(options.allow, want, `${what}: the server's Allow`);
            if (routes[0]!.methods === undefined) {
              // Every method listed (but the gateway's own OPTIONS answer) reaches the upstream through a route that takes any.
              const listed = want.split(', ');
              for (const m of listed) {
                seen.length = 0;
                const r = await exchange(gw.port, `${m} ${routes[0]!.prefix}x HTTP/1.1\r\nHost: ${routes[0]!.host ?? 'gw.test'}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
                assert.equal(r.status, 200, `${what}: ${m} forwarded`);
                assert.deepEqual(seen, [m], `${what}: the upstream got ${m}`);
              }
            }
          } finally {
            await gw.close();
          }
        }, 'route tables');
      });
    });
  }
});
