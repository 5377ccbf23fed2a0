import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { startTestProxy } from '../forward/helpers.js';

/**
 * A response to HEAD has no content (RFC 9110 §9.3.2, RFC 9112 §6.3). Found (session "story"):
 * a HEAD request whose head the parser refused (a header too large: 431; a malformed field:
 * 400) was answered with the whole page after the head, on the node front, the net front and
 * the forward proxy alike, although the request line had said HEAD. The refusal now reads the
 * method as it reads the Accept (from the bytes or the parser's fields) and sends the head
 * alone, its Content-Length that of the body a GET would get.
 */

const CASES = {
  'a header section too large (431)': (target: string) => `HEAD ${target} HTTP/1.1\r\nhost: 127.0.0.1:9\r\naccept: text/html\r\nx-big: ${'b'.repeat(40_000)}\r\n\r\n`,
  'a malformed field (400)': (target: string) => `HEAD ${target} HTTP/1.1\r\nhost: 127.0.0.1:9\r\naccept: text/html\r\nbad header\r\n\r\n`,
};

test('a HEAD request the parser refuses gets the head alone, with the GET body’s Content-Length: node and net fronts, forward proxy', { timeout: 60_000 }, async () => {
  const proxy = await startTestProxy({ rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } } as never);
  const gws = await Promise.all(
    (['node', 'net'] as const).map((front) =>
      startTestGateway({ listeners: [{ address: '127.0.0.1', port: 0, front }], clusters: { up: { endpoints: ['http://127.0.0.1:9'] } }, routes: [{ cluster: 'up' }] } as never),
    ),
  );
  try {
    const targets = [
      { name: 'node front', port: gws[0]!.port, target: '/' },
      { name: 'net front', port: gws[1]!.port, target: '/' },
      { name: 'forward proxy', port: proxy.port, target: 'http://127.0.0.1:9/' },
    ];
    const failed: string[] = [];
    for (const t of targets) {
      for (const [what, make] of Object.entries(CASES)) {
        const head = await replayRaw(make(t.target), { port: t.port, deadlineMs: 5000, head: true });
        const get = await replayRaw(make(t.target).replace(/^HEAD /, 'GET '), { port: t.port, deadlineMs: 5000 });
        const text = head.data.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        const status = (s: string): string => s.slice(0, s.indexOf('\r\n'));
        const length = (s: string): string | undefined => /\r\ncontent-length: (\d+)/i.exec(s.slice(0, s.indexOf('\r\n\r\n')))?.[1];
        const getText = get.data.toString('latin1');
        const after = end < 0 ? -1 : text.length - end - 4;
        // The body a GET gets, with this answer's request id in place of the GET's (ids differ in length as they count up).
        const rid = (s: string): string => /\r\nx-request-id: (\S+)/i.exec(s)?.[1] ?? '';
        const getBody = getText.slice(getText.indexOf('\r\n\r\n') + 4);
        const expected = Buffer.byteLength(getBody.split(rid(getText)).join(rid(text)), 'latin1');
        if (end < 0 || after !== 0 || status(text) !== status(getText) || length(text) !== String(expected) || length(getText) !== String(Buffer.byteLength(getBody, 'latin1'))) {
          failed.push(`${t.name}, ${what}: HEAD answered "${status(text)}" with ${after} bytes after its head and Content-Length ${length(text)}; GET "${status(getText)}", Content-Length ${length(getText)}`);
        }
      }
    }
    assert.deepEqual(failed, []);
  } finally {
    for (const g of gws) await g.close();
    await proxy.close();
  }
});
