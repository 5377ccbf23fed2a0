import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, type Lab } from '../../src/lab/index.js';
import { accessRecord, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawH2, T, frame, headerBlock, rstStream } from '../helpers/h2-frames.js';
import { until } from '../helpers/until.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * A stream the client resets before its answer is recorded `endedBy: client` with the
 * RST_STREAM code in `detail`, whatever the code, NO_ERROR included; a connection that goes
 * away is recorded as such. Finding (adversarial review of the h2 front): a stream reset with
 * RST_STREAM(NO_ERROR) was recorded as "the client closed the HTTP/2 connection", though the
 * connection stayed open (Node gives such a stream the rstCode 0 a stream of a closed
 * session has too).
 */

const NAMES = ['NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED'];

async function withGateway(fn: (gw: TestGateway, lab: Lab) => Promise<void>): Promise<void> {
  const lab = await startLab();
  let gw: TestGateway | undefined;
  try {
    gw = await startTestGateway({ listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }], clusters: { lab: { endpoints: [lab.url] } }, routes: [{ cluster: 'lab', retry: { tries: 1 } }] });
    await fn(gw, lab);
  } finally {
    await gw?.close();
    await lab.close();
  }
}

describe('HTTP/2: a stream the client resets is recorded as reset, with its code', () => {
  test('seeded family: any RST_STREAM code (NO_ERROR included, unknown codes too), waiting for the upstream or with the body in flight → endedBy client, detail names the code; the connection is not said closed', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`client-reset seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    await withSeed(rand, async () => {
      await withGateway(async (gw, lab) => {
        for (let round = 0; round < 14; round++) {
          const code = round === 0 ? 0 : rand.next() < 0.8 ? rand.int(NAMES.length) : 14 + rand.int(0xffff);
          const withBody = rand.next() < 0.5;
          const tag = `r${rand.seed}x${round}`;
          const path = withBody ? `/upload?${tag}` : `/slow?ms=20000&${tag}`;
          const what = `RST_STREAM ${code}, ${withBody ? 'body in flight' : 'waiting for the upstream'}`;
          const seen0 = lab.stats.requests;
          const c = new RawH2(gw.port);
          try {
            const head = frame(T.HEADERS, withBody ? 0x4 : 0x5, 1, headerBlock({ method: withBody ? 'POST' : 'GET', path }));
            await c.write(withBody ? Buffer.concat([head, frame(T.DATA, 0, 1, Buffer.from('{"partial": '))]) : head);
            assert.ok(await until(() => lab.stats.requests > seen0, 10_000, 5), `${what}: the request never reached the upstream`);
            await c.write(rstStream(1, code));
            const line = await accessRecord(gw, (l) => typeof l.path === 'string' && l.path.includes(tag), 10_000);
            assert.ok(line, `${what}: no record`);
            assert.equal(line.endedBy, 'client', `${what}: endedBy`);
            assert.equal(line.detail, `the client reset the HTTP/2 stream (RST_STREAM ${NAMES[code] ?? code})`, `${what}: detail`);
            assert.equal(c.closed, false, `${what}: the connection closed`);
          } finally {
            c.destroy();
          }
        }
      });
    });
  });

  test('the connection closed with a stream open: recorded as the connection gone', { timeout: 60_000 }, async () => {
    await withGateway(async (gw, lab) => {
      const seen0 = lab.stats.requests;
      const c = new RawH2(gw.port);
      try {
        await c.write(frame(T.HEADERS, 0x5, 1, headerBlock({ path: '/slow?ms=20000&gone' })));
        assert.ok(await until(() => lab.stats.requests > seen0, 10_000, 5), 'the request never reached the upstream');
      } finally {
        c.destroy();
      }
      const line = await accessRecord(gw, (l) => typeof l.path === 'string' && l.path.includes('gone'), 10_000);
      assert.ok(line, 'no record');
      assert.equal(line.endedBy, 'client');
      assert.match(String(line.detail), /^the client closed the HTTP\/2 connection/);
    });
  });
});
