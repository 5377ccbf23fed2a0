import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accessLines, basic, dial, readUntil, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { between, seededRun, shuffle } from '../helpers/seeded.js';

/**
 * SSRF audit (session 41): an absolute-form request with `Transfer-Encoding: gzip, chunked` was
 * relayed with its chunked framing taken off and its gzip coding kept, under no
 * Transfer-Encoding at all: the destination got gzip bytes as the body, with nothing saying so.
 * The reverse gateway refuses it (test/gateway/te-final-coding.test.ts); the forward proxy now
 * answers the same: a coding it does not implement before chunked is 501 (RFC 9112 §6.1), and
 * codings that do not end in chunked leave no length (RFC 9112 §6.3: 400, closed). Nothing
 * reaches the destination; `chunked` alone, in any case and spacing, is relayed.
 */

const CODINGS = ['gzip', 'br', 'deflate', 'compress', 'x-custom', 'identity'];

/** A seeded casing and spacing of a coding name. */
function spelled(rand: () => number, name: string): string {
  const cased = [...name].map((c) => (rand() < 0.3 ? c.toUpperCase() : c)).join('');
  return ' '.repeat(between(rand, 0, 1)) + cased + ' '.repeat(between(rand, 0, 1));
}

let p: TestProxy;
let origin: ScriptedUpstream;

before(async () => {
  p = await startTestProxy();
  origin = await startScriptedUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    });
  });
});

after(async () => {
  await p?.close();
  await origin?.close();
});

async function send(te: string, body: string): Promise<string> {
  const s = await dial(p.port);
  s.on('error', () => {});
  s.write(`POST http://127.0.0.1:${origin.port}/te HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\nTransfer-Encoding: ${te}\r\n\r\n${body}`);
  const res = (await readUntil(s, () => false, undefined, 'the proxy to close the connection')).toString('latin1');
  s.destroy();
  return res;
}

describe('an absolute-form request whose Transfer-Encoding is not chunked alone', () => {
  it('seeded family: a coding before chunked → 501, codings not ending in chunked → 400; never sent to the destination; one record each', { timeout: 120_000 }, async () => {
    await seededRun('forward request transfer codings', async (rand) => {
      const before = accessLines(p.lines).length;
      const sentBefore = origin.received.length;
      const cases: Array<[string, number]> = [];
      for (let k = 0; k < 6; k++) {
        const codings = shuffle(rand, CODINGS).slice(0, between(rand, 1, 2)).map((c) => spelled(rand, c));
        cases.push([[...codings, spelled(rand, 'chunked')].join(','), 501]);
        cases.push([codings.join(','), 400]);
        cases.push([[spelled(rand, 'chunked'), ...codings].join(','), 400]);
      }
      for (const [i, [te, want]] of cases.entries()) {
        const res = await send(te, '3\r\nabc\r\n0\r\n\r\n');
        const where = `case ${i}: Transfer-Encoding ${JSON.stringify(te)}; got ${JSON.stringify(res.slice(0, 300))}`;
        assert.match(res, new RegExp(`^HTTP/1\\.1 ${want} `), where);
        assert.match(res, /\r\nproxy-status: [^\r]*error=http_request_error/i, where);
        assert.equal(res.match(/^HTTP\/1\.1 /gm)?.length, 1, `one answer only: ${where}`);
        assert.ok(await waitFor(() => accessLines(p.lines).length >= before + i + 1), `the record of ${where}`);
      }
      assert.equal(origin.received.length - sentBefore, 0, 'the destination got a request');
      const lines = accessLines(p.lines).slice(before);
      assert.deepEqual(lines.map((l) => l.status), cases.map(([, want]) => want));
    });
  });

  it('control: chunked alone, in any case and spacing, is relayed with its body', { timeout: 60_000 }, async () => {
    await seededRun('forward chunked alone', async (rand) => {
      const sentBefore = origin.received.length;
      for (let k = 0; k < 4; k++) {
        const res = await send(spelled(rand, 'chunked'), '3\r\nabc\r\n0\r\n\r\n');
        assert.match(res, /^HTTP\/1\.1 200 /, res.slice(0, 200));
      }
      assert.equal(origin.received.length - sentBefore, 4);
    });
  });
});
