import type { EndedBy, Phase, ProxyErrorType } from '../failure/index.js';
import type { ForwardRecord, RecordProtocol } from '../record/index.js';
import { EventEmitter } from 'node:events';
import { newForwardRequestId } from '../http/request-id.js';

/**
 * Usage metering for the forward proxy: bytes, requests, tunnels and datagrams, counted
 * live per user and per destination, plus one `finished` event per request, tunnel or
 * association. Quotas and metrics read `snapshot()` and listen to the events.
 */

export type MeteredProtocol = RecordProtocol;

export interface Counters {
  bytesUp: number;
  bytesDown: number;
  requests: number;
  tunnels: number;
  associations: number;
  datagramsUp: number;
  datagramsDown: number;
  /** Requests, tunnels or associations that ended with a failure (refusals included). */
  failures: number;
}

export interface MeterSnapshot {
  totals: Counters;
  users: Record<string, Counters>;
  destinations: Record<string, Counters>;
}

/** What the `finished` event carries: the forward face's request record (one access-log line). */
export type FinishedRecord = ForwardRecord;

export interface FinishFields {
  status?: number;
  reply?: number;
  error?: ProxyErrorType | null;
  /** Where a failure happened (the failure's phase). */
  phase?: Phase;
  /** The refusal reason, when the failure has one (request_timeout, proxy_auth_required, …). */
  reason?: string;
  address?: string | null;
  destination?: string | null;
  endedBy?: EndedBy;
  method?: string;
  /** Why it ended, in words (a client's stalled body or unread response). */
  detail?: string;
  /** Refusals count as failures and not as a request/tunnel/association. */
  refused?: boolean;
}

/** Egress facts attached to a session before it finishes. */
export interface ExitFields {
  pool?: string;
  exit?: string;
  session?: string;
  repinned?: boolean;
  exitRetries?: number;
}

const ANONYMOUS = '-';
const OTHER_DESTINATIONS = '(other)';

function zero(): Counters {
  return { bytesUp: 0, bytesDown: 0, requests: 0, tunnels: 0, associations: 0, datagramsUp: 0, datagramsDown: 0, failures: 0 };
}

/**
 * `c[field] += n` by name. A keyed load and store whose key changes from call to call
 * (bytesUp, bytesDown, tunnels, failures …) is megamorphic in V8: every one a stub-cache
 * probe, ~1 k instructions per CONNECT tunnel from this function alone (callgrind, callers
 * of KeyedLoadIC_Megamorphic, docs/benchmarks.md §32); a named one is a field access.
 */
function bump(c: Counters, field: keyof Counters, n: number): void {
  switch (field) {
    case 'bytesUp':
      c.bytesUp += n;
      break;
    case 'bytesDown':
      c.bytesDown += n;
      break;
    case 'requests':
      c.requests += n;
      break;
    case 'tunnels':
      c.tunnels += n;
      break;
    case 'associations':
      c.associations += n;
      break;
    case 'datagramsUp':
      c.datagramsUp += n;
      break;
    case 'datagramsDown':
      c.datagramsDown += n;
      break;
    case 'failures':
      c.failures += n;
      break;
    default: {
      const unknown: never = field; // a new counter needs its case here
      throw new TypeError(`no counter ${String(unknown)}`);
    }
  }
}

export interface MeterEvents {
  /** The record, and whether its id is the forward face's own (`newForwardRequestId`: no JSON escaping needed). */
  finished: [FinishedRecord, boolean];
}

export class Meter extends EventEmitter<MeterEvents> {
  readonly #totals = zero();
  readonly #users = new Map<string, Counters>();
  readonly #destinations = new Map<string, Counters>();
  readonly #maxDestinations: number;
  /** Called for every byte count (quotas feed on it); negative for bytes taken back (`MeterSession.undelivered`). */
  onBytes: ((user: string | null, dir: 'up' | 'down', n: number, since?: number) => void) | undefined;
  /**
   * Whether anyone reads the records (an access log, a hook, a channel subscriber); when it
   * says no, `finish` counts without building the record (about 40 fields per request or tunnel).
   * Unset: always built.
   */
  recordWanted: (() => boolean) | undefined;
  /** Sessions opened and not finished yet: requests, tunnels and associations in flight (the forward proxy's drain waits for 0: `settled`). */
  live = 0;
  /** The waits of `settled()` for `live` to reach 0 (none mostly: only a drain waits). */
  #settled: (() => void)[] | undefined;

  constructor(opts: { maxDestinations?: number; onBytes?: (user: string | null, dir: 'up' | 'down', n: number, since?: number) => void } = {}) {
    super();
    this.#maxDestinations = opts.maxDestinations ?? 10_000;
    this.onBytes = opts.onBytes;
  }

