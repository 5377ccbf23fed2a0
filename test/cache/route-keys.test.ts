import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { get } from 'node:http';
import { connect } from 'node:net';
import { request as httpsRequest } from 'node:https';
import { certDir } from '../helpers/tls-certs.js';
import { request } from 'undici';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Routes share the gateway's one store, and two routes can answer the same target: one chosen
 * by a header match, to another cluster. Finding (adversarial review, session 29): keyed by
 * host and path alone, the internal route's response was a hit for the public route's
 * clients. The key now ends with the route; an unsafe request invalidates its target on every
 * route to the cluster that answered it (RFC 9111 §4.4's same origin server; review of session 37).
 */
describe('the cache keeps each route’s responses to that route', () => {
  let internal: ScriptedUpstream;
  let pub: ScriptedUpstream;
  let g: TestGateway;
  const answer = (who: string) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
    req.resume();
    req.on('end', () => {
      const body = `${who} ${req.method} ${req.url}`;
      res.writeHead(req.method === 'POST' ? 204 : 200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain', ...(req.method === 'POST' ? {} : { 'content-length': String(Buffer.byteLength(body)) }) });
      res.end(req.method === 'POST' ? undefined : body);
    });
  };

  before(async () => {
    internal = await startScriptedUpstream(answer('internal'));
    pub = await startScriptedUpstream(answer('public'));
    g = await startTestGateway({
      clusters: {
        internal: { endpoints: [`http://127.0.0.1:${internal.port}`], outlierDetection: { enabled: false } },
        pub: { endpoints: [`http://127.0.0.1:${pub.port}`], outlierDetection: { enabled: false } },
      },
      routes: [
        { name: 'internal', match: { host: 'a.test', headers: { 'x-internal-key': 'k' } }, cluster: 'internal', cache: {} },
        { name: 'public', match: { host: 'a.test' }, cluster: 'pub', cache: {} },
      ],
    } as never);
  });

  after(async () => {
    await g?.close();
    await internal?.close();
    await pub?.close();
  });

  async function get(path: string, inside: boolean): Promise<{ body: string; cache: string }> {
    const r = await request(`${g.url.replace(/\/$/, '')}${path}`, { headers: { host: 'a.test', ...(inside ? { 'x-internal-key': 'k' } : {}) } });
    return { body: await r.body.text(), cache: String(r.headers['cache-status'] ?? '') };
  }

  test('a seeded family of interleaved requests: every answer comes from its own route, stored or not', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const paths = Array.from({ length: 4 }, (_, i) => `/r${rand.seed % 1000}-${i}?q=${i}`);
      const hits = { internal: 0, public: 0 };
      for (let i = 0; i < 60; i++) {
        const path = rand.pick(paths);
        const inside = rand.next() < 0.5;
        const who = inside ? 'internal' : 'public';
        const r = await get(path, inside);
        assert.equal(r.body, `${who} GET ${path}`, `request ${i}: ${path} on route ${who} (${r.cache})`);
        if (/; hit/.test(r.cache)) hits[who]++;
      }
      // Both routes did answer from the store.
      assert.ok(hits.internal > 0 && hits.public > 0, JSON.stringify(hits));
    });
  });

  test('an unsafe request invalidates its target on the routes to the cluster that answered it; a purge by key reaches every route', async () => {
    const path = `/inv-${Date.now()}`;
    await get(path, true);
    await get(path, false);
    assert.match((await get(path, true)).cache, /; hit/);
    assert.match((await get(path, false)).cache, /; hit/);
    // Answered by cluster pub: the public route's copy goes, the internal route's (another cluster, review of session 37) stays.
    const post = await request(`${g.url.replace(/\/$/, '')}${path}`, { method: 'POST', headers: { host: 'a.test' }, body: 'x' });
    await post.body.text();
    assert.equal(post.statusCode, 204);
    assert.match((await get(path, true)).cache, /; hit/);
    assert.doesNotMatch((await get(path, false)).cache, /; hit/);
    const inside = await request(`${g.url.replace(/\/$/, '')}${path}`, { method: 'POST', headers: { host: 'a.test', 'x-internal-key': 'k' }, body: 'x' });
    await inside.body.text();
    assert.equal(inside.statusCode, 204);
    assert.doesNotMatch((await get(path, true)).cache, /; hit/);
    assert.match((await get(path, false)).cache, /; hit/);
    const cache = g.gw.ctx.cache!;
    // The two misses stored the target again, once per route.
    assert.equal(cache.invalidateTarget(`a.test${path}`), 2);
    assert.doesNotMatch((await get(path, true)).cache, /; hit/);
    assert.doesNotMatch((await get(path, false)).cache, /; hit/);
  });
});

