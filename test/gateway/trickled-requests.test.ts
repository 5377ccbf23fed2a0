import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn } from '../helpers/raw-conn.js';
import { seededRun } from '../helpers/seeded.js';

/**
 * Requests that arrive a few bytes per read, on both fronts (adversarial review, session 26).
 * The net front appends each read to a buffer grown by doubling instead of copying all
 * unparsed bytes again per read (a head trickled in small reads cost time quadratic in its
 * length), and its head parser checks only what a read added to a line. Body pieces already
 * handed to the exchange are views of that buffer, so a later append must never change them:
 * here pipelined requests with bodies (Content-Length and chunked, 0 B – 20 KiB) are cut into
 * seeded pieces of 1 B – 2 KiB, each written on its own, and the origin's digest of every body
 * must be the one the client sent, in order. What the trickling costs is measured by
 * `npm run bench:trickle` (docs/benchmarks.md §40), not here.
 */

let origin: Server;
let originUrl = '';

before(async () => {
  origin = createServer((req, res) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    req.on('end', () => {
      const body = `${req.url} ${n} ${h.digest('hex')}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
});

after(async () => {
  origin.closeAllConnections();
  await new Promise<void>((r) => origin.close(() => r()));
});

function bodyOf(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: pipelined requests written a few bytes at a time`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: { origin: { endpoints: [originUrl], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'origin' }],
      });
    });
    after(async () => {
      await gw?.close();
    });

    test('every body reaches the origin unchanged, in order', { timeout: 120_000 }, async () => {
      await seededRun(`trickled requests, front ${front}`, async (rand) => {
        for (let round = 0; round < 6; round++) {
          const count = 1 + Math.floor(rand() * 4);
          const want: string[] = [];
          const pieces: Buffer[] = [];
          for (let i = 0; i < count; i++) {
            const n = Math.floor(rand() ** 2 * 20 * 1024);
            const body = bodyOf(rand, n);
            want.push(`/r${round}-${i} ${n} ${createHash('sha256').update(body).digest('hex')}`);
            // A long field, so that heads too span many reads.
            const pad = 'p'.repeat(Math.floor(rand() * 3000));
            if (rand() < 0.5) {
              pieces.push(Buffer.from(`POST /r${round}-${i} HTTP/1.1\r\nHost: gw.test\r\nX-Pad: ${pad}\r\nContent-Length: ${n}\r\n\r\n`, 'latin1'), body);
            } else {
              pieces.push(Buffer.from(`POST /r${round}-${i} HTTP/1.1\r\nHost: gw.test\r\nX-Pad: ${pad}\r\nTransfer-Encoding: chunked\r\n\r\n`, 'latin1'));
              for (let at = 0; at < n; ) {
                const size = Math.min(n - at, 1 + Math.floor(rand() * 4096));
                pieces.push(Buffer.from(`${size.toString(16)}\r\n`, 'latin1'), body.subarray(at, at + size), Buffer.from('\r\n', 'latin1'));
                at += size;
              }
              pieces.push(Buffer.from('0\r\n\r\n', 'latin1'));
            }
          }
          const wire = Buffer.concat(pieces);
          const conn = new RawConn(gw.port);
          await conn.ready;
          for (let at = 0; at < wire.length; ) {
            // Mostly tiny writes (1–16 B), now and then up to 2 KiB.
            const size = Math.min(wire.length - at, rand() < 0.8 ? 1 + Math.floor(rand() * 16) : 1 + Math.floor(rand() * 2048));
            await conn.write(wire.subarray(at, at + size));
            at += size;
            // Each write its own read, at times.
            if (rand() < 0.3) await new Promise((r) => setImmediate(r));
          }
          const text = await conn.waitFor((t) => want.every((w) => t.includes(w)), 20_000, `${count} answers`);
          let from = 0;
          for (const w of want) {
            const at = text.indexOf(w, from);
            assert.ok(at >= from, `answer "${w.slice(0, 40)}…" out of order or missing`);
            from = at + w.length;
          }
          assert.doesNotMatch(text, /HTTP\/1\.1 [45]\d\d/, text.slice(0, 300));
          conn.destroy();
        }
      });
    });
  });
}
