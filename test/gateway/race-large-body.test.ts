import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { request } from 'undici';
import type { PieceAnswer, PieceRequest } from '../helpers/piecewise-upstream.js';
import { assertLostRace, withRaceRig, type RaceTry } from '../helpers/race-rig.js';
import { between, seededRun } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { until } from '../helpers/until.js';

/**
 * A request body larger than the gateway keeps for a replay (64 KiB, gateway/exchange.ts
 * REPLAY_LIMIT), or of unknown length (chunked), cannot be sent again if its try loses the
 * keep-alive race; so it must never take that risk: it goes on a fresh connection, never on a
 * reused idle one. Found: a PUT of 64 KiB + 1 on a reused connection that the upstream closed
 * as it was written got a 502 (`connection_terminated`), an avoidable gateway-made error
 * (nginx avoids it by buffering the whole body, `proxy_request_buffering`; Gatewise streams).
 *
 * The upstream answers the first request of every connection (echoing its body) and ends the
 * connection (FIN) or resets it (RST), unanswered, on the second: every request written on a
 * reused connection loses the race, deterministically.
 */

const LIMIT = 64 * 1024;
const MiB = 1024 * 1024;

type Method = 'GET' | 'PUT' | 'POST' | 'PATCH';
interface Sent {
  method: Method;
  path: string;
  body: Buffer;
  chunked: boolean;
  /** The request id the gateway answered with (its access-log line). */
  rid?: string;
}

/** The first request of a connection echoed; later ones met with the connection's end. */
function echoFirst(reset: boolean): (req: PieceRequest) => PieceAnswer {
  return (req) => {
    if (req.index > 0) return reset ? { pieces: [], reset: true } : { pieces: [], close: true };
    return echo(req);
  };
}

function echo(req: PieceRequest): PieceAnswer {
  const body = req.method === 'GET' ? Buffer.from(req.path) : req.body;
  return { pieces: [`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`, body] };
}

/** A body of `size` bytes, different for every request (a swapped or truncated body shows). */
function bodyOf(size: number, rand: () => number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = Math.floor(rand() * 2 ** 31) | 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** From just under the replay limit to a few MiB over it. */
function sizeOf(rand: () => number): number {
  const r = rand();
  if (r < 0.3) return between(rand, LIMIT - 2048, LIMIT);
  if (r < 0.55) return between(rand, LIMIT + 1, LIMIT + 8192);
  return between(rand, LIMIT + 8193, 3 * MiB);
}

/** `body` as a stream of seeded pieces: undici sends it chunked (no Content-Length). */
function chunkedBody(body: Buffer, rand: () => number): Readable {
  const pieces: Buffer[] = [];
  for (let at = 0; at < body.length; ) {
    const n = Math.min(body.length - at, between(rand, 1, 256 * 1024));
    pieces.push(body.subarray(at, at + n));
    at += n;
  }
  return Readable.from(pieces);
}

async function send(url: string, s: Sent, rand: () => number): Promise<{ status: number; body: Buffer; rid: string }> {
  const res = await request(`${url}${s.path}`, {
    method: s.method,
    body: s.method === 'GET' ? undefined : s.chunked ? chunkedBody(s.body, rand) : s.body,
  });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()), rid: String(res.headers['x-request-id']) };
}

