import type { Socket } from 'node:net';
import { Failure } from '../failure/index.js';
import { peerAddress } from './peer.js';
import { kGateCounted, kGateHandshakeEnd, kGateOverSource, kGateSource, type SlottedSocket } from '../net/index.js';

/** Seconds a client refused at a connection limit is told to wait (Retry-After). */
export const CONNECTION_LIMIT_RETRY_AFTER_S = 1;

/** What the listener decided for one accepted connection. */
export type GateDecision = 'admitted' | 'refused' | 'shed';

// The gate's marks live in the sockets' common slots (net/socket-slots.ts: one map for every socket).

/** One client address's connections: admitted, and refused ones waiting for their first bytes. */
interface SourceCount {
  open: number;
  waiting: number;
}

export interface GateLimits {
  /** Connections admitted at once (the listener's cap). */
  maxConnections: number;
  /** Connections admitted at once from one client address; 0: no per-address limit. */
  maxPerSource: number;
  /** The configured handshake time (0: none). */
  handshakeMs: number;
  /** The shortest handshake time pressure scales down to. */
  handshakeFloorMs: number;
}

export interface GateStats {
  /** Connections admitted and open. */
  open: number;
  /** Refused connections waiting for their first bytes (to be answered in their protocol). */
  waiting: number;
  /** Connections closed at once because the refused ones waiting were at their bound. */
  shed: number;
  /** Connections refused at a limit (answered or closed after the wait). */
  refused: number;
  /** Connections seen in all. */
  accepted: number;
}

/**
 * The listener's connection admission: the connection cap, a cap per client address, and
 * the handshake time of each admitted connection, shorter under pressure.
 *
 * Pressure rule: with `load` = admitted connections (this one included) / cap, a new
 * connection gets the full handshake time while `load` ≤ ½, and above that
 * `max(floor, handshake × 2 × (1 − load))`: linear from the full time at half the cap to
 * the floor at the cap (never longer than the configured time). A flood of idle sockets
 * therefore holds each slot for ever less time as it fills the listener.
 *
 * A connection over a limit is not reset: it is accepted, waits (at most the floor) for
 * its first bytes, and is answered in its protocol (HTTP 503 `connection_limit_reached`
 * with Retry-After, SOCKS5 general failure, SOCKS4 0x5B); one that sends nothing in that
 * time is closed with a FIN. The refused connections waiting at once are bounded by the
 * cap, and those of one address by the per-address cap: past either bound a connection
 * is closed at once (counted as `shed`), so an address that floods loses its own excess
 * while other addresses are still answered.
 */
export class ConnectionGate {
  readonly #limits: GateLimits;
  readonly #bySource = new Map<string, SourceCount>();
  /**
   * Admitted connections not yet counted by address: while fewer than the per-address cap
   * are open in all, no address can reach it, so the address is not read (see admit).
   */
  readonly #unsourced = new Set<SlottedSocket>();
  #open = 0;
  #waiting = 0;
  #shed = 0;
  #refused = 0;
  #accepted = 0;

  constructor(limits: GateLimits) {
    this.#limits = limits;
  }

