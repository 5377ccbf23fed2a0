import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as h2connect } from 'node:http2';
import { Agent, request } from 'undici';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { h2request } from '../helpers/h2-request.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * `match.methods`: a request whose host, path and headers some route matches, but whose method
 * none of those routes takes, was answered 404 (no route). RFC 9110 §15.5.6: it is 405 Method
 * Not Allowed with `Allow` naming the methods the matching routes take (HEAD wherever GET is,
 * §9.3.2; OPTIONS, which the gateway answers itself for such a path, §9.3.7); an OPTIONS no
 * matching route takes is answered 204 with that `Allow`. A request no route matches on host,
 * path and headers is still 404.
 *
 * Seeded families of route tables (1-5 routes: method sets drawn from GET/HEAD/POST/PUT/DELETE/
 * PATCH or none, prefixes, hosts, a header match) against a real gateway (node front and net
 * front) and the lab as origin, through undici; the expected answer comes from the oracle below,
 * written from the documented rules, not from the router's code.
 */

const ROUTE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH'] as const;
const REQUEST_METHODS = [...ROUTE_METHODS, 'OPTIONS'] as const;
/** The order `Allow` lists methods in (RFC 9110's method order, then PATCH). */
const ALLOW_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'];
const PREFIXES = ['/', '/echo', '/ok', '/echo/', '/o', '/ok/'];
const PATHS = ['/', '/echo', '/ok', '/echo?x=1', '/echo/x', '/ok/x', '/okay', '/o', '/other', '/ok?'];
const ROUTE_HOSTS: Array<string | string[] | undefined> = [undefined, undefined, 'a.test', ['a.test', '*.b.test'], '*.b.test'];
const REQUEST_HOSTS = ['a.test', 'x.b.test', 'b.test', 'c.test'];
/** The lab's exact paths that answer 200 (every other path: the lab's 404). */
const LAB_200 = new Set(['/', '/echo', '/ok']);

interface TableRoute {
  name: string;
  methods: string[] | undefined;
  prefix: string;
  host: string | string[] | undefined;
  header: string | undefined;
}

interface Probe {
  method: string;
  path: string;
  host: string;
  header: string | undefined;
  accept: string | undefined;
  body: boolean;
}

type Expected = { kind: 'routed'; route: string; status: number } | { kind: '405'; allow: string } | { kind: 'options'; allow: string } | { kind: '404' };

function hostOk(r: TableRoute, host: string): boolean {
  if (r.host === undefined) return true;
  const list = Array.isArray(r.host) ? r.host : [r.host];
  return list.some((h) => (h.startsWith('*.') ? host.endsWith(h.slice(1)) && host.length > h.length - 1 : h === host));
}

function pathOk(r: TableRoute, target: string): boolean {
  const p = r.prefix;
  if (p === '/') return true;
  if (!target.startsWith(p)) return false;
  if (p.endsWith('/')) return true;
  const next = target[p.length];
  return next === undefined || next === '/' || next === '?';
}

function takes(r: TableRoute, method: string): boolean {
  return r.methods === undefined || r.methods.includes(method) || (method === 'HEAD' && r.methods.includes('GET'));
}

/** What the gateway must answer, from the rules as docs/ and RFC 9110 state them. */
function oracle(routes: readonly TableRoute[], p: Probe): Expected {
  const matching = routes.filter((r) => hostOk(r, p.host) && pathOk(r, p.path) && (r.header === undefined || r.header === p.header));
  const taken = matching.find((r) => takes(r, p.method));
  if (taken) return { kind: 'routed', route: taken.name, status: LAB_200.has(p.path.split('?')[0]!) ? 200 : 404 };
  if (matching.length === 0) return { kind: '404' };
  const allow = new Set<string>(['OPTIONS']);
  for (const r of matching) {
    for (const m of r.methods!) allow.add(m);
    if (r.methods!.includes('GET')) allow.add('HEAD');
  }
  const value = ALLOW_ORDER.filter((m) => allow.has(m)).join(', ');
  return p.method === 'OPTIONS' ? { kind: 'options', allow: value } : { kind: '405', allow: value };
}

