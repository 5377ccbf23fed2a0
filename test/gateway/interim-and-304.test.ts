import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { testUpstreamClient } from '../helpers/upstream-client.js';
import { RawConn, parseHead, type Head } from '../helpers/raw-conn.js';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';

/**
 * Issue 14, finding 7 (reverse part): a 304 carrying the representation's Content-Length
 * (allowed, RFC 9110 §8.6) became an empty reply logged as http_response_incomplete; a 103
 * with an invalid Link became the gateway's 500 proxy_internal_error. Session 13: a 100 Continue
 * the gateway never asked for (no Expect on the request) was a 502 http_protocol_error, though
 * RFC 9110 §15.2 says a client must be able to parse 1xx answers it does not expect.
 */

/** The final answer's head in a client's bytes, and the statuses of the interim answers before it. */
function finalAnswer(text: string): { head: Head; interim: number[] } {
  let head = parseHead(text)!;
  const interim: number[] = [];
  while (head.status < 200) {
    interim.push(head.status);
    head = parseHead(text, head.end)!;
  }
  return { head, interim };
}

let up: ScriptedUpstream;
let gw: TestGateway;

before(async () => {
  up = await startRawUpstream((head) => {
    const path = /^GET (\S+)/.exec(head)![1]!;
    const m = /^\/304\/(\d+)$/.exec(path);
    if (m) return `HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: ${m[1]}\r\n\r\n`;
    if (path === '/hint-bad') return 'HTTP/1.1 103 Early Hints\r\nLink: not a link\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal';
    if (path === '/hint-mixed') return 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: <broken\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal';
    if (path === '/hint-good') return 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal';
    if (path === '/100') return 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal';
    if (path === '/100-103-100') return 'HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal';
    if (path === '/102') return 'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal';
    return 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  });
  gw = await startTestGateway({ clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } }, routes: [{ cluster: 'up', retry: { tries: 1 } }] });
});

after(async () => {
  await gw?.close();
  await up?.close();
});

describe('304 and 1xx from the upstream', () => {
  test('a 304 with Content-Length (0, 5, large) is relayed as a 304 without a body; the connection stays usable', { timeout: 10_000 }, async () => {
    const conn = new RawConn(gw.port);
    for (const n of [5, 0, 12345, 1]) {
      conn.clear();
      await conn.write(`GET /304/${n} HTTP/1.1\r\nHost: gw.test\r\nIf-None-Match: "v1"\r\n\r\n`);
      const text = await conn.waitFor((t, ended) => ended || t.includes('\r\n\r\n'), 3000, `the 304 for Content-Length ${n}`);
      const head = parseHead(text);
      assert.equal(head?.status, 304, `Content-Length ${n}: ${JSON.stringify(text.slice(0, 200))}`);
      assert.equal(head!.get('etag'), '"v1"');
      assert.equal(text.length, head!.end, 'bytes after a 304 head');
    }
    conn.clear();
    await conn.write('GET /ok HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
    const text = await conn.closed(3000);
    conn.destroy();
    assert.equal(parseHead(text)?.status, 200, 'the next request on the connection');
    assert.ok(text.endsWith('\r\n\r\nok'));
    const errors = gw.logs.filter((l) => l.type === 'access' && l.status === 304 && l.error !== undefined);
    assert.deepEqual(errors, [], 'a 304 logged as a failure');
  });

  test('a 103 with an invalid Link is dropped, the final answer relayed (never a 500); valid ones pass', { timeout: 10_000 }, async () => {
    for (const path of ['/hint-bad', '/hint-mixed', '/102', '/hint-good']) {
      const conn = new RawConn(gw.port);
      await conn.write(`GET ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`);
      const text = await conn.closed(3000);
      conn.destroy();
      const { head, interim } = finalAnswer(text);
      assert.equal(head.status, 200, `${path}: ${text.slice(0, 300)}`);
      assert.equal(text.slice(head.end), 'final', path);
      assert.deepEqual(interim, path === '/hint-good' ? [103] : [], `${path}: interim answers relayed`);
    }
  });

  test('a 100 Continue nobody asked for is read past: the final answer is relayed, the 100 is not (undici\'s client refuses it)', { timeout: 10_000 }, async () => {
    const undici = testUpstreamClient() === 'undici';
    for (const path of ['/100', '/100-103-100']) {
      for (const close of [true, false]) {
        const conn = new RawConn(gw.port);
        await conn.write(`GET ${path} HTTP/1.1\r\nHost: gw.test\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
        const text = close ? await conn.closed(3000) : await conn.waitFor((t) => /\r\n\r\n(final|[^]*"type")/.test(t) || /^HTTP\/1\.1 5/m.test(t), 3000, `${path}: the answer`);
        conn.destroy();
        const { head, interim } = finalAnswer(text);
        const line = await gw.logFor(head.get('x-request-id')!);
        if (undici) {
          // undici's client (the opt-in `client: undici`) ends the connection on any 100 (its parser's rule).
          assert.equal(head.status, 502, `${path} on undici: ${text.slice(0, 300)}`);
          assert.notEqual(line.error, undefined, `${path} on undici: the record`);
          continue;
        }
        assert.equal(line.error, undefined, `${path}: the record's error`);
        assert.equal(head.status, 200, `${path}: ${text.slice(0, 300)}`);
        assert.equal(text.slice(head.end), 'final', path);
        assert.deepEqual(interim, path === '/100' ? [] : [103], `${path}: only the 103 is relayed, never an unasked 100`);
      }
    }
  });
});
