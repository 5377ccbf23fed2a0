import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { between, seededRun } from '../helpers/seeded.js';
import { drainRest, sendThenStopReading, startSlowClientUpstream, startStreamingTcp, type SlowClientUpstream } from '../helpers/slow-client-upstream.js';
import { GUARD_MS, LATE_MS, assertFiredOnTime } from '../helpers/time-bounds.js';
import { PASSWORD, USER, accessLine, basic, startTestProxy, type TestProxy } from './helpers.js';

/**
 * Issue 14, finding 2 (forward face): through the HTTP proxy, a stalled or trickled upload
 * and a client that never reads must not hold a destination connection; neither may a
 * CONNECT tunnel whose client stops reading while the destination sends. Families over
 * seeded timeouts (200–800 ms), every wait bounded, every stream bounded in bytes.
 */

/**
 * Every wait here is on an event (an answer's bytes, a close, a log line, the upstream's
 * connections closing), bounded by GUARD_MS as a failure guard only (it was 1.5 s past the
 * timeout, which a loaded CI machine overran). Where a timeout is measured, it is asserted
 * not early (from a moment before it could be armed) and not absurdly late (LATE_MS).
 */
const SLACK = GUARD_MS;
/** How long the upstream's side may take to close after the client was cut: a failure guard, not a timer being checked. */
const DRAINED_WITHIN = GUARD_MS;

let up: SlowClientUpstream;

before(async () => {
  up = await startSlowClientUpstream();
});

after(async () => {
  await up?.close();
});

function proxyWith(timeouts: Record<string, unknown>): Promise<TestProxy> {
  return startTestProxy({ revealDetails: true, timeouts } as never);
}

function post(path: string, length: number): string {
  return `POST ${up.url}${path} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nProxy-Authorization: ${basic()}\r\nContent-Length: ${length}\r\n\r\n`;
}

/** The first access line of `protocol`, waited for as the log's lines land (the guard is a failure bound). */
function onlyLine(p: TestProxy, protocol: string, guardMs: number): Promise<Record<string, unknown>> {
  return accessLine(p.lines, (l) => l.protocol === protocol, `a ${protocol} access log line`, guardMs);
}

