import { once } from 'node:events';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { REQUEST_END_CHANNEL, type ForwardRecord, type RequestRecord } from '../../src/record/index.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { PASSWORD, USER } from './helpers.js';

/**
 * The rigs of the forward proxy's drain tests (drain.test.ts, drain-waits.test.ts): the
 * records as they are published, an origin that holds its answers, an echo server, a SOCKS5
 * hello, and waits on a client socket.
 */

/** Forward records as they are published, and a wait for the one `pred` picks. */
export function forwardRecords() {
  const seen: ForwardRecord[] = [];
  const waiters = new Set<() => void>();
  const on = (m: unknown): void => {
    const r = m as RequestRecord;
    if (r.face !== 'forward') return;
    seen.push(r);
    for (const w of [...waiters]) w();
  };
  subscribe(REQUEST_END_CHANNEL, on);
  return {
    seen,
    wait(pred: (r: ForwardRecord) => boolean, what: string): Promise<ForwardRecord> {
      const r = seen.find(pred);
      if (r !== undefined) return Promise.resolve(r);
      return new Promise((resolve, reject) => {
        const guard = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no record: ${what}; seen ${JSON.stringify(seen)}`));
        }, GUARD_MS);
        const check = (): void => {
          const hit = seen.find(pred);
          if (hit === undefined) return;
          clearTimeout(guard);
          waiters.delete(check);
          resolve(hit);
        };
        waiters.add(check);
      });
    },
    close: () => unsubscribe(REQUEST_END_CHANNEL, on),
  };
}

/** An origin whose answers wait until released; `arrived` resolves as each request reaches it. */
export async function holdingOrigin() {
  const held: ServerResponse[] = [];
  let arrivedWaiter: (() => void) | undefined;
  const server = createHttpServer((req, res) => {
    req.resume();
    if (req.url === '/now') {
      res.end('now');
      return;
    }
    held.push(res);
    arrivedWaiter?.();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    arrived: () => (held.length > 0 ? Promise.resolve() : new Promise<void>((r) => (arrivedWaiter = r))),
    /** Requests it holds (reached it and not answered). */
    heldCount: () => held.length,
    release(body: string) {
      for (const res of held) res.end(body);
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** An echo server; `end()` ends every connection from its side (the tunnel's destination leaves). */
export async function echoServer() {
  const sockets = new Set<Socket>();
  let accepted = 0;
  // Half-open: a client's FIN passed on by the tunnel leaves the destination's side open.
  const server = createNetServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.on('data', (d) => s.write(d));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    /** Connections it accepted so far. */
    get accepted() {
      return accepted;
    },
    end: () => {
      for (const s of sockets) s.end();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function socks5Hello(port: number): Buffer {
  const u = Buffer.from(USER);
  const pw = Buffer.from(PASSWORD);
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, 1, 2]), Buffer.from([1, u.length]), u, Buffer.from([pw.length]), pw, Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), p]);
}

/** Resolves when `s` has closed (at once if it has). */
export function closed(s: Socket): Promise<void> {
  return s.destroyed && s.closed ? Promise.resolve() : new Promise<void>((r) => s.once('close', () => r()));
}

/** What the client read until its socket closed. */
export function readAll(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return closed(s).then(() => Buffer.concat(chunks));
}
