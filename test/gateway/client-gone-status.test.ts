import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * A client that leaves before it was answered is recorded with status 499, as docs/access-log.md
 * says and the forward face does (nginx's convention); one that leaves during the body keeps the
 * status of the head it got. Before session 31 the reverse face recorded Node's default 200 for
 * a request nobody answered, so metrics and the dashboard counted abandoned requests as successes.
 * Seeded over the protocol (HTTP/1.1 on both fronts, HTTP/2), the moment (waiting for the head,
 * during the body) and how the client leaves (RST or FIN; RST_STREAM codes or the connection).
 */

interface Held {
  path: string;
  res: ServerResponse;
}

for (const front of ['node', 'net'] as const) {
  describe(`client gone before its answer (${front} front)`, () => {
    let up: http.Server;
    let gw: TestGateway;
    let arrived: (h: Held) => void = () => {};
    before(async () => {
      up = http.createServer((req: IncomingMessage, res: ServerResponse) => arrived({ path: req.url ?? '', res }));
      await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
      const port = (up.address() as net.AddressInfo).port;
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front, ...(front === 'node' ? { http2: { h2c: true } } : {}) }],
        clusters: { up: { endpoints: [`http://127.0.0.1:${port}`], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      } as never);
    });
    after(async () => {
      await gw?.close();
      up?.closeAllConnections();
      up?.close();
    });

    test('seeded family: protocol × moment × how the client leaves', { timeout: 60_000 }, async () => {
      const rand = seededRandom();
      const records = endedRecords();
      try {
        for (let i = 0; i < 24; i++) {
          const path = `/gone-${i}`;
          const h2 = front === 'node' && rand.next() < 0.5;
          const moment = rand.pick(['head', 'body'] as const);
          const status = rand.pick([200, 203, 404, 500]);
          const held = new Promise<Held>((r) => (arrived = r));
          const where = `seed ${rand.seed}, case ${i}: ${h2 ? 'h2' : 'http/1.1'}, leaves waiting for the ${moment}`;
          let leave: () => void;
          let gotHead: Promise<void> | undefined;
          if (h2) {
            const c = http2.connect(`http://127.0.0.1:${gw.port}`);
            c.on('error', () => {});
            const st = c.request({ ':path': path });
            st.on('error', () => {});
            gotHead = new Promise((r) => st.once('response', () => r()));
            const how = rand.pick(['cancel', 'no-error', 'connection'] as const);
            leave = () => (how === 'connection' ? c.destroy() : (st.close(how === 'cancel' ? http2.constants.NGHTTP2_CANCEL : http2.constants.NGHTTP2_NO_ERROR), setImmediate(() => c.close())));
          } else {
            const s = net.connect(gw.port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: gone.test\r\n\r\n`));
            s.on('error', () => {});
            gotHead = new Promise((r) => s.once('data', () => r()));
            const rst = rand.next() < 0.5;
            leave = () => (rst ? s.resetAndDestroy() : s.end());
          }
          const h = await within(held, 5000, `${where}: the request upstream`);
          if (moment === 'body') {
            h.res.writeHead(status, { 'content-length': '100000' });
            h.res.write(Buffer.alloc(1000));
            await within(gotHead, 5000, `${where}: the head at the client`);
          }
          leave();
          const r = await within(records.wait((x) => x.path === path), 5000, `${where}: the record`);
          h.res.destroy();
          assert.equal(r.endedBy, 'client', where);
          assert.equal(r.status, moment === 'head' ? 499 : status, `${where}: status ${r.status}`);
        }
      } finally {
        records.close();
      }
    });
  });
}

describe('client gone before its upgrade was answered', () => {
  test('seeded family: RST or FIN while the upstream holds the upgrade → 499', { timeout: 60_000 }, async () => {
    let arrived: (s: net.Socket) => void = () => {};
    const up = http.createServer();
    up.on('upgrade', (_req: IncomingMessage, socket: net.Socket) => arrived(socket));
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const gw = await startTestGateway({
      clusters: { up: { endpoints: [`http://127.0.0.1:${(up.address() as net.AddressInfo).port}`], outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up', retry: { tries: 1 } }],
    } as never);
    const records = endedRecords();
    try {
      const rand = seededRandom();
      for (let i = 0; i < 6; i++) {
        const path = `/ws-gone-${i}`;
        const held = new Promise<net.Socket>((r) => (arrived = r));
        const s = net.connect(gw.port, '127.0.0.1', () =>
          s.write(`GET ${path} HTTP/1.1\r\nHost: gone.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`),
        );
        s.on('error', () => {});
        const upstream = await within(held, 5000, `seed ${rand.seed}, case ${i}: the upgrade upstream`);
        const rst = rand.next() < 0.5;
        if (rst) s.resetAndDestroy();
        else s.end();
        const r = await within(records.wait((x) => x.path === path), 5000, `seed ${rand.seed}, case ${i}: the record`);
        upstream.destroy();
        assert.equal(r.endedBy, 'client', `seed ${rand.seed}, case ${i}`);
        assert.equal(r.status, 499, `seed ${rand.seed}, case ${i} (${rst ? 'RST' : 'FIN'}): status ${r.status}`);
      }
    } finally {
      records.close();
      await gw.close();
      up.closeAllConnections();
      up.close();
    }
  });
});