describe('a response that varies on a field the gateway writes itself is not stored', () => {
  test('Vary naming X-Forwarded-*, Forwarded, Via, X-Real-IP or the request id header: each client gets its own answer (seeded)', async () => {
    // Finding (adversarial review, session 29): with `Vary: X-Forwarded-For`, clients 127.0.0.3 and
    // 127.0.0.4 got the answer made for 127.0.0.2, as a hit.
    const rand = seededRandom();
    const fields = ['X-Forwarded-For', 'x-forwarded-proto', 'X-Forwarded-Host', 'Forwarded', 'Via', 'X-Real-IP', 'X-Request-Id'];
    const up = await startScriptedUpstream((req, res) => {
      const vary = new URL(req.url!, 'http://x').searchParams.get('vary')!;
      const body = `for ${String(req.headers['x-forwarded-for'])}`;
      res.writeHead(200, { 'cache-control': 'public, max-age=600', vary: `Accept-Encoding, ${vary}`, 'content-length': String(body.length) });
      res.end(body);
    });
    const g = await startTestGateway({ clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`] } }, routes: [{ cluster: 'up', cache: {} }] } as never);
    try {
      await withSeed(rand, async () => {
        for (let i = 0; i < 6; i++) {
          const vary = rand.pick(fields);
          const path = `/v${i}-${rand.seed}?vary=${encodeURIComponent(vary)}`;
          for (const from of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
            const r = await getFrom(from, g.port, path);
            assert.equal(r.body, `for ${from}`, `Vary ${vary}, client ${from}: ${r.cacheStatus}`);
          }
        }
      });
    } finally {
      await g.close();
      await up.close();
    }
  });
});

/** A GET from a given loopback address (node:http: its localAddress binds the client side). */
function getFrom(from: string, port: number, path: string): Promise<{ body: string; cacheStatus: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, localAddress: from, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ body, cacheStatus: String(res.headers['cache-status'] ?? '') }));
    }).on('error', reject);
  });
}

describe('a response that varies on a field the gateway did not forward as the client sent it is not stored', () => {
  test('Vary naming a field the client listed in Connection, or an underscore name the gateway drops: the variant is not filed under the client’s value (seeded)', async () => {
    // Finding (adversarial review, session 30): `Accept-Language: fr` with `Connection:
    // accept-language` went upstream without the field, the origin answered its default page,
    // and the cache filed it as the French variant: every French client then got it as a hit.
    const rand = seededRandom();
    const up = await startScriptedUpstream((req, res) => {
      const field = new URL(req.url!, 'http://x').searchParams.get('field')!;
      const body = `value ${String(req.headers[field] ?? 'none')}`;
      res.writeHead(200, { 'cache-control': 'public, max-age=600', vary: field, 'content-type': 'text/plain', 'content-length': String(body.length) });
      res.end(body);
    });
    const g = await startTestGateway({ clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`] } }, routes: [{ cluster: 'up', cache: {} }] } as never);
    try {
      await withSeed(rand, async () => {
        for (let i = 0; i < 8; i++) {
          // The field and how the attacker's copy of it is lost on the way upstream.
          const underscore = rand.next() < 0.3;
          const field = underscore ? rand.pick(['x_tenant', 'x_lang']) : rand.pick(['accept-language', 'x-variant', 'accept']);
          const value = `v${Math.floor(rand.next() * 1000)}`;
          const path = `/c${i}-${rand.seed}?field=${field}`;
          const listed = underscore ? '' : `Connection: ${rand.pick(['', 'keep-alive, '])}${rand.next() < 0.5 ? field.toUpperCase() : field}\r\n`;
          const attack = await rawGet(g.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${field}: ${value}\r\n${listed}\r\n`);
          assert.match(attack, /value none/, `the field was not forwarded (${field}, ${JSON.stringify(listed)})`);
          assert.doesNotMatch(attack, /stored/, `the answer for the field as forwarded is not stored under ${value} (${field}, ${JSON.stringify(listed)})`);
          if (underscore) continue;
          // A client that sends the same value plainly gets the variant for it, and it is stored.
          const victim = await rawGet(g.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${field}: ${value}\r\n\r\n`);
          assert.match(victim, new RegExp(`value ${value}`), `${field}: ${value}`);
          assert.match(victim, /stored/, `${field}: ${value}`);
          const again = await rawGet(g.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${field}: ${value}\r\n\r\n`);
          assert.match(again, new RegExp(`value ${value}`), `${field}: ${value}`);
          assert.match(again, /; hit/, `${field}: ${value}`);
        }
      });
    } finally {
      await g.close();
      await up.close();
    }
  });
});

