import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { ForwardConfigInput } from '../../src/config/forward.js';
import type { ForwardRecord } from '../../src/record/index.js';
import type { AuthProvider } from '../../src/tenants/index.js';
import { PASSWORD, USER, startTestProxy, type TestProxy } from './helpers.js';

/**
 * Raw clients of the three fronts a password check stands in front of (SOCKS5 with RFC 1929
 * sent with its greeting, CONNECT and absolute-form HTTP with Basic credentials), and a
 * destination that counts what it accepts: whether a refused or abandoned request was dialled.
 */

/** The fronts: SOCKS5, CONNECT, absolute-form HTTP. */
export type Front = 'socks5' | 'connect' | 'http';
export const FRONTS: readonly Front[] = ['socks5', 'connect', 'http'];

/** A destination that counts the connections it accepts. */
export async function countingServer(): Promise<{ server: Server; port: number; accepted: number; sockets: Socket[] }> {
  const st = {
    server: createServer((s) => {
      st.accepted++;
      st.sockets.push(s);
      s.on('error', () => {});
      // An answer for an absolute-form request (a tunnel's client reads it as tunnel bytes, after the proxy's reply).
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
    }),
    port: 0,
    accepted: 0,
    sockets: [] as Socket[],
  };
  st.server.listen(0, '127.0.0.1');
  await once(st.server, 'listening');
  st.port = (st.server.address() as AddressInfo).port;
  return st;
}

/** A SOCKS5 greeting, credentials and CONNECT naming `name` as a domain (ATYP 3), always: never as an address the name may look like. */
export function socks5NameBytes(name: string, port: number, user = USER, password = PASSWORD): Buffer {
  const u = Buffer.from(user);
  const p = Buffer.from(password);
  const n = Buffer.from(name, 'latin1');
  const pb = Buffer.alloc(2);
  pb.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, u.length]), u, Buffer.from([p.length]), p, Buffer.from([5, 1, 0, 3, n.length]), n, pb]);
}

/**
 * A SOCKS5 greeting, credentials and CONNECT: a dotted quad of plain decimal octets as an IPv4
 * address (ATYP 1), anything else as a name. Only plain octets: `0177.0.0.2` read as numbers
 * would be 177.0.0.2, not the loopback address it spells (a test of session 35 made the proxy
 * dial such an address before this check).
 */
export function socks5Bytes(host: string, port: number, user = USER, password = PASSWORD): Buffer {
  const u = Buffer.from(user);
  const p = Buffer.from(password);
  const isName = !/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(host);
  const addr = isName ? Buffer.concat([Buffer.from([3, host.length]), Buffer.from(host, 'latin1')]) : Buffer.from([1, ...host.split('.').map(Number)]);
  const pb = Buffer.alloc(2);
  pb.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, u.length]), u, Buffer.from([p.length]), p, Buffer.from([5, 1, 0]), addr, pb]);
}

export function connectBytes(host: string, port: number, user = USER, password = PASSWORD): string {
  const creds = Buffer.from(`${user}:${password}`).toString('base64');
  return `CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\nProxy-Authorization: Basic ${creds}\r\n\r\n`;
}

/** An absolute-form GET through the HTTP proxy (the relay's path, not a tunnel's). */
export function getBytes(host: string, port: number, user = USER, password = PASSWORD): string {
  const creds = Buffer.from(`${user}:${password}`).toString('base64');
  return `GET http://${host}:${port}/ HTTP/1.1\r\nHost: ${host}:${port}\r\nProxy-Authorization: Basic ${creds}\r\n\r\n`;
}

export function frontBytes(front: Front, host: string, port: number, user = USER, password = PASSWORD): Buffer | string {
  return front === 'socks5' ? socks5Bytes(host, port, user, password) : front === 'connect' ? connectBytes(host, port, user, password) : getBytes(host, port, user, password);
}

