import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { certDir } from '../helpers/tls-certs.js';
import { E, FLAG, RawH2, T, errorCode, frame, headerBlock, rstStream } from '../helpers/h2-frames.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Streams of an HTTP/2 connection the gateway itself closes are recorded as ended by the
 * gateway, with the failure type of why it closed the connection, never as the client's
 * reset. Finding: every stream still open when the gateway destroyed its session (the drain
 * timeout at shutdown, a connection error it found in the client's frames, the rapid-reset
 * close) was recorded `endedBy: client`, "the client reset the HTTP/2 stream (RST_STREAM
 * INTERNAL_ERROR)" or "the client closed the HTTP/2 connection", and a stream cut before its
 * head was counted a 499. Seeded over the cause, the moment (the upstream holds the head, or
 * the body is being streamed) and the listener (h2c or TLS).
 */

const MAX_RESETS = 10;
type Cause = 'shutdown' | 'protocol' | 'rapid-reset';
const EXPECTED: Record<Cause, { error: string; reason: string | undefined; goaway: number }> = {
  shutdown: { error: 'proxy_internal_error', reason: undefined, goaway: E.INTERNAL_ERROR },
  protocol: { error: 'http_request_error', reason: undefined, goaway: E.PROTOCOL_ERROR },
  'rapid-reset': { error: 'http_request_denied', reason: 'too_many_requests', goaway: E.ENHANCE_YOUR_CALM },
};

describe('HTTP/2: streams of a connection the gateway closes are ended by the gateway', () => {
  test('seeded family: shutdown, protocol error, rapid reset × waiting for the head or in the body × h2c or TLS → endedBy gateway, the cause\'s error type', { timeout: 180_000 }, async () => {
    const rand = seededRandom();
    console.log(`gateway-closed seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    const dir = certDir();
    try {
      const ca = dir.ca('Gateway closed CA');
      const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
      await withSeed(rand, async () => {
        for (let i = 0; i < 9; i++) {
          const cause = (['shutdown', 'protocol', 'rapid-reset'] as const)[i % 3]!;
          const moment = rand.pick(['head', 'body'] as const);
          const tls = rand.next() < 0.5;
          const path = `/held-${rand.seed}-${i}`;
          const where = `case ${i}: ${cause}, ${tls ? 'TLS' : 'h2c'}, the stream ${moment === 'head' ? 'waiting for its head' : 'in its body'}`;
          let arrived: (res: ServerResponse) => void = () => {};
          const held = new Promise<ServerResponse>((r) => (arrived = r));
          const up = http.createServer((_req: IncomingMessage, res: ServerResponse) => arrived(res));
          let gw: TestGateway | undefined;
          let c: RawH2 | undefined;
          let res: ServerResponse | undefined;
          const records = endedRecords();
          try {
            await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
            const h2 = { maxResets: MAX_RESETS, resetWindow: '60s' };
            gw = await startTestGateway({
              listeners: [
                { address: '127.0.0.1', port: 0, http2: { ...h2, h2c: true } },
                { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] }, http2: h2 },
              ],
              clusters: { up: { endpoints: [`http://127.0.0.1:${(up.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
              routes: [{ cluster: 'up', retry: { tries: 1 } }],
              shutdown: { drainTimeout: '200ms' },
            });
            const port = tls ? (gw.gw.addresses()[1] as { port: number }).port : gw.port;
            c = new RawH2(port, tls ? { ca: ca.cert, servername: 'localhost' } : undefined);
            await c.write(frame(T.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, headerBlock({ path })));
            res = await within(held, 10_000, `${where}: the request upstream`);
            if (moment === 'body') {
              res.writeHead(200, { 'content-length': '100000' });
              res.write(Buffer.alloc(1000));
              assert.ok(await c.until((fs) => fs.some((f) => f.type === T.HEADERS && f.stream === 1), 10_000), `${where}: the head at the client`);
            }
            let closing: Promise<void> | undefined;
            if (cause === 'shutdown') closing = gw.close();
            else if (cause === 'protocol') await c.write(frame(T.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 2, headerBlock({ path: '/even' })));
            else {
              const ids = Array.from({ length: MAX_RESETS + 1 }, (_, k) => 3 + 2 * k);
              await c.write(Buffer.concat(ids.flatMap((id) => [frame(T.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, headerBlock({ path: `/flood-${i}-${id}` })), rstStream(id, E.CANCEL)])));
            }
            // (At shutdown a GOAWAY NO_ERROR comes first, as the drain begins.)
            const goaway = EXPECTED[cause].goaway;
            assert.ok(await c.until((fs) => fs.some((f) => f.type === T.GOAWAY && errorCode(f) === goaway), 10_000), `${where}: no GOAWAY ${goaway} (GOAWAY ${c.frames.filter((f) => f.type === T.GOAWAY).map(errorCode).join(', ')})`);
            const r = await within(records.wait((x) => x.path === path), 10_000, `${where}: the record`);
            assert.equal(r.endedBy, 'gateway', `${where}: endedBy (detail: ${r.detail})`);
            assert.equal(r.error, EXPECTED[cause].error, `${where}: error`);
            assert.equal(r.reason, EXPECTED[cause].reason, `${where}: reason`);
            assert.equal(r.status, moment === 'head' ? undefined : 200, `${where}: status`);
            assert.match(String(r.detail), /^the gateway closed the HTTP\/2 connection/, `${where}: detail`);
            await closing;
          } finally {
            records.close();
            c?.destroy();
            res?.destroy();
            await gw?.close();
            up.closeAllConnections();
            await new Promise<void>((r) => up.close(() => r()));
          }
        }
      });
    } finally {
      dir.remove();
    }
  });
});