/** One raw HTTP/1.1 exchange (fields a client library would refuse to send), read until the server closes. */
function rawGet(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      out += d;
      // One answer with a Content-Length body: done when it is all here.
      const end = out.indexOf('\r\n\r\n');
      const m = /\r\ncontent-length: (\d+)/i.exec(out);
      if (end >= 0 && m !== null && out.length >= end + 4 + Number(m[1])) s.destroy();
    });
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.write(head);
  });
}

describe('what the key leaves out of a request does not reach the store', () => {
  test('a Host with a port other than the listener’s or the default, or a trailing dot, neither reads nor fills the store; the same route on http and https keeps two copies (seeded)', async () => {
    // Findings (adversarial review, session 30): `Host: 127.0.0.1:1337` went upstream as sent and
    // the origin's cacheable redirect to port 1337 was stored under the host alone, for every
    // client; a plain listener's cacheable "go to https" redirect was a hit on the https one.
    const rand = seededRandom();
    const dir = certDir('gatewise-cache-keys-');
    const ca = dir.ca('Cache Keys CA');
    const cert = ca.issue('127.0.0.1', { ip: ['127.0.0.1'] });
    const up = await startScriptedUpstream((req, res) => {
      const proto = String(req.headers['x-forwarded-proto']);
      // A site that sends plain HTTP to https, and builds its redirects from the Host it got.
      const location = proto === 'http' && req.url!.startsWith('/force') ? `https://${String(req.headers.host)}${req.url}` : `http://${String(req.headers.host)}/login`;
      res.writeHead(301, { location, 'cache-control': 'public, max-age=600', 'content-length': '0' });
      res.end();
    });
    const g = await startTestGateway({
      listeners: [
        { address: '127.0.0.1', port: 0 },
        { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: cert.certFile, key: cert.keyFile }] } },
      ],
      clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`] } },
      routes: [{ cluster: 'up', cache: {} }],
    } as never);
    const plainPort = g.port;
    const tlsPort = (g.gw.addresses() as Array<{ port: number }>)[1]!.port;
    try {
      await withSeed(rand, async () => {
        for (let i = 0; i < 6; i++) {
          const path = `/r${i}-${rand.seed}`;
          const other = 1024 + Math.floor(rand.next() * 60000);
          const bad = rand.pick([`127.0.0.1:${other === plainPort ? other + 1 : other}`, '127.0.0.1.', `127.0.0.1.:${plainPort}`]);
          const attack = await rawGet(plainPort, `GET ${path} HTTP/1.1\r\nHost: ${bad}\r\n\r\n`);
          assert.match(attack, /fwd=bypass/, `Host ${bad}`);
          assert.doesNotMatch(attack, /stored/, `Host ${bad}`);
          // Each canonical form: stored or hit, and never the attacker's redirect.
          for (const good of ['127.0.0.1', `127.0.0.1:${plainPort}`, '127.0.0.1:80']) {
            const r = await rawGet(plainPort, `GET ${path} HTTP/1.1\r\nHost: ${good}\r\n\r\n`);
            assert.doesNotMatch(r, new RegExp(bad.replace(/\./g, '\\.')), `Host ${good} after ${bad}: ${r.split('\r\n\r\n')[0]}`);
            assert.match(r, /stored|; hit/, `Host ${good}`);
          }
        }
        // A GET with content (forwarded with it, not keyed on it): neither reads nor fills the store.
        const search = `/search-${rand.seed}`;
        for (let i = 0; i < 3; i++) {
          const body = `q=${'x'.repeat(1 + rand.int(200))}`;
          const framing = rand.next() < 0.5 ? `Content-Length: ${body.length}\r\n\r\n${body}` : `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
          const withBody = await rawGet(plainPort, `GET ${search} HTTP/1.1\r\nHost: 127.0.0.1\r\n${framing}`);
          assert.match(withBody, /fwd=bypass[^\r]*detail=request-content/, withBody.split('\r\n\r\n')[0]);
        }
        const plainSearch = await rawGet(plainPort, `GET ${search} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        assert.match(plainSearch, /fwd=uri-miss/, 'nothing was stored for the GETs with content');
        // The scheme: a plain listener's redirect to https, stored, is not the https listener's answer.
        const force = `/force-${rand.seed}`;
        const plain = await rawGet(plainPort, `GET ${force} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        assert.match(plain, /location: https:\/\//i);
        assert.match(plain, /stored/);
        const secure = await httpsGet(tlsPort, force, ca.cert);
        assert.doesNotMatch(String(secure.location), /^https:/, `the https listener got the plain one's redirect from the store: ${secure.cacheStatus}`);
        assert.doesNotMatch(secure.cacheStatus, /; hit/);
      });
    } finally {
      await g.close();
      await up.close();
      dir.remove();
    }
  });
});

