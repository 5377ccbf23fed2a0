import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2, { constants } from 'node:http2';
import test from 'node:test';
import { H2StreamWatch, h2NotProcessed, noteGoaway } from '../../src/pool/h2-streams.js';
import { between, seededRun } from '../helpers/seeded.js';
import { startH2cUpstream } from '../helpers/h2c-upstream.js';

/**
 * `h2NotProcessed` against what Node's HTTP/2 client really leaves on a stream (review of
 * session 39): when the session ends on a GOAWAY, Node gives each stream it destroys the
 * GOAWAY's error code as its `rstCode`. A GOAWAY with code REFUSED_STREAM whose last-stream-id
 * covers a stream made that stream look refused (RST_STREAM REFUSED_STREAM: not processed), so
 * a POST the upstream may have processed was sent again. Real node:http2 server and client on
 * loopback; seeded over the GOAWAY's code, how many streams are open and how many it covers.
 */
/** The stream's end, error or not (`once` would reject on its 'error'). */
function closed(s: http2.ClientHttp2Stream): Promise<void> {
  return s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

test('a stream a GOAWAY covers is never taken for a refused one, whatever the GOAWAY\'s code; one above its last-stream-id, and one reset REFUSED_STREAM, are', { timeout: 60_000 }, async () => {
  await seededRun('h2 not processed', async (rand) => {
    for (let round = 0; round < 12; round++) {
      const code = [constants.NGHTTP2_NO_ERROR, constants.NGHTTP2_INTERNAL_ERROR, constants.NGHTTP2_REFUSED_STREAM][round % 3]!;
      const k = between(rand, 1, 4);
      const covered = between(rand, 1, k);
      const refuseOne = round % 2 === 1 && covered > 1;
      const streams: http2.ServerHttp2Stream[] = [];
      const up = await startH2cUpstream((s) => streams.push(s));
      const session = http2.connect(up.url);
      session.on('error', () => {});
      const watch = new H2StreamWatch();
      session.prependListener('goaway', (c: number, last: number) => noteGoaway(watch, c, last));
      // As undici does on any GOAWAY: the session is destroyed, every stream on it with it.
      session.on('goaway', () => session.destroy());
      try {
        const client = Array.from({ length: k }, () => {
          const s = session.request({ ':method': 'POST', ':path': '/' });
          s.on('error', () => {});
          s.write('x');
          return s;
        });
        while (streams.length < k) await once(up.server, 'stream');
        const sorted = [...streams].sort((a, b) => a.id! - b.id!);
        const serverSession = sorted[0]!.session!;
        // The first stream refused with a real RST_STREAM, before the GOAWAY (refuseOne).
        if (refuseOne) {
          sorted[0]!.close(constants.NGHTTP2_REFUSED_STREAM);
          await closed(client.find((c) => c.id === sorted[0]!.id)!);
        }
        const last = sorted[covered - 1]!.id!;
        serverSession.goaway(code, last);
        await Promise.all(client.map(closed));
        for (const c of client) {
          const what = `round ${round}: GOAWAY code ${code} last-stream-id ${last}, stream ${c.id} (rstCode ${c.rstCode}), ${k} open${refuseOne ? `, stream ${sorted[0]!.id} refused first` : ''}`;
          const verdict = h2NotProcessed(c, watch);
          if (refuseOne && c.id === sorted[0]!.id) {
            // A real RST_STREAM REFUSED_STREAM; but after a GOAWAY with that very code the
            // stream's rstCode cannot tell it from the GOAWAY's: taken as maybe processed (no retry).
            if (code === constants.NGHTTP2_REFUSED_STREAM) assert.equal(verdict, undefined, `${what}: indistinguishable from the GOAWAY's code`);
            else assert.equal(verdict?.streamOnly, true, `${what}: a real REFUSED_STREAM`);
          } else if (c.id! > last) {
            assert.ok(verdict !== undefined && !verdict.streamOnly, `${what}: above last-stream-id, not processed`);
          } else {
            assert.equal(verdict, undefined, `${what}: covered by the GOAWAY, may have been processed`);
          }
        }
      } finally {
        session.destroy();
        await up.close();
      }
    }
  });
});
