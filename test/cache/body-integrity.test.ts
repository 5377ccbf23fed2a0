import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startRawServer, onHeads } from '../helpers/scripted-upstream.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { withCacheGateway } from './cache-gateway.js';

/**
 * Guards from the adversarial probe of session 37 (found right): a chunked body the upstream cuts
 * (no last chunk, the connection reset) is never stored as complete, wherever it is cut; and a
 * 304 that freshens a stored response never gives it its Content-Length (RFC 9111 §3.2,
 * §4.3.4): the stored body answers with its own length.
 */
test('a chunked body cut at any point is never stored; a 304 never sets the stored Content-Length (seeded)', async () => {
  const rand = seededRandom();
  const body = 'x'.repeat(3000);
  const plans = new Map<string, { cut: number; chunk: number }>();
  const up = await startRawServer((socket) => {
    onHeads(socket, (head, target) => {
      if (target.startsWith('/v')) {
        socket.write(/if-none-match/i.test(head) ? 'HTTP/1.1 304 Not Modified\r\netag: "e"\r\ncache-control: max-age=600\r\ncontent-length: 999\r\n\r\n' : 'HTTP/1.1 200 OK\r\netag: "e"\r\ncache-control: max-age=0\r\ncontent-length: 5\r\n\r\nhello');
        return;
      }
      const p = plans.get(target)!;
      let out = 'HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ntransfer-encoding: chunked\r\n\r\n';
      for (let i = 0; i < p.cut; i += p.chunk) {
        const part = body.slice(i, Math.min(i + p.chunk, p.cut));
        out += `${part.length.toString(16)}\r\n${part}\r\n`;
      }
      socket.end(out); // no last chunk: the body is cut
      socket.destroy();
    });
  });
  await withCacheGateway(up as never, { routes: [{ name: 'c', cache: { collapseWait: '0s' } }] }, async ({ base, g }) => {
    await withSeed(rand, async () => {
      for (let i = 0; i < 16; i++) {
        const path = `/cut${i}-${rand.seed}`;
        plans.set(path, { cut: rand.int(body.length + 1), chunk: 1 + rand.int(1000) });
        await request(base + path).then((r) => r.body.text()).catch(() => undefined);
        assert.equal(g.gw.ctx.cache!.store.get(`127.0.0.1${path} c`), undefined, `case ${i} ${JSON.stringify(plans.get(path))}: a cut body was stored`);
      }
    });
    for (let i = 0; i < 3; i++) {
      const r = await request(`${base}/v`);
      assert.equal(await r.body.text(), 'hello');
      assert.equal(r.headers['content-length'], '5', `answer ${i}: ${String(r.headers['cache-status'])}`);
    }
    // The key spelling the cut cases look under holds what is stored (their check is not vacuous).
    assert.equal(g.gw.ctx.cache!.store.get('127.0.0.1/v c')?.[0]?.body.toString(), 'hello');
  });
});