function pickSome(rand: () => number, xs: readonly string[], lo: number, hi: number): string[] {
  const n = between(rand, lo, hi);
  const out = new Set<string>();
  for (let i = 0; i < 20 && out.size < n; i++) out.add(xs[between(rand, 0, xs.length - 1)]!);
  return [...out];
}

function randomTable(rand: () => number): TableRoute[] {
  const n = between(rand, 1, 5);
  const routes: TableRoute[] = [];
  for (let i = 0; i < n; i++) {
    routes.push({
      name: `r${i}`,
      methods: rand() < 0.2 ? undefined : pickSome(rand, ROUTE_METHODS, 1, 3),
      prefix: PREFIXES[between(rand, 0, PREFIXES.length - 1)]!,
      host: ROUTE_HOSTS[between(rand, 0, ROUTE_HOSTS.length - 1)],
      header: rand() < 0.25 ? '1' : undefined,
    });
  }
  return routes;
}

function randomProbe(rand: () => number): Probe {
  const method = REQUEST_METHODS[between(rand, 0, REQUEST_METHODS.length - 1)]!;
  const r = rand();
  return {
    method,
    path: PATHS[between(rand, 0, PATHS.length - 1)]!,
    host: REQUEST_HOSTS[between(rand, 0, REQUEST_HOSTS.length - 1)]!,
    header: r < 0.2 ? '1' : r < 0.3 ? '2' : undefined,
    accept: [undefined, 'application/problem+json', 'text/html'][between(rand, 0, 2)],
    body: (method === 'POST' || method === 'PUT' || method === 'PATCH') && rand() < 0.5,
  };
}

let lab: Lab;

before(async () => {
  lab = await startLab();
});

after(async () => {
  await lab?.close();
});

async function withGateway(routes: readonly TableRoute[], front: 'node' | 'net', fn: (g: TestGateway) => Promise<void>): Promise<void> {
  const g = await startTestGateway({
    listeners: [{ address: '127.0.0.1', port: 0, front }],
    clusters: { lab: { endpoints: [lab.url], outlierDetection: { enabled: false } } },
    routes: routes.map((r) => ({
      name: r.name,
      match: {
        pathPrefix: r.prefix,
        ...(r.methods !== undefined ? { methods: r.methods } : {}),
        ...(r.host !== undefined ? { host: r.host } : {}),
        ...(r.header !== undefined ? { headers: { 'x-v': r.header } } : {}),
      },
      cluster: 'lab',
      retry: { tries: 1 },
    })),
  } as never);
  try {
    await fn(g);
  } finally {
    await g.close();
  }
}

/** One probe through undici; checks the answer against the oracle and returns its kind. */
async function probe(g: TestGateway, client: Agent, routes: readonly TableRoute[], p: Probe): Promise<Expected['kind']> {
  const want = oracle(routes, p);
  const headers: Record<string, string> = { host: p.host };
  if (p.header !== undefined) headers['x-v'] = p.header;
  if (p.accept !== undefined) headers.accept = p.accept;
  const res = await request(`${g.url}${p.path}`, { dispatcher: client, method: p.method as 'GET', headers, body: p.body ? 'hello' : undefined });
  const body = await res.body.text();
  const what = `${p.method} ${p.host}${p.path}${p.header !== undefined ? ` x-v:${p.header}` : ''} on ${JSON.stringify(routes)}`;
  const requestId = res.headers['x-request-id'];
  assert.equal(typeof requestId, 'string', `request id on ${what}`);
  const line = await g.logFor(requestId as string);
  const proxyStatus = String(res.headers['proxy-status'] ?? '');
  switch (want.kind) {
    case 'routed':
      assert.equal(res.statusCode, want.status, what);
      assert.equal(line.route, want.route, what);
      assert.doesNotMatch(proxyStatus, /error=/, what);
      assert.equal(res.headers.allow, undefined, what);
      break;
    case '405':
      assert.equal(res.statusCode, 405, what);
      assert.equal(res.headers.allow, want.allow, what);
      assert.match(proxyStatus, /error=destination_not_found/, what);
      assert.equal(line.status, 405, what);
      assert.equal(line.route, undefined, what);
      if (p.method === 'HEAD') assert.equal(body, '', what);
      else if (p.accept === 'application/problem+json') {
        assert.equal(res.headers['content-type'], 'application/problem+json', what);
        const problem = JSON.parse(body) as { status: number; errorType: string; requestId: string };
        assert.deepEqual([problem.status, problem.errorType, problem.requestId], [405, 'destination_not_found', requestId], what);
      } else if (p.accept === 'text/html') {
        assert.match(String(res.headers['content-type']), /^text\/html/, what);
        assert.match(body, /405 — Method Not Allowed/, what);
      } else assert.match(body, /^405 Method Not Allowed\n/, what);
      break;
    case 'options':
      assert.equal(res.statusCode, 204, what);
      assert.equal(res.headers.allow, want.allow, what);
      assert.match(proxyStatus, /error=proxy_internal_response/, what);
      assert.equal(body, '', what);
      assert.equal(line.route, undefined, what);
      break;
    case '404':
      assert.equal(res.statusCode, 404, what);
      assert.equal(res.headers.allow, undefined, what);
      assert.match(proxyStatus, /error=destination_not_found/, what);
      break;
  }
  return want.kind;
}

