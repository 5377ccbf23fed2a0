import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { between, seededRun } from '../helpers/seeded.js';
import { drainRest, sendThenStopReading, startSlowClientUpstream, startStreamingTcp, type SlowClientUpstream } from '../helpers/slow-client-upstream.js';
import { PASSWORD, USER, accessLines, basic, startTestProxy, waitFor, type TestProxy } from './helpers.js';

/**
 * Issue 14, finding 2 (forward face): through the HTTP proxy, a stalled or trickled upload
 * and a client that never reads must not hold a destination connection; neither may a
 * CONNECT tunnel whose client stops reading while the destination sends. Families over
 * seeded timeouts (200–800 ms), every wait bounded, every stream bounded in bytes.
 */

const SLACK = 1500;
/** How long the upstream's side may take to close after the client was cut: a bound for a busy machine, not a timer being checked. */
const DRAINED_WITHIN = 5000;

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

async function onlyLine(p: TestProxy, protocol: string, timeoutMs: number): Promise<Record<string, unknown>> {
  assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === protocol), timeoutMs), `a ${protocol} access log line within ${timeoutMs} ms`);
  return accessLines(p.lines).find((l) => l.protocol === protocol)!;
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
              await up.arrived(id, 3000);
              const text = await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, gap + SLACK, `the answer to a stalled upload (gap ${gap} ms)`);
              const ms = performance.now() - t0;
              const head = parseHead(text)!;
              assert.equal(head.status, 408, text.slice(0, 300));
              assert.ok(ms >= gap - 15, `answered after ${Math.round(ms)} ms (gap ${gap})`);
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
        await c.write(head);
        // The destination's 100, relayed: only now does the client send (one byte, then nothing).
        await c.waitFor((t) => /^HTTP\/1\.1 100 /.test(t) && t.includes('\r\n\r\n'), 3000, 'the relayed 100 Continue');
        c.clear();
        const t0 = performance.now();
        await c.write('x');
        const text = await c.waitFor((t, ended) => ended || parseHead(t) !== undefined, gap + SLACK, `the answer to a stalled upload (gap ${gap} ms)`);
        assert.ok(performance.now() - t0 >= gap - 15);
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

  it('Expect: 100-continue: the wait for the destination\'s 100 (2 × the gap) is not the client\'s', () =>
    seededRun('forward late 100', async (rand) => {
      const gap = between(rand, 200, 600);
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

  it('a trickle (a byte every gap/4) is cut by the minimum rate', () =>
    seededRun('forward trickled upload', async (rand) => {
      const gap = between(rand, 300, 800);
      const p = await proxyWith({ clientBody: `${gap}ms`, clientBodyMinRate: 500 });
      const c = new RawConn(p.port);
      let sent = 0;
      // The client's behaviour, not synchronisation: one byte every gap/4, bounded in count.
      const trickle = setInterval(() => {
        if (c.ended || sent >= 200) return;
        sent++;
        c.socket.write('y');
      }, Math.floor(gap / 4));
      try {
        await c.write(post('/upload?id=fwd-trickle', 1_000_000) + 'x');
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
        const text = await c.waitFor((t, ended) => ended || /got \d+$/.test(t), 3 * gap + 10_000, 'the answer to a held-back upload');
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
            const line = await onlyLine(p, 'http', send + 5000);
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
        const line = await onlyLine(p, 'http', send + 5000);
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
        await dest.drained(send + 5000);
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
        await dest.drained(send + 5000);
        assert.ok(performance.now() - t0 < send + 5000);
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
