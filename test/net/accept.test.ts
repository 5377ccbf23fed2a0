import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dc from 'node:diagnostics_channel';
import { once } from 'node:events';
import fs from 'node:fs';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { installAccept, kAccepting } from '../../src/net/index.js';
import { freePort } from '../helpers/redis.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * `installAccept` (src/net/accept.ts): a listening server's accepted sockets are made with an
 * options object that keeps one V8 map, and otherwise as Node makes them.
 *
 * 1. A differential family on real loopback sockets: for seeded server options (allowHalfOpen,
 *    noDelay, keepAlive, pauseOnConnect) and client behaviours (bytes or none, half-close or
 *    not), the same connections against Node's own accept and against `installAccept` must
 *    show the same things: the 'connection' socket and its `server`, half-open handling, the
 *    paused start, the socket's no-delay and keep-alive marks, `getConnections()`, `close()`
 *    waiting for the sockets, the `net.server.socket` channel; `maxConnections` stays Node's.
 * 2. The finding itself, on `gatewise forward` and on `gatewise proxy` (the reverse gateway's
 *    node:http front): V8's map log (`--log-maps`) shows no new map per accepted connection. Node's own accept makes ~3 per connection (the `Socket` constructor's
 *    copy of its options gains `emitClose`, `autoDestroy`, `decodeStrings` on a map that keeps
 *    no transitions, in Node 20's V8), each read of which then misses to V8's runtime:
 *    ~80k of ~286k instructions per CONNECT tunnel (docs/benchmarks.md §35). Failed first.
 */

const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Node sets `server` on every accepted socket; its typings leave it out. */
const serverOf = (s: Socket): Server | undefined => (s as Socket & { server?: Server }).server;

interface ServerShape {
  allowHalfOpen: boolean;
  noDelay: boolean;
  keepAlive: boolean;
  keepAliveInitialDelay: number;
  pauseOnConnect: boolean;
}

interface ClientShape {
  send: boolean;
  halfClose: boolean;
}

interface Seen {
  server: boolean;
  paused: boolean;
  noDelay: unknown;
  keepAlive: unknown;
  keepAliveDelay: unknown;
  got: string;
  /** After the client's FIN: whether the server socket could still write (half-open). */
  writableAfterEnd: boolean;
  echoed: string;
}

function symbolValue(s: Socket, description: string): unknown {
  const k = Object.getOwnPropertySymbols(s).find((x) => x.description === description);
  return k === undefined ? 'absent' : (s as unknown as Record<symbol, unknown>)[k];
}

/** One server (Node's accept, or installAccept's) and the given connections; what was seen, in order. */
async function observe(shape: ServerShape, clients: ClientShape[], ours: boolean): Promise<{ seen: Seen[]; counts: number[]; published: number; closedAfterSockets: boolean }> {
  const seen: Seen[] = [];
  const counts: number[] = [];
  let published = 0;
  const onPublish = (m: unknown): void => {
    if (serverOf((m as { socket: Socket }).socket) === server) published++;
  };
  dc.subscribe('net.server.socket', onPublish);
  const open = new Set<Socket>();
  const server: Server = net.createServer(shape, (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    const rec: Seen = {
      server: serverOf(s) === server,
      paused: s.isPaused(),
      noDelay: symbolValue(s, 'kSetNoDelay'),
      keepAlive: symbolValue(s, 'kSetKeepAlive'),
      keepAliveDelay: symbolValue(s, 'kSetKeepAliveInitialDelay'),
      got: '',
      writableAfterEnd: false,
      echoed: '',
    };
    seen.push(rec);
    if (shape.pauseOnConnect) s.resume();
    s.on('data', (d: Buffer) => (rec.got += d.toString('latin1')));
    s.on('end', () => {
      rec.writableAfterEnd = s.writable;
      if (s.writable) s.end('bye');
    });
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  if (ours) assert.equal(installAccept(server), true);
  const port = (server.address() as AddressInfo).port;
  try {
    for (const c of clients) {
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => {});
      await once(sock, 'connect');
      let echoed = '';
      sock.on('data', (d: Buffer) => (echoed += d.toString('latin1')));
      if (c.send) sock.write('hello');
      // The server has the connection (and the bytes) before the count is read.
      await new Promise<void>((resolve) => {
        const check = (): void => {
          const last = seen.length > 0 ? seen[seen.length - 1]! : undefined;
          if (last !== undefined && seen.length === counts.length + 1 && (!c.send || last.got === 'hello')) resolve();
          else setImmediate(check);
        };
        check();
      });
      counts.push(await new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n)))));
      if (c.halfClose) sock.end();
      else sock.destroy();
      if (c.halfClose) {
        await once(sock, 'close');
        seen[seen.length - 1]!.echoed = echoed;
      }
    }
    // close() calls back only once every accepted socket is gone.
    let closed = false;
    const done = new Promise<void>((resolve) => server.close(() => ((closed = true), resolve())));
    const stillOpen = open.size;
    for (const s of open) s.destroy();
    await done;
    return { seen, counts, published, closedAfterSockets: closed && stillOpen >= 0 };
  } finally {
    dc.unsubscribe('net.server.socket', onPublish);
    server.close();
  }
}

