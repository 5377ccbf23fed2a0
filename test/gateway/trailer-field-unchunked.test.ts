import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startOneUpstreamGateway } from '../helpers/gateway.js';
import { fieldOnAnswer, startPiecewiseUpstream } from '../helpers/piecewise-upstream.js';
import { replayRaw } from '../helpers/raw-http.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * An upstream answer that announces trailers (`Trailer: X-Checksum`) but is framed so it can
 * carry none: a Content-Length body, or no body at all (HEAD, 204, 304). RFC 9110 §6.6.2 makes
 * the field a hint (a sender SHOULD send it; a recipient cannot rely on the trailers coming),
 * and nginx passes such answers on. node:http's writeHead throws ERR_HTTP_TRAILER_INVALID for a
 * Trailer field on any answer it does not send chunked, so the gateway answered 502
 * `http_protocol_error` ("a header the gateway cannot forward") for a sound answer. Found
 * reading the SSRF audit's note (its forward relay showed the same). The field now goes only
 * with an answer that can carry trailers.
 */

const NAMES = ['X-Checksum', 'Server-Timing', 'Digest', 'x-a, x-b'];

for (const front of ['node', 'net'] as const) {
  test(`${front} front: a Trailer field on an answer that cannot carry trailers is not a 502 (seeded: framing, body length, field casing)`, { timeout: 120_000 }, async () => {
    const upstream = await startPiecewiseUpstream(fieldOnAnswer);
    const gw = await startOneUpstreamGateway(upstream.port, { listener: { front } });
    try {
      await seededRun(`${front} front, Trailer on unchunked answers`, async (rand) => {
        const failed: string[] = [];
        for (let k = 0; k < 12; k++) {
          const kind = ['cl', 'head', '204', '304'][k % 4]!;
          const n = between(rand, 0, 5000);
          const f = ['Trailer', 'trailer', 'TRAILER'][between(rand, 0, 2)]!;
          const v = NAMES[between(rand, 0, NAMES.length - 1)]!;
          const method = kind === 'head' ? 'HEAD' : 'GET';
          const path = `/t?k=${kind}&n=${n}&f=${f}&v=${encodeURIComponent(v)}`;
          const r = await replayRaw(`${method} ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`, { port: gw.port, deadlineMs: 5000, head: method === 'HEAD' });
          const res = r.responses[0];
          const want = kind === '204' ? 204 : kind === '304' ? 304 : 200;
          const got = res === undefined ? `no answer (${r.end})` : `${res.status} body ${res.body.length}`;
          const wantBody = kind === 'cl' ? n : 0;
          if (res === undefined || res.status !== want || res.body.length !== wantBody) failed.push(`${method} ${kind} n=${n} "${f}: ${v}": want ${want} body ${wantBody}, got ${got}`);
        }
        assert.deepEqual(failed, []);
      });
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
}

/**
 * The cache's side of it: a cacheable chunked answer with a Trailer field and trailers was
 * stored with the field, and every hit (a whole stored body, written with its length) was a
 * 500 on the node front, as node:http refused the head. Hits now go without the field (the
 * trailers are not stored); the miss keeps it and its trailers.
 */
for (const front of ['node', 'net'] as const) {
  test(`${front} front: hits of a stored answer that had a Trailer field are answered, without the field (seeded body)`, { timeout: 60_000 }, async () => {
    await seededRun(`${front} front, stored Trailer`, async (rand) => {
      const body = 'c'.repeat(between(rand, 1, 4000));
      const upstream = await startPiecewiseUpstream(() => ({
        pieces: [`HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n`, `${body.length.toString(16)}\r\n${body}\r\n0\r\nX-Sum: 1\r\n\r\n`],
      }));
      const gw = await startOneUpstreamGateway(upstream.port, { listener: { front }, route: { cache: { collapseWait: '0s' } } });
      try {
        const failed: string[] = [];
        for (const [i, method] of ['GET', 'GET', 'HEAD', 'GET'].entries()) {
          const r = await replayRaw(`${method} /s HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`, { port: gw.port, deadlineMs: 5000, head: method === 'HEAD' });
          const res = r.responses[0];
          const trailerField = res?.headers.some(([n]) => n.toLowerCase() === 'trailer') ?? false;
          const want = method === 'HEAD' ? '' : body;
          const ok = res !== undefined && res.status === 200 && res.body.toString('latin1') === want && trailerField === (i === 0);
          if (!ok) failed.push(`${i} ${method}: ${res === undefined ? `no answer (${r.end})` : `${res.status} body ${res.body.length} trailer field ${String(trailerField)}`}`);
        }
        assert.deepEqual(failed, []);
        assert.equal(upstream.requests.length, 1, 'one trip upstream: the rest were hits');
      } finally {
        await gw.close();
        await upstream.close();
      }
    });
  });
}
