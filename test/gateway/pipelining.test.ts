import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import diagnostics_channel from 'node:diagnostics_channel';
import type { AddressInfo, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { certDir } from '../helpers/tls-certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn } from '../helpers/raw-conn.js';
import { seededRandom, seededRun, withSeed } from '../helpers/seeded.js';
import { MAX_PIPELINED_RUNNING, MAX_PIPELINED_WAITING } from '../../src/http/pipelining.js';

/**
 * Issue 14, finding 10: pipelined non-idempotent requests ran in parallel. Node's server
 * writes responses in order but hands pipelined requests over as it parses them. RFC 9112
 * §9.3.2 allows parallel processing only when all are safe: an unsafe request now starts
 * only when nothing earlier on its connection is in flight, and nothing starts while an
 * unsafe one is.
 */

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Requests at the upstream right now, and what each arrival saw. */
const inFlight = new Set<string>();
const violations: string[] = [];
let maxConcurrent = 0;
let onArrival: ((id: string) => void) | undefined;
let upstream: Server;
let gw: TestGateway;
/** How long the upstream holds each answer: the window in which a parallel request would overlap. */
const HOLD_MS = 40;

before(async () => {
  upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
    const id = `${req.method} ${req.url}`;
    const unsafe = !SAFE.has(req.method!);
    if (inFlight.size > 0 && (unsafe || [...inFlight].some((r) => !SAFE.has(r.split(' ')[0]!)))) {
      violations.push(`${id} arrived while ${[...inFlight].join(', ')} in flight`);
    }
    inFlight.add(id);
    onArrival?.(id);
    maxConcurrent = Math.max(maxConcurrent, inFlight.size);
    req.resume();
    req.on('end', () => {
      setTimeout(() => {
        inFlight.delete(id);
        if (res.destroyed) return;
        res.writeHead(200, { 'x-n': req.url!.slice(1), 'content-length': '2' });
        res.end('ok');
      }, HOLD_MS);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  gw = await startTestGateway({
    clusters: { up: { endpoints: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
    routes: [{ cluster: 'up', retry: { tries: 1 } }],
  });
});

after(async () => {
  await gw?.close();
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

/** Send `methods` pipelined on one connection (the last with Connection: close); the x-n order of the answers. */
async function pipeline(methods: string[]): Promise<string[]> {
  let bytes = '';
  methods.forEach((m, i) => {
    const close = i === methods.length - 1 ? 'Connection: close\r\n' : '';
    const body = SAFE.has(m) ? '' : `body${i}`;
    bytes += `${m} /${i} HTTP/1.1\r\nHost: gw.test\r\n${close}Content-Length: ${body.length}\r\n\r\n${body}`;
  });
  const conn = new RawConn(gw.port);
  await conn.write(bytes);
  const text = await conn.closed(10_000);
  conn.destroy();
  return [...text.matchAll(/x-n: (\d+)/gi)].map((m) => m[1]!);
}

describe('pipelined requests on one connection', () => {
  test('three pipelined POSTs run one after another, answered in order', { timeout: 10_000 }, async () => {
    violations.length = 0;
    maxConcurrent = 0;
    const order = await pipeline(['POST', 'POST', 'POST']);
    assert.deepEqual(order, ['0', '1', '2']);
    assert.equal(maxConcurrent, 1, `pipelined POSTs ran in parallel: ${violations.join('; ')}`);
  });

  test('seeded families of pipelined methods: an unsafe request never overlaps another of its connection', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let f = 0; f < 6; f++) {
        violations.length = 0;
        const methods = Array.from({ length: 3 + rand.int(4) }, () => rand.pick(['GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']));
        const order = await pipeline(methods);
        assert.deepEqual(order, methods.map((_, i) => String(i)), `${methods.join(' ')}: answers out of order`);
        assert.deepEqual(violations, [], `${methods.join(' ')}`);
      }
    });
  });

  test('safe requests may still run in parallel; a client that leaves with requests queued or running leaves nothing in flight', { timeout: 10_000 }, async () => {
    maxConcurrent = 0;
    await pipeline(['GET', 'GET', 'GET']);
    assert.ok(maxConcurrent >= 2, 'pipelined GETs were serialised');
    for (const [first, second, m] of [['/a', '/b', 'POST'], ['/c', '/d', 'GET']] as const) {
      const ended = new Set<string>();
      const endedByOf = new Map<string, string | undefined>();
      const bothEnded = new Promise<void>((resolve) => {
        const onEnd = (msg: unknown): void => {
          const { path, endedBy } = msg as { path?: string; endedBy?: string };
          if (path === first || path === second) {
            ended.add(path);
            endedByOf.set(path, endedBy);
          }
          if (ended.size === 2) {
            diagnostics_channel.unsubscribe('gatewise:request:end', onEnd);
            resolve();
          }
        };
        diagnostics_channel.subscribe('gatewise:request:end', onEnd);
      });
      // POSTs: the second waits for its turn. GETs: both run, the second's answer is never begun.
      const arrived = new Promise<void>((resolve) => (onArrival = (id) => id === `${m} ${m === 'POST' ? first : second}` && resolve()));
      const body = m === 'POST' ? 'Content-Length: 1\r\n\r\nx' : '\r\n';
      const conn = new RawConn(gw.port);
      await conn.write(`${m} ${first} HTTP/1.1\r\nHost: gw.test\r\n${body}${m} ${second} HTTP/1.1\r\nHost: gw.test\r\n${body}`);
      await arrived;
      conn.destroy();
      await bothEnded;
      assert.deepEqual([endedByOf.get(first), endedByOf.get(second)], ['client', 'client'], `${m}: who ended them`);
    }
    assert.equal(gw.gw.ctx.inflight, 0, 'a pipelined request stayed in flight after its client left');
  });
});

/**
 * At most MAX_PIPELINED_RUNNING safe pipelined requests of one connection run at once (adversarial
 * review, session 26: a client that pipelined 5,000 GETs and never read had all 5,000 sent
 * upstream and ~450 MB held). Both fronts, a seeded family of pipeline lengths: the origin holds
 * every request it gets; once it holds the bound, nothing more may arrive (checked at each arrival,
 * and over a bounded window: without the bound the rest arrive within milliseconds), then it
 * answers everything and every answer comes back in order.
 */
describe('pipelined requests run at most MAX_PIPELINED_RUNNING at once', () => {
  for (const front of ['node', 'net'] as const) {
    test(`front: ${front}`, { timeout: 60_000 }, async () => {
      const held: ServerResponse[] = [];
      let over = '';
      let releasing = false;
      let waiter: (() => void) | undefined;
      const origin = createServer((req, res) => {
        req.resume();
        if (releasing) {
          res.writeHead(200, { 'x-n': req.url!.slice(1), 'content-length': '2' });
          res.end('ok');
          return;
        }
        (res as ServerResponse & { n?: string }).n = req.url!.slice(1);
        held.push(res);
        if (held.length > MAX_PIPELINED_RUNNING) over = `${held.length} requests of one connection at the origin at once`;
        if (held.length >= MAX_PIPELINED_RUNNING) waiter?.();
      });
      await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
      const g = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: { up: { endpoints: [`http://127.0.0.1:${(origin.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      });
      try {
        await seededRun(`pipelining bound, front ${front}`, async (rand) => {
          for (let k = 0; k < 3; k++) {
            held.length = 0;
            releasing = false;
            const n = MAX_PIPELINED_RUNNING + 1 + Math.floor(rand() * 200);
            let bytes = '';
            for (let i = 0; i < n; i++) bytes += `${rand() < 0.8 ? 'GET' : 'HEAD'} /${i} HTTP/1.1\r\nHost: gw.test\r\n${i === n - 1 ? 'Connection: close\r\n' : ''}\r\n`;
            const reached = new Promise<void>((resolve) => (waiter = resolve));
            const conn = new RawConn(g.port);
            await conn.write(bytes);
            await reached;
            // A bounded window for the ones that must not come (they would within milliseconds).
            for (let t = 0; t < 25 && over === ''; t++) await new Promise((r) => setTimeout(r, 10));
            assert.equal(over, '', `${n} pipelined`);
            assert.equal(held.length, MAX_PIPELINED_RUNNING, `${n} pipelined: the origin holds the bound`);
            releasing = true;
            for (const res of held.splice(0)) {
              res.writeHead(200, { 'x-n': (res as ServerResponse & { n?: string }).n!, 'content-length': '2' });
              res.end('ok');
            }
            const text = await conn.closed(20_000);
            conn.destroy();
            const order = [...text.matchAll(/x-n: (\d+)/gi)].map((m) => Number(m[1]));
            assert.deepEqual(order, Array.from({ length: n }, (_, i) => i), `${n} pipelined: every answer, in order`);
          }
        });
      } finally {
        await g.close();
        origin.closeAllConnections();
        await new Promise<void>((r) => origin.close(() => r()));
      }
    });
  }
});

/**
 * The requests a connection pipelines ahead of their turn are bounded (found in session 30: a
 * client that pipelined 940 KB of small GETs and never read its answers had all 20,000 of them
 * parsed and waiting, ~60 MB of heap for one connection). Both fronts, a seeded family of
 * request sizes (an X-Pad field of 0–1,500 bytes), method mixes (GET, HEAD, OPTIONS, and
 * POSTs with a body, which run alone) and flood lengths (at least 600 KiB, in one write): the
 * origin holds what reaches it; once it holds what may run, and a request on another
 * connection has been answered, the gateway must have read at most the bound's requests and
 * three reads of the socket (64 KiB each) of the flood. Then the origin answers everything and
 * every request of the flood is answered, in order: reading goes on as answers go out.
 */
/**
 * Wait for `c` to close while its answers keep coming. Thousands of answers took over a minute
 * on a loaded machine (session 32, load average 22 on two cores: ~40 a second), so a fixed
 * bound failed a gateway that was only slow; this fails when nothing arrives for `idleMs` (a
 * stall), or after `rounds` such waits.
 */
async function closedWhileAnswering(c: { closed(ms: number): Promise<string>; received(): number }, idleMs: number, rounds: number): Promise<string> {
  for (let i = 1; ; i++) {
    const before = c.received();
    try {
      return await c.closed(idleMs);
    } catch (err) {
      if (c.received() === before || i >= rounds) throw err;
    }
  }
}

describe('the pipelined requests read ahead of their turn are bounded', () => {
  for (const kind of ['node', 'net', 'tls'] as const) {
    // The whole family: bounded by closedWhileAnswering's rounds, not by how fast a loaded machine answers.
    test(kind === 'tls' ? 'a TLS listener (node front)' : `front: ${kind}`, { timeout: 900_000 }, async () => {
      const held: ServerResponse[] = [];
      let releasing = false;
      let want = 0;
      let waiter: (() => void) | undefined;
      const origin = createServer((req, res) => {
        req.resume();
        const n = req.url!.slice(1);
        if (releasing || n === 'fresh') {
          res.writeHead(200, { 'x-n': n, 'content-length': '2' });
          res.end('ok');
          return;
        }
        (res as ServerResponse & { n?: string }).n = n;
        held.push(res);
        if (held.length >= want) waiter?.();
      });
      await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
      const certs = kind === 'tls' ? certDir('gatewise-pipelining-') : undefined;
      const ca = certs?.ca('Pipelining Test CA');
      const cert = ca?.issue('gw.test', { dns: ['gw.test'], ip: ['127.0.0.1'] });
      const g = await startTestGateway({
        listeners: [kind === 'tls' ? { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: cert!.certFile, key: cert!.keyFile }] } } : { address: '127.0.0.1', port: 0, front: kind }],
        clusters: { up: { endpoints: [`http://127.0.0.1:${(origin.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
        routes: [{ cluster: 'up', retry: { tries: 1 } }],
      });
      let accepted: Socket | undefined;
      const onAccept = (m: unknown): void => {
        const s = (m as { socket: Socket }).socket;
        if (s.localPort === g.port) accepted ??= s; // the flood's connection, not the other one
      };
      diagnostics_channel.subscribe('net.server.socket', onAccept);
      try {
        /** A client connection of this listener's kind: bytes in, everything read until the gateway closes. */
        const open = (): { write(b: Buffer | string): void; closed(ms: number): Promise<string>; received(): number; destroy(): void } => {
          if (kind !== 'tls') {
            const c = new RawConn(g.port);
            return { write: (b) => void c.write(b).catch(() => {}), closed: (ms) => c.closed(ms), received: () => c.text.length, destroy: () => c.destroy() };
          }
          const t = tlsConnect({ host: '127.0.0.1', port: g.port, ca: ca!.cert, servername: 'gw.test' });
          const chunks: Buffer[] = [];
          t.on('data', (d: Buffer) => chunks.push(d));
          t.on('error', () => {});
          const ended = new Promise<void>((resolve) => t.once('close', () => resolve()));
          return {
            write: (b) => void t.write(b),
            closed: async (ms) => {
              let timer: NodeJS.Timeout | undefined;
              await Promise.race([ended, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`not closed in ${ms} ms`)), ms)))]);
              clearTimeout(timer);
              return Buffer.concat(chunks).toString('latin1');
            },
            received: () => chunks.length,
            destroy: () => t.destroy(),
          };
        };
        await seededRun(`pipelined read-ahead bound, ${kind}`, async (rand) => {
          for (let k = 0; k < 3; k++) {
            held.length = 0;
            releasing = false;
            accepted = undefined;
            const pad = 'p'.repeat(Math.floor(rand() * 1500));
            const unsafeShare = rand() < 0.5 ? 0 : rand() * 0.3;
            const request = (i: number, method: string, last: boolean): string =>
              `${method} /${i} HTTP/1.1\r\nHost: gw.test\r\nX-Pad: ${pad}\r\n${last ? 'Connection: close\r\n' : ''}` + (method === 'POST' ? 'Content-Length: 2\r\n\r\nhi' : '\r\n');
            const per = request(0, 'GET', false).length;
            const n = Math.ceil((600 * 1024) / per) + Math.floor(rand() * 2000);
            const methods = Array.from({ length: n }, () => (rand() < unsafeShare ? 'POST' : rand() < 0.7 ? 'GET' : rand() < 0.5 ? 'HEAD' : 'OPTIONS'));
            const firstUnsafe = methods.indexOf('POST');
            want = firstUnsafe === 0 ? 1 : Math.min(MAX_PIPELINED_RUNNING, firstUnsafe < 0 ? n : firstUnsafe);
            const bytes = Buffer.from(methods.map((m, i) => request(i, m, i === n - 1)).join(''), 'latin1');
            const where = `${n} pipelined of ~${per} bytes (${bytes.length} in all), ${Math.round(unsafeShare * 100)} % POSTs, round ${k}`;
            const reached = new Promise<void>((resolve) => (waiter = resolve));
            const conn = open();
            conn.write(bytes);
            await reached;
            // Another connection's request, answered: the gateway has had its turns to read on.
            const other = open();
            other.write('GET /fresh HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
            assert.match(await closedWhileAnswering(other, 10_000, 3), /^HTTP\/1\.1 200 /, where);
            other.destroy();
            const read = accepted === undefined ? -1 : (accepted as Socket).bytesRead;
            const bound = 3 * 64 * 1024 + (MAX_PIPELINED_RUNNING + MAX_PIPELINED_WAITING + 1) * (per + 20);
            assert.ok(read > 0 && read <= bound, `the gateway read ${read} bytes of the flood, more than ${bound}: ${where}`);
            assert.equal(held.length, want, `the origin holds what may run: ${where}`);
            releasing = true;
            for (const res of held.splice(0)) {
              res.writeHead(200, { 'x-n': (res as ServerResponse & { n?: string }).n!, 'content-length': '2' });
              res.end('ok');
            }
            const text = await closedWhileAnswering(conn, 20_000, 40);
            conn.destroy();
            const order = [...text.matchAll(/x-n: (\d+)/gi)].map((m) => Number(m[1]));
            assert.equal(order.length, n, `every request answered: ${where}`);
            assert.deepEqual(order, Array.from({ length: n }, (_, i) => i), `in order: ${where}`);
          }
        });
      } finally {
        diagnostics_channel.unsubscribe('net.server.socket', onAccept);
        await g.close();
        origin.closeAllConnections();
        await new Promise<void>((r) => origin.close(() => r()));
        certs?.remove();
      }
    });
  }
});