  get stats(): GateStats {
    return { open: this.#open, waiting: this.#waiting, shed: this.#shed, refused: this.#refused, accepted: this.#accepted };
  }

  /**
   * Decide for a new connection; `now` is its accept time. An admitted connection carries
   * its handshake deadline (`handshakeLeft`); a refused one waits for its first bytes.
   */
  admit(socket: Socket, now: number): GateDecision {
    const s = socket as SlottedSocket;
    const l = this.#limits;
    this.#accepted++;
    let count: SourceCount | undefined;
    if (l.maxPerSource > 0) {
      if (this.#open < l.maxPerSource && this.#open < l.maxConnections) {
        // No address can be at its cap while fewer connections than the cap are open in all:
        // admitted without reading the address (a getpeername and an address object per
        // connection, ~7 % of a CONNECT tunnel's instructions in the bare floor; callgrind,
        // docs/benchmarks.md). It is read once the total reaches the cap (#countSources).
        this.#open++;
        this.#unsourced.add(s);
        s[kGateCounted] = 'open';
        if (l.handshakeMs > 0) s[kGateHandshakeEnd] = now + handshakeUnderLoad(l.handshakeMs, l.handshakeFloorMs, this.#open / l.maxConnections);
        return 'admitted';
      }
      this.#countSources();
      const source = peerAddress(socket) ?? '';
      count = this.#bySource.get(source);
      if (count === undefined) this.#bySource.set(source, (count = { open: 0, waiting: 0 }));
      s[kGateSource] = source;
    }
    const overSource = count !== undefined && count.open >= l.maxPerSource;
    if (overSource || this.#open >= l.maxConnections) {
      // A source's own excess waits too, up to its limit again: past that it is flooding.
      if (this.#waiting >= l.maxConnections || (count !== undefined && count.waiting >= l.maxPerSource)) {
        this.#shed++;
        if (count !== undefined && count.open + count.waiting === 0) this.#bySource.delete(s[kGateSource]!);
        s[kGateSource] = undefined;
        return 'shed';
      }
      this.#waiting++;
      this.#refused++;
      if (count !== undefined) count.waiting++;
      s[kGateCounted] = 'waiting';
      s[kGateOverSource] = overSource;
      s[kGateHandshakeEnd] = now + Math.min(l.handshakeMs > 0 ? l.handshakeMs : Infinity, l.handshakeFloorMs);
      return 'refused';
    }
    this.#open++;
    if (count !== undefined) count.open++;
    s[kGateCounted] = 'open';
    if (l.handshakeMs > 0) s[kGateHandshakeEnd] = now + handshakeUnderLoad(l.handshakeMs, l.handshakeFloorMs, this.#open / l.maxConnections);
    return 'admitted';
  }

  /** The connections admitted without their address: counted by address now (the total reached the per-address cap). */
  #countSources(): void {
    if (this.#unsourced.size === 0) return;
    for (const s of this.#unsourced) {
      // A socket already closed but not yet released reads as '' and is released as ''.
      // Through the handle, not `remoteAddress`: that caches `_peername` on the socket, a new
      // property on an admitted socket, so a new map (http/peer.ts, net/socket-slots.ts).
      const source = peerAddress(s) ?? '';
      let count = this.#bySource.get(source);
      if (count === undefined) this.#bySource.set(source, (count = { open: 0, waiting: 0 }));
      count.open++;
      s[kGateSource] = source;
    }
    this.#unsourced.clear();
  }

  /** Connections admitted whose address was not read yet (tests). */
  get unsourced(): number {
    return this.#unsourced.size;
  }

  /** The connection closed: give back what it counted. */
  release(socket: Socket): void {
    const s = socket as SlottedSocket;
    const counted = s[kGateCounted];
    if (counted === undefined) return;
    s[kGateCounted] = undefined;
    if (counted === 'waiting') this.#waiting--;
    else this.#open--;
    const source = s[kGateSource];
    if (source === undefined) {
      this.#unsourced.delete(s);
      return;
    }
    const count = this.#bySource.get(source);
    if (count === undefined) return;
    count[counted]--;
    if (count.open + count.waiting === 0) this.#bySource.delete(source);
  }

  /** The failure a refused connection is answered with. */
  refusal(socket: Socket): Failure {
    const s = socket as SlottedSocket;
    const source = s[kGateSource];
    const detail =
      s[kGateOverSource] && source !== undefined
        ? `too many connections from ${source} (limit ${this.#limits.maxPerSource}); retry later`
        : `the listener is at its connection limit (${this.#limits.maxConnections}); retry later`;
    return new Failure({ type: 'connection_limit_reached', phase: 'accept', detail, retryAfter: CONNECTION_LIMIT_RETRY_AFTER_S });
  }
}

/**
 * The handshake time for a connection admitted at `load` (0–1) of the cap: the full time
 * up to half the cap, then linear down to `floor` at the cap; never above `full`.
 */
export function handshakeUnderLoad(full: number, floor: number, load: number): number {
  if (load <= 0.5 || full <= floor) return full;
  return Math.max(floor, Math.round(full * 2 * (1 - Math.min(1, load))));
}

/**
 * Milliseconds left of the connection's handshake time (counted from its accept), or
 * `fallback` for a socket the gate did not time (no limit: returns 0 when `fallback` is 0).
 * At least 1: a deadline already passed fires at the next sweep.
 */
export function handshakeLeft(socket: Socket, fallback: number, now = performance.now()): number {
  const end = (socket as SlottedSocket)[kGateHandshakeEnd];
  if (end === undefined) return fallback;
  return Math.max(1, end - now);
}
