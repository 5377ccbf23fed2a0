import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accessLines, basic, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { seededRun } from '../helpers/seeded.js';
import { pipelinedBehindUnframed, startUnframedOrigin, type UnframedOrigin } from '../helpers/unframed-pipelining.js';

/**
 * Adversarial review (framing): on an HTTP/1.0 keep-alive connection, GETs pipelined behind
 * one whose answer has no Content-Length (read to its close, so the connection ends after it)
 * were sent to the destination, and their clients never got an answer. A request that can
 * never be answered is not forwarded: HTTP/1.0 requests of a connection run one at a time,
 * and once an answer ends the connection, the requests behind it are not started, each
 * recorded once as never started (http/connection-order.ts). The family is shared with the
 * reverse gateway's (test/helpers/unframed-pipelining.ts).
 */

let p: TestProxy;
let origin: UnframedOrigin;

before(async () => {
  p = await startTestProxy();
  origin = await startUnframedOrigin();
});

after(async () => {
  await p?.close();
  await origin?.upstream.close();
});

describe('GETs pipelined on an HTTP/1.0 keep-alive connection behind an answer read to its close', () => {
  it('are never sent; the client gets the first answer then the close; every request recorded once (seeded family)', { timeout: 120_000 }, async () => {
    await seededRun('forward pipelined behind unframed', async (rand) => {
      await pipelinedBehindUnframed(rand, {
        origin,
        port: p.port,
        request: (i) => `GET http://127.0.0.1:${origin.upstream.port}/${i} HTTP/1.0\r\nHost: 127.0.0.1:${origin.upstream.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: keep-alive\r\n\r\n`,
        access: () => accessLines(p.lines),
        waitRecords: async (cond, what) => assert.ok(await waitFor(cond), what),
        face: 'proxy',
        originName: 'destination',
        noLength: true,
      });
    });
  });
});
