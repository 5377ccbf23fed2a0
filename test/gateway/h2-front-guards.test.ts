import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { E, RawH2, T, errorCode, frame, headerBlock } from '../helpers/h2-frames.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Guards of the HTTP/2 front (adversarial probe of session "upgrade"; they passed when
 * written): a request whose DATA disagrees with its Content-Length is a stream error
 * (RFC 9113 §8.1.1): no byte past the declared length reaches an HTTP/1.1 upstream (DATA within
 * it may have been streamed before the excess came), whether the mismatch is in the head's
 * read or in a later one;
 * the same request with a matching body is forwarded whole. CONTINUATION without
 * END_HEADERS for ever (CVE-2024-27316's class) and PING or SETTINGS floods close the
 * connection with GOAWAY ENHANCE_YOUR_CALM: nghttp2's flood errors (NGHTTP2_ERR_FLOODED,
 * NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) went out as INTERNAL_ERROR, telling the client the
 * gateway had failed rather than that the client was refused for its load.
 */

interface UpConn {
  socket: Socket;
  bytes: string;
  closed: boolean;
}
let upstream: RawServer;
const conns: UpConn[] = [];
let onUp: (() => void) | undefined;
let gw: TestGateway;

before(async () => {
  // Records what each connection brings; answers once a head and its declared body are in.
  upstream = await startRawServer((socket) => {
    const c: UpConn = { socket, bytes: '', closed: false };
    conns.push(c);
    socket.on('data', (d: Buffer) => {
      c.bytes += d.toString('latin1');
      onUp?.();
      const e = c.bytes.indexOf('\r\n\r\n');
      const cl = /\r\ncontent-length: (\d+)/i.exec(c.bytes);
      if (e >= 0 && cl !== null && c.bytes.length - e - 4 >= Number(cl[1])) socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
    socket.on('close', () => {
      c.closed = true;
      onUp?.();
    });
  });
  gw = await startOneUpstreamGateway(upstream.url, { listener: { http2: { h2c: true } } });
});

after(async () => {
  await gw?.close();
  await upstream?.close();
});

/** Wait (bounded) until `ok` holds over the upstream's connections. */
function upWhen(ok: () => boolean, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!ok()) return;
      clearTimeout(t);
      onUp = undefined;
      resolve();
    };
    const t = setTimeout(() => {
      onUp = undefined;
      reject(new Error(`${what}: not within ${ms} ms`));
    }, ms);
    onUp = check;
    check();
  });
}

const post = (cl: string, end = false): Buffer => frame(T.HEADERS, 0x4 | (end ? 0x1 : 0), 1, headerBlock({ method: 'POST', path: '/p', extra: [['content-length', cl]] }));
const data = (s: string, end: boolean): Buffer => frame(T.DATA, end ? 0x1 : 0, 1, Buffer.from(s, 'latin1'));

