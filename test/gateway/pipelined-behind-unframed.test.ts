import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRun, between } from '../helpers/seeded.js';
import { readUntil } from '../forward/helpers.js';

/**
 * Adversarial review (framing), the reverse gateway's part: on an HTTP/1.0 keep-alive client
 * connection, GETs pipelined behind one whose answer has no length (read to its close, so the
 * connection ends after it) went upstream and were never answered. HTTP/1.0 requests of a
 * connection now run one at a time, and once an answer ends the connection the requests behind
 * it are not started, each recorded once (http/connection-order.ts), on both fronts.
 */

let upstream: ScriptedUpstream;
let bodyLength = 10;

before(async () => {
  upstream = await startRawUpstream(() => ({ bytes: `HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n${'b'.repeat(bodyLength)}`, close: true }));
});

after(async () => {
  await upstream?.close();
});

for (const front of ['node', 'net'] as const) {
  describe(`GETs pipelined on an HTTP/1.0 keep-alive connection behind an answer read to its close (${front} front)`, () => {
    let g: TestGateway;
    before(async () => {
      g = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      } as never);
    });
    after(async () => {
      await g?.close();
    });

    it('are never sent upstream; the client gets the first answer then the close; every request recorded once (seeded family)', { timeout: 120_000 }, async () => {
      await seededRun(`reverse pipelined behind unframed ${front}`, async (rand) => {
        const access = (): typeof g.logs => g.logs.filter((l) => l.type === 'access');
        const sizes = [4, 2, 3, 1, between(rand, 1, 4), between(rand, 1, 4)];
        for (const n of sizes) {
          bodyLength = between(rand, 0, 2000);
          const seen = upstream.received.length;
          const before = access().length;
          const s = connect(g.port, '127.0.0.1');
          s.on('error', () => {});
          await once(s, 'connect');
          let out = '';
          for (let i = 0; i < n; i++) out += `GET /${i} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`;
          s.write(out);
          const res = (await readUntil(s, () => false, undefined, 'the gateway to close the connection')).toString('latin1');
          s.destroy();
          const where = `${n} pipelined, body ${bodyLength}; got ${JSON.stringify(res.slice(0, 200))}`;
          assert.match(res, /^HTTP\/1\.1 200 /, where);
          assert.equal(res.match(/HTTP\/1\.1 \d{3} /g)?.length, 1, `exactly one answer: ${where}`);
          assert.ok(res.endsWith('b'.repeat(bodyLength)), where);
          await g.logWhere(() => access().length >= before + n, undefined, `${n} records: ${where}`);
          assert.deepEqual(upstream.received.slice(seen).map((r) => r.url), ['/0'], `only the first reaches the upstream: ${where}`);
          const lines = access().slice(before);
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
}