for (const front of ['node', 'net'] as const) {
  describe(`route methods, ${front} front`, () => {
    test('property: seeded route tables and requests get the oracle\'s answer (routed / 405 with Allow / OPTIONS 204 / 404)', { timeout: 240_000 }, async () => {
      const seen = new Map<string, number>();
      await seededRun(`route methods (${front})`, async (rand) => {
        for (let t = 0; t < 12; t++) {
          const routes = randomTable(rand);
          const client = new Agent({ keepAliveTimeout: 1000 });
          try {
            await withGateway(routes, front, async (g) => {
              for (let i = 0; i < 30; i++) {
                const kind = await probe(g, client, routes, randomProbe(rand));
                seen.set(kind, (seen.get(kind) ?? 0) + 1);
              }
            });
          } finally {
            await client.close();
          }
        }
      });
      // The family is not vacuous: every kind of answer came up.
      for (const kind of ['routed', '405', 'options', '404']) assert.ok((seen.get(kind) ?? 0) > 0, `no ${kind} case in the family: ${JSON.stringify([...seen])}`);
    });

    test('examples: GET-only and POST routes on one path; HEAD follows GET; headers and hosts narrow the matching routes', { timeout: 60_000 }, async () => {
      const routes: TableRoute[] = [
        { name: 'reads', methods: ['GET'], prefix: '/echo', host: undefined, header: undefined },
        { name: 'writes', methods: ['POST', 'PUT'], prefix: '/echo', host: 'a.test', header: undefined },
        { name: 'canary', methods: ['DELETE'], prefix: '/echo', host: undefined, header: '1' },
      ];
      const base = { accept: 'application/problem+json', body: false, header: undefined };
      const client = new Agent({ keepAliveTimeout: 1000 });
      try {
        await withGateway(routes, front, async (g) => {
          const cases: Array<[Probe, Expected]> = [
            [{ ...base, method: 'GET', path: '/echo', host: 'c.test' }, { kind: 'routed', route: 'reads', status: 200 }],
            [{ ...base, method: 'HEAD', path: '/echo', host: 'c.test' }, { kind: 'routed', route: 'reads', status: 200 }],
            [{ ...base, method: 'POST', path: '/echo', host: 'a.test' }, { kind: 'routed', route: 'writes', status: 200 }],
            [{ ...base, method: 'POST', path: '/echo', host: 'c.test' }, { kind: '405', allow: 'GET, HEAD, OPTIONS' }],
            [{ ...base, method: 'PATCH', path: '/echo/x', host: 'a.test' }, { kind: '405', allow: 'GET, HEAD, POST, PUT, OPTIONS' }],
            [{ ...base, method: 'PATCH', path: '/echo', host: 'a.test', header: '1' }, { kind: '405', allow: 'GET, HEAD, POST, PUT, DELETE, OPTIONS' }],
            [{ ...base, method: 'OPTIONS', path: '/echo', host: 'c.test' }, { kind: 'options', allow: 'GET, HEAD, OPTIONS' }],
            [{ ...base, method: 'GET', path: '/other', host: 'c.test' }, { kind: '404' }],
          ];
          for (const [p, want] of cases) {
            assert.deepEqual(oracle(routes, p), want, `the oracle on ${p.method} ${p.host}${p.path}`);
            assert.equal(await probe(g, client, routes, p), want.kind);
          }
          // curl, another real client: the 405's head.
          const out = await new Promise<string>((resolve, reject) => {
            execFile('curl', ['-sS', '-i', '--max-time', '10', '-X', 'DELETE', '-H', 'Host: c.test', `${g.url}/echo`], (err, stdout) => (err ? reject(err) : resolve(stdout)));
          });
          assert.match(out, /^HTTP\/1\.1 405 Method Not Allowed\r\n/, out);
          assert.match(out, /\r\nallow: GET, HEAD, OPTIONS\r\n/i, out);
          assert.match(out, /\r\nproxy-status: [^\r]*error=destination_not_found/i, out);
        });
      } finally {
        await client.close();
      }
    });
  });
}

