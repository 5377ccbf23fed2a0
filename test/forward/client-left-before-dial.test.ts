import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { startForwardProxy, type ForwardProxy } from '../../src/forward/index.js';
import { clientLeft } from '../../src/forward/client-fin.js';
import type { ForwardRecord } from '../../src/record/index.js';
import { hashPassword, type AuthProvider } from '../../src/tenants/index.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';
import { memoryLogger, PASSWORD, USER } from './helpers.js';
import { FRONTS, bounded, countingServer, frontBytes, readAtLeast, type Front } from './front-clients.js';

/**
 * A client that goes away before its destination is dialled gets no dial: whatever it was
 * waiting on (its password check, an `authorize` hook, the name's resolution), the
 * destination sees no connection, the record says the client ended it, and its tunnel slot
 * comes back. The client resets (RST), so its socket is closed on the proxy's side before
 * the pipeline reaches the dial: the tunnel's 'close' listener, added at the dial, came too
 * late (review finding: the destination was dialled after the first scrypt check).
 * A client that half-closes (FIN) before any answer has left too, as Squid (`half_closed_clients
 * off`, its default) and nginx (499) take it: the proxy closes its side and makes no dial
 * (review finding: a FIN during the password check was still dialled, on all three fronts).
 *
 * The moments are waited on as events, never as time: the auth provider, the hook and the
 * resolver hold until the proxy's side of the client socket has closed (then a seeded few ms
 * more). The real scrypt check cannot be held; the client resets when the check has been
 * handed to its thread (Node's process 'worker' event: the fresh proxy's first check starts
 * its scrypt thread and posts the check to it in the same tick, and the event comes on the
 * next). Before, the client reset a seeded 0–5 ms after sending and a slow run of the test
 * process could land it after the check. The reset reaches the proxy's side at once on
 * loopback, while the thread still boots and derives the key; that the proxy saw the reset
 * before the check's answer is asserted, not assumed.
 */

type Moment = 'check' | 'authorize' | 'dns' | 'scrypt';
/** How the client leaves: a reset, or a FIN (half-close) before any answer. */
type Leave = 'rst' | 'fin';

const MOMENTS: readonly Moment[] = ['check', 'authorize', 'dns', 'scrypt'];
const LEAVES: readonly Leave[] = ['rst', 'fin'];

/**
 * The next worker thread this process starts, and a way to stop waiting. In the scrypt case
 * that is the proxy's password-check thread, with the check already posted to it
 * (tenants/scrypt-threads.ts starts threads on first use).
 */
function nextThread(): { started: Promise<Worker>; stop(): void } {
  let listener: ((w: Worker) => void) | undefined;
  const started = new Promise<Worker>((resolve) => process.once('worker', (listener = resolve)));
  return { started, stop: () => process.off('worker', listener!) };
}

/** The proxy's side of the next connection accepted on `port` (Node's net.server.socket channel), and a way to stop listening. */
function acceptedOn(port: () => number): { socket(): Socket | undefined; stop(): void } {
  let accepted: Socket | undefined;
  const onAccept = (m: unknown): void => {
    const s = (m as { socket: Socket }).socket;
    if (s.localPort === port()) accepted ??= s;
  };
  diagnostics_channel.subscribe('net.server.socket', onAccept);
  return { socket: () => accepted, stop: () => diagnostics_channel.unsubscribe('net.server.socket', onAccept) };
}

/** Resolves once `s` has closed, then `ms` later (a seeded extra delay, not a synchronisation). */
function closedThen(s: Socket, ms: number): Promise<void> {
  // Not events.once: it rejects on the reset's 'error', which comes before 'close'.
  const closed = s.closed ? Promise.resolve() : new Promise<void>((r) => s.once('close', () => r()));
  return closed.then(() => new Promise<void>((r) => setTimeout(r, ms)));
}

interface Harness {
  proxy: ForwardProxy;
  port: number;
  records: ForwardRecord[];
  /** The first client's request has reached the held moment (the provider, the hook, the resolver). */
  reached: Promise<void>;
  next(): Promise<ForwardRecord>;
}

/**
 * Resolves once the proxy's side `s` has heard the FIN ('end', which SOCKS's flowing reader
 * lets through), then `ms` later; after `boundMs` at most: CONNECT's socket waits paused and
 * takes the FIN into its buffer without an event (client-fin.ts), which on loopback is long
 * done by then, and the held moment then goes on so that a dial would be seen.
 */
