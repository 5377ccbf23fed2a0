import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Issue 14, finding 6: past ~1,000 header lines Node dropped the rest silently, Content-Length
 * included: the upstream got a request without its body and the client a 200. Now more
 * than the listener's `maxHeaderCount` (default 100) is refused with 431.
 */

let up: ScriptedUpstream;
let gwDefault: TestGateway;
/** maxHeaderCount 20; started by the test that uses it. */
let gw20: TestGateway | undefined;
let config: { clusters: { up: { endpoints: string[] } }; routes: Array<{ cluster: string }> };
const bodies: Array<{ fields: number; body: string }> = [];

before(async () => {
  up = await startScriptedUpstream((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      bodies.push({ fields: req.rawHeaders.length / 2, body });
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    });
  });
  const cfg = { clusters: { up: { endpoints: [up.url] } }, routes: [{ cluster: 'up' }] };
  gwDefault = await startTestGateway({ ...cfg, listeners: [{ address: '127.0.0.1', port: 0, maxHeaderSize: 65536 }] });
  config = cfg;
});

after(async () => {
  await gwDefault?.close();
  await gw20?.close();
  await up?.close();
});

/** A POST with `fields` header fields in all (Host and Content-Length included, Content-Length last) and a body. */
async function post(port: number, fields: number): Promise<{ status: number; text: string }> {
  let head = 'POST /count HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n';
  for (let i = 3; i < fields; i++) head += `x-f${i}: v\r\n`;
  head += 'Content-Length: 5\r\n\r\nhello';
  const conn = new RawConn(port);
  await conn.write(head);
  const text = await conn.closed(5000);
  conn.destroy();
  return { status: parseHead(text)?.status ?? 0, text };
}

describe('request header count', () => {
  test('1,100 header fields (Content-Length last): 431, never a body-less request upstream', { timeout: 15_000 }, async () => {
    const n0 = up.received.length;
    const r = await post(gwDefault.port, 1100);
    assert.equal(r.status, 431, r.text.slice(0, 300));
    assert.match(r.text, /proxy-status: [^\r]*error=http_request_error/i);
    assert.equal(up.received.length, n0, 'forwarded with its excess fields dropped');
  });

  test('counts around the limit (default 100 and a configured 20), and a seeded random family', { timeout: 60_000 }, async () => {
    gw20 = await startTestGateway({ ...config, listeners: [{ address: '127.0.0.1', port: 0, maxHeaderCount: 20 }] });
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const cases: Array<[TestGateway, number, number]> = [];
      for (const [g, limit] of [[gwDefault, 100], [gw20!, 20]] as const) {
        for (let d = -2; d <= 2; d++) cases.push([g, limit, limit + d]);
        for (let i = 0; i < 4; i++) cases.push([g, limit, 3 + rand.int(limit * 3)]);
      }
      for (const [g, limit, fields] of cases) {
        const n0 = up.received.length;
        const b0 = bodies.length;
        const r = await post(g.port, fields);
        if (fields > limit) {
          assert.equal(r.status, 431, `${fields} fields, limit ${limit}: ${r.text.slice(0, 200)}`);
          assert.equal(up.received.length, n0, `${fields} fields, limit ${limit}: forwarded`);
        } else {
          assert.equal(r.status, 200, `${fields} fields, limit ${limit}: ${r.text.slice(0, 200)}`);
          const got = bodies[b0]!;
          assert.equal(got.body, 'hello', `${fields} fields: the body arrived`);
          // The client's Connection is replaced by the upstream connection's own; the gateway adds
          // via, x-request-id, x-forwarded-for, -proto and -host.
          assert.equal(got.fields, fields + 5, `${fields} fields: all forwarded`);
        }
      }
    });
  });
});