/** The first `n` bytes `s` receives (or what came before it closed). */
export function readAtLeast(s: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      if (got.length >= n) done();
    };
    const done = (): void => {
      s.off('data', onData);
      s.off('close', done);
      resolve(got);
    };
    s.on('data', onData);
    s.on('close', done);
  });
}

/** `p`, or a rejection naming `what` after `ms` (every wait of this test is bounded). */
export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)));
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

/**
 * An auth provider that knows USER and holds every check until the test calls `answer` (the
 * user, or undefined: wrong credentials): `checking` resolves when a check starts, `answered`
 * with the answer given.
 */
export function heldCheck(): { provider: AuthProvider; checking: Promise<void>; answered: Promise<string | undefined>; answer(v: string | undefined): void } {
  let checked!: () => void;
  const checking = new Promise<void>((r) => (checked = r));
  let answer!: (v: string | undefined) => void;
  const answered = new Promise<string | undefined>((r) => (answer = r));
  const provider: AuthProvider = {
    has: (name) => name === USER,
    authenticate: () => {
      checked();
      return answered;
    },
  };
  return { provider, checking, answered, answer };
}

/**
 * The config of a proxy on `protocols` whose every client needs a password an auth provider
 * checks (no users of its own), any loopback destination and port allowed, with the handshake
 * time `handshakeMs` (connect and DNS 5 s): the password-check cases' proxy.
 */
export function checkedProxyConfig(protocols: Array<'http' | 'socks5' | 'socks4'>, handshakeMs: number): ForwardConfigInput {
  return {
    listeners: [{ address: '127.0.0.1', port: 0, protocols }],
    auth: { required: true, users: [] },
    rules: { allowPrivate: true, connectPorts: ['1-65535'] },
    timeouts: { connect: '5s', dns: '5s', handshake: `${handshakeMs}ms` },
  };
}

/** A proxy's records as its `onFinish` hook gets them; `first()` resolves once there is one (now, if there is). */
export function recordWatch(): { records: ForwardRecord[]; onFinish(r: ForwardRecord): void; first(): Promise<void> } {
  const records: ForwardRecord[] = [];
  let recorded: (() => void) | undefined;
  return {
    records,
    onFinish(r) {
      records.push(r);
      recorded?.();
    },
    first: () =>
      new Promise<void>((r) => {
        recorded = () => records.length >= 1 && r();
        recorded();
      }),
  };
}

/** The end of a front case, however it went: the client's socket destroyed, the proxy closed, the destination's sockets destroyed and it closed. */
export async function endFrontCase(client: Socket | undefined, proxy: { close(): Promise<void> } | undefined, dest: { server: Server; sockets: Socket[] }): Promise<void> {
  client?.destroy();
  await proxy?.close();
  for (const s of dest.sockets) s.destroy();
  dest.server.close();
}


/** How a client leaves: a reset, a close, or a half-close (FIN, still reading). */
export type Leave = 'rst' | 'close' | 'half';

/**
 * The client leaves while the proxy's hop to an exit is held (the exit has read what the hop
 * sent and answers nothing), then waits, each wait bounded, for the request's first record,
 * the proxy giving up its connection to the exit (`exitSide`, the exit's end of it) and the
 * proxy closing the client's connection (`proxySide`). `onRecord` is handed the wake-up the
 * test's `onFinish` hook calls after each record it keeps in `records`. Returns the one record
 * (asserted: one), with the records as JSON for messages.
 */