describe('route methods on upgrade requests and HTTP/2', () => {
  const routes = [{ name: 'ws', match: { pathPrefix: '/echo', methods: ['POST'] }, cluster: 'lab', upgrades: ['websocket'], retry: { tries: 1 } }];

  for (const front of ['node', 'net'] as const) {
    test(`an upgrade request no route takes by method: 405 with Allow, OPTIONS 204, another path 404 (${front} front)`, { timeout: 60_000 }, async () => {
      const g = await startTestGateway({ listeners: [{ address: '127.0.0.1', port: 0, front }], clusters: { lab: { endpoints: [lab.url] } }, routes } as never);
      try {
        const cases: Array<[string, string, number, string | undefined]> = [
          ['GET', '/echo', 405, 'POST, OPTIONS'],
          ['OPTIONS', '/echo', 204, 'POST, OPTIONS'],
          ['GET', '/other', 404, undefined],
        ];
        for (const [method, path, status, allow] of cases) {
          const conn = new RawConn(g.port);
          try {
            await conn.write(`${method} ${path} HTTP/1.1\r\nHost: c.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
            const head = parseHead(await conn.closed(10_000));
            const what = `${method} ${path} with Upgrade`;
            assert.equal(head?.status, status, what);
            assert.equal(head?.get('allow'), allow, what);
            assert.match(head?.get('proxy-status') ?? '', status === 204 ? /error=proxy_internal_response/ : /error=destination_not_found/, what);
            assert.ok(head?.get('x-request-id'), what);
          } finally {
            conn.destroy();
          }
        }
      } finally {
        await g.close();
      }
    });
  }

  test('HTTP/2 (h2c): 405 with Allow, OPTIONS 204, HEAD beside GET', { timeout: 60_000 }, async () => {
    const g = await startTestGateway({
      listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }],
      clusters: { lab: { endpoints: [lab.url] } },
      routes: [...routes, { name: 'reads', match: { pathPrefix: '/ok', methods: ['GET'] }, cluster: 'lab', retry: { tries: 1 } }],
    } as never);
    const s = h2connect(g.url);
    try {
      const post = await h2request(s, '/echo', { method: 'POST', body: 'x' });
      assert.equal(post.status, 200);
      const get = await h2request(s, '/echo', { headers: { accept: 'application/problem+json' } });
      assert.equal(get.status, 405);
      assert.equal(get.headers.allow, 'POST, OPTIONS');
      assert.equal((JSON.parse(get.body) as { errorType: string }).errorType, 'destination_not_found');
      const options = await h2request(s, '/echo', { method: 'OPTIONS' });
      assert.deepEqual([options.status, options.headers.allow, options.body], [204, 'POST, OPTIONS', '']);
      const head = await h2request(s, '/ok', { method: 'HEAD' });
      assert.equal(head.status, 200);
      const del = await h2request(s, '/ok', { method: 'DELETE' });
      assert.deepEqual([del.status, del.headers.allow], [405, 'GET, HEAD, OPTIONS']);
    } finally {
      s.close();
      await g.close();
    }
  });
});
