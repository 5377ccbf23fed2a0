import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startTestGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { seededRandom } from '../helpers/seeded.js';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 13): an answer written whole with one `end(body)` — a cache hit
 * (Exchange.answerFromCache) — to a client that stops reading. The send timeout
 * (listeners[].sendTimeout, docs/security.md "The response: send timeout": "once the client's
 * connection has taken nothing for sendTimeout while the gateway has bytes for it … the client
 * connection is aborted") is the ResponseTimer's, and only a try (Attempt) has one: a cache
 * hit has no timer at all. Node never finishes the response (its bytes stay in the socket's
 * buffer), so no keep-alive timer starts either; the connection, the stored body's bytes
 * queued for it and the request's in-flight count are held for as long as the client
 * likes. The same answer streamed from the upstream (a miss) is cut at the send timeout.
 *
 * Bodies are larger than the loopback socket buffers (the send buffer grows to 4 MiB here),
 * so the gateway keeps bytes it cannot write. Every wait is bounded.
 */

const SEND_MS = 500;
/** What the gateway may take beyond the send timeout (deadline resolution, a busy 2-core machine). */
const SLACK_MS = 4000;

let upstream: ScriptedUpstream;

/** `/big/<n>` and `/nocache/<n>`: a 200 of n bytes (the first fresh for a minute, the second not storable). */
before(async () => {
  upstream = await startRawUpstream((head) => {
    const m = /^GET \/(big|nocache)\/(\d+)/.exec(head);
    if (m === null) return { bytes: 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', close: true };
    const n = Number(m[2]);
    const cc = m[1] === 'big' ? 'max-age=60' : 'no-store';
    return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nCache-Control: ${cc}\r\nContent-Length: ${n}\r\n\r\n`), Buffer.alloc(n, 0x63)]);
  });
});

after(() => upstream.close());

/** GET `path` on a fresh connection and read it all (bounded: 20 s). */
function readAll(port: number, path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n`));
    const limit = setTimeout(() => {
      s.destroy();
      reject(new Error(`GET ${path}: not complete after 20 s`));
    }, 20_000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(limit);
      resolve(Buffer.concat(chunks));
    });
  });
}

/**
 * GET `path`, read the first chunk (the head: its request id), then stop reading. Resolves
 * with the request id and the socket (paused; the caller destroys it).
 */
function readHeadThenStop(port: number, path: string): Promise<{ id: string; head: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: app.test\r\n\r\n`));
    const limit = setTimeout(() => {
      s.destroy();
      reject(new Error(`GET ${path}: no head within 5 s`));
    }, 5000);
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.pause(); // the client reads nothing more
      clearTimeout(limit);
      const head = text.slice(0, end);
      const id = /\r\nx-request-id: ([^\r]+)/i.exec(head)?.[1];
      if (id === undefined) reject(new Error(`no request id in ${JSON.stringify(head)}`));
      else resolve({ id, head, socket: s });
    };
    s.on('data', onData);
    s.on('error', () => {});
  });
}

describe('a client that stops reading a large answer', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startTestGateway({
      listeners: [{ address: '127.0.0.1', port: 0, sendTimeout: `${SEND_MS}ms` }],
      cache: { maxSize: 256 * 1024 * 1024 },
      clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up', retry: { tries: 1 }, cache: { maxObjectSize: 64 * 1024 * 1024 } }],
    } as never);
  });
  after(() => gw.close());

  for (const kind of ['nocache', 'big'] as const) {
    test(`${kind === 'big' ? 'a cache hit' : 'streamed from the upstream (control)'}: cut at the send timeout (seeded sizes)`, { timeout: 90_000 }, async () => {
      const rand = seededRandom();
      const sizes = [16 << 20, (12 << 20) + rand.int(8 << 20)];
      for (const n of sizes) {
        const path = `/${kind}/${n}`;
        const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): ${path}`;
        if (kind === 'big') {
          // Stored first (a client that reads it all).
          const whole = await readAll(gw.port, path);
          assert.ok(whole.length > n, `${ctx}: the first answer was cut (${whole.length} bytes)`);
          assert.match(whole.subarray(0, 2000).toString('latin1'), /cache-status: [^\r]*stored/i, `${ctx}: not stored`);
        }
        const { id, head, socket } = await readHeadThenStop(gw.port, path);
        try {
          if (kind === 'big') assert.match(head, /cache-status: [^\r]*hit/i, `${ctx}: not a cache hit: ${head}`);
          const t0 = performance.now();
          let line: LogLine | undefined;
          try {
            line = await gw.logFor(id, SEND_MS + SLACK_MS);
          } catch {
            assert.fail(`${ctx}: the client stopped reading ${Math.round(performance.now() - t0)} ms ago (send timeout ${SEND_MS} ms) and the gateway still holds the answer: no access-log line for ${id}`);
          }
          // The streamed answer is cut by the send timeout (the client named); how a fix records
          // the cut cache hit is its own choice: the line existing (the exchange ended) is what counts.
          if (kind === 'nocache') assert.equal(line!.endedBy, 'client', `${ctx}: ${JSON.stringify(line)}`);
        } finally {
          socket.destroy();
        }
      }
    });
  }
});
