import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawExchange, startTestProxy, type TestProxy } from './helpers.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * The forward proxy's parser refusals follow the head's Accept, as its other refusals do
 * (a browser set to use the proxy gets a page; a program problem+json). Before session 31
 * they were always text: there is no request object to read Accept from.
 */
const CASES: ReadonlyArray<readonly [string, RegExp]> = [
  ['text/html,application/xhtml+xml;q=0.9,*/*;q=0.8', /^text\/html/],
  ['application/problem+json', /^application\/problem\+json/],
  ['application/json', /^application\/problem\+json/],
  ['text/plain', /^text\/plain/],
];
const BAD = ['Bad Name: x', 'X-Thing: a\u0000b', 'Content-Length: 1x'];

describe('forward proxy: parser refusals follow Accept', () => {
  let p: TestProxy;
  before(async () => {
    p = await startTestProxy();
  });
  after(async () => {
    await p?.close();
  });

  it('seeded family: malformed heads × Accept values × where Accept stands', { timeout: 30_000 }, async () => {
    const rand = seededRandom();
    for (let i = 0; i < 16; i++) {
      const [accept, type] = CASES[i % CASES.length]!;
      const bad = rand.pick(BAD);
      const acceptLine = `${rand.next() < 0.5 ? 'ACCEPT' : 'Accept'}: ${accept}`;
      const before = rand.next() < 0.5;
      const head = `GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n${before ? `${acceptLine}\r\n${bad}` : `${bad}\r\n${acceptLine}`}\r\n\r\n`;
      const text = await rawExchange(p.port, head);
      const where = `seed ${rand.seed}, case ${i}: ${JSON.stringify(bad)}, Accept ${accept} ${before ? 'before' : 'after'} it`;
      assert.match(text, /^HTTP\/1\.1 400 /, where);
      const ct = /\r\ncontent-type: ([^\r]*)/i.exec(text)?.[1] ?? '';
      assert.match(ct, type, `${where}: content-type ${ct}`);
    }
  });
});