export async function leaveWhileHopHeld(o: {
  client: Socket;
  exitSide: Socket;
  proxySide: Socket | undefined;
  records: readonly { endedBy?: string }[];
  onRecord(wake: () => void): void;
  leave: Leave;
  what: string;
  hop: string;
}): Promise<{ all: string }> {
  const { client, exitSide, proxySide: side, records, what } = o;
  const exitEnded = exitSide.destroyed || exitSide.readableEnded ? Promise.resolve() : new Promise<void>((r) => (exitSide.once('end', () => r()), exitSide.once('close', () => r())));
  if (side === undefined) throw new Error(`${what}: the proxy's side of the client was not seen`);
  const sideClosed = side.destroyed ? Promise.resolve() : new Promise<void>((r) => side.once('close', () => r()));
  const recordedOnce = new Promise<void>((r) => {
    const wake = (): void => void (records.length >= 1 && r());
    o.onRecord(wake);
    wake();
  });
  if (o.leave === 'rst') client.resetAndDestroy();
  else if (o.leave === 'close') client.destroy();
  else client.end();
  await bounded(recordedOnce, 5000, `${what}: the request's record`);
  await bounded(exitEnded, 5000, `${what}: the proxy giving up its connection to the ${o.hop} (${JSON.stringify(records)})`);
  await bounded(sideClosed, 5000, `${what}: the proxy closing the client's connection`);
  await new Promise<void>((r) => setImmediate(r));
  const all = JSON.stringify(records);
  if (records.length !== 1) throw new Error(`${what}: one record expected: ${all}`);
  return { all };
}

/** A step of a SOCKS5 handshake an upstream can hold: the greeting, the RFC 1929 credentials, the request (CONNECT or UDP ASSOCIATE). */
export type HoldStep = 'greeting' | 'auth' | 'request';

/**
 * A SOCKS5 upstream (RFC 1928, 1929) on loopback that answers each step of a handshake until
 * the step `hold`, reads that step's message and never answers it: the greeting (its method
 * choice), the credentials (the auth status) or the request, whatever its command (the
 * reply). `held`: the upstream's end of the first connection that reached the held step.
 */
export async function holdingSocks5(hold: HoldStep): Promise<{ server: Server; port: number; sockets: Socket[]; held: Promise<Socket> }> {
  const sockets: Socket[] = [];
  let reached!: (s: Socket) => void;
  const held = new Promise<Socket>((r) => (reached = r));
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    let step: HoldStep = 'greeting';
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        let n = 0;
        if (step === 'greeting' && buf.length >= 2 && buf.length >= 2 + buf[1]!) n = 2 + buf[1]!;
        else if (step === 'auth' && buf.length >= 2 && buf.length >= 3 + buf[1]! && buf.length >= 3 + buf[1]! + buf[2 + buf[1]!]!) n = 3 + buf[1]! + buf[2 + buf[1]!]!;
        else if (step === 'request' && buf.length >= 5) {
          const atyp = buf[3];
          const len = atyp === 1 ? 4 : atyp === 4 ? 16 : 1 + buf[4]!;
          if (buf.length >= 4 + len + 2) n = 4 + len + 2;
        }
        if (n === 0) return;
        buf = buf.subarray(n);
        if (step === hold) {
          reached(s);
          return;
        }
        if (step === 'greeting') {
          s.write(Buffer.from([5, 2]));
          step = 'auth';
        } else if (step === 'auth') {
          s.write(Buffer.from([1, 0]));
          step = 'request';
        } else return;
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, sockets, held };
}

/** A SOCKS5 client's greeting (user/password), RFC 1929 credentials and UDP ASSOCIATE for 0.0.0.0:0 (any client address and port), at once. */
export function udpAssociateBytes(user = USER, password = PASSWORD): Buffer {
  const u = Buffer.from(user);
  const p = Buffer.from(password);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, u.length]), u, Buffer.from([p.length]), p, Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])]);
}

/** What `withExitHop` hands its body. */
export interface ExitHopRig {
  /** The client's connection to the proxy, connected, nothing sent yet. */
  client: Socket;
  proxy: TestProxy;
  /** The proxy's records, as its onFinish hook gets them. */
  records: ForwardRecord[];
  /** The proxy's side of the client's connection, once the proxy has accepted it. */
  proxySide: Promise<Socket>;
  /** `wake` is called after each record the proxy's onFinish hook keeps (one at a time: the last given). */
  onRecord(wake: () => void): void;
  /** The client leaves while the hop is held, `exitSide` the exit's end of it: `leaveWhileHopHeld` over this rig. */
  leave(exitSide: Socket, leave: Leave, hop: string): Promise<{ all: string }>;
}

