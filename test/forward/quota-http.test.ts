import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { describe, it } from 'node:test';
import { PASSWORD, USER, basicOf, startPoolProxy, type PoolProxy } from '../egress/helpers.js';
import { accessLines, completeResponse, dial, readUntil, waitFor } from './helpers.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { periodOf, usageKey } from '../../src/tenants/index.js';

const T0 = Date.parse('2026-03-10T10:00:00.100Z');
/** The most one read of a socket hands over: the chunk that crosses a quota is at most this. */
const CHUNK = 64 * 1024;

interface BodyOrigin {
  server: Server;
  port: number;
  /** Body bytes each request's handler read, in arrival order. */
  uploads: number[];
  close(): Promise<void>;
}

/**
 * GET /n/N answers N bytes, Content-Length framed, or chunked for /c/N, written in 16 KiB
 * pieces with backpressure; POST reads the whole body, then answers its length.
 */
async function bodyOrigin(): Promise<BodyOrigin> {
  const uploads: number[] = [];
  const server = createServer((req, res) => {
    if (req.method === 'POST') {
      const i = uploads.push(0) - 1;
      req.on('data', (c: Buffer) => (uploads[i]! += c.length));
      req.on('error', () => {});
      req.on('end', () => res.end(String(uploads[i])));
      return;
    }
    const m = /^\/(n|c)\/(\d+)$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    let left = Number(m[2]);
    res.writeHead(200, m[1] === 'n' ? { 'content-length': String(left) } : {});
    const piece = Buffer.alloc(16 * 1024, 0x61);
    const pump = (): void => {
      // Bounded: each pass writes until backpressure or the end.
      while (left > 0 && !res.destroyed) {
        const k = Math.min(left, piece.length);
        left -= k;
        if (!res.write(k === piece.length ? piece : piece.subarray(0, k))) return void res.once('drain', pump);
      }
      if (!res.destroyed) res.end();
    };
    pump();
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    uploads,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function billed(p: PoolProxy, user = USER): Promise<{ up: number; down: number }> {
  await p.proxy.plans.flush();
  const h = await p.proxy.store.hgetall(usageKey(user, 'day', periodOf('day', T0).id));
  return { up: h.up ?? 0, down: h.down ?? 0 };
}

/** Split a raw HTTP/1.1 byte stream into the responses it holds: status and body bytes each (the last may be cut). */
function responses(raw: Buffer): Array<{ status: number; body: number; complete: boolean }> {
  const out: Array<{ status: number; body: number; complete: boolean }> = [];
  let at = 0;
  for (let guard = 0; guard < 1000 && at < raw.length; guard++) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = raw.subarray(at, end).toString('latin1');
    const status = Number(head.slice(9, 12));
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let p = end + 4;
    if (cl) {
      const n = Number(cl[1]);
      const have = Math.min(n, raw.length - p);
      out.push({ status, body: have, complete: have === n });
      at = p + have;
      continue;
    }
    // chunked
    let body = 0;
    let complete = false;
    for (let g = 0; g < 100_000; g++) {
      const le = raw.indexOf('\r\n', p);
      if (le < 0) break;
      const size = parseInt(raw.subarray(p, le).toString('latin1'), 16);
      if (size === 0) {
        complete = raw.length >= le + 4;
        p = le + 4;
        break;
      }
      const have = Math.min(size, raw.length - le - 2);
      body += have;
      if (have < size) {
        p = raw.length;
        break;
      }
      p = le + 2 + size + 2;
    }
    out.push({ status, body, complete });
    at = p;
  }
  return out;
}

function getHead(port: number, path: string): string {
  return `GET http://127.0.0.1:${port}${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nproxy-authorization: ${basicOf(USER, PASSWORD)}\r\n\r\n`;
}

async function withProxy(rand: Rand, plan: object, fn: (p: PoolProxy, o: BodyOrigin) => Promise<void>): Promise<void> {
  const o = await bodyOrigin();
  const p = await startPoolProxy({ plans: { q: plan } }, { alice: { plan: 'q' } }, { now: () => T0 });
  try {
    await withSeed(rand, () => fn(p, o));
  } finally {
    await p.close();
    await o.close();
  }
}

describe('byte quotas on plain HTTP: bodies are cut per chunk, as tunnels are', () => {
  it('a response body crossing the down quota is cut: an incomplete response, a record that says why (seeded)', async () => {
    const rand = seededRandom();
    for (let round = 0; round < 3; round++) {
      const quota = 20_000 + rand.int(400_000);
      const n = quota * (2 + rand.int(4));
      const kind = rand.pick(['n', 'c']);
      await withProxy(rand, { bytesPerDay: { down: quota } }, async (p, o) => {
        const s = await dial(p.port);
        s.on('error', () => {});
        try {
          s.write(getHead(o.port, `/${kind}/${n}`));
          const raw = await readUntil(s, () => false, 20_000);
          const [r] = responses(raw);
          const info = JSON.stringify({ quota, n, kind, r });
          assert.equal(r?.status, 200, info);
          assert.equal(r!.complete, false, info);
          assert.ok(s.destroyed || s.readableEnded, info);
          assert.ok(await waitFor(() => accessLines(p.lines).length === 1, 5000));
          const rec = accessLines(p.lines)[0]!;
          assert.equal(rec.endedBy, 'quota', JSON.stringify(rec));
          assert.match(String(rec.quota), /bytesPerDay\.down limit of .* reached/);
          assert.equal(rec.error, 'http_request_denied');
          assert.equal(rec.reason, 'too_many_requests');
          const b = await billed(p);
          // The chunk that crosses the quota goes through; nothing after it.
          assert.ok(b.down >= quota && b.down <= quota + CHUNK + 1024, `${info} billed ${b.down}`);
          assert.equal(b.down, rec.bytesDown);
          assert.ok(r!.body <= b.down, info);
        } finally {
          s.destroy();
        }
      });
    }
  });

  it('an upload crossing the up quota is cut: 429 before the response head, the origin never gets the rest (seeded)', async () => {
    const rand = seededRandom();
    for (let round = 0; round < 3; round++) {
      const quota = 20_000 + rand.int(300_000);
      const size = quota * (3 + rand.int(4));
      await withProxy(rand, { bytesPerDay: { up: quota } }, async (p, o) => {
        const s = await dial(p.port);
        s.on('error', () => {});
        try {
          s.write(`POST http://127.0.0.1:${o.port}/up HTTP/1.1\r\nhost: 127.0.0.1:${o.port}\r\nproxy-authorization: ${basicOf(USER, PASSWORD)}\r\ncontent-length: ${size}\r\n\r\n`);
          // Until the answer is whole (the proxy may keep the connection: it read the whole body) or the connection closes.
          const reading = readUntil(s, (b) => completeResponse(b.toString('latin1')), 20_000);
          // The body in pieces with backpressure, until it is all sent or the proxy stops taking it.
          const piece = Buffer.alloc(8192, 0x62);
          let sent = 0;
          for (let i = 0; i < 10_000 && sent < size && !s.destroyed && s.writable; i++) {
            const k = Math.min(piece.length, size - sent);
            sent += k;
            if (!s.write(k === piece.length ? piece : piece.subarray(0, k))) {
              const closed = once(s, 'close');
              const drained = once(s, 'drain');
              await Promise.race([drained, closed]);
            }
          }
          const raw = await reading;
          const info = JSON.stringify({ quota, size, sent, uploads: o.uploads });
          assert.match(raw.toString('latin1'), /^HTTP\/1\.1 429 /, info);
          assert.match(raw.toString('latin1'), /bytesPerDay\.up limit of/, info);
          assert.ok(await waitFor(() => accessLines(p.lines).length === 1, 5000));
          const rec = accessLines(p.lines)[0]!;
          assert.equal(rec.endedBy, 'quota', JSON.stringify(rec));
          assert.equal(rec.status, 429);
          const b = await billed(p);
          assert.ok(b.up >= quota && b.up <= quota + CHUNK, `${info} billed ${b.up}`);
          assert.equal(b.up, rec.bytesUp);
          // The origin got at most what was passed on, and never the whole body.
          assert.ok((o.uploads[0] ?? 0) <= b.up, info);
        } finally {
          s.destroy();
        }
      });
    }
  });

  it('pipelined requests admitted together: each is checked per chunk, the overshoot stays one chunk (seeded)', async () => {
    const rand = seededRandom();
    for (let round = 0; round < 3; round++) {
      const quota = 50_000 + rand.int(300_000);
      const count = 2 + rand.int(7);
      const each = Math.ceil((quota * (1.5 + rand.next())) / count);
      await withProxy(rand, { bytesPerDay: { down: quota } }, async (p, o) => {
        const s = await dial(p.port);
        s.on('error', () => {});
        try {
          let reqs = '';
          for (let i = 0; i < count; i++) reqs += getHead(o.port, `/${rand.pick(['n', 'c'])}/${each}`);
          s.write(reqs);
          // Until every answer is whole, or the connection is cut.
          const raw = await readUntil(s, (b) => { const r = responses(b); return r.length === count && r.every((x) => x.complete); }, 20_000);
          const rs = responses(raw);
          const bodies = rs.filter((r) => r.status === 200).reduce((a, r) => a + r.body, 0);
          const b = await billed(p);
          const info = JSON.stringify({ quota, count, each, rs: rs.map((r) => [r.status, r.body, r.complete]), billed: b.down });
          assert.ok(bodies <= quota + CHUNK, info);
          assert.ok(b.down <= quota + CHUNK + 1024 * count, info);
          assert.ok(rs.some((r) => !r.complete || r.status === 429), info);
        } finally {
          s.destroy();
        }
      });
    }
  });
});
