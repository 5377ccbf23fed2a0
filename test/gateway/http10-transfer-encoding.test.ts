import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { it } from 'node:test';
import { describeOnBothFronts } from '../helpers/gateway.js';
import { startScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRun } from '../helpers/seeded.js';
import { readUntil } from '../forward/helpers.js';
import { http10TeCases } from '../http/http10-te-cases.js';

/**
 * Adversarial review (framing): an HTTP/1.0 request with Transfer-Encoding was accepted and
 * re-framed for the upstream. RFC 9112 §6.1: its framing is faulty, even with Content-Length,
 * and the connection must close (nginx answers 400). On both fronts of the reverse gateway
 * (node:http, and `front: net` with its own parser): 400, closed, nothing reaches the
 * upstream, one record per refused request (src/http/framing.ts).
 */

describeOnBothFronts(
  (front) => `an HTTP/1.0 request with Transfer-Encoding on the reverse gateway (${front} front)`,
  () =>
    startScriptedUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-length': '2' });
        res.end('ok');
      });
    }),
  (front, rig) => {
    it('is refused 400, closed, never sent upstream, recorded once (seeded family)', { timeout: 120_000 }, async () => {
      await seededRun(`reverse http/1.0 transfer-encoding ${front}`, async (rand) => {
        const { gateway: g, upstream } = rig;
        const family = http10TeCases(rand);
        const seen = upstream.received.length;
        const access = (): typeof g.logs => g.logs.filter((l) => l.type === 'access');
        const before = access().length;
        const refused = (): number => access().filter((l) => l.status === 400).length;
        const refusedBefore = refused();
        for (const [i, c] of family.entries()) {
          const s = connect(g.port, '127.0.0.1');
          s.on('error', () => {});
          await once(s, 'connect');
          s.write(`POST /te HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n${c.fields}\r\n${c.body}`);
          const res = (await readUntil(s, () => false, undefined, 'the gateway to close the connection')).toString('latin1');
          s.destroy();
          const where = `case ${i}: ${JSON.stringify(c)}; got ${JSON.stringify(res.slice(0, 300))}`;
          assert.match(res, /^HTTP\/1\.1 400 /, where);
          assert.match(res, /\r\nproxy-status: [^\r]*error=http_request_error/i, where);
          assert.equal(res.match(/^HTTP\/1\.1 /gm)?.length, 1, `one answer only: ${where}`);
          await g.logWhere(() => refused() >= refusedBefore + i + 1, undefined, `the record of ${where}`);
        }
        assert.deepEqual(upstream.received.slice(seen), [], 'the upstream got a request');
        const lines = access().slice(before);
        assert.equal(lines.filter((l) => l.status === 400).length, family.length, JSON.stringify(lines));
        // A GET pipelined behind one, if the parser got to it: only its own never-started line.
        for (const l of lines.filter((x) => x.status !== 400)) assert.equal(l.method, 'GET', JSON.stringify(l));
      });
    });
  },
);
