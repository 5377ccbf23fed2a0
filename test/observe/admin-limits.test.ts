import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { startAdmin, type AdminServer } from '../../src/observe/admin.js';
import { between, seededRun } from '../helpers/seeded.js';

// Finding F4 (admin review): the admin listener took any number of connections and kept idle or
// slow ones for Node's defaults (headers 60 s, request 300 s): 350 of 350 stayed open.

type Kind = 'idle' | 'partial' | 'trickle' | 'kept-alive';
const KINDS: Kind[] = ['idle', 'partial', 'trickle', 'kept-alive'];

/** Open one client connection of a kind of slowness; resolves once connected (and, kept-alive, once answered). */
function slowClient(port: number, kind: Kind, closed: () => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let timer: NodeJS.Timeout | undefined;
    s.on('error', () => {});
    s.resume(); // read whatever comes, the server's close included
    s.once('close', () => {
      if (timer) clearInterval(timer);
      closed();
    });
    s.once('connect', () => {
      if (kind === 'idle') return resolve(s);
      if (kind === 'kept-alive') {
        s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        let got = '';
        const onData = (b: Buffer): void => {
          got += b.toString('latin1');
          if (got.includes('\r\n\r\n') && got.includes('alive')) {
            s.off('data', onData);
            s.resume();
            resolve(s);
          }
        };
        s.on('data', onData);
        return;
      }
      s.write('GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      if (kind === 'trickle') {
        let n = 0;
        // One header byte every 200 ms, at most 100 of them: activity must not extend the head's deadline.
        timer = setInterval(() => {
          if (n++ >= 100 || s.destroyed) return clearInterval(timer);
          s.write('x');
        }, 200);
      }
      resolve(s);
    });
    s.once('error', reject);
  });
}

test('admin listener: a flood of idle and slow connections past the cap; /healthz still answers, the listener never holds more than the cap, and every slow one is closed by its deadline (seeded)', { timeout: 120_000 }, async () => {
  await seededRun('admin connection cap', async (rand) => {
    const limits = { headersTimeoutMs: 1500, requestTimeoutMs: 3000, keepAliveTimeoutMs: 1000 };
    const admin: AdminServer = await startAdmin({ port: 0, limits });
    const port = Number(new URL(admin.url).port);
    const cap = 64;
    const n = between(rand, cap + 1, cap * 2);
    const clients: Socket[] = [];
    let peak = 0;
    const live = new Set<Socket>();
    admin.server.on('connection', (sock: Socket) => {
      live.add(sock);
      sock.once('close', () => live.delete(sock));
      let open = 0;
      for (const x of live) if (!x.destroyed) open++;
      peak = Math.max(peak, open);
    });
    let closedCount = 0;
    let allClosed!: () => void;
    const everyClosed = new Promise<void>((r) => (allClosed = r));
    const onClosed = (): void => {
      if (++closedCount === n) allClosed();
    };
    try {
      const kinds: Kind[] = [];
      for (let i = 0; i < n; i++) {
        const kind = KINDS[between(rand, 0, KINDS.length - 1)]!;
        kinds.push(kind);
        clients.push(await slowClient(port, kind, onClosed));
      }
      const started = Date.now();
      for (let i = 0; i < 3; i++) {
        const r = await request(`${admin.url}/healthz`, { headersTimeout: 5000, bodyTimeout: 5000, reset: true });
        assert.equal(r.statusCode, 200);
        await r.body.text();
      }
      assert.ok(peak <= cap, `the listener held ${peak} connections at once (cap ${cap}; ${n} opened: ${kinds.join(',')})`);
      // Every slow connection is closed by its deadline (head 1.5 s, idle keep-alive 1 s), checked every second: 6 s is ample.
      let deadline: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (deadline = setTimeout(() => r('late'), 6000)));
      const done = await Promise.race([everyClosed.then(() => 'closed' as const), late]);
      clearTimeout(deadline);
      assert.equal(done, 'closed', `${closedCount} of ${n} closed after ${Date.now() - started} ms`);
    } finally {
      for (const c of clients) c.destroy();
      await admin.close();
    }
  });
});

test('admin listener defaults: 10 s for a request head, 30 s for a whole request, 2 s keep-alive', async () => {
  const admin = await startAdmin({ port: 0 });
  try {
    assert.equal(admin.server.headersTimeout, 10_000);
    assert.equal(admin.server.requestTimeout, 30_000);
    assert.equal(admin.server.keepAliveTimeout, 2_000);
  } finally {
    await admin.close();
  }
});

test('admin listener: when every connection up to the cap has a request in progress, a new one is answered 503 and closed; after they finish it is served', async () => {
  const releases: Array<() => void> = [];
  const admin = await startAdmin({ port: 0, limits: { maxConnections: 2 }, reload: () => new Promise((r) => releases.push(() => r({ ok: true }))) });
  const port = Number(new URL(admin.url).port);
  const socks: Socket[] = [];
  try {
    const waiting: Array<Promise<string>> = [];
    for (let i = 0; i < 2; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => {});
      socks.push(s);
      waiting.push(new Promise((resolve) => {
        let got = '';
        s.on('data', (b: Buffer) => (got += b.toString('latin1')));
        s.on('close', () => resolve(got));
        s.write('POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nGatewise-Admin: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      }));
    }
    // Both requests are in the handler once two reloads wait (bounded: 200 looks at the event loop's pace).
    for (let i = 0; i < 200 && releases.length < 2; i++) await new Promise((r) => setImmediate(r));
    assert.equal(releases.length, 2);
    const third = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1');
      socks.push(s);
      let got = '';
      s.on('error', () => {});
      s.on('data', (b: Buffer) => (got += b.toString('latin1')));
      s.on('close', () => resolve(got));
      s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    });
    assert.match(third, /^HTTP\/1\.1 503 /);
    assert.match(third, /connections with a request in progress/);
    for (const r of releases) r();
    for (const w of await Promise.all(waiting)) assert.match(w, /^HTTP\/1\.1 200 /);
    const r = await request(`${admin.url}/healthz`, { reset: true });
    assert.equal(r.statusCode, 200);
    await r.body.text();
  } finally {
    for (const r of releases) r();
    for (const s of socks) s.destroy();
    await admin.close();
  }
});
