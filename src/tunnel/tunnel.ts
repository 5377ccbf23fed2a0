import type { Socket } from 'node:net';
import type { EndedBy } from '../failure/index.js';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
import { kSocketUser, type SlottedSocket } from '../net/index.js';

/** Who ended a tunnel (the EndedBy words: the side that closed first, idle, or the gateway). */
export type TunnelEnd = Extract<EndedBy, 'client' | 'upstream' | 'idle' | 'gateway'>;

/** After one side closed, how long the other may take to flush before it is destroyed. */
const LINGER_MS = 1000;

// The tunnel sits in the socket's user slot (net/socket-slots.ts), where the dial's attempt was.
const kTunnel = kSocketUser;
type TunnelSocket = Socket & { [kTunnel]: Tunnel };

/**
 * A closed socket lets go of its tunnel. Node keeps a closed socket alive past a scavenge or
 * two (the bare floor's sockets too: ~1 KB of every tunnel survives a scavenge there), and
 * whatever the socket still points to survives with it: through this slot, the tunnel, its
 * request, meter session, responder and CONNECT head. Cut, Gatewise's survivors per tunnel
 * fell from 1.7 KB to the floor's 1.1 KB one tunnel at a time, and from 2.6–3.0 to 1.5–1.7 KB
 * at 16 at once; scavenge time per 1,000 tunnels from 14.5–15.2 to 9.5–10.3 ms
 * (`--trace-gc-nvp`, docs/benchmarks.md §31).
 */
function release(s: Socket | undefined): void {
  if (s !== undefined) (s as SlottedSocket)[kSocketUser] = undefined;
}

/**
 * Move bytes both ways between the client and the destination with backpressure,
 * half-close passed on, and an idle timer that any byte in either direction resets.
 * The tunnel of both faces: the forward proxy's CONNECT and SOCKS tunnels (`TunnelRun`) and
 * the reverse gateway's switched (upgraded: WebSocket) connections (`UpgradeExchange`).
 * Tells `tunnelEnded` once both sockets are closed, with who ended it.
 *
 * One object per tunnel: a subclass (the forward pipeline's `TunnelRun`) is also the dial's
 * callback target and the tunnel's meter, so a tunnel allocates no promise and no closure.
 * `watchClient` puts the one 'close' listener on the client before the destination exists
 * (a client that leaves while the dial is on calls `clientLeftEarly`); `splice` starts moving
 * bytes. Per socket: 'data', 'end' and 'close' listeners, module functions that find the
 * tunnel on the socket. No 'error' listener of its own: an error ends in 'close' with
 * `hadError`, which destroys the peer; a socket without an 'error' listener gets a no-op one
 * (the listener and the dialer already put one on theirs).
 *
 * Written with 'data' + write() instead of `pipe()`: one listener per direction does
 * the metering and the write, where pipe() adds a second 'data' listener and its own
 * event plumbing (~60 µs less CPU per tunnel of ~500, same backpressure: pause on a
 * full write buffer, resume on 'drain'). Bytes only stamp the time; the idle deadline
 * checks the stamp when it is reached (no timer work per chunk). Idle and linger are one
 * deadline on the process list (timing/deadlines.ts), not Node timers: no timer object per
 * tunnel, and a finished tunnel leaves the list at once, so its sockets are not held for
 * another second (they would reach the old generation).
 *
 * A client that does not read while the destination sends is not idle by this measure
 * for long: the destination is paused and nothing moves. The send timeout (`sendMs`)
 * names it: once the client's buffer has stayed full that long, both sides are cut
 * (ended by the client) and the destination connection is freed.
 */
export abstract class Tunnel extends DeadlineEntry {
  readonly client: Socket;
  /** The destination, once `splice` was called. */
  server: Socket | undefined = undefined;
  endedBy: TunnelEnd | undefined = undefined;
  closed = 0;
  activeAt = 0;
  /** When a write to the client found its buffer full (NaN: it is taking what it is sent). */
  clientBlockedAt = NaN;
  /** The side left open once the other closed: destroyed when the linger time is up. */
  lingering: Socket | undefined = undefined;

  constructor(client: Socket) {
    super();
    this.client = client;
  }

  /** Idle time (0: none). */
  abstract readonly idleMs: number;
  /** After one side closed, how long the other may take to flush before it is destroyed (on the prototype: nothing per tunnel). */
  get lingerMs(): number {
    return LINGER_MS;
  }
  /** Longest time the client may leave bytes unread (its socket's buffer full) before the tunnel is cut; 0: no limit. */
  abstract readonly sendMs: number;
  abstract onUp(bytes: number): void;
  abstract onDown(bytes: number): void;
  /** The tunnel is being cut because the client did not read for `sendMs`. */
  abstract onNotReading(detail: string): void;
  /** Both sides closed (once). */
  abstract tunnelEnded(end: TunnelEnd): void;
  /** The client closed before `splice` (while the destination was being dialled). */
  abstract clientLeftEarly(): void;

