import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startTestGateway, type GatewayFront, type TestGateway } from '../helpers/gateway.js';
import { onFirstHead, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * A switched connection is a byte stream both ways, and each way ends on its own: an upstream
 * that ends its side (its FIN after its last message) and goes on reading must still get what
 * the client sends after that end. The upstream socket of an upgrade was not half-open
 * (undici's and the native client's sockets are made with `allowHalfOpen: false`): the
 * upstream's FIN ended the gateway's write side towards it at once, the tunnel closed, and
 * the client's later bytes were lost (the upstream counted 0). The client half of this is
 * test/gateway/upgrade-half-close.test.ts. Both fronts; seeded sizes of what the upstream sends
 * before its end and of what the client sends after it; the record counts both ways.
 */

const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';

let upstream: RawServer;
/** What each upstream connection read after its 101, by the tag the client sends first. */
const counted = new Map<string, (n: number) => void>();

before(async () => {
  // After its 101: `/ws`'s answer of `down` bytes (from the tag line), then its end; it goes on
  // reading until the client's end, then reports what it read.
  upstream = await startRawServer((s) =>
    onFirstHead(s, () => {
      s.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
      let text = '';
      let tag: string | undefined;
      let n = 0;
      s.on('data', (d: Buffer) => {
        if (tag !== undefined) {
          n += d.length;
          return;
        }
        text += d.toString('latin1');
        const nl = text.indexOf('\n');
        if (nl < 0) return;
        const [t, down] = text.slice(0, nl).split(' ');
        tag = t!;
        n = text.length - nl - 1;
        s.end(Buffer.alloc(Number(down), 0x62));
      });
      s.on('end', () => {
        if (tag !== undefined) counted.get(tag)?.(n);
      });
    }),
  );
});

after(async () => {
  await upstream?.close();
});

/** A client whose socket stays open for writing after the gateway's FIN (allowHalfOpen). */
function halfOpenClient(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

for (const front of ['node', 'net'] as GatewayFront[]) {
  describe(`upgrade: the upstream half-closes (${front} front)`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      } as never);
    });
    after(async () => {
      await gw?.close();
    });

    test("the upstream ends its side: what the client sends after that end still reaches it (seeded sizes)", { timeout: 90_000 }, async () => {
      const rand = seededRandom();
      await withSeed(rand, async () => {
        for (let i = 0; i < 4; i++) {
          const down = rand.int(100_000);
          const size = 1 + rand.int(300_000);
          const tag = `${front}-${i}-${rand.seed}`;
          const got = new Promise<number>((resolve) => counted.set(tag, resolve));
          const s = await halfOpenClient(gw.port);
          let all = Buffer.alloc(0);
          const ended = new Promise<void>((resolve) => s.once('end', resolve));
          s.on('data', (d: Buffer) => (all = Buffer.concat([all, d])));
          const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
          s.on('error', () => {});
          s.write(UPGRADE);
          s.write(`${tag} ${down}\n`);
          await bounded(ended, 10_000, `${tag}: the upstream's end`);
          const text = all.toString('latin1');
          const headEnd = text.indexOf('\r\n\r\n');
          assert.match(text, /^HTTP\/1\.1 101 /, tag);
          assert.equal(all.length - headEnd - 4, down, `${tag}: the upstream's ${down} bytes before its end`);
          const id = /\r\nx-request-id: ([^\r]+)/i.exec(text)?.[1];
          assert.ok(id, `${tag}: request id`);
          // The gateway's FIN came; the client goes on sending, then ends.
          s.end(Buffer.alloc(size, 0x61));
          const n = await bounded(got, 10_000, `${tag}: the upstream's count (the client's ${size} bytes after the upstream's end)`);
          assert.equal(n, size, `${tag}: the upstream read ${n} of the client's ${size} bytes sent after its end`);
          await bounded(closed, 10_000, `${tag}: the client connection's close`);
          const line = await gw.logFor(id);
          assert.equal(line.bytesUp, `${tag} ${down}\n`.length + size, `${tag}: bytesUp`);
          assert.equal(line.bytesDown, down, `${tag}: bytesDown`);
          assert.equal(line.endedBy, 'complete', `${tag}: ${JSON.stringify(line)}`);
        }
      });
    });
  });
}
