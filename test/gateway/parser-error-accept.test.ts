import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { seededRandom } from '../helpers/seeded.js';

function field(headers: Array<[string, string]>, name: string): string | undefined {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

/**
 * A request the parser refuses is answered in the format its Accept field asks for, as every
 * other answer of the gateway is: a browser that sent a head too large, or a malformed one,
 * gets a page, a program problem+json. Before session 31 the parser's answers ignored Accept
 * (there is no request object to read it from) and were always text. Both fronts.
 */

type Fmt = 'html' | 'problem' | 'text';
const ACCEPTS: ReadonlyArray<readonly [string, Fmt]> = [
  ['text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'html'],
  ['text/html', 'html'],
  ['application/problem+json', 'problem'],
  ['application/json', 'problem'],
  ['application/json;q=0.5, text/html;q=0.9', 'html'],
  ['text/plain', 'text'],
  ['*/*', 'text'],
];
const TYPE: Record<Fmt, RegExp> = { html: /^text\/html/, problem: /^application\/problem\+json/, text: /^text\/plain/ };

/** Malformed heads: the bad line, and the status the gateway answers with. `before`: where Accept may go (the bad line is in the field section, so Accept may come before or after it). */
const BAD: ReadonlyArray<{ what: string; line: (r: () => number) => string; status: number; firstLine?: string }> = [
  { what: 'a space in a field name', line: () => 'Bad Name: x', status: 400 },
  { what: 'a NUL in a field value', line: () => 'X-Thing: a\u0000b', status: 400 },
  { what: 'a bare CR in a field value', line: () => 'X-Thing: a\rb', status: 400 },
  { what: 'a Content-Length that is not a number', line: (r) => `Content-Length: ${r() < 0.5 ? '1x' : '-4'}`, status: 400 },
  { what: 'a field section over maxHeaderSize', line: (r) => `X-Big: ${'a'.repeat(5000 + Math.floor(r() * 3000))}`, status: 431 },
  { what: 'a method that is not a token', line: () => 'X-Ok: 1', status: 400, firstLine: 'G@T / HTTP/1.1' },
];

function spell(name: string, r: () => number): string {
  return r() < 0.3 ? name.toUpperCase() : r() < 0.5 ? name : name[0]!.toUpperCase() + name.slice(1);
}

for (const front of ['node', 'net'] as const) {
  describe(`parser refusals follow Accept (${front} front)`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front, maxHeaderSize: 4096 }],
        clusters: { up: { endpoints: ['http://127.0.0.1:9'] } },
        routes: [{ cluster: 'up' }],
      } as never);
    });
    after(async () => {
      await gw?.close();
    });

    test('seeded family: malformed heads × Accept values × where Accept stands', { timeout: 60_000 }, async () => {
      const rand = seededRandom();
      for (let i = 0; i < 40; i++) {
        const bad = BAD[i % BAD.length]!;
        const [accept, fmt] = rand.pick(ACCEPTS);
        const acceptLine = `${spell('accept', rand.next)}:${rand.next() < 0.5 ? ' ' : ''}${accept}`;
        // Accept before the bad line (always seen); after it too where the line is still in what was read.
        const acceptFirst = bad.status === 431 || rand.next() < 0.5;
        const lines = [`Host: gw.test`, ...(acceptFirst ? [acceptLine, bad.line(rand.next)] : [bad.line(rand.next), acceptLine]), 'X-Tail: 1'];
        const head = `${bad.firstLine ?? 'GET / HTTP/1.1'}\r\n${lines.join('\r\n')}\r\n\r\n`;
        const got = await replayRaw(head, { port: gw.port, deadlineMs: 3000 });
        const where = `seed ${rand.seed}, case ${i}: ${bad.what}, Accept ${JSON.stringify(accept)} ${acceptFirst ? 'before' : 'after'} it`;
        const res = got.responses[0];
        assert.ok(res !== undefined, `${where}: no answer (${got.end}: ${JSON.stringify(got.data.toString('latin1').slice(0, 200))})`);
        assert.equal(res.status, bad.status, where);
        assert.match(field(res.headers, 'content-type') ?? '', TYPE[fmt], `${where}: content-type ${field(res.headers, 'content-type')}`);
        assert.ok(field(res.headers, 'proxy-status') !== undefined && field(res.headers, 'x-request-id') !== undefined, where);
        if (fmt === 'problem') assert.equal((JSON.parse(res.body.toString()) as { status: number }).status, bad.status, where);
        if (fmt === 'html') assert.match(res.body.toString(), /<html/i, where);
      }
    });

    test('without Accept the answer stays text', { timeout: 10_000 }, async () => {
      const got = await replayRaw('GET / HTTP/1.1\r\nHost: gw.test\r\nBad Name: x\r\n\r\n', { port: gw.port });
      assert.equal(got.responses[0]?.status, 400);
      assert.match(field(got.responses[0]?.headers ?? [], 'content-type') ?? '', /^text\/plain/);
    });
  });
}
