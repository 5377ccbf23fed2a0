import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accessLines, basic, dial, readUntil, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRun } from '../helpers/seeded.js';
import { http10TeCases } from '../http/http10-te-cases.js';

/**
 * Adversarial review (framing): an HTTP/1.0 request with `Transfer-Encoding: chunked` was
 * accepted and re-framed for the destination. RFC 9112 §6.1: a server that receives an
 * HTTP/1.0 message with Transfer-Encoding must treat its framing as faulty, even with
 * Content-Length, and close the connection (nginx answers 400). Now 400, closed, nothing sent
 * to the destination, one record (src/http/framing.ts).
 */

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

describe('an HTTP/1.0 absolute-form request with Transfer-Encoding', () => {
  it('is refused 400, closed, never sent to the destination, recorded once (seeded family)', { timeout: 120_000 }, async () => {
    await seededRun('forward http/1.0 transfer-encoding', async (rand) => {
      const family = http10TeCases(rand);
      const before = accessLines(p.lines).length;
      for (const [i, c] of family.entries()) {
        const s = await dial(p.port);
        s.on('error', () => {});
        s.write(`POST http://127.0.0.1:${origin.port}/te HTTP/1.0\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: keep-alive\r\n${c.fields}\r\n${c.body}`);
        const res = (await readUntil(s, () => false, undefined, 'the proxy to close the connection')).toString('latin1');
        s.destroy();
        const where = `case ${i}: ${JSON.stringify(c)}; got ${JSON.stringify(res.slice(0, 300))}`;
        assert.match(res, /^HTTP\/1\.1 400 /, where);
        assert.match(res, /\r\nproxy-status: [^\r]*error=http_request_error/i, where);
        assert.equal(res.match(/^HTTP\/1\.1 /gm)?.length, 1, `one answer only: ${where}`);
        assert.ok(await waitFor(() => accessLines(p.lines).length >= before + i + 1), `the record of ${where}`);
      }
      assert.deepEqual(origin.received, [], 'the destination got a request');
      // One 400 per refused request (llhttp's own where it refuses first: Transfer-Encoding with
      // Content-Length); a GET pipelined behind one, if the parser got to it, only its never-started line.
      const lines = accessLines(p.lines).slice(before);
      assert.equal(lines.filter((l) => l.status === 400).length, family.length, JSON.stringify(lines));
      for (const l of lines.filter((x) => x.status !== 400)) assert.ok(l.method === 'GET' && /not forwarded/.test(String(l.detail)), JSON.stringify(l));
    });
  });
});
