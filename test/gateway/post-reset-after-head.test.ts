import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { between, seededRun } from '../helpers/seeded.js';
import { until } from '../helpers/until.js';

/**
 * A non-idempotent request is sent again only when the gateway can prove the upstream did not
 * process it (RFC 9110 §9.2.2, RFC 9112 §9.3.1). A TCP reset proves that only while no byte of
 * the request was written on the connection: an origin that reads the head, acts on it and
 * dies with the body unread resets the connection exactly as one that read nothing (the kernel
 * sends a RST for unread data). Found by the resilience review (F3): such a POST was replayed
 * on the other endpoint and applied twice. Envoy's `reset-before-request` draws the same line.
 */

/** An origin that, per connection, reads a request head, records its x-id as applied and resets the connection (the body unread). */
class HeadThenResetOrigin {
  readonly applied = new Map<string, number>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #waiters: Array<{ id: string; resolve: () => void }> = [];
  port = 0;

  constructor(resetAfterMs: () => number) {
    this.#server = createServer((s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
      s.on('error', () => {});
      let head = '';
      const onData = (d: Buffer): void => {
        head += d.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.off('data', onData);
        s.pause();
        const id = /\r\nx-id: *([^\r]+)/i.exec(head.slice(0, end))?.[1] ?? '';
        this.applied.set(id, (this.applied.get(id) ?? 0) + 1);
        for (const w of this.#waiters.splice(0)) if (w.id === id) w.resolve();
        else this.#waiters.push(w);
        const ms = resetAfterMs();
        // The process "dies" with the request's body unread: the kernel answers with a RST.
        if (ms === 0) s.resetAndDestroy();
        else setTimeout(() => s.resetAndDestroy(), ms);
      };
      s.on('data', onData);
    });
  }

  async listen(): Promise<this> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Resolves when a request with this id has been applied. */
  appliedOnce(id: string): Promise<void> {
    if ((this.applied.get(id) ?? 0) > 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ id, resolve }));
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A raw client request: the head and the first body piece at once, the rest after `beforeRest` resolves; the status of the answer. */
async function upload(port: number, method: string, id: string, first: Buffer, rest: Buffer, beforeRest: Promise<void>): Promise<number> {
  const s = connect(port, '127.0.0.1');
  try {
    s.on('error', () => {});
    await once(s, 'connect');
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const closed = once(s, 'close');
    s.write(`${method} /pay HTTP/1.1\r\nHost: pay.test\r\nx-id: ${id}\r\nContent-Length: ${first.length + rest.length}\r\nConnection: close\r\n\r\n`);
    s.write(first);
    await Promise.race([beforeRest, closed]);
    if (!s.destroyed) s.write(rest);
    await closed;
    const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
    return m ? Number(m[1]) : 0;
  } finally {
    s.destroy();
  }
}

describe('a reset after the request head was written is not proof the request was unread', () => {
  for (const client of ['native', 'undici'] as const) {
    test(`${client}: a POST/PATCH whose upstream read the head, acted and reset with the body unread is answered 502 and applied once (seeded)`, { timeout: 60_000 }, () =>
      seededRun(`post reset after head (${client})`, async (rand) => {
        const opened: Array<{ close(): Promise<void> }> = [];
        try {
          const a = await new HeadThenResetOrigin(() => between(rand, 0, 5)).listen();
          opened.push(a);
          const b = await new HeadThenResetOrigin(() => between(rand, 0, 5)).listen();
          opened.push(b);
          const gw: TestGateway = await startTestGateway({
            clusters: { c: { endpoints: [a.url, b.url], client, balancer: 'round-robin', outlierDetection: { enabled: false } } },
            routes: [{ cluster: 'c', retry: { tries: 3 } }],
          });
          opened.push(gw);
          const rounds = between(rand, 4, 8);
          for (let i = 0; i < rounds; i++) {
            const id = `q${i}`;
            const method = rand() < 0.7 ? 'POST' : 'PATCH';
            const first = Buffer.alloc(between(rand, 1, 4096), 0x61);
            const rest = Buffer.alloc(between(rand, 1, 60_000 - first.length), 0x62);
            const applied = Promise.race([a.appliedOnce(id), b.appliedOnce(id)]);
            const status = await upload(gw.port, method, id, first, rest, applied);
            const times = (a.applied.get(id) ?? 0) + (b.applied.get(id) ?? 0);
            await until(() => gw.logs.filter((l) => l.type === 'access').length > i, 2000, 5);
            const line = gw.logs.filter((l) => l.type === 'access')[i];
            assert.equal(times, 1, `${method} ${id} (${first.length}+${rest.length} bytes) applied ${times} times; attempts ${JSON.stringify(line?.attempts)}`);
            assert.equal(status, 502, `${method} ${id}: status ${status}; attempts ${JSON.stringify(line?.attempts)}`);
          }
        } finally {
          for (const o of opened.reverse()) await o.close();
        }
      }));
  }

  for (const client of ['native', 'undici'] as const) {
    test(`${client}: a POST whose fresh connection is reset before any byte of it was written is still sent again (provably unread)`, { timeout: 30_000 }, async () => {
      const opened: Array<{ close(): Promise<void> }> = [];
      try {
        // The first connection is reset as soon as it is accepted; later ones are answered.
        let conns = 0;
        const bodies: string[] = [];
        let secondCame!: () => void;
        const second = new Promise<void>((resolve) => (secondCame = resolve));
        const sockets = new Set<Socket>();
        const origin = createServer((s) => {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => {});
          if (++conns === 1) {
            s.resetAndDestroy();
            return;
          }
          secondCame();
          let buf = '';
          s.on('data', (d: Buffer) => {
            buf += d.toString('latin1');
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            const len = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
            if (buf.length - end - 4 < len) return;
            bodies.push(buf.slice(end + 4, end + 4 + len));
            s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
          });
        });
        origin.listen(0, '127.0.0.1');
        await once(origin, 'listening');
        opened.push({ close: () => { for (const s of sockets) s.destroy(); return new Promise<void>((r) => origin.close(() => r())); } });
        const gw = await startTestGateway({
          clusters: { c: { endpoints: [`http://127.0.0.1:${(origin.address() as { port: number }).port}`], client, outlierDetection: { enabled: false } } },
          routes: [{ cluster: 'c', retry: { tries: 3 } }],
        });
        opened.push(gw);
        // The head alone: the gateway cannot write the upstream head before the first body byte, so the reset finds nothing written.
        const s = connect(gw.port, '127.0.0.1');
        opened.push({ close: async () => void s.destroy() });
        s.on('error', () => {});
        await once(s, 'connect');
        let got = '';
        s.on('data', (d: Buffer) => (got += d.toString('latin1')));
        const closed = once(s, 'close');
        s.write('POST /pay HTTP/1.1\r\nHost: pay.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\n');
        await Promise.race([second, closed]);
        s.write('hello');
        await closed;
        assert.match(got, /^HTTP\/1\.1 200 /, got.slice(0, 400));
        assert.deepEqual(bodies, ['hello']);
        const line = gw.logs.find((l) => l.type === 'access');
        assert.equal(line?.attempts?.length, 2, JSON.stringify(line?.attempts));
        assert.equal(line?.attempts?.[0]?.error, 'connection_terminated', JSON.stringify(line?.attempts));
      } finally {
        for (const o of opened.reverse()) await o.close();
      }
    });
  }
});