describe('HTTP proxy: client body timeout', () => {
  it('a stalled upload (Content-Length 1 MB, 1 byte sent): 408 after the gap, the destination connection freed, logged as the client', () =>
    seededRun('forward stalled upload', async (rand) => {
      const gaps = [between(rand, 200, 500), between(rand, 500, 800)];
      const proxies = await Promise.all(gaps.map((g) => proxyWith({ clientBody: `${g}ms`, clientBodyMinRate: 0 })));
      try {
        await Promise.all(
          gaps.map(async (gap, i) => {
            const p = proxies[i]!;
            const id = `fwd-stall-${i}`;
            const c = new RawConn(p.port);
            try {
              const t0 = performance.now();
              await c.write(post(`/upload?id=${id}`, 1_000_000) + 'x');
              await up.arrived(id, GUARD_MS);
              const text = await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, gap + SLACK, `the answer to a stalled upload (gap ${gap} ms)`);
              const ms = performance.now() - t0;
              const head = parseHead(text)!;
              assert.equal(head.status, 408, text.slice(0, 300));
              // t0 is before the request was written, so the gap's timer cannot start earlier.
              assertFiredOnTime(ms, gap, `the 408 of a stalled upload (gap ${gap} ms)`);
              assert.match(head.get('proxy-status') ?? '', /error=http_request_error/);
              assert.match(head.get('proxy-status') ?? '', /details="the client stopped sending the request body/);
              assert.equal(head.get('connection'), 'close');
              await c.closed(SLACK);
              const line = await onlyLine(p, 'http', SLACK);
              assert.equal(line.status, 408);
              assert.equal(line.error, 'http_request_error');
              assert.equal(line.endedBy, 'client');
              assert.match(String(line.detail), /the client stopped sending the request body \(no byte for \d+ ms\)/);
            } finally {
              c.destroy();
            }
          }),
        );
        await up.drained(DRAINED_WITHIN);
      } finally {
        await Promise.all(proxies.map((p) => p.close()));
      }
    }));

  it('Expect: 100-continue, then a stalled upload: 408 after the gap, the destination connection freed', () =>
    seededRun('forward stalled upload after 100', async (rand) => {
      const gap = between(rand, 200, 800);
      const p = await proxyWith({ clientBody: `${gap}ms`, clientBodyMinRate: 0 });
      const c = new RawConn(p.port);
      try {
        const head = post('/upload?id=fwd-expect', 1_000_000).replace('\r\n\r\n', '\r\nExpect: 100-continue\r\n\r\n');
        // Before the head: the body's timer, started when the 100 is relayed, cannot start
        // earlier (taken after the 100 came, as it was, a late read of the 100 on a loaded
        // machine made the 408 seem early; the 100 comes at once here, so both moments prove
        // the same: the 408 is not before the gap).
        const t0 = performance.now();
        await c.write(head);
        // The destination's 100, relayed: only now does the client send (one byte, then nothing).
        await c.waitFor((t) => /^HTTP\/1\.1 100 /.test(t) && t.includes('\r\n\r\n'), GUARD_MS, 'the relayed 100 Continue');
        c.clear();
        await c.write('x');
        const text = await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, gap + SLACK, `the answer to a stalled upload (gap ${gap} ms)`);
        assertFiredOnTime(performance.now() - t0, gap, `the 408 after a 100 (gap ${gap} ms)`);
        assert.equal(parseHead(text)?.status, 408, text.slice(0, 300));
        const line = await onlyLine(p, 'http', SLACK);
        assert.equal(line.endedBy, 'client');
        assert.equal(line.error, 'http_request_error');
        assert.match(String(line.detail), /the client stopped sending the request body/);
        await up.drained(DRAINED_WITHIN);
      } finally {
        c.destroy();
        await p.close();
      }
    }));

  // The gap is 1–1.5 s (it was 200–600 ms): once the 100 is relayed the body's timer runs,
  // and the client's reaction to the 100 (read, then write) is on the same loaded machine;
  // a reaction slower than the gap was answered 408, correctly, but it failed the test.
  it('Expect: 100-continue: the wait for the destination\'s 100 (2 × the gap) is not the client\'s', () =>
    seededRun('forward late 100', async (rand) => {
      const gap = between(rand, 1000, 1500);
      const p = await proxyWith({ clientBody: `${gap}ms`, clientBodyMinRate: 0 });
      const c = new RawConn(p.port);
      try {
        await c.write(post(`/upload?id=fwd-late-continue&continueMs=${2 * gap}`, 5).replace('\r\n\r\n', '\r\nExpect: 100-continue\r\n\r\n'));
        await c.waitFor((t) => /^HTTP\/1\.1 100 /.test(t) && t.includes('\r\n\r\n'), 2 * gap + SLACK, 'the late 100 Continue');
        c.clear();
        await c.write('hello');
        const text = await c.waitFor((t, ended) => ended || /got 5$/.test(t), SLACK, 'the answer after a late 100');
        assert.equal(parseHead(text)?.status, 200, text.slice(0, 300));
      } finally {
        c.destroy();
        await p.close();
      }
    }));

  // A byte every 50 ms under a gap of 1–2 s (it was every gap/4 under 300–800 ms): the trickle
  // must never look like a gap, or the cut names the gap and not the rate; a loaded machine
  // stretched a 75–200 ms interval past the gap. At ~20 bytes/s it is far below 500 bytes/s.
  it('a trickle (a byte every 50 ms) is cut by the minimum rate', () =>
    seededRun('forward trickled upload', async (rand) => {
      const gap = between(rand, 1000, 2000);
      const p = await proxyWith({ clientBody: `${gap}ms`, clientBodyMinRate: 500 });
      const c = new RawConn(p.port);
      let sent = 0;
      let trickle: NodeJS.Timeout | undefined;
      try {
        await c.write(post('/upload?id=fwd-trickle', 1_000_000) + 'x');
        // The client's behaviour, not synchronisation: one byte every 50 ms, bounded in count,
        // from once the head is written (started before it, a tick that came before a slow
        // connect queued its byte ahead of the head: a 400, seen under load).
        trickle = setInterval(() => {
          if (c.ended || sent >= 400) return;
          sent++;
          c.socket.write('y');
        }, 50);
        const text = await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, 2 * gap + SLACK, 'the answer to a trickled upload');
        assert.equal(parseHead(text)?.status, 408, text.slice(0, 300));
        assert.ok(sent >= 2, `the trickle was moving (${sent} bytes)`);
        const line = await onlyLine(p, 'http', SLACK);
        assert.equal(line.endedBy, 'client');
        assert.match(String(line.detail), /below the minimum of 500 bytes\/s/);
        await up.drained(DRAINED_WITHIN);
      } finally {
        clearInterval(trickle);
        c.destroy();
        await p.close();
      }
    }));

  it('an upload the destination holds back (it reads nothing for 3 × the gap) is not the client\'s delay: 200, all of it', () =>
    seededRun('forward held-back upload', async (rand) => {
      const gap = between(rand, 200, 400);
      const p = await proxyWith({ clientBody: `${gap}ms`, clientBodyMinRate: 500 });
      const c = new RawConn(p.port);
      const size = 8 * 1024 * 1024;
      try {
        await c.write(post(`/slow-read?id=fwd-held&ms=${3 * gap}`, size));
        // The whole body at once: far more than the buffers on the way hold.
        c.socket.write(Buffer.alloc(size, 0x62));
        const text = await c.waitFor((t, ended) => ended || /got \d+$/.test(t), 3 * gap + GUARD_MS, 'the answer to a held-back upload');
        assert.equal(parseHead(text)?.status, 200, text.slice(0, 300));
        assert.match(text, new RegExp(`got ${size}$`));
      } finally {
        c.destroy();
        await p.close();
      }
    }));

  it('a stall after the answer started: the client connection is cut, never a body that looks complete', () =>
    seededRun('forward stall after the head', async (rand) => {
      const gap = between(rand, 200, 800);
      const p = await proxyWith({ clientBody: `${gap}ms`, clientBodyMinRate: 0 });
      const c = new RawConn(p.port);
      try {
        await c.write(post('/early?id=fwd-early', 1_000_000) + 'x');
        const text = await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, SLACK, 'the early head');
        const head = parseHead(text)!;
        assert.equal(head.status, 200);
        const all = await c.closed(gap + SLACK);
        assert.equal(all.slice(head.end), '01234');
        const line = await onlyLine(p, 'http', SLACK);
        assert.equal(line.endedBy, 'client');
        assert.equal(line.error, 'http_request_error');
        assert.match(String(line.detail), /the client stopped sending the request body/);
        await up.drained(DRAINED_WITHIN);
      } finally {
        c.destroy();
        await p.close();
      }
    }));
});

