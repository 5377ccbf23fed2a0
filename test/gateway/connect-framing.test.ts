import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { it } from 'node:test';
import { describeOnBothFronts } from '../helpers/gateway.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRun, between } from '../helpers/seeded.js';
import { readUntil } from '../forward/helpers.js';

/**
 * Adversarial review (framing): the forward proxy took a CONNECT with content framing as a
 * tunnel (test/forward/connect-framing.test.ts). The reverse gateway serves no CONNECT: such a
 * request, with Content-Length or Transfer-Encoding and bytes behind its head, is refused by
 * method (405; the net front's parser refuses a Transfer-Encoding not ending in chunked first,
 * 400), the connection closed, recorded once, and nothing behind it reaches the upstream, on
 * both fronts (node:http, and `front: net` with its own parser). A guard: it passed before the
 * forward proxy's fix, the reverse gateway had no such hole.
 */

describeOnBothFronts(
  (front) => `a CONNECT with content framing on the reverse gateway (${front} front)`,
  () =>
    startScriptedUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    }),
  (front, rig) => {
    it('is refused 405, closed, recorded once, and the request smuggled behind it never reaches the upstream (seeded family)', { timeout: 120_000 }, async () => {
      await seededRun(`reverse connect-framing ${front}`, async (rand) => {
        const { gateway: g, upstream } = rig;
        const seen = upstream.received.length;
        const before = g.logs.filter((l) => l.type === 'access').length;
        const n = 6;
        for (let i = 0; i < n; i++) {
          const smuggled = `GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n`;
          const field = rand() < 0.5 ? `${rand() < 0.5 ? 'Content-Length' : 'content-length'}: ${smuggled.length}` : `${rand() < 0.5 ? 'Transfer-Encoding' : 'TRANSFER-ENCODING'}: ${['chunked', 'gzip, chunked', 'identity'][between(rand, 0, 2)]}`;
          const s: Socket = connect(g.port, '127.0.0.1');
          s.on('error', () => {});
          await once(s, 'connect');
          s.write(`CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nHost: 127.0.0.1:${upstream.port}\r\n${field}\r\n\r\n${smuggled}`);
          const res = (await readUntil(s, () => false, undefined, 'the gateway to close the connection')).toString('latin1');
          s.destroy();
          const where = `${field}; got ${JSON.stringify(res.slice(0, 300))}`;
          // 405 by method; the net front's parser refuses a Transfer-Encoding not ending in chunked first (400), as for any method.
          assert.match(res, /^HTTP\/1\.1 (405|400) /, where);
          assert.equal(res.match(/^HTTP\/1\.1 /gm)?.length, 1, `one answer only: ${where}`);
          await g.logWhere(() => g.logs.filter((l) => l.type === 'access').length >= before + i + 1);
        }
        const lines = g.logs.filter((l) => l.type === 'access').slice(before);
        assert.equal(lines.length, n, JSON.stringify(lines));
        for (const l of lines) assert.ok(l.status === 405 || l.status === 400, JSON.stringify(l));
        assert.equal(upstream.received.length, seen, JSON.stringify(upstream.received.slice(seen)));
      });
    });
  },
);