  /** From now on the client's 'close' reaches this tunnel. */
  watchClient(): void {
    const c = this.client as TunnelSocket;
    c[kTunnel] = this;
    c.on('close', onClose);
  }

  /** Start moving bytes between the client (watched already) and `server`. */
  splice(server: Socket): void {
    this.server = server;
    const client = this.client;
    (server as TunnelSocket)[kTunnel] = this;
    server.on('close', onClose);
    attach(client);
    attach(server);
    const now = performance.now();
    this.activeAt = now;
    const idleMs = this.idleMs;
    if (idleMs > 0) deadlines.add(this, now, idleMs);
    client.resume();
    server.resume();
    // A FIN that came before the splice (with the request: a front's reader took its 'end')
    // is never emitted again: pass it on now, behind the early bytes already written.
    if (client.readableEnded) onEnd.call(client as TunnelSocket);
  }

  /**
   * Lingering: the time to flush is up. Otherwise: the client left a full buffer unread for
   * the send timeout, or idle for the idle time, or wait for the rest.
   */
  deadlineReached(now: number): void {
    if (this.lingering !== undefined) {
      this.lingering.destroy();
      return;
    }
    const idleMs = this.idleMs;
    const sendMs = this.sendMs;
    let wait = Infinity;
    if (sendMs > 0 && !Number.isNaN(this.clientBlockedAt)) {
      const waited = now - this.clientBlockedAt;
      if (waited >= sendMs) {
        this.endedBy ??= 'client';
        this.onNotReading(`the client did not read for ${Math.round(waited)} ms (send timeout ${sendMs} ms)`);
        this.client.destroy();
        this.server!.destroy();
        return;
      }
      wait = sendMs - waited;
    }
    if (idleMs > 0) {
      const quiet = now - this.activeAt;
      if (quiet >= idleMs) {
        this.endedBy ??= 'idle';
        this.idleCut();
        this.client.destroy();
        this.server!.destroy();
        return;
      }
      if (idleMs - quiet < wait) wait = idleMs - quiet;
    }
    if (wait !== Infinity) deadlines.add(this, now, wait);
  }

  /** The idle time cut this tunnel (whichever side had half-closed it first); a subclass that records it so overrides this. */
  idleCut(): void {}

  /** A write to the client found its buffer full: the send timeout runs from `now`. */
  clientBlocked(now: number): void {
    this.clientBlockedAt = now;
    const sendMs = this.sendMs;
    if (sendMs > 0 && this.lingering === undefined && !(this.deadlineAt <= now + sendMs)) deadlines.add(this, now, sendMs);
  }

  peer(s: Socket): Socket {
    return s === this.client ? this.server! : this.client;
  }

  who(s: Socket): TunnelEnd {
    return s === this.client ? 'client' : 'upstream';
  }
}

function attach(s: Socket): void {
  s.on('data', onData);
  s.on('end', onEnd);
  if (s.listenerCount('error') === 0) s.on('error', ignore);
}

function ignore(): void {}

function onData(this: TunnelSocket, chunk: Buffer): void {
  const t = this[kTunnel];
  const now = (t.activeAt = performance.now());
  let to: Socket;
  if (this === t.client) {
    t.onUp(chunk.length);
    to = t.server!;
  } else {
    t.onDown(chunk.length);
    to = t.client;
  }
  if (!to.write(chunk)) {
    this.pause();
    to.once('drain', onDrain);
    if (to === t.client) t.clientBlocked(now);
  }
}

/** `this` took what was queued for it: let its peer send again. */
function onDrain(this: TunnelSocket): void {
  const t = this[kTunnel];
  if (this === t.client) t.clientBlockedAt = NaN;
  t.peer(this).resume();
}

function onEnd(this: TunnelSocket): void {
  const t = this[kTunnel];
  t.endedBy ??= t.who(this);
  t.peer(this).end();
}

function onClose(this: TunnelSocket, hadError: boolean): void {
  const t = this[kTunnel];
  if (t.server === undefined) {
    release(this);
    t.clientLeftEarly();
    return;
  }
  t.endedBy ??= t.who(this);
  t.closed++;
  if (t.closed === 1) {
    const to = t.peer(this);
    if (!to.destroyed) {
      // An error on one side: the other is cut at once (as a reset would). A close: give the
      // other a moment to flush, then end it.
      if (hadError) {
        to.destroy();
        return;
      }
      to.end();
      t.lingering = to;
      deadlines.add(t, performance.now(), t.lingerMs);
    }
    return;
  }
  deadlines.remove(t);
  release(t.client);
  release(t.server);
  t.tunnelEnded(t.endedBy);
}