describe('a body that cannot be kept for a replay goes on a fresh connection', () => {
  for (const client of ['undici', 'native'] as const) {
    test(`${client}: PUT, POST and PATCH bodies from just under 64 KiB to 3 MiB, Content-Length or chunked, among GETs, are all answered when every reused connection is ended unanswered (FIN and RST, seeded)`, { timeout: 120_000 }, () =>
      seededRun(`race with a large body (${client})`, async (rand) => {
        for (let round = 0; round < 3; round++) {
          const reset = rand() < 0.5;
          const tries = between(rand, 1, 2);
          await withRaceRig(echoFirst(reset), { client, retry: { tries } }, async ({ up, gw }) => {
            const n = between(rand, 4, 8);
            const sent: Sent[] = [];
            for (let i = 0; i < n; i++) {
              // The first is a GET, so the first body already finds an idle connection to race on.
              const r = rand();
              const method: Method = i === 0 || r < 0.15 ? 'GET' : r < 0.6 ? 'PUT' : r < 0.8 ? 'POST' : 'PATCH';
              const s: Sent = { method, path: `/r${round}/${i}`, body: method === 'GET' ? Buffer.alloc(0) : bodyOf(sizeOf(rand), rand), chunked: method !== 'GET' && rand() < 0.4 };
              sent.push(s);
              const got = await send(gw.url, s, rand);
              s.rid = got.rid;
              const what = `round ${round} (${reset ? 'RST' : 'FIN'}, tries ${tries}), ${s.method} ${i} of ${s.body.length} bytes${s.chunked ? ' chunked' : ''}`;
              assert.equal(got.status, 200, `${what}: ${got.body.toString().slice(0, 300)}`);
              assert.ok(got.body.equals(s.method === 'GET' ? Buffer.from(s.path) : s.body), `${what}: the body the upstream echoed is the one sent`);
            }
            for (const [i, s] of sent.entries()) {
              const received = up.requests.filter((r) => r.path === s.path);
              const attempts = ((await gw.logFor(s.rid!)).attempts ?? []) as unknown as RaceTry[];
              const detail = `round ${round} (${reset ? 'RST' : 'FIN'}), ${sent.map((x) => `${x.method}:${x.body.length}${x.chunked ? 'c' : ''}`).join(',')}: request ${i} ${JSON.stringify(attempts)}`;
              // The upstream got the body intact every time it read it; a non-idempotent one exactly once.
              for (const r of received) assert.ok(r.body.equals(s.body), `${detail}: the upstream received the body intact`);
              if (s.method === 'POST' || s.method === 'PATCH') assert.equal(received.length, 1, `${detail}: received once`);
              const kept = s.method === 'GET' || (!s.chunked && s.body.length <= LIMIT);
              if (i > 0 && kept && s.method !== 'POST' && s.method !== 'PATCH') {
                // The ordinary case, unchanged: a bodiless GET or a PUT whose body is kept
                // reuses the idle connection, loses the race and is sent again on a fresh one.
                assertLostRace(attempts, detail);
              } else if (s.chunked && s.body.length <= LIMIT && s.method === 'PUT' && attempts.length === 2) {
                // A small chunked body the gateway found whole at dispatch may take the risk: it is kept.
                assert.equal(attempts[0]!.connection, 'reused', detail);
                assert.equal(attempts[1]!.connection, 'new', detail);
              } else {
                // A body that may not be kept (over 64 KiB, or of unknown length), or a
                // non-idempotent request: one try, on a connection opened for it.
                assert.equal(attempts.length, 1, detail);
                assert.equal(attempts[0]!.connection, 'new', detail);
              }
            }
          });
        }
      }));
  }
});

describe('the ordinary case is unchanged', () => {
  for (const client of ['undici', 'native'] as const) {
    test(`${client}: GETs and PUTs with a Content-Length up to 64 KiB reuse one connection; each larger body opens one of its own (counted at the upstream, seeded)`, { timeout: 120_000 }, () =>
      seededRun(`reuse with small bodies (${client})`, async (rand) => {
        await withRaceRig(echo, { client }, async ({ up, gw }) => {
          const n = between(rand, 6, 14);
          const sent: Sent[] = [];
          let expected = 0;
          for (let i = 0; i < n; i++) {
            const r = rand();
            const method: Method = r < 0.5 ? 'GET' : 'PUT';
            const size = method === 'GET' ? 0 : rand() < 0.75 ? between(rand, 1, LIMIT) : between(rand, LIMIT + 1, 2 * LIMIT);
            const s: Sent = { method, path: `/o/${i}`, body: bodyOf(size, rand), chunked: false };
            sent.push(s);
            if (i === 0 || size > LIMIT) expected++;
            const got = await send(gw.url, s, rand);
            s.rid = got.rid;
            assert.equal(got.status, 200);
            assert.ok(got.body.equals(s.method === 'GET' ? Buffer.from(s.path) : s.body));
          }
          const shape = sent.map((x) => `${x.method}:${x.body.length}`).join(',');
          assert.equal(up.sockets.length, expected, `${shape}: connections the upstream accepted`);
          for (const [i, s] of sent.entries()) {
            const attempts = ((await gw.logFor(s.rid!)).attempts ?? []) as unknown as RaceTry[];
            assert.equal(attempts.length, 1, `${shape}: request ${i} ${JSON.stringify(attempts)}`);
            assert.equal(attempts[0]!.connection, i > 0 && s.body.length <= LIMIT ? 'reused' : 'new', `${shape}: request ${i} ${JSON.stringify(attempts)}`);
          }
        });
      }));
  }
});

