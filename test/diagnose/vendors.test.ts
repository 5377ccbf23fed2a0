import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { loadLabCerts } from '../../src/lab/index.js';
import { diagnose, FINGERPRINTS, readHops } from '../../src/diagnose/index.js';
import { VENDOR_FIXTURES, type VendorFixture } from './vendor-fixtures.js';

/**
 * Local servers that answer as each vendor does (vendor-fixtures.ts, each with its source),
 * byte for byte: status line, headers in the vendor's order and case, body. diagnose must name
 * the vendor that wrote the answer, the vendors on the path, and the type its words map to.
 */

let plain: Server;
let secure: Server;
let plainPort = 0;
let securePort = 0;
const certs = loadLabCerts();

function answer(socket: Socket): void {
  let head = '';
  socket.setEncoding('latin1');
  socket.on('data', (chunk: string) => {
    head += chunk;
    if (!head.includes('\r\n\r\n')) return;
    const path = /^[A-Z]+ ([^ ?]+)/.exec(head)?.[1] ?? '/';
    const f = VENDOR_FIXTURES.find((x) => `/${x.name}` === path);
    if (!f) {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    const body = Buffer.from(f.body, 'utf8');
    let out = `HTTP/1.1 ${f.status} ${f.reason ?? ''}\r\n`;
    for (const [k, v] of f.headers) if (k.toLowerCase() !== 'content-length') out += `${k}: ${v}\r\n`;
    out += `content-length: ${body.length}\r\n\r\n`;
    socket.end(Buffer.concat([Buffer.from(out, 'latin1'), body]));
  });
  socket.on('error', () => undefined);
}

function listen(s: Server): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
}

before(async () => {
  plain = createNetServer(answer);
  secure = createTlsServer({ cert: certs.caSignedCert, key: certs.caSignedKey }, answer);
  plainPort = await listen(plain);
  securePort = await listen(secure);
});

after(async () => {
  await new Promise((r) => plain.close(r));
  await new Promise((r) => secure.close(r));
});

function urlOf(f: VendorFixture): string {
  return f.tls ? `https://127.0.0.1:${securePort}/${f.name}` : `http://127.0.0.1:${plainPort}/${f.name}`;
}

describe('every vendor fixture is named by diagnose, over real sockets', () => {
  for (const f of VENDOR_FIXTURES) {
    test(f.name, async () => {
      const d = await diagnose({ url: urlOf(f), tries: 1, spacingMs: 0, timeoutMs: 3000, ...(f.tls ? { ca: certs.ca } : {}) });
      const seen = JSON.stringify({ madeBy: d.hop?.madeBy, hops: d.hop?.hops.map((h) => [h.id, h.made, h.evidence]), verdict: d.verdict }, null, 1);
      assert.equal(d.main.http?.status, f.status);
      assert.equal(d.hop?.madeBy?.id, f.expect.madeBy, seen);
      for (const id of f.expect.onPath ?? []) assert.ok(d.hop?.hops.some((h) => h.id === id), `${id} on the path: ${seen}`);
      if (f.expect.type) assert.equal(d.verdict.errorType, f.expect.type, seen);
      assert.equal(d.verdict.healthy, false);
      assert.ok(d.verdict.exitCode === 1 || d.verdict.exitCode === 2, seen);
      if (f.expect.madeBy) {
        const fp = FINGERPRINTS.find((x) => x.id === f.expect.madeBy)!;
        assert.ok(d.verdict.hop.includes(fp.name) || d.verdict.hop.startsWith(d.hop!.madeBy!.name), seen);
        assert.ok(d.verdict.evidence.some((e) => e.includes(fp.source)) || d.hop?.proxyStatus?.length, `the verdict cites the fingerprint's source: ${seen}`);
      } else {
        assert.match(d.verdict.hop, /origin server/, seen);
      }
      // Vendor ids are quoted for whoever is contacted.
      for (const h of d.hop?.hops ?? []) for (const [k, v] of Object.entries(h.ids)) assert.ok(d.verdict.contact.quote.includes(`${k}: ${v} (${h.name})`), `quote ${k}: ${seen}`);
    });
  }
});

test('no fixture is claimed by two vendors; every fingerprint is exercised by a fixture; every entry names its source', () => {
  const exercised = new Set<string>();
  for (const f of VENDOR_FIXTURES) {
    const headers: Record<string, string> = {};
    for (const [k, v] of f.headers) headers[k.toLowerCase()] = v;
    const r = readHops({ status: f.status, headers, body: f.body });
    const makers = r.hops.filter((h) => h.made).map((h) => h.id);
    assert.ok(makers.length <= 1, `${f.name}: claimed by ${makers.join(', ')}`);
    for (const h of r.hops) exercised.add(h.id);
  }
  for (const fp of FINGERPRINTS) {
    assert.ok(exercised.has(fp.id), `no fixture exercises ${fp.id}`);
    assert.ok(fp.source.length > 10, `${fp.id} names its source`);
    assert.ok(fp.evidence.length > 0);
  }
  const required = ['cloudflare', 'aws-alb', 'cloudfront', 'google', 'fastly', 'varnish', 'akamai', 'azure-front-door', 'azure-application-gateway', 'heroku', 'vercel', 'netlify', 'nginx', 'apache', 'haproxy', 'envoy', 'istio', 'traefik', 'caddy', 'squid', 'ingress-nginx', 'gatewise'];
  for (const id of required) assert.ok(FINGERPRINTS.some((f) => f.id === id), `fingerprint ${id}`);
});

test('a healthy answer through a CDN names the CDN on the path and exits 0', () => {
  const r = readHops({ status: 200, headers: { server: 'cloudflare', 'cf-ray': '8ec3a1b2c4d5e6f7-FRA', 'cf-cache-status': 'HIT' }, body: '<html>hello</html>' });
  assert.equal(r.madeBy, undefined);
  assert.deepEqual(r.hops.map((h) => h.id), ['cloudflare']);
});

test('docs/diagnose.md lists every product of the fingerprint table with its source', async () => {
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(new URL('../../../docs/diagnose.md', import.meta.url), 'utf8');
  for (const fp of FINGERPRINTS) {
    assert.ok(doc.includes(`| ${fp.name} | ${fp.kind} |`), `docs/diagnose.md has no row for ${fp.name}`);
    assert.ok(doc.includes(fp.source.replace(/</g, '&lt;')), `docs/diagnose.md does not cite the source of ${fp.name}`);
  }
});