/** A GET over TLS to the gateway (node:https, the test CA). */
function httpsGet(port: number, path: string, ca: string): Promise<{ location: string | undefined; cacheStatus: string }> {
  return new Promise((resolve, reject) => {
    httpsRequest({ host: '127.0.0.1', port, path, ca, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ location: res.headers.location, cacheStatus: String(res.headers['cache-status'] ?? '') }));
    })
      .on('error', reject)
      .end();
  });
}

test('a route that sends a Host of its own (`host: endpoint` or a literal) caches whatever Host the client sent', async () => {
  // The unkeyed-host rule is about the client's Host reaching the upstream; these routes never send it.
  const up = await startScriptedUpstream((req, res) => {
    const body = `host ${String(req.headers.host)}`;
    res.writeHead(200, { 'cache-control': 'public, max-age=600', 'content-length': String(body.length) });
    res.end(body);
  });
  try {
    for (const host of ['endpoint', 'site.example']) {
      const g = await startTestGateway({ clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`] } }, routes: [{ cluster: 'up', host, cache: {} }] } as never);
      try {
        const path = `/own-host-${host}`;
        const first = await rawGet(g.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:1337\r\n\r\n`);
        assert.match(first, /stored/, `host: ${host}`);
        const second = await rawGet(g.port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:1337\r\n\r\n`);
        assert.match(second, /; hit/, `host: ${host}`);
      } finally {
        await g.close();
      }
    }
  } finally {
    await up.close();
  }
});
