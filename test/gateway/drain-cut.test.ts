import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { ReverseRecord } from '../../src/record/index.js';
import { accessRecord, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { endedRecords, within } from '../helpers/ended-records.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { onHeads, startRawServer } from '../helpers/scripted-upstream.js';
import { certDir } from '../helpers/tls-certs.js';
import { connect as tlsConnect } from 'node:tls';

/**
 * HTTP/1.1 requests the gateway itself cuts at the end of a graceful drain (the drain timeout
 * passed, `closeAllConnections`) are recorded as ended by the gateway, with the failure of the
 * drain timeout from the taxonomy (`connectionClosedByGateway`, as HTTP/2 streams cut so are),
 * never as the client's leaving. Finding: every request still in flight at the cut was recorded
 * `endedBy: client`, and one cut before its head was counted a 499 the client never caused.
 * A client that leaves by itself during the drain is still the client's (499).
 *
 * Seeded over the number of requests in flight (1–4, each on its own connection), what each
 * is doing at the cut (the upstream holds its head; its body is being streamed; the client is
 * still sending its request body; the client leaves as the drain begins) and the front (node,
 * net, node on a TLS listener). Upgrades likewise, in a family of their own.
 */

type Moment = 'head' | 'body' | 'upload' | 'left';

describe('drain timeout: HTTP/1.1 requests the gateway cuts are ended by the gateway', () => {
  test('seeded family: 1–4 in flight × head / body / upload / client left × node, net or TLS front → endedBy gateway, proxy_internal_error (the client\'s own leaving stays the client\'s)', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`drain-cut seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    const dir = certDir();
    const ca = dir.ca('Drain cut CA');
    const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
    try {
      await withSeed(rand, async () => {
        for (let i = 0; i < 9; i++) {
          const front = (['node', 'net', 'tls'] as const)[i % 3]!;
          const n = 1 + rand.int(4);
          const moments: Moment[] = Array.from({ length: n }, () => rand.pick<Moment>(['head', 'body', 'upload', 'head', 'body', 'left']));
          // At least one request the gateway cuts in every case.
          if (!moments.some((m) => m !== 'left')) moments[0] = 'head';
          const where = `case ${i}: ${front} front, ${moments.join(', ')}`;
          const waiting = new Map<string, (res: ServerResponse) => void>();
          const up = http.createServer((req: IncomingMessage, res: ServerResponse) => {
            req.resume();
            waiting.get(req.url!)?.(res);
          });
          const held: ServerResponse[] = [];
          const clients: Socket[] = [];
          let gw: TestGateway | undefined;
          const records = endedRecords();
          try {
            await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
            gw = await startTestGateway({
              listeners: [front === 'tls' ? { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] } } : { address: '127.0.0.1', port: 0, front }],
              clusters: { up: { endpoints: [`http://127.0.0.1:${(up.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
              routes: [{ cluster: 'up', retry: { tries: 1 } }],
              shutdown: { drainTimeout: '300ms' },
            });
            const paths = moments.map((_, k) => `/drain-${rand.seed}-${i}-${k}`);
            const port = gw.port;
            for (let k = 0; k < n; k++) {
              const path = paths[k]!;
              const arrived = new Promise<ServerResponse>((r) => waiting.set(path, r));
              const c = front === 'tls' ? tlsConnect({ port, host: '127.0.0.1', ca: ca.cert, servername: 'localhost', ALPNProtocols: ['http/1.1'] }) : connect(port, '127.0.0.1');
              c.on('error', () => {});
              clients.push(c);
              let got = '';
              const head = new Promise<void>((r) => c.on('data', (d: Buffer) => ((got += d.toString('latin1')).includes('\r\n\r\n') ? r() : undefined)));
              // An upload sends 1000 bytes of its 100000: the rest never comes.
              if (moments[k] === 'upload') c.write(`POST ${path} HTTP/1.1\r\nHost: drain.test\r\nContent-Length: 100000\r\n\r\n${'u'.repeat(1000)}`);
              else c.write(`GET ${path} HTTP/1.1\r\nHost: drain.test\r\n\r\n`);
              const res = await within(arrived, 10_000, `${where}: request ${k} upstream`);
              held.push(res);
              if (moments[k] === 'body') {
                res.writeHead(200, { 'content-length': '100000' });
                res.write(Buffer.alloc(1000));
                await within(head, 10_000, `${where}: request ${k}'s head at the client`);
              }
            }
            const closing = gw.gw.close();
            // As the drain begins, the clients that leave by themselves do.
            for (let k = 0; k < n; k++) if (moments[k] === 'left') clients[k]!.destroy();
            for (let k = 0; k < n; k++) {
              const path = paths[k]!;
              const m = moments[k]!;
              const r = await within(records.wait((x) => x.path === path), 10_000, `${where}: request ${k}'s record`);
              const line = await accessRecord(gw, (l) => l.requestId === r.requestId, 2000);
              assert.ok(line !== undefined, `${where}: request ${k}: no access-log line`);
              const what = `${where}: request ${k} (${m}; detail: ${String(line.detail)})`;
              if (m === 'left') {
                assert.equal(line.endedBy, 'client', `${what}: endedBy`);
                assert.equal(line.status, 499, `${what}: status`);
                continue;
              }
              assert.equal(line.endedBy, 'gateway', `${what}: endedBy`);
              assert.equal(line.error, 'proxy_internal_error', `${what}: error`);
              assert.equal(line.reason, undefined, `${what}: reason`);
              assert.equal(line.status, m === 'body' ? 200 : undefined, `${what}: status`);
              // The try's phase: 'send' until the first response byte (attempt.ts), 'body' once the head is passed on.
              assert.equal(line.phase, m === 'body' ? 'body' : 'send', `${what}: phase`);
              assert.match(String(line.detail), /drain timeout/, `${what}: detail`);
            }
            await within(closing, 10_000, `${where}: the close`);
            const cut = moments.filter((m) => m !== 'left').length;
            assert.equal(await gw.requestsCounted({ ended_by: 'gateway', error: 'proxy_internal_error' }), cut, `${where}: gatewise_requests_total ended_by gateway`);
            assert.equal(await gw.requestsCounted({ status: '499' }), n - cut, `${where}: gatewise_requests_total 499`);
          } finally {
            records.close();
            for (const c of clients) c.destroy();
            for (const res of held) res.destroy();
            await gw?.close();
            up.closeAllConnections();
            await new Promise<void>((r) => up.close(() => r()));
          }
        }
      });
    } finally {
      dir.remove();
    }
  });

  test('seeded family: upgrades cut at the drain timeout, waiting for the 101 or switched × node or net front → endedBy gateway (a tunnel the upstream ended, or the client left, stays theirs)', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`drain-cut upgrades seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    type UpMoment = 'waiting' | 'switched' | 'left' | 'upstream-ended';
    const upstreams = new Map<string, (s: Socket) => void>();
    const up = await startRawServer((s) => {
      onHeads(s, (head) => upstreams.get(/^GET (\S+)/.exec(head)?.[1] ?? '')?.(s));
    });
    try {
      await withSeed(rand, async () => {
        for (let i = 0; i < 6; i++) {
          const front = i % 2 === 0 ? 'node' : 'net';
          const n = 1 + rand.int(3);
          const moments: UpMoment[] = Array.from({ length: n }, () => rand.pick<UpMoment>(['waiting', 'switched', 'switched', 'waiting', 'left', 'upstream-ended']));
          const where = `case ${i}: ${front} front, ${moments.join(', ')}`;
          const clients: Socket[] = [];
          const upSockets: Socket[] = [];
          let gw: TestGateway | undefined;
          const records = endedRecords();
          try {
            gw = await startTestGateway({
              listeners: [{ address: '127.0.0.1', port: 0, front }],
              clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
              routes: [{ cluster: 'up', retry: { tries: 1 } }],
              shutdown: { drainTimeout: '300ms' },
            });
            const paths = moments.map((_, k) => `/ws-${rand.seed}-${i}-${k}`);
            const upstreamEnded: Array<Promise<ReverseRecord>> = [];
            for (let k = 0; k < n; k++) {
              const path = paths[k]!;
              const m = moments[k]!;
              const arrived = new Promise<Socket>((r) => upstreams.set(path, r));
              const c = connect(gw.port, '127.0.0.1');
              c.on('error', () => {});
              clients.push(c);
              let got = '';
              const switched = new Promise<void>((r) => c.on('data', (d: Buffer) => ((got += d.toString('latin1')).includes('\r\n\r\n') ? r() : undefined)));
              c.write(`GET ${path} HTTP/1.1\r\nHost: drain.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
              const u = await within(arrived, 10_000, `${where}: upgrade ${k} upstream`);
              upSockets.push(u);
              if (m !== 'waiting' && m !== 'left') {
                u.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
                await within(switched, 10_000, `${where}: upgrade ${k}'s 101 at the client`);
                assert.match(got, /^HTTP\/1\.1 101 /, `${where}: upgrade ${k} switched`);
                // The upstream ends this tunnel itself before the drain: its record is written first.
                if (m === 'upstream-ended') {
                  upstreamEnded.push(records.wait((x) => x.path === path));
                  u.end();
                }
              }
            }
            // A tunnel the upstream ended is over before the drain (its client linger aside).
            await within(Promise.all(upstreamEnded), 10_000, `${where}: the tunnels the upstream ended`);
            const closing = gw.gw.close();
            for (let k = 0; k < n; k++) if (moments[k] === 'left') clients[k]!.destroy();
            for (let k = 0; k < n; k++) {
              const path = paths[k]!;
              const m = moments[k]!;
              const r = await within(records.wait((x) => x.path === path), 10_000, `${where}: upgrade ${k}'s record`);
              const line = await accessRecord(gw, (l) => l.requestId === r.requestId, 2000);
              assert.ok(line !== undefined, `${where}: upgrade ${k}: no access-log line`);
              const what = `${where}: upgrade ${k} (${m}; detail: ${String(line.detail)})`;
              if (m === 'left') {
                assert.equal(line.endedBy, 'client', `${what}: endedBy`);
                assert.equal(line.status, 499, `${what}: status`);
                continue;
              }
              if (m === 'upstream-ended') {
                assert.notEqual(line.endedBy, 'gateway', `${what}: endedBy`);
                assert.equal(line.status, 101, `${what}: status`);
                continue;
              }
              assert.equal(line.endedBy, 'gateway', `${what}: endedBy`);
              assert.equal(line.error, 'proxy_internal_error', `${what}: error`);
              assert.equal(line.status, m === 'switched' ? 101 : undefined, `${what}: status`);
              assert.match(String(line.detail), /drain timeout/, `${what}: detail`);
            }
            await within(closing, 10_000, `${where}: the close`);
          } finally {
            records.close();
            for (const c of clients) c.destroy();
            for (const u of upSockets) u.destroy();
            await gw?.close();
          }
        }
      });
    } finally {
      await up.close();
    }
  });
});
