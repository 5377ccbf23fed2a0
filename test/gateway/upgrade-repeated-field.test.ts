import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startTestGateway, type GatewayFront, type TestGateway } from '../helpers/gateway.js';
import { onFirstHead, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * Upgrade is a list (RFC 9110 §7.8, §5.3: repeated fields of a list are one list, in order).
 * Of a request's repeated `Upgrade` fields only the last was read: `Upgrade: websocket` then
 * `Upgrade: h2c` offered nothing the route allows, and the request went upstream as plain
 * HTTP; `Upgrade: websocket` then `Upgrade: foo` offered only foo. The protocols offered are
 * now the union of every field, in order, and the 101's Upgrade is checked against that
 * union. Seeded: protocols spread over 1-3 fields, both fronts; the upstream switches to the
 * first protocol it was offered.
 */

const POOL = ['websocket', 'foo/2', 'h2c', 'bar', 'WebSocket/13', 'foo'];
const ALLOWED = new Set(['websocket', 'foo']);

let upstream: RawServer;
const offeredUp = new Map<string, string>();

before(async () => {
  upstream = await startRawServer((s) =>
    onFirstHead(s, (head) => {
      const tag = /^GET \/ws\/([^ ]+)/.exec(head)?.[1] ?? '';
      const values = [...head.matchAll(/\r\nupgrade: *([^\r]*)/gi)].map((m) => m[1]!.trim());
      offeredUp.set(tag, values.join(' | '));
      const first = values[0]?.split(',')[0]?.trim();
      if (first === undefined) s.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain');
      else s.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${first}\r\n\r\n`);
    }),
  );
});

after(async () => {
  await upstream?.close();
});

const name = (p: string): string => p.split('/')[0]!.toLowerCase();

for (const front of ['node', 'net'] as GatewayFront[]) {
  describe(`repeated Upgrade fields (${front} front)`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: { up: { endpoints: [upstream.url], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 }, upgrades: ['websocket', 'foo'] }],
      } as never);
    });
    after(async () => {
      await gw?.close();
    });

    test('the protocols offered are the union of every Upgrade field, in order; the 101 is checked against it (seeded)', { timeout: 60_000 }, async () => {
      const rand = seededRandom();
      await withSeed(rand, async () => {
        for (let i = 0; i < 12; i++) {
          const fields: string[][] = [];
          const n = 2 + rand.int(2);
          for (let f = 0; f < n; f++) fields.push(Array.from({ length: 1 + rand.int(2) }, () => rand.pick(POOL)));
          if (!fields.flat().some((p) => ALLOWED.has(name(p)))) fields[rand.int(n)]!.push('websocket');
          const all = fields.flat();
          const expected = all.filter((p) => ALLOWED.has(name(p))).join(', ');
          const tag = `${front}${i}`;
          const what = `${tag}: fields ${JSON.stringify(fields)}`;
          const c = new RawConn(gw.port);
          try {
            await c.write(`GET /ws/${tag} HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\n${fields.map((f) => `Upgrade: ${f.join(', ')}\r\n`).join('')}\r\n`);
            const text = await c.waitFor((t, ended) => ended || t.includes('\r\n\r\n'), 10_000, 'the answer');
            assert.equal(offeredUp.get(tag), expected, `${what}: the Upgrade the upstream got`);
            assert.equal(parseHead(text)?.status, 101, `${what}: ${text.slice(0, 300)}`);
            // The tunnel is open: the upstream switched to the first protocol offered.
            assert.equal(parseHead(text)?.get('upgrade'), expected.split(',')[0], what);
          } finally {
            c.destroy();
          }
        }
      });
    });
  });
}