describe('HTTP/2 front: Content-Length against DATA (RFC 9113 §8.1.1)', () => {
  const mismatches: Array<[string, string, Buffer[]]> = [
    ['more DATA than declared', '5', [data('0123456789', true)]],
    ['less DATA than declared', '10', [data('01234', true)]],
    ['declared, no DATA at all', '3', []],
    ['two DATA frames past the length', '5', [data('01234', false), data('56789', true)]],
  ];
  for (const [what, cl, body] of mismatches) {
    for (const split of [false, true]) {
      test(`${what}${split ? ', in a later read' : ''} → RST_STREAM PROTOCOL_ERROR, no complete request upstream`, { timeout: 30_000 }, async () => {
        const n0 = conns.length;
        const c = new RawH2(gw.port);
        if (split) {
          // The head in a read of its own: the PING's ACK says the gateway has read it.
          await c.write(Buffer.concat([post(cl), frame(T.PING, 0, 0, Buffer.alloc(8, 7))]));
          assert.ok(await c.until((fs) => fs.some((f) => f.type === T.PING && (f.flags & 1) === 1), 10_000), 'no PING ACK');
          await c.write(Buffer.concat(body.length > 0 ? body : [data('', true)]));
        } else await c.write(Buffer.concat([post(cl, body.length === 0), ...body]));
        assert.ok(await c.until((fs) => fs.some((f) => (f.type === T.RST_STREAM || f.type === T.HEADERS) && f.stream === 1), 10_000), 'no answer nor reset');
        const rst = c.frames.find((f) => f.type === T.RST_STREAM && f.stream === 1);
        assert.ok(rst !== undefined && !c.frames.some((f) => f.type === T.HEADERS && f.stream === 1), 'answered instead of reset');
        assert.equal(errorCode(rst), E.PROTOCOL_ERROR);
        c.destroy();
        // Upstream: never a byte past the declared length (the first DATA within it may have
        // gone, streamed), and its connection closed.
        await upWhen(() => conns.slice(n0).every((u) => u.closed), 10_000, 'the upstream connection closed');
        for (const u of conns.slice(n0)) {
          const e = u.bytes.indexOf('\r\n\r\n');
          const body = e < 0 ? '' : u.bytes.slice(e + 4);
          assert.ok(body.length <= Number(cl) && !u.bytes.includes('56789'), `bytes past the declared length went upstream: ${JSON.stringify(u.bytes)}`);
        }
      });
    }
  }

  test('a body matching its Content-Length is forwarded whole', { timeout: 30_000 }, async () => {
    const n0 = conns.length;
    const c = new RawH2(gw.port);
    await c.write(Buffer.concat([post('5'), data('hello', true)]));
    assert.ok(await c.until((fs) => fs.some((f) => f.type === T.HEADERS && f.stream === 1), 10_000), 'no answer');
    c.destroy();
    const u = conns[n0]!;
    assert.match(u.bytes, /\r\ncontent-length: 5\r\n/i);
    assert.ok(u.bytes.endsWith('\r\n\r\nhello'), JSON.stringify(u.bytes));
  });

  test('CONTINUATION frames without END_HEADERS, for ever → GOAWAY and the connection closed, nothing upstream', { timeout: 30_000 }, async () => {
    const n0 = conns.length;
    const c = new RawH2(gw.port);
    await c.write(frame(T.HEADERS, 0, 1, headerBlock()));
    const field = Buffer.concat([Buffer.from([0x00, 3]), Buffer.from('x-b'), Buffer.from([1]), Buffer.from('1')]);
    for (let i = 0; i < 200 && !c.closed; i++) {
      await c.write(Buffer.concat(Array.from({ length: 100 }, () => frame(9 /* CONTINUATION */, 0, 1, i % 2 === 0 ? field : Buffer.alloc(0)))));
    }
    assert.ok(await c.closedWithin(10_000), 'the connection stayed open');
    assert.ok(c.goaway() !== undefined, 'closed without GOAWAY');
    assert.equal(errorCode(c.goaway()!), E.ENHANCE_YOUR_CALM, 'the GOAWAY code');
    assert.equal(conns.length, n0, 'a request went upstream');
  });

  for (const [what, one] of [
    ['PING', frame(T.PING, 0, 0, Buffer.alloc(8))],
    ['SETTINGS', frame(T.SETTINGS, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]))],
  ] as const) {
    test(`a ${what} flood (acknowledgements the client never reads) → GOAWAY ENHANCE_YOUR_CALM, the connection closed`, { timeout: 30_000 }, async () => {
      const c = new RawH2(gw.port);
      c.socket.pause(); // reads nothing: the acknowledgements pile up on the gateway's side
      const batch = Buffer.concat(Array.from({ length: 1000 }, () => one));
      for (let i = 0; i < 100 && !c.closed; i++) await c.write(batch);
      c.socket.resume();
      assert.ok(await c.closedWithin(10_000), 'the connection stayed open');
      assert.ok(c.goaway() !== undefined, 'closed without GOAWAY');
      assert.equal(errorCode(c.goaway()!), E.ENHANCE_YOUR_CALM, 'the GOAWAY code');
    });
  }
});