function finThen(s: Socket, ms: number, boundMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const heard = s.readableEnded || s.closed ? Promise.resolve() : new Promise<void>((r) => (s.once('end', r), s.once('close', r)));
  const bound = new Promise<void>((r) => (timer = setTimeout(r, boundMs)));
  return Promise.race([heard, bound])
    .finally(() => clearTimeout(timer))
    .then(() => new Promise<void>((r) => setTimeout(r, ms)));
}

/** A proxy whose password check, authorize hook and resolver wait for the client to leave at `moment`. */
async function startHarness(moment: Moment, extraMs: number, leave: Leave): Promise<Harness> {
  const { logger } = memoryLogger();
  const records: ForwardRecord[] = [];
  let waiter: ((r: ForwardRecord) => void) | undefined;
  let authorized = 0;
  // The first client, the one that leaves: only its request waits (the next tunnel does not).
  let client: Socket | undefined;
  const held = (s: Socket | undefined, at: Moment): boolean => s !== undefined && s === client && moment === at;
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  /** The request is held at its moment: tell the test (it resets the client now), then wait for the client's close. */
  const hold = (): Promise<void> => {
    reach();
    return leave === 'rst' ? closedThen(client!, extraMs) : finThen(client!, extraMs, 1000);
  };
  const provider: AuthProvider = {
    has: (name) => name === USER,
    authenticate(name, password, source) {
      client ??= source as Socket;
      const who = name === USER && password === PASSWORD ? USER : undefined;
      return held(source as Socket, 'check') ? hold().then(() => who) : who;
    },
  };
  // A hash of the default cost: the reset is ordered by events, not by the check's length.
  const h1 = await hashPassword(PASSWORD);
  const proxy = await startForwardProxy(
    {
      listeners: [{ address: '127.0.0.1', port: 0, protocols: ['http', 'socks5'] }],
      // scrypt: the real user directory (a fresh proxy: the first check is a real scrypt run).
      auth: { required: true, users: moment === 'scrypt' ? [{ name: USER, password: h1 }] : [] },
      rules: { allowPrivate: true, connectPorts: ['1-65535'] },
      timeouts: { connect: '2s', dns: '5s', handshake: '5s' },
      limits: { maxTunnelsPerUser: 1 },
    },
    {
      logger,
      authProvider: moment === 'scrypt' ? undefined : provider,
      resolver: (host: string) =>
        moment === 'dns' && host === 'dest.test' && client !== undefined ? hold().then(() => [{ address: '127.0.0.1', family: 4 }]) : Promise.resolve([{ address: '127.0.0.1', family: 4 }]),
      hooks: [
        {
          // Only the first client's request is held (the next tunnel comes from another client, with no provider in the scrypt case).
          authorize: () => (moment === 'authorize' && client !== undefined && !authorized++ ? hold().then(() => undefined) : undefined),
          onFinish: (r) => {
            records.push(r);
            waiter?.(r);
          },
        },
      ],
    },
  );
  const port = proxy.addresses()[0]!.port;
  return {
    proxy,
    port,
    records,
    reached,
    next: () => new Promise((resolve) => (waiter = (r) => { waiter = undefined; resolve(r); })),
  };
}

