import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, it } from 'node:test';
import { sendFailure } from '../../src/forward/http-failure.js';
import { Failure } from '../../src/failure/index.js';
import { fieldOnAnswer, startPiecewiseUpstream, type PiecewiseUpstream } from '../helpers/piecewise-upstream.js';
import { replayRaw } from '../helpers/raw-http.js';
import { between, seededRun } from '../helpers/seeded.js';
import { basic, startTestProxy, type TestProxy } from './helpers.js';

/**
 * SSRF audit (session 41), noticed: a destination's answer that announces trailers (`Trailer:
 * X-Checksum`) but cannot carry them (a Content-Length body, a HEAD's, a 204 or 304, an answer
 * to an HTTP/1.0 client) was a 502 from the forward proxy: node:http's writeHead throws
 * ERR_HTTP_TRAILER_INVALID for such a head, and the relay took it for a malformed answer.
 * RFC 9110 §6.6.2 makes the field a hint; it is now dropped where it cannot hold (the reverse
 * gateway's own test: test/gateway/trailer-field-unchunked.test.ts). And the 502 that followed
 * said `HTTP/1.1 502 OK`: the failed writeHead had left the answer's reason phrase behind.
 */

/** What sendFailure reads of a proxy's context (its settings for the rendered answer). */
const FAILURE_CONTEXT = { settings: { name: 'gatewise', revealDetails: false, problemTypeBase: undefined, realm: 'proxy' } } as never;

const NAMES = ['X-Checksum', 'Server-Timing', 'Digest', 'x-a, x-b'];

let p: TestProxy;
let up: PiecewiseUpstream;

before(async () => {
  p = await startTestProxy();
  up = await startPiecewiseUpstream(fieldOnAnswer);
});

after(async () => {
  await p?.close();
  await up?.close();
});

it('a Trailer field on an answer that cannot carry trailers is relayed without it, not a 502 (seeded: framing, body length, casing, client version)', { timeout: 120_000 }, async () => {
  await seededRun('forward Trailer on unchunked answers', async (rand) => {
    const failed: string[] = [];
    for (let k = 0; k < 16; k++) {
      const kind = ['cl', 'head', '204', '304'][k % 4]!;
      const version = k % 8 < 4 ? '1.1' : '1.0';
      const n = between(rand, 0, 5000);
      const f = ['Trailer', 'trailer', 'TRAILER'][between(rand, 0, 2)]!;
      const v = NAMES[between(rand, 0, NAMES.length - 1)]!;
      const method = kind === 'head' ? 'HEAD' : 'GET';
      const target = `http://127.0.0.1:${up.port}/t?k=${kind}&n=${n}&f=${f}&v=${encodeURIComponent(v)}`;
      const r = await replayRaw(`${method} ${target} HTTP/${version}\r\nHost: 127.0.0.1:${up.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`, { port: p.port, deadlineMs: 5000, head: method === 'HEAD' });
      const res = r.responses[0];
      const want = kind === '204' ? 204 : kind === '304' ? 304 : 200;
      const wantBody = kind === 'cl' ? n : 0;
      const trailerKept = res?.headers.some(([name]) => name.toLowerCase() === 'trailer');
      const got = res === undefined ? `no answer (${r.end})` : `${res.status} body ${res.body.length} trailer field ${String(trailerKept)}`;
      if (res === undefined || res.status !== want || res.body.length !== wantBody || trailerKept) failed.push(`HTTP/${version} ${method} ${kind} n=${n} "${f}: ${v}": want ${want} body ${wantBody} and no Trailer field, got ${got}`);
    }
    assert.deepEqual(failed, []);
  });
});

it("a failure written after node:http refused the answer's head carries the failure's own reason phrase, not the refused answer's", { timeout: 30_000 }, async () => {
  let server: Server | undefined;
  try {
    server = createServer((req, res) => {
      try {
        // What the relay met: Node refuses this head after it has taken its status line's reason.
        res.writeHead(200, 'OK', ['Trailer', 'X-Checksum', 'Content-Length', '1']);
      } catch {
        // as the relay's catch
      }
      sendFailure(FAILURE_CONTEXT, req, res, new Failure({ type: 'http_protocol_error', phase: 'headers', detail: 'the response head cannot be passed on' }), 'id-1');
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const r = await replayRaw('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { port: (server.address() as AddressInfo).port, deadlineMs: 5000 });
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  } finally {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
  }
});
