import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { USER2, accessLines, basic, rawExchange, startOrigin, startTestProxy, waitFor, type Origin, type TestProxy } from './helpers.js';

/**
 * Adversarial review, session 35: a request with two Proxy-Authorization fields was judged by
 * the first (Node keeps the first of a repeated singleton field), whatever the second said.
 * Proxy-Authorization is not a list (RFC 9110 §11.7.4, §5.3): two of them are two claims of
 * who is asking, and an intermediary in front of the proxy that appends its own field (or a
 * client library that adds one to the caller's) has the earlier one win. Such a request is
 * refused as malformed credentials are, with 407, on the HTTP proxy and on CONNECT, and
 * nothing is forwarded; each field alone still works.
 */
describe('two Proxy-Authorization fields', () => {
  let origin: Origin;
  let proxy: TestProxy;
  before(async () => {
    origin = await startOrigin();
    proxy = await startTestProxy();
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it('are refused with 407 on absolute-form and CONNECT, in either order and any case, nothing forwarded', async () => {
    const o = `127.0.0.1:${origin.port}`;
    const good = basic();
    const other = basic(USER2, 'not-the-password');
    for (const [a, b] of [[good, other], [good, good], [other, good]] as const) {
      for (const second of ['Proxy-Authorization', 'proxy-authorization', 'PROXY-AUTHORIZATION']) {
        const get = await rawExchange(proxy.port, `GET http://${o}/dup HTTP/1.1\r\nHost: ${o}\r\nProxy-Authorization: ${a}\r\n${second}: ${b}\r\nConnection: close\r\n\r\n`);
        assert.match(get, /^HTTP\/1\.1 407 /, `GET with ${second}: ${get.slice(0, 100)}`);
        const con = await rawExchange(proxy.port, `CONNECT ${o} HTTP/1.1\r\nHost: ${o}\r\nProxy-Authorization: ${a}\r\n${second}: ${b}\r\n\r\n`);
        assert.match(con, /^HTTP\/1\.1 407 /, `CONNECT with ${second}: ${con.slice(0, 100)}`);
      }
    }
    assert.equal(origin.connections, 0, 'a request with two credentials was forwarded');
    // One field still works, on both.
    const one = await rawExchange(proxy.port, `GET http://${o}/one HTTP/1.1\r\nHost: ${o}\r\nProxy-Authorization: ${good}\r\nConnection: close\r\n\r\n`);
    assert.match(one, /^HTTP\/1\.1 200 /, one.slice(0, 100));
    const con = await rawExchange(proxy.port, `CONNECT ${o} HTTP/1.1\r\nHost: ${o}\r\nProxy-Authorization: ${good}\r\n\r\n`);
    assert.match(con, /^HTTP\/1\.1 200 /, con.slice(0, 100));
    assert.ok(await waitFor(() => accessLines(proxy.lines).filter((l) => l.status === 407).length >= 18), 'each refusal has its access line');
  });
});