describe('HTTP proxy and tunnels: send timeout', () => {
  it('a client that never reads a large answer is cut after the send timeout; the destination connection closes', () =>
    seededRun('forward non-reading client', async (rand) => {
      const sends = [between(rand, 200, 500), between(rand, 500, 800)];
      const proxies = await Promise.all(sends.map((s) => proxyWith({ send: `${s}ms` })));
      const max = 64 * 1024 * 1024;
      try {
        await Promise.all(
          sends.map(async (send, i) => {
            const p = proxies[i]!;
            const id = `fwd-nonreader-${i}`;
            const { socket, first } = await sendThenStopReading(p.port, `GET ${up.url}/stream?id=${id}&max=${max} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
            assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
            const line = await onlyLine(p, 'http', send + GUARD_MS);
            assert.equal(line.endedBy, 'client');
            assert.equal(line.status, 200);
            assert.equal(line.error, 'http_request_error');
            assert.match(String(line.detail), new RegExp(`the client did not read the response for \\d+ ms \\(send timeout ${send} ms\\)`));
            assert.ok(Number(line.durationMs) >= send - 15, `cut after ${line.durationMs} ms`);
            const got = await drainRest(socket, max, SLACK);
            assert.ok(got + first.length < max, 'the client did not get the whole answer');
            assert.ok(up.requests.get(id)!.written < max, 'the destination stopped writing');
          }),
        );
        await up.drained(DRAINED_WITHIN);
      } finally {
        await Promise.all(proxies.map((p) => p.close()));
      }
    }));

  it('Expect: 100-continue, then a client that never reads the answer: cut after the send timeout, the destination connection closes', () =>
    seededRun('forward Expect non-reading client', async (rand) => {
      const send = between(rand, 200, 800);
      const p = await proxyWith({ send: `${send}ms` });
      const max = 64 * 1024 * 1024;
      try {
        const head = `POST ${up.url}/stream?id=fwd-expect-nonreader&max=${max} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nProxy-Authorization: ${basic()}\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n`;
        const { socket } = await sendThenStopReading(p.port, head);
        socket.write('z');
        const line = await onlyLine(p, 'http', send + GUARD_MS);
        assert.equal(line.endedBy, 'client');
        assert.match(String(line.detail), new RegExp(`the client did not read the response for \\d+ ms \\(send timeout ${send} ms\\)`));
        const got = await drainRest(socket, max, SLACK);
        assert.ok(got < max);
        await up.drained(DRAINED_WITHIN);
      } finally {
        await p.close();
      }
    }));

  it('a SOCKS5 tunnel whose client stops reading while the destination sends is cut after the send timeout', () =>
    seededRun('SOCKS5 non-reading client', async (rand) => {
      const send = between(rand, 200, 800);
      const dest = await startStreamingTcp();
      const p = await proxyWith({ send: `${send}ms`, tunnelIdle: '5m' });
      try {
        const user = Buffer.from(USER);
        const pw = Buffer.from(PASSWORD);
        const port = Buffer.alloc(2);
        port.writeUInt16BE(dest.port);
        const hello = Buffer.concat([Buffer.from([5, 1, 2, 1, user.length]), user, Buffer.from([pw.length]), pw, Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), port]);
        const { socket } = await sendThenStopReading(p.port, hello);
        await dest.drained(send + GUARD_MS);
        const line = await onlyLine(p, 'socks5', SLACK);
        assert.equal(line.endedBy, 'client');
        assert.match(String(line.detail), new RegExp(`the client did not read for \\d+ ms \\(send timeout ${send} ms\\)`));
        const got = await drainRest(socket, 64 * 1024 * 1024, SLACK);
        assert.ok(got < dest.written[0]!, 'the client did not get everything the destination wrote');
      } finally {
        await p.close();
        await dest.close();
      }
    }));

  it('a CONNECT tunnel whose client stops reading while the destination sends is cut after the send timeout', () =>
    seededRun('tunnel non-reading client', async (rand) => {
      const send = between(rand, 200, 800);
      const dest = await startStreamingTcp();
      const p = await proxyWith({ send: `${send}ms`, tunnelIdle: '5m' });
      try {
        const { socket, first } = await sendThenStopReading(p.port, `CONNECT 127.0.0.1:${dest.port} HTTP/1.1\r\nHost: 127.0.0.1:${dest.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
        assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 /);
        const t0 = performance.now();
        await dest.drained(send + GUARD_MS);
        // Cut after the send timeout, not absurdly late (the not-early half is the record's durationMs below).
        assert.ok(performance.now() - t0 < send + LATE_MS, `the destination was let go ${Math.round(performance.now() - t0)} ms after the tunnel opened (send ${send} ms)`);
        const line = await onlyLine(p, 'connect', SLACK);
        assert.equal(line.endedBy, 'client');
        assert.match(String(line.detail), new RegExp(`the client did not read for \\d+ ms \\(send timeout ${send} ms\\)`));
        assert.ok(Number(line.durationMs) >= send - 15, `cut after ${line.durationMs} ms`);
        const got = await drainRest(socket, 64 * 1024 * 1024, SLACK);
        assert.ok(got < dest.written[0]!, 'the client did not get everything the destination wrote');
      } finally {
        await p.close();
        await dest.close();
      }
    }));
});