  /** Start metering one request, tunnel or association. */
  open(init: { protocol: MeteredProtocol; requestId: string | (() => string); user: string | null; destination?: string | null; clientAddress?: string }): MeterSession {
    return new MeterSession(this, init);
  }

  /**
   * Resolves when no session is open (`live` is 0): at once if none is, else as the last open
   * one finishes. What the forward proxy's drain waits on, raced against its deadline
   * (timing/within.ts), instead of looking at `live` again every few milliseconds.
   */
  settled(): Promise<void> {
    if (this.live === 0) return Promise.resolve();
    return new Promise<void>((resolve) => (this.#settled ??= []).push(resolve));
  }

  /** @internal — the last open session finished (`live` reached 0): wake the waits of `settled`. */
  wake(): void {
    const w = this.#settled;
    if (w === undefined) return;
    this.#settled = undefined;
    for (const resolve of w) resolve();
  }

  /** A copy of all counters as they are now. */
  snapshot(): MeterSnapshot {
    const copy = (m: Map<string, Counters>): Record<string, Counters> => {
      const out: Record<string, Counters> = {};
      for (const [k, v] of m) out[k] = { ...v };
      return out;
    };
    return { totals: { ...this.#totals }, users: copy(this.#users), destinations: copy(this.#destinations) };
  }

  /** @internal — used by MeterSession. */
  add(user: string | null, destination: string | null | undefined, field: keyof Counters, n: number, since?: number): void {
    if (n === 0) return;
    this.addTo(this.userCounters(user), destination ? this.destinationCounters(destination) : undefined, user, field, n, since);
  }

  /**
   * @internal — count into counters already looked up (a session keeps its own). `since`: for
   * bytes taken back (negative `n`), when (epoch ms) the session that counted them began.
   */
  addTo(uc: Counters, dc: Counters | undefined, user: string | null, field: keyof Counters, n: number, since?: number): void {
    if (n === 0) return;
    if (this.onBytes && (field === 'bytesUp' || field === 'bytesDown')) this.onBytes(user, field === 'bytesUp' ? 'up' : 'down', n, since);
    bump(this.#totals, field, n);
    bump(uc, field, n);
    if (dc) bump(dc, field, n);
  }

  /** @internal — a user's live counters (created on first use). */
  userCounters(user: string | null): Counters {
    const u = user ?? ANONYMOUS;
    let uc = this.#users.get(u);
    if (!uc) this.#users.set(u, (uc = zero()));
    return uc;
  }

  /** @internal — a destination's live counters; past the cap, the shared "(other)" ones. */
  destinationCounters(destination: string): Counters {
    let dc = this.#destinations.get(destination);
    if (!dc) {
      const key = this.#destinations.size >= this.#maxDestinations ? OTHER_DESTINATIONS : destination;
      dc = this.#destinations.get(key);
      if (!dc) this.#destinations.set(key, (dc = zero()));
    }
    return dc;
  }
}

export class MeterSession {
  readonly #meter: Meter;
  readonly #started = performance.now();
  /** The id, or the function that makes it on first read (no id is made for a record nobody reads). */
  #requestId: string | (() => string);
  /**
   * Whether the id is made by the forward face's own generator (opened with `newForwardRequestId`
   * itself, not its value): it needs no JSON escaping, and `finished` says so to the access log.
   */
  readonly #ownId: boolean;
  protocol: MeteredProtocol;
  readonly clientAddress: string | undefined;
  user: string | null;
  destination: string | null;
  bytesUp = 0;
  bytesDown = 0;
  datagramsUp = 0;
  datagramsDown = 0;
  datagramsDropped = 0;
  /** Set by the handlers once an exit is chosen. */
  egress: ExitFields | undefined;
  plan: string | undefined;
  /** Set when a byte quota ended this tunnel (the limit's detail). */
  quotaCut: string | undefined;
  /** Why the proxy cut a tunnel for the client's slowness (the send timeout), for the record. */
  cutDetail: string | undefined;
  #finished = false;
  /** The counters of `user` and `destination`, looked up once (for the values they had then). */
  #uc: Counters | undefined;
  #dc: Counters | undefined;
  #countedUser: string | null = null;
  #countedDestination: string | null = null;

  constructor(meter: Meter, init: { protocol: MeteredProtocol; requestId: string | (() => string); user: string | null; destination?: string | null; clientAddress?: string }) {
    this.#meter = meter;
    meter.live++;
    this.protocol = init.protocol;
    this.#requestId = init.requestId;
    this.#ownId = init.requestId === newForwardRequestId;
    this.user = init.user;
    this.destination = init.destination ?? null;
    this.clientAddress = init.clientAddress;
  }

  /** The request id (made now if it was given as a function: a tunnel whose record nobody reads never makes one). */
  get requestId(): string {
    const id = this.#requestId;
    return typeof id === 'string' ? id : (this.#requestId = id());
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** When the session opened (`performance.now()`). */
  get startedAt(): number {
    return this.#started;
  }

  up(n: number, destination = this.destination): void {
    this.bytesUp += n;
    this.#count(destination, 'bytesUp', n);
  }

  down(n: number, destination = this.destination): void {
    this.bytesDown += n;
    this.#count(destination, 'bytesDown', n);
  }

  /**
   * `n` bytes counted down (`down`, as they were handed to the client's connection) that never
   * left: an answer queued behind another of its connection and never written, or the tail of
   * one still in its socket's buffer when its connection was cut. Taken back from the session
   * (the record's `bytesDown`), the meter's counters and the usage (`onBytes` with a negative
   * count), so all of them hold the bytes that left. Never more than the session counted.
   */
  undelivered(n: number): void {
    const back = Math.min(n, this.bytesDown);
    if (!(back > 0)) return;
    this.bytesDown -= back;
    // With when the session began: the usage takes them back only from periods (day, month)
    // the session lies wholly in (bytes counted before a midnight are not taken from the new day).
    this.#count(this.destination, 'bytesDown', -back, performance.timeOrigin + this.#started);
  }

  /** Count into the meter; the session's own user and destination without map lookups. */
  #count(destination: string | null, field: keyof Counters, n: number, since?: number): void {
    if (destination !== this.destination) {
      this.#meter.add(this.user, destination, field, n, since);
      return;
    }
    if (this.#uc === undefined || this.#countedUser !== this.user || this.#countedDestination !== destination) {
      this.#uc = this.#meter.userCounters(this.user);
      this.#dc = destination ? this.#meter.destinationCounters(destination) : undefined;
      this.#countedUser = this.user;
      this.#countedDestination = destination;
    }
    this.#meter.addTo(this.#uc, this.#dc, this.user, field, n, since);
  }

  /** One datagram relayed; bytes are the payload size. */
  datagram(direction: 'up' | 'down', bytes: number, destination: string): void {
    if (direction === 'up') {
      this.datagramsUp++;
      this.#meter.add(this.user, destination, 'datagramsUp', 1);
      this.up(bytes, destination);
    } else {
      this.datagramsDown++;
      this.#meter.add(this.user, destination, 'datagramsDown', 1);
      this.down(bytes, destination);
    }
  }

  dropped(): void {
    this.datagramsDropped++;
  }

  /** Count it, emit `finished`, return the record (undefined when no one reads records: `Meter.recordWanted`). Only the first call counts. */
  finish(fields: FinishFields = {}): ForwardRecord | undefined {
    if (this.#finished) return undefined;
    this.#finished = true;
    if (--this.#meter.live === 0) this.#meter.wake();
    if (fields.destination !== undefined) this.destination = fields.destination;
    const error = fields.error ?? null;
    // Through the session's own counters (`#count`): the user's and destination's looked up
    // once per session, not two map lookups more per count here.
    if (!fields.refused) this.#count(this.destination, this.protocol === 'http' ? 'requests' : this.protocol === 'socks5-udp' ? 'associations' : 'tunnels', 1);
    if (error || fields.refused) this.#count(this.destination, 'failures', 1);
    const wanted = this.#meter.recordWanted;
    if (wanted !== undefined && !wanted() && this.#meter.listenerCount('finished') <= 1) return undefined;
    const egress = this.egress;
    const udp = this.protocol === 'socks5-udp';
    const rec: ForwardRecord = {
      face: 'forward',
      protocol: this.protocol,
      time: Date.now(),
      requestId: this.requestId,
      clientAddress: this.clientAddress,
      method: fields.method,
      status: fields.status,
      error: error ?? undefined,
      reason: fields.reason,
      phase: fields.phase,
      endedBy: this.quotaCut !== undefined ? 'quota' : (fields.endedBy ?? (error ? 'gateway' : 'complete')),
      detail: fields.detail ?? this.cutDetail,
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      durationMs: Math.round((performance.now() - this.#started) * 1000) / 1000,
      user: this.user ?? undefined,
      destination: this.destination ?? undefined,
      address: fields.address ?? undefined,
      reply: fields.reply,
      plan: this.plan,
      pool: egress?.pool,
      exit: egress?.exit,
      session: egress?.session,
      repinned: egress?.repinned || undefined,
      exitRetries: egress?.exitRetries || undefined,
      quota: this.quotaCut,
      datagramsUp: udp ? this.datagramsUp : undefined,
      datagramsDown: udp ? this.datagramsDown : undefined,
      datagramsDropped: udp ? this.datagramsDropped : undefined,
    };
    this.#meter.emit('finished', rec, this.#ownId);
    return rec;
  }
}