/**
 * A client that leaves while the proxy's hop to an egress exit is held: a proxy
 * (startTestProxy with `config`, its records kept) whose pool leads to `exit`, a client
 * connected to it (bounded), the proxy's side of that client seen on Node's net.server.socket
 * channel; `body` runs with them, and then, whatever happened, the client, the proxy and the
 * exit (or destination) are closed. Shared by the client-left-during-*-exit tests and
 * http-client-left-mid-body.
 */
export async function withExitHop(
  exit: { server: Server; sockets: Socket[] },
  config: Partial<ForwardConfigInput>,
  what: string,
  body: (rig: ExitHopRig) => Promise<void>,
): Promise<void> {
  const records: ForwardRecord[] = [];
  let recorded: (() => void) | undefined;
  let proxyPort = 0;
  let proxySide: Socket | undefined;
  let accepted!: (s: Socket) => void;
  const sideSeen = new Promise<Socket>((r) => (accepted = r));
  const onAccept = (m: unknown): void => {
    const s = (m as { socket: Socket }).socket;
    if (s.localPort === proxyPort) {
      proxySide = s;
      accepted(s);
    }
  };
  diagnostics_channel.subscribe('net.server.socket', onAccept);
  let client: Socket | undefined;
  let p: TestProxy | undefined;
  try {
    p = await startTestProxy(config, { hooks: [{ onFinish: (r) => (records.push(r), recorded?.()) }] });
    proxyPort = p.port;
    const c = connect(p.port, '127.0.0.1');
    client = c;
    c.on('error', () => {});
    await bounded(once(c, 'connect'), 5000, `${what}: connect to the proxy`);
    await body({
      client: c,
      proxy: p,
      records,
      proxySide: sideSeen,
      onRecord: (wake) => (recorded = wake),
      leave: (exitSide, leave, hop) => leaveWhileHopHeld({ client: c, exitSide, proxySide, records, onRecord: (wake) => (recorded = wake), leave, what, hop }),
    });
  } finally {
    diagnostics_channel.unsubscribe('net.server.socket', onAccept);
    client?.destroy();
    await p?.close();
    for (const s of exit.sockets) s.destroy();
    exit.server.close();
  }
}

/**
 * `withExitHop` through a `holdingSocks5(step)` exit, the pool's only proxy (as up:pass; connect
 * and handshake times of 60 s, past every wait): the client sends `send` and leaves (`leave`)
 * once the exit has read the held step; `check` then runs with the rig, the exit and the one
 * record's JSON. `watch` is handed the client before it sends. Shared by the SOCKS5 exit's TCP
 * and UDP ASSOCIATE cases.
 */
export async function leaveDuringSocks5Exit(o: {
  step: HoldStep;
  leave: Leave;
  what: string;
  send: Buffer | string;
  watch?(client: Socket): void;
  check(r: ExitHopRig & { exit: Awaited<ReturnType<typeof holdingSocks5>>; all: string }): void | Promise<void>;
}): Promise<void> {
  const exit = await holdingSocks5(o.step);
  const config: Partial<ForwardConfigInput> = {
    timeouts: { connect: '60s', handshake: '60s' },
    egress: { pools: { hold: { proxies: [`socks5://up:pass@127.0.0.1:${exit.port}`] } }, defaultPool: 'hold' },
  };
  await withExitHop(exit, config, o.what, async (rig) => {
    o.watch?.(rig.client);
    rig.client.write(o.send);
    const exitSide = await bounded(exit.held, 10_000, `${o.what}: the upstream reading the held step`);
    const { all } = await rig.leave(exitSide, o.leave, 'upstream (the hop stopped)');
    await o.check({ ...rig, exit, all });
  });
}
