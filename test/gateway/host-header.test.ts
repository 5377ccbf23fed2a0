import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startOkClusters, type OkClusters } from '../helpers/routed.js';
import type { ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Issue 14, finding 4: Host (RFC 9112 §3.2). Two Host headers routed by the first and
 * forwarded the last; invalid values routed; absolute-form routed by Host, not by its
 * authority; a missing Host got Node's bare 400; an HTTP/0.9 line was forwarded as
 * HTTP/1.1 with an empty Host.
 */

let rig: OkClusters<'admin' | 'pub'> | undefined;
let admin: ScriptedUpstream;
let pub: ScriptedUpstream;
let gw: TestGateway;

before(async () => {
  rig = await startOkClusters(['admin', 'pub'], {
    routes: [
      { match: { host: 'admin.test' }, cluster: 'admin' },
      { match: { host: ['public.test', ''] }, cluster: 'pub' },
    ],
  });
  ({ gateway: gw, upstreams: { admin, pub } } = rig);
});

after(async () => {
  await rig?.close();
});

async function send(bytes: string): Promise<{ status: number; text: string; head: ReturnType<typeof parseHead> }> {
  const conn = new RawConn(gw.port);
  await conn.write(bytes);
  const text = await conn.closed(5000);
  conn.destroy();
  const head = parseHead(text);
  return { status: head?.status ?? 0, text, head };
}

function received(): number {
  return admin.received.length + pub.received.length;
}

describe('Host header hygiene', () => {
  test('two Host headers → 400 http_request_error, nothing forwarded (either order)', { timeout: 10_000 }, async () => {
    const before = received();
    for (const [a, b] of [['public.test', 'admin.test'], ['admin.test', 'public.test'], ['public.test', 'public.test']]) {
      const r = await send(`GET / HTTP/1.1\r\nHost: ${a}\r\nHost: ${b}\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 400, r.text);
      assert.match(r.head!.get('proxy-status') ?? '', /error=http_request_error/);
      assert.match(r.text, /Host header fields/);
    }
    assert.equal(received(), before, 'a request with two Host headers reached an upstream');
  });

  test('invalid Host values → 400 with the reason in the detail; valid ones are routed (seeded family)', { timeout: 30_000 }, async () => {
    const rand = seededRandom();
    const invalid = ['a b', 'a@evil/x', 'a:99999', 'public.test:', 'public.test:http', 'public.test:8o', '[::1', '[nothex]:80', 'public.test/x', 'a:1:2', ':80', 'a\\b'];
    const valid = ['public.test', 'PUBLIC.test:8080', 'public.test.', '[::1]:80'];
    // A random family: a valid host with one bad character spliced in somewhere.
    const bad = [' ', '@', '/', '?', '#', '"', '<', '>', '\\', '^', '`', '{', '|', '}'];
    for (let i = 0; i < 12; i++) {
      const h = 'public.test';
      // Inside the value: a space before or after it is optional whitespace (RFC 9110 §5.5), not part of the Host.
      const at = 1 + rand.int(h.length - 1);
      invalid.push(h.slice(0, at) + rand.pick(bad) + h.slice(at));
    }
    await withSeed(rand, async () => {
      const before = received();
      for (const h of invalid) {
        const r = await send(`GET / HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
        // llhttp itself refuses some bytes (400 from the parser path): either way a 400, never routed.
        assert.equal(r.status, 400, `Host ${JSON.stringify(h)}: ${r.text.slice(0, 200)}`);
        assert.match(r.head!.get('proxy-status') ?? '', /error=http_request_error/, `Host ${JSON.stringify(h)}`);
      }
      assert.equal(received(), before, 'a request with an invalid Host reached an upstream');
      for (const h of valid) {
        const r = await send(`GET / HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
        // [::1] has no route (404); the others reach public.test.
        assert.equal(r.status, h.startsWith('[') ? 404 : 200, `Host ${JSON.stringify(h)}: ${r.text.slice(0, 200)}`);
      }
    });
  });

  test('absolute-form is routed by its authority and forwarded with it as Host (RFC 9112 §3.2.2)', { timeout: 10_000 }, async () => {
    const a0 = admin.received.length;
    const p0 = pub.received.length;
    const r = await send('GET http://public.test/x?y=1 HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 200, r.text);
    assert.equal(admin.received.length, a0, 'routed by the Host header, not the authority');
    assert.equal(pub.received.length, p0 + 1);
    const got = pub.received.at(-1)!;
    assert.equal(got.url, '/x?y=1');
    assert.equal(got.headers.host, 'public.test');
    assert.equal(got.rawHeaders.filter((_, i) => i % 2 === 0 && /^host$/i.test(got.rawHeaders[i]!)).length, 1);
    const bad = await send('GET http://u@public.test/ HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n');
    assert.equal(bad.status, 400, 'userinfo in the authority');
  });

  test('HTTP/1.1 without Host → the gateway\'s 400 with Proxy-Status and a request id', { timeout: 10_000 }, async () => {
    const before = received();
    const r = await send('GET / HTTP/1.1\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.head!.get('proxy-status') ?? '', /error=http_request_error/);
    assert.ok(r.head!.get('x-request-id'), 'a request id');
    assert.match(r.text, /needs a Host header/);
    assert.equal(received(), before);
    // HTTP/1.0 may omit Host: routed to the host-less route, forwarded with an empty Host.
    const r10 = await send('GET /ten HTTP/1.0\r\n\r\n');
    assert.equal(r10.status, 200, r10.text);
    assert.equal(pub.received.at(-1)!.headers.host, '');
  });

  test('an HTTP/0.9 request line is refused (505, named), never forwarded', { timeout: 10_000 }, async () => {
    const before = received();
    const r = await send('GET /\r\n\r\n');
    assert.equal(r.status, 505, r.text);
    assert.match(r.head!.get('proxy-status') ?? '', /error=http_request_error/);
    assert.equal(received(), before, 'the HTTP/0.9 request reached an upstream');
  });
});