describe(`accepted sockets with one options map (seed ${SEED}, replay: GATEWISE_SEED=${SEED})`, () => {
  it('behave as Node accepts them, across a seeded family of server options and clients', async () => {
    const r = seededRandom(SEED);
    for (let round = 0; round < 12; round++) {
      const shape: ServerShape = {
        allowHalfOpen: r.int(2) === 0,
        noDelay: r.int(2) === 0,
        keepAlive: r.int(2) === 0,
        keepAliveInitialDelay: r.pick([0, 1000, 5000, 60_000]),
        pauseOnConnect: r.int(2) === 0,
      };
      const clients: ClientShape[] = Array.from({ length: 1 + r.int(5) }, () => ({ send: r.int(3) > 0, halfClose: r.int(2) === 0 }));
      const what = `seed ${SEED} round ${round}: ${JSON.stringify(shape)} ${JSON.stringify(clients)}`;
      const node = await observe(shape, clients, false);
      const ours = await observe(shape, clients, true);
      assert.deepEqual(ours.seen, node.seen, what);
      assert.deepEqual(ours.counts, node.counts, what);
      assert.equal(ours.published, node.published, what);
      assert.equal(ours.published, clients.length, what);
      assert.equal(ours.closedAfterSockets, true, what);
    }
  });

  it('leaves a server with maxConnections to Node, which drops the connection over it', async () => {
    const server = net.createServer((s) => s.on('error', () => {}));
    server.maxConnections = 1;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    installAccept(server);
    const port = (server.address() as AddressInfo).port;
    const dropped = once(server, 'drop');
    const a = net.connect(port, '127.0.0.1');
    await once(server, 'connection');
    const b = net.connect(port, '127.0.0.1');
    b.on('error', () => {});
    await dropped;
    a.destroy();
    b.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is what the forward listener uses', async () => {
    const { startTestProxy, startOrigin } = await import('../forward/helpers.js');
    const origin = await startOrigin();
    const proxy = await startTestProxy({ auth: { required: false } });
    let server: Server | undefined;
    const onSocket = (m: unknown): void => {
      server ??= serverOf((m as { socket: Socket }).socket);
    };
    dc.subscribe('net.server.socket', onSocket);
    try {
      const c = net.connect(proxy.port, '127.0.0.1');
      c.on('error', () => {});
      await once(c, 'connect');
      c.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
      await once(c, 'data');
      c.destroy();
      assert.ok(server !== undefined);
      assert.equal((server as unknown as Record<symbol, unknown>)[kAccepting], true);
    } finally {
      dc.unsubscribe('net.server.socket', onSocket);
      await proxy.close();
      await origin.close();
    }
  });

  for (const kind of ['forward', 'reverse'] as const) {
    it(`gatewise ${kind === 'forward' ? 'forward' : 'proxy'} makes no new V8 map per accepted connection (--log-maps)`, async () => {
      const r = seededRandom(SEED + (kind === 'forward' ? 1 : 2));
      const origin = net.createServer((s) => {
        s.on('error', () => {});
        // The reverse gateway keeps its upstream connections (its dials are not what is counted).
        s.on('data', () => (kind === 'forward' ? s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok') : s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')));
      });
      await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', () => resolve()));
      const originPort = (origin.address() as AddressInfo).port;
      try {
        // Start-up makes such maps too (stdio's sockets, the first of each kind): the difference
        // between a run of `few` connections and one of `few + n` is what the connections cost.
        const few = 10 + r.int(10);
        const n = 40 + r.int(80);
        const base = await optionsMaps(kind, originPort, few);
        const more = await optionsMaps(kind, originPort, few + n);
        assert.ok(more - base < n / 4, `seed ${SEED}: ${more - base} more options maps for ${n} more accepted connections (${base} for ${few}, ${more} for ${few + n}; Node's own accept makes ~3 each)`);
      } finally {
        await new Promise<void>((resolve) => origin.close(() => resolve()));
      }
    });
  }
});

/**
 * `gatewise forward` (or `gatewise proxy`, the reverse gateway's node:http front) under
 * `--log-maps`, `n` connections through it one after another (a CONNECT tunnel each, or a GET with
 * `Connection: close`), then stopped: the maps V8 made for the three properties Node's Socket
 * constructor adds to its options copy (`emitClose`, `autoDestroy`, `decodeStrings`).
 */
async function optionsMaps(kind: 'forward' | 'reverse', originPort: number, n: number): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-accept-maps-'));
  const log = path.join(dir, 'v8.log');
  const port = await freePort();
  const command =
    kind === 'forward'
      ? ['forward', '--listen', `127.0.0.1:${port}`, '--no-auth', '--allow-private', '--connect-ports', '1-65535', '--no-access-log']
      : ['proxy', '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${originPort}`, '--no-access-log'];
  const child = spawn(process.execPath, ['--log-maps', `--logfile=${log}`, '--no-logfile-per-isolate', path.join(ROOT, 'bin', 'gatewise.js'), ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (out.includes('listening')) resolve();
        else if (child.exitCode !== null) reject(new Error(`gatewise ${command[0]!} exited: ${out}`));
        else setTimeout(check, 20);
      };
      check();
    });
    for (let i = 0; i < n; i++) {
      // The client's socket is made without options: its own maps are the empty object's.
      const c = new net.Socket();
      c.on('error', () => {});
      c.connect(port, '127.0.0.1');
      await once(c, 'connect');
      let got = '';
      c.on('data', (d: Buffer) => (got += d.toString('latin1')));
      if (kind === 'forward') c.write(`CONNECT 127.0.0.1:${originPort} HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n`);
      else c.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await once(c, 'end');
      assert.match(got, kind === 'forward' ? /^HTTP\/1\.1 200 [^\r]*\r\n(?:[^\r]*\r\n)*\r\nHTTP\/1\.1 200 OK/ : /^HTTP\/1\.1 200 OK\r\n(?:[^\r]*\r\n)*\r\nok$/);
      c.destroy();
    }
    child.kill();
    await once(child, 'exit'); // V8's log is complete once the process is gone
    return fs
      .readFileSync(log, 'latin1')
      .split('\n')
      .filter((l) => /^map,Transition,.*,(emitClose|autoDestroy|decodeStrings)$/.test(l)).length;
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill();
      await once(child, 'exit');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
