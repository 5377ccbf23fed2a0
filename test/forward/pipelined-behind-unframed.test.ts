import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accessLines, basic, dial, readUntil, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRun, between } from '../helpers/seeded.js';

/**
 * Adversarial review (framing): on an HTTP/1.0 keep-alive connection, GETs pipelined behind
 * one whose answer has no Content-Length (read to its close, so the connection ends after it)
 * were sent to the destination, and their clients never got an answer. A request that can
 * never be answered is not forwarded: HTTP/1.0 requests of a connection run one at a time,
 * and once an answer ends the connection, the requests behind it are not started, each
 * recorded once as never started (http/connection-order.ts).
 */

let p: TestProxy;
let origin: ScriptedUpstream;
let bodyLength = 10;

before(async () => {
  p = await startTestProxy();
  // An HTTP/1.0 answer with no length: its body runs to the close.
  origin = await startRawUpstream(() => ({ bytes: `HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n${'b'.repeat(bodyLength)}`, close: true }));
});

after(async () => {
  await p?.close();
  await origin?.close();
});

describe('GETs pipelined on an HTTP/1.0 keep-alive connection behind an answer read to its close', () => {
  it('are never sent; the client gets the first answer then the close; every request recorded once (seeded family)', { timeout: 120_000 }, async () => {
    await seededRun('forward pipelined behind unframed', async (rand) => {
      const sizes = [4, 2, 3, 1, between(rand, 1, 4), between(rand, 1, 4)];
      for (const n of sizes) {
        bodyLength = between(rand, 0, 2000);
        const seen = origin.received.length;
        const before = accessLines(p.lines).length;
        const s = await dial(p.port);
        s.on('error', () => {});
        let out = '';
        for (let i = 0; i < n; i++) out += `GET http://127.0.0.1:${origin.port}/${i} HTTP/1.0\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: keep-alive\r\n\r\n`;
        s.write(out);
        const res = (await readUntil(s, () => false, undefined, 'the proxy to close the connection')).toString('latin1');
        s.destroy();
        const where = `${n} pipelined, body ${bodyLength}; got ${JSON.stringify(res.slice(0, 200))}`;
        assert.match(res, /^HTTP\/1\.1 200 /, where);
        assert.equal(res.match(/HTTP\/1\.1 \d{3} /g)?.length, 1, `exactly one answer: ${where}`);
        assert.ok(res.endsWith('b'.repeat(bodyLength)) && !/content-length/i.test(res), where);
        assert.ok(await waitFor(() => accessLines(p.lines).length >= before + n), `${n} records: ${where}`);
        assert.deepEqual(origin.received.slice(seen).map((r) => r.url), ['/0'], `only the first reaches the destination: ${where}`);
        const lines = accessLines(p.lines).slice(before);
        assert.equal(lines.length, n, JSON.stringify(lines));
        assert.equal(lines.filter((l) => l.status === 200).length, 1, JSON.stringify(lines));
        for (const l of lines.filter((x) => x.status !== 200)) {
          assert.equal(l.method, 'GET', JSON.stringify(l));
          assert.equal(l.endedBy, 'gateway', JSON.stringify(l));
          assert.match(String(l.detail), /not forwarded/, JSON.stringify(l));
        }
      }
    });
  });
});
