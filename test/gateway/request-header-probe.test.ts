import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startOkClusters, type OkClusters } from '../helpers/routed.js';
import type { ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { everyCase } from '../helpers/seeded.js';

/**
 * An attacker's probe of what the reverse gateway sends upstream and how it reads Host
 * (session probe of the reverse request path):
 * - a client nominating the gateway's own fields in `Connection` must not remove them
 *   (guard: they are written after the client's fields are dropped);
 * - a client's request id never reaches the upstream (guard);
 * - with `underscoreHeaders: forward`, `X_Forwarded_For: 6.6.6.6` reached the upstream
 *   beside the gateway's X-Forwarded-For: CGI, PHP, WSGI and nginx's `$http_` variables read
 *   both names as one (HTTP_X_FORWARDED_FOR), so an untrusted client chose its address;
 * - a Host name with an empty label (`admin.test..`, `.admin.test`) was taken and forwarded
 *   past the host's route (nginx refuses it with 400).
 */

let rig: OkClusters<'admin' | 'pub'> | undefined;
let admin: ScriptedUpstream;
let pub: ScriptedUpstream;
let gw: TestGateway;

before(async () => {
  rig = await startOkClusters(['admin', 'pub'], {
    underscoreHeaders: 'forward',
    forwardedHeaders: 'both',
    routes: [
      { match: { host: 'admin.test' }, cluster: 'admin' },
      { cluster: 'pub' },
    ],
  });
  ({ gateway: gw, upstreams: { admin, pub } } = rig);
});

after(async () => {
  await rig?.close();
});

async function send(head: string): Promise<{ status: number; text: string; requestId: string | undefined }> {
  const conn = new RawConn(gw.port);
  try {
    await conn.write(head);
    const text = await conn.closed(10_000);
    const h = parseHead(text);
    return { status: h?.status ?? 0, text, requestId: h?.get('x-request-id') };
  } finally {
    conn.destroy();
  }
}

/** The values of a field (any case) in a received raw head. */
function fieldValues(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

describe('request fields to the upstream', () => {
  test('Connection naming the gateway\'s own fields removes none of them; the client\'s request id never goes up (guard)', { timeout: 20_000 }, async () => {
    const n = pub.received.length;
    const r = await send(
      'GET /x HTTP/1.1\r\nHost: site.test\r\nConnection: close, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded, Via, X-Request-Id, Host\r\n' +
        'X-Forwarded-For: 6.6.6.6\r\nX-Request-Id: chosen-by-client\r\n\r\n',
    );
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(pub.received.length, n + 1);
    const raw = pub.received.at(-1)!.rawHeaders;
    assert.deepEqual(fieldValues(raw, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(fieldValues(raw, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(fieldValues(raw, 'x-forwarded-host'), ['site.test']);
    assert.deepEqual(fieldValues(raw, 'forwarded'), ['for=127.0.0.1;proto=http;host=site.test']);
    assert.equal(fieldValues(raw, 'via').length, 1);
    assert.deepEqual(fieldValues(raw, 'host'), ['site.test']);
    assert.deepEqual(fieldValues(raw, 'x-request-id'), [r.requestId!], 'the gateway\'s id, the one the client was answered with');
    assert.notEqual(r.requestId, 'chosen-by-client');
  });

  test('with underscoreHeaders: forward, an underscore spelling of a field the gateway writes or reads is dropped; others go up', { timeout: 20_000 }, async () => {
    const spoofs = ['X_Forwarded_For', 'x_forwarded_proto', 'X_Forwarded_Host', 'X_Real_IP', 'X_Forwarded_Prefix', 'X_Request_Id', 'Transfer_Encoding', 'Content_Length', 'Proxy_Authorization', 'Keep_Alive'];
    const n = pub.received.length;
    const r = await send(`GET /x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n${spoofs.map((s) => `${s}: 6.6.6.6\r\n`).join('')}X_User: alice\r\n\r\n`);
    assert.equal(r.status, 200, r.text.slice(0, 300));
    assert.equal(pub.received.length, n + 1);
    const raw = pub.received.at(-1)!.rawHeaders;
    const names = raw.filter((_, i) => i % 2 === 0).map((x) => x.toLowerCase());
    const leaked = spoofs.filter((s) => names.includes(s.toLowerCase()));
    assert.deepEqual(leaked, [], `forwarded upstream: ${leaked.join(', ')}`);
    assert.deepEqual(fieldValues(raw, 'x_user'), ['alice'], 'other underscore names still go up (the operator asked for them)');
    assert.deepEqual(fieldValues(raw, 'x-forwarded-for'), ['127.0.0.1']);
  });
});

describe('Host names for routing', () => {
  test('an empty label (two dots, a leading dot) → 400, never forwarded; case, one trailing dot and a port still select the host\'s route', { timeout: 30_000 }, async () => {
    await everyCase(['admin.test..', '.admin.test', 'admin..test', 'admin.test..:80', '.'], async (host) => {
      const counts = [admin.received.length, pub.received.length];
      const r = await send(`GET /x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 400, `Host: ${host}: ${r.text.slice(0, 200)}`);
      assert.match(r.text, /proxy-status: [^\r]*error=http_request_error/i);
      assert.deepEqual([admin.received.length, pub.received.length], counts, `Host: ${host} reached an upstream`);
    }, 'Host values');
    for (const host of ['ADMIN.Test', 'admin.test.', 'admin.test.:8080', 'Admin.TEST:80']) {
      const n = admin.received.length;
      const r = await send(`GET /x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 200, `Host: ${host}: ${r.text.slice(0, 200)}`);
      assert.equal(admin.received.length, n + 1, `Host: ${host} took the admin host's route`);
    }
    const n = admin.received.length;
    const r = await send('GET http://admin.test./x HTTP/1.1\r\nHost: public.test\r\nConnection: close\r\n\r\n');
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.equal(admin.received.length, n + 1, 'absolute-form: routed by its authority');
    assert.deepEqual(fieldValues(admin.received.at(-1)!.rawHeaders, 'host'), ['admin.test.']);
  });
});
