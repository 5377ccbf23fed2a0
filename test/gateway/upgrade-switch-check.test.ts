import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { until } from '../helpers/until.js';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';

/**
 * A 101 is a switch only to a protocol the client offered (RFC 9110 §7.8: the server MUST
 * send Upgrade naming the new protocol, and MUST NOT switch to one the client did not
 * offer). The gateway spliced any 101, so an upstream (or an endpoint of it that answers
 * 101 for anything) opened a raw tunnel in which the client's next bytes reached the
 * upstream as a second request, past the gateway's routes, hooks and rules: the
 * "WebSocket smuggling" of a proxy that trusts the status alone. A 101 without Upgrade, or
 * naming a protocol not offered, is now the upstream's `http_upgrade_failed` (502), and
 * nothing after the client's head reaches the upstream. Guards with it: a non-101 answer
 * to an upgrade never opens a tunnel (200, 426).
 */

const SMUGGLED = 'GET /admin/secret HTTP/1.1\r\nHost: internal\r\n\r\n';

let upstream: ScriptedUpstream;
let gw: TestGateway;

const ANSWERS: Record<string, string> = {
  '/no-upgrade': 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n',
  '/empty-upgrade': 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: \r\n\r\n',
  '/other-protocol': 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n',
  '/two-protocols': 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n',
  '/ok': 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n',
  '/200': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/426': 'HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n',
};

before(async () => {
  upstream = await startRawUpstream((head) => {
    const target = head.split('\r\n', 1)[0]!.split(' ')[1]!;
    // Switches when asked to, else answers plainly.
    if (target === '/either') return /\r\nupgrade:/i.test(head) ? ANSWERS['/ok']! : ANSWERS['/200']!;
    return ANSWERS[target] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n';
  });
  gw = await startOneUpstreamGateway(upstream.url);
});

after(async () => {
  await gw?.close();
  await upstream?.close();
});

/** An upgrade to `path` with a smuggled request behind its head; the answer, once the connection closed or a 101 came. */
async function offer(path: string): Promise<{ status: number; text: string; requestId: string | undefined }> {
  const conn = new RawConn(gw.port);
  await conn.write(`GET ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n` + SMUGGLED);
  const text = await conn.waitFor((t, ended) => ended || /^HTTP\/1\.1 101[^]*?\r\n\r\n/.test(t), 5000, 'an answer');
  const head = parseHead(text);
  // A switched connection stays open: wait (bounded) for the smuggled request to show up upstream.
  if (head?.status === 101) await until(() => upstream.received.some((r) => r.url === '/admin/secret'), 3000);
  conn.destroy();
  return { status: head?.status ?? 0, text, requestId: head?.get('x-request-id') };
}

/** Whether the smuggled request reached the upstream since `from` requests had. */
function smuggledSince(from: number): boolean {
  return upstream.received.slice(from).some((r) => r.url === '/admin/secret');
}

describe('a 101 must name a protocol the client offered', () => {
  for (const path of ['/no-upgrade', '/empty-upgrade', '/other-protocol', '/two-protocols']) {
    test(`${path}: 502 http_upgrade_failed, no tunnel, nothing smuggled`, { timeout: 20_000 }, async () => {
      const before = upstream.received.length;
      const r = await offer(path);
      assert.ok(!smuggledSince(before), `the bytes after the head reached the upstream as a request (answer ${r.status})`);
      assert.equal(r.status, 502, r.text);
      assert.match(r.text, /proxy-status: [^\r]*error=http_upgrade_failed/i);
      const line = await gw.logFor(r.requestId!);
      assert.equal(line.error, 'http_upgrade_failed');
      assert.equal(line.endedBy, 'upstream');
      assert.equal(line.upgrade, true);
      assert.equal(upstream.received.length, before + 1, 'only the upgrade request reached the upstream');
    });
  }

  test('a 101 naming the offered protocol (any case) switches', { timeout: 20_000 }, async () => {
    const conn = new RawConn(gw.port);
    await conn.write(`GET /ok HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    const text = await conn.waitFor((t) => t.includes('\r\n\r\n'), 5000, 'the 101');
    assert.equal(parseHead(text)?.status, 101, text);
    assert.match(text, /\r\nupgrade: WebSocket\r\n/i);
    conn.destroy();
  });

  for (const path of ['/200', '/426']) {
    test(`${path}: a non-101 answer is passed back and closes, never a tunnel`, { timeout: 20_000 }, async () => {
      const before = upstream.received.length;
      const r = await offer(path);
      assert.equal(r.status, Number(path.slice(1)), r.text);
      assert.match(r.text, /\r\nconnection: close\r\n/i);
      assert.equal(upstream.received.length, before + 1);
      assert.ok(!smuggledSince(before));
    });
  }

  test('an HTTP/1.0 request\'s Upgrade is ignored (RFC 9110 §7.8): a plain request upstream, no tunnel, nothing smuggled', { timeout: 20_000 }, async () => {
    const before = upstream.received.length;
    const conn = new RawConn(gw.port);
    await conn.write(`GET /either HTTP/1.0\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n` + SMUGGLED);
    const text = await conn.waitFor((t, ended) => ended || /^HTTP\/1\.1 101[^]*?\r\n\r\n/.test(t), 5000, 'an answer');
    if (parseHead(text)?.status === 101) await until(() => smuggledSince(before), 3000);
    conn.destroy();
    assert.ok(!smuggledSince(before), 'the bytes after the head reached the upstream as a request');
    assert.equal(parseHead(text)?.status, 200, text);
    const seen = upstream.received.slice(before);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.headers.upgrade, undefined, 'Upgrade went upstream');
  });
});
