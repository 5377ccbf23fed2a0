import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { startTestGateway } from '../helpers/gateway.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * A retried request body reaches the upstream whole, including what the client sent between
 * the failed try and the retry (the back-off, the new connection). Found in session 33: the
 * client's request kept flowing after the first try's relay let go of it, and the chunks it
 * emitted with nobody listening were gone; a chunked PUT retried after an early 503 reached
 * the upstream with the chunks of the back-off missing, and was answered 200.
 *
 * The upstream ends the first connection once it has the head (a 503 that does not read the
 * body, or a TCP reset), and reads the whole body on the next one. The client sends a first
 * part, one more part as soon as the first connection is over (in the back-off, which is at
 * least 100 ms), and the rest once the retry's connection is open.
 */

interface Upstream {
  port: number;
  /** Resolves when the n-th connection (1-based) is accepted / closed. */
  accepted(n: number): Promise<void>;
  firstOver: Promise<void>;
  /** The bodies read whole, by connection. */
  bodies: Buffer[];
  close(): Promise<void>;
}

function decodeChunked(b: Buffer): Buffer | undefined {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const len = parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (len === 0) return b.length >= eol + 4 ? Buffer.concat(out) : undefined;
    if (b.length < eol + 2 + len + 2) return undefined;
    out.push(b.subarray(eol + 2, eol + 2 + len));
    at = eol + 2 + len + 2;
  }
}

async function startUpstream(endFirst: '503' | 'rst'): Promise<Upstream> {
  let conns = 0;
  const waiting = new Map<number, () => void>();
  const sockets: Socket[] = [];
  let firstOverResolve!: () => void;
  const firstOver = new Promise<void>((r) => (firstOverResolve = r));
  const bodies: Buffer[] = [];
  const server = createServer((s) => {
    const n = ++conns;
    sockets.push(s);
    s.on('error', () => {});
    waiting.get(n)?.();
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const headEnd = buf.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      if (n === 1) {
        if (endFirst === '503') s.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        else s.resetAndDestroy();
        buf = Buffer.alloc(0);
        return;
      }
      const head = buf.subarray(0, headEnd).toString('latin1').toLowerCase();
      const rest = buf.subarray(headEnd + 4);
      const cl = /\r\ncontent-length: *(\d+)/.exec(head);
      const body = cl ? (rest.length >= Number(cl[1]) ? rest.subarray(0, Number(cl[1])) : undefined) : decodeChunked(rest);
      if (body === undefined) return;
      bodies.push(body);
      const sum = createHash('sha256').update(body).digest('hex');
      s.end(`HTTP/1.1 200 OK\r\nContent-Length: ${sum.length}\r\nConnection: close\r\n\r\n${sum}`);
    });
    s.on('close', () => {
      if (n === 1) firstOverResolve();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    accepted: (n) => (conns >= n ? Promise.resolve() : new Promise<void>((r) => waiting.set(n, r))),
    firstOver,
    bodies,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

test('a retried body reaches the upstream whole, the parts sent between the tries included (seeded: 503 or reset, chunked or Content-Length, sizes)', { timeout: 120_000 }, async () => {
  await seededRun('retry body gap', async (rand) => {
    for (let round = 0; round < 8; round++) {
      const endFirst = rand() < 0.5 ? '503' : 'rst';
      const chunked = rand() < 0.5;
      // Three parts: before the first try ends, in the gap, after the retry's connection opened.
      const parts = [0, 1, 2].map((i) => Buffer.alloc(between(rand, 1, 12 * 1024), 0x61 + ((round * 3 + i) % 26)));
      const whole = Buffer.concat(parts);
      const what = `round ${round}: ${endFirst}, ${chunked ? 'chunked' : 'content-length'}, parts ${parts.map((p) => p.length).join('+')}`;
      const up = await startUpstream(endFirst);
      const gw = await startTestGateway({
        clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 3, backoff: { base: '100ms', max: '150ms' } } }],
      });
      const c = connect(gw.port, '127.0.0.1');
      c.on('error', () => {});
      try {
        await once(c, 'connect');
        let answer = '';
        c.on('data', (d: Buffer) => (answer += d.toString('latin1')));
        const ended = once(c, 'close');
        const framed = (p: Buffer): Buffer => (chunked ? Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]) : p);
        c.write(`PUT /gap HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${whole.length}`}\r\n\r\n`);
        c.write(framed(parts[0]!));
        await up.firstOver;
        c.write(framed(parts[1]!));
        await up.accepted(2);
        c.write(framed(parts[2]!));
        if (chunked) c.write('0\r\n\r\n');
        await ended;
        const sum = createHash('sha256').update(whole).digest('hex');
        assert.match(answer, /^HTTP\/1\.1 200 /, `${what}: ${answer.slice(0, 300)}`);
        assert.equal(up.bodies.length, 1, what);
        assert.equal(up.bodies[0]!.length, whole.length, `${what}: the upstream got ${up.bodies[0]!.length} of ${whole.length} bytes`);
        assert.ok(up.bodies[0]!.equals(whole), `${what}: the body the upstream got is the one sent`);
        assert.ok(answer.endsWith(sum), `${what}: the answer names the body sent`);
      } finally {
        c.destroy();
        await gw.close();
        await up.close();
      }
    }
  });
});
