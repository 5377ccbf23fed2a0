import { it } from 'node:test';
import { describeOnBothFronts, startOneUpstreamGateway } from '../helpers/gateway.js';
import { seededRun } from '../helpers/seeded.js';
import { pipelinedBehindUnframed, startUnframedOrigin, type UnframedOrigin } from '../helpers/unframed-pipelining.js';

/**
 * Adversarial review (framing), the reverse gateway's part: on an HTTP/1.0 keep-alive client
 * connection, GETs pipelined behind one whose answer has no length (read to its close, so the
 * connection ends after it) went upstream and were never answered. HTTP/1.0 requests of a
 * connection now run one at a time, and once an answer ends the connection the requests behind
 * it are not started, each recorded once (http/connection-order.ts), on both fronts. The family
 * is shared with the forward proxy's (test/helpers/unframed-pipelining.ts).
 */

let origin: UnframedOrigin;

describeOnBothFronts(
  (front) => `GETs pipelined on an HTTP/1.0 keep-alive connection behind an answer read to its close (${front} front)`,
  async () => (origin = await startUnframedOrigin()).upstream,
  (front, rig) => {
    it('are never sent upstream; the client gets the first answer then the close; every request recorded once (seeded family)', { timeout: 120_000 }, async () => {
      await seededRun(`reverse pipelined behind unframed ${front}`, async (rand) => {
        const g = rig.gateway;
        await pipelinedBehindUnframed(rand, {
          origin,
          port: g.port,
          request: (i) => `GET /${i} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`,
          access: () => g.logs.filter((l) => l.type === 'access'),
          waitRecords: async (cond, what) => void (await g.logWhere(cond, undefined, what)),
          face: 'gateway',
          originName: 'upstream',
        });
      });
    });
  },
  (front, upstream) => startOneUpstreamGateway(upstream.url, { listener: { front } }),
);