/** One raw request on its own connection, written in one write; its answer's status and body. */
async function rawRequest(port: number, bytes: Buffer): Promise<{ status: number; body: Buffer; rid: string }> {
  const s = connect(port, '127.0.0.1');
  try {
    await once(s, 'connect');
    s.write(bytes);
    let buf = Buffer.alloc(0);
    for await (const d of s as AsyncIterable<Buffer>) {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) continue;
      const head = buf.toString('latin1', 0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? -1);
      if (length < 0 || buf.length < end + 4 + length) continue;
      return { status: Number(head.split(' ')[1]), body: buf.subarray(end + 4, end + 4 + length), rid: /\r\nx-request-id: *([^\r]+)/i.exec(head)?.[1] ?? '' };
    }
    throw new Error(`the connection closed before a whole answer: ${buf.toString('latin1').slice(0, 200)}`);
  } finally {
    s.destroy();
  }
}

describe('a chunked body that has all come by its dispatch', () => {
  for (const client of ['undici', 'native'] as const) {
    test(`${client}: is kept whole when it fits (it may reuse a connection, and the lost race is sent again), and goes on a fresh connection when it does not (seeded)`, { timeout: 120_000 }, () =>
      seededRun(`chunked body whole at dispatch (${client})`, async (rand) => {
        for (let round = 0; round < 4; round++) {
          const reset = rand() < 0.5;
          // A holds the cluster's one slot until it is let go; B, chunked, waits in the queue meanwhile.
          let held!: () => void;
          const holding = new Promise<void>((r) => (held = r));
          let letGo!: () => void;
          const released = new Promise<void>((r) => (letGo = r));
          const race = echoFirst(reset);
          const holdFirst = async (req: PieceRequest): Promise<PieceAnswer> => {
            if (req.path === '/hold') {
              held();
              await released;
            }
            return race(req);
          };
          await withRaceRig(holdFirst, { client, retry: { tries: 1 }, cluster: { limits: { maxConcurrent: 1, maxQueued: 4, queueTimeout: '30s' } } }, async ({ gw }) => {
            const a = request(`${gw.url}/hold`);
            await holding;
            // Small enough to come in one read (the whole of it parsed with its head), or over the replay limit.
            const small = rand() < 0.6;
            const body = bodyOf(small ? between(rand, 1, 8192) : between(rand, LIMIT + 1, 2 * LIMIT), rand);
            const raw = Buffer.concat([Buffer.from(`PUT /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
            const b = rawRequest(gw.port, raw);
            const admission = gw.gw.ctx.clusters.get('up')!.admission!;
            assert.ok(await until(() => admission.queued === 1, GUARD_MS), 'B waits in the queue');
            letGo();
            const ra = await a;
            assert.equal(ra.statusCode, 200);
            assert.equal(await ra.body.text(), '/hold');
            const rb = await b;
            const what = `round ${round} (${reset ? 'RST' : 'FIN'}), chunked PUT of ${body.length} bytes`;
            assert.equal(rb.status, 200, `${what}: ${rb.body.toString().slice(0, 300)}`);
            assert.ok(rb.body.equals(body), `${what}: the body the upstream echoed is the one sent`);
            const attempts = ((await gw.logFor(rb.rid)).attempts ?? []) as unknown as RaceTry[];
            const detail = `${what}: ${JSON.stringify(attempts)}`;
            if (small) {
              // Whole and within the limit at its dispatch: A's idle connection is reused, the race lost, the body sent again.
              assertLostRace(attempts, detail);
            } else {
              assert.equal(attempts.length, 1, detail);
              assert.equal(attempts[0]!.connection, 'new', detail);
            }
          });
        }
      }));
  }
});