async function oneCase(rand: () => number, front: Front, moment: Moment, leave: Leave): Promise<string> {
  const extraMs = between(rand, 0, 3);
  const dest = await countingServer();
  const h = await startHarness(moment, extraMs, leave);
  const sockets: Socket[] = [];
  const thread = nextThread();
  const proxySide = acceptedOn(() => h.port);
  try {
    const host = moment === 'dns' ? 'dest.test' : '127.0.0.1';
    const c = connect(h.port, '127.0.0.1');
    sockets.push(c);
    c.on('error', () => {});
    await bounded(once(c, 'connect'), 5000, 'connect to the proxy');
    const recorded = h.next();
    const written = new Promise<void>((resolve, reject) => c.write(frontBytes(front, host, dest.port), (err) => (err ? reject(err) : resolve())));
    await bounded(written, 5000, 'the client write');
    const what = `${front} leaving (${leave}) at ${moment}${moment === 'scrypt' ? '' : ` (+${extraMs} ms)`}`;
    /** Whether the proxy's side of the client had closed when the check's answer came (scrypt). */
    let goneAtAnswer: boolean | undefined;
    if (moment === 'scrypt') {
      // The check is on its thread: leave now. This listener runs after the proxy's own, in
      // the same event, before the proxy acts on the answer (its promise settles after).
      const w = await bounded(thread.started, 5000, 'the password check on its thread');
      w.once('message', () => (goneAtAnswer = proxySide.socket() !== undefined && clientLeft(proxySide.socket()!)));
    } else {
      await bounded(h.reached, 5000, `the ${moment} moment`);
    }
    // A FIN is a client leaving too (Squid's `half_closed_clients off`, nginx's 499): the proxy closes its side.
    if (leave === 'rst') c.resetAndDestroy();
    else c.end();
    const rec = await bounded(recorded, 5000, `${what}: the record`);
    if (moment === 'scrypt') assert.notEqual(goneAtAnswer, false, `${what}: the proxy saw the client leave before the check's answer (else the case did not happen)`);
    const dialled = `${what}: the destination saw a connection for a client already gone; record ${JSON.stringify(rec)}`;
    // An absolute-form request left during its name's resolution gets no dial either: its pool's
    // new connection is dialled with the request as its signal, which the dialer reads once the
    // name resolved (http-relay.ts; before, the connection was still made, for no one).
    // A tunnel's FIN while its name resolves came once the dial was under way (the resolution is
    // the dialer's): it is the client's half-close, passed on at the splice, as a FIN sent with
    // the request and early bytes is (stall-early-half-close.test.ts). The tunnel is carried,
    // the destination gets the FIN, and the record says the client ended it.
    const carried = leave === 'fin' && moment === 'dns' && front !== 'http';
    if (carried) {
      assert.equal(dest.accepted, 1, `${what}: a FIN during the dial is a half-close: the tunnel is carried; record ${JSON.stringify(rec)}`);
      assert.ok(rec.status === 200 || rec.reply === 0, `${what}: ${JSON.stringify(rec)}`);
    } else {
      assert.equal(dest.accepted, 0, dialled);
      assert.equal(rec.error, undefined, `${what}: no failure type, the client left: ${JSON.stringify(rec)}`);
      if (front !== 'socks5') assert.equal(rec.status, 499, `${what}: ${JSON.stringify(rec)}`);
      else assert.equal(rec.reply, undefined, `${what}: no reply was sent: ${JSON.stringify(rec)}`);
    }
    assert.equal(rec.endedBy, 'client', `${what}: ${JSON.stringify(rec)}`);
    // The tunnel slot came back (one per user): the next tunnel is carried.
    const d = connect(h.port, '127.0.0.1');
    sockets.push(d);
    d.on('error', () => {});
    await bounded(once(d, 'connect'), 5000, 'connect to the proxy');
    const second = h.next();
    const answer = readAtLeast(d, front === 'socks5' ? 2 + 2 + 10 : 12);
    d.write(frontBytes(front, '127.0.0.1', dest.port));
    const got = await bounded(answer, 5000, `${what}: the next tunnel's answer`);
    if (front !== 'socks5') assert.match(got.toString('latin1'), /^HTTP\/1\.1 200/, `${what}: the next tunnel`);
    else assert.equal(got[5], 0x00, `${what}: the next tunnel's reply: ${got.toString('hex')}`);
    d.destroy();
    const r2 = await bounded(second, 5000, `${what}: the next tunnel's record`);
    // The destination accepts in order: by the next tunnel's record it has seen any earlier dial.
    assert.equal(dest.accepted, carried ? 2 : 1, dialled);
    assert.ok(r2.status === 200 || r2.reply === 0, `${what}: the next tunnel: ${JSON.stringify(r2)}`);
    return what;
  } finally {
    thread.stop();
    proxySide.stop();
    for (const s of sockets) s.destroy();
    await h.proxy.close();
    for (const s of dest.sockets) s.destroy();
    dest.server.close();
  }
}

describe('a client gone before its dial gets none', () => {
  it('no destination connection, a record ended by the client, the slot back (seeded family of moments, fronts and ways of leaving: reset or FIN)', { timeout: 180_000 }, async () => {
    await seededRun('client-left-before-dial', async (rand) => {
      // Every moment on both fronts, then seeded extra cases.
      const cases: Array<[Front, Moment, Leave]> = [];
      for (const f of FRONTS) for (const m of MOMENTS) for (const l of LEAVES) cases.push([f, m, l]);
      for (let i = 0; i < 8; i++) cases.push([FRONTS[between(rand, 0, FRONTS.length - 1)]!, MOMENTS[between(rand, 0, MOMENTS.length - 1)]!, LEAVES[between(rand, 0, 1)]!]);
      // Every case runs (each closes what it opened), then all failures are told at once.
      await everyCase(cases, async ([f, m, l]) => oneCase(rand, f, m, l));
    });
  });
});
