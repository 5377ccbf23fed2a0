import type { Socket } from 'node:net';
import { Failure, classify, connectionCut, type ConnectionsCut } from '../failure/index.js';
import type { DialHandle, ExitChoice, TunnelDialSink } from '../egress/index.js';
import type { FinishFields } from '../tenants/index.js';
import type { ForwardContext } from './context.js';
import { noteExit, noteFailedExit, tunnelDialOptions } from './egress-admission.js';
import type { ForwardPipeline, ForwardRequest, ForwardResponder } from './pipeline.js';
import { NOT_CONNECTED, cutFields, fieldsOf } from './record-fields.js';
import { quotaOver } from './quota-gate.js';
import { clientLeft, leftFields } from './client-fin.js';
import { Tunnel, type TunnelEnd } from '../tunnel/tunnel.js';

/**
 * The egress and relay phase of one tunnel (CONNECT, SOCKS5, SOCKS4), from the dial to the
 * record, as one object: the dial's callback target, the tunnel that splices the bytes, and
 * its meter. It holds the admission slot and releases it once, after the record.
 *
 *   dial (a client that leaves meanwhile aborts it) → tell the client → splice, metered and
 *   under the plan's byte quota → finish once → release
 *
 * Why callbacks and not an async chain: this runs once per tunnel, and the chain it replaced
 * (`#serve → #tunnel → dial → runTunnel`, each an async frame or a promise, plus a Cancel and
 * its listener closure, a dial options signal, a 'close' listener added and removed) cost
 * ~3 KB and a dozen microtask turns per tunnel (docs/benchmarks.md, CONNECT per tunnel).
 */
export class TunnelRun extends Tunnel implements TunnelDialSink {
  readonly idleMs: number;
  readonly sendMs: number;
  readonly #pipeline: ForwardPipeline;
  readonly #ctx: ForwardContext;
  readonly #req: ForwardRequest;
  readonly #responder: ForwardResponder;
  readonly #release: () => void;
  #dial: DialHandle | undefined = undefined;
  /** The client closed before the tunnel opened. */
  #left = false;
  /** Recorded and released. */
  #done = false;
  /** The destination's address, for the record. */
  #address: string | null = null;
  /** A byte quota cut this tunnel. */
  #cut = false;
  /** close() cut this tunnel at the drain timeout (its client had not left first): the failure recorded. */
  #drainCut: Failure | undefined = undefined;

  constructor(pipeline: ForwardPipeline, req: ForwardRequest, responder: ForwardResponder, release: () => void) {
    super(req.client);
    const ctx = pipeline.ctx;
    this.idleMs = ctx.settings.tunnelIdleMs;
    this.sendMs = ctx.settings.sendMs;
    this.#pipeline = pipeline;
    this.#ctx = ctx;
    this.#req = req;
    this.#responder = responder;
    this.#release = release;
  }

  /** Dial; the rest follows from the callbacks. Never throws. */
  start(): void {
    try {
      // A client that left before this point (a reset during its password check, a hook, a
      // shared-state admission) has emitted its 'close' already: the listener `watchClient`
      // adds would never hear it, and the destination would be dialled for no one (review
      // finding). No dial: recorded as ended by the client, the slot given back. A FIN before
      // this point is the client leaving too (client-fin.ts); from here it is passed on at the splice.
      if (clientLeft(this.client)) {
        this.client.destroy();
        this.#end(this.#goneFields(null));
        return;
      }
      this.watchClient();
      const ctx = this.#ctx;
      const req = this.#req;
      const dial = ctx.egress.dialTo(req.target, tunnelDialOptions(ctx, req.route.user), req.route, this);
      if (!this.#done && this.server === undefined) this.#dial = dial;
    } catch (err) {
      this.#crashed(err);
    }
  }

  clientLeftEarly(): void {
    if (this.#done) return;
    this.#left = true;
    this.#dial?.abort();
  }

  dialed(upstream: Socket, address: string | undefined): void {
    this.#opened(upstream, undefined, address ?? null);
  }

  dialedThrough(upstream: Socket, choice: ExitChoice | undefined): void {
    noteExit(this.#req.session, choice);
    // The address the connection went to (an exit's, through a pool), read only when a record will show it.
    this.#opened(upstream, choice, this.#ctx.recordsObserved() ? (upstream.remoteAddress ?? null) : null);
  }

  dialFailed(err: unknown): void {
    this.#dial = undefined;
    if (this.#done) return;
    const req = this.#req;
    if (this.#left) {
      this.#end(this.#goneFields(undefined));
      return;
    }
    try {
      const f = err instanceof Failure ? err : classify(err, { ...NOT_CONNECTED, nextHop: req.session.destination ?? undefined });
      noteFailedExit(req.session, f, req.route.session);
      this.#pipeline.refuse(req, this.#responder, f);
    } finally {
      this.#finishRelease();
    }
  }

  #opened(upstream: Socket, choice: ExitChoice | undefined, address: string | null): void {
    this.#dial = undefined;
    if (this.#done) {
      upstream.destroy();
      return;
    }
    try {
      const early = this.#left || this.client.destroyed ? undefined : this.#responder.opened!(upstream, choice);
      if (early === undefined) {
        upstream.destroy();
        this.#end(this.#goneFields(address));
        return;
      }
      this.#address = address;
      this.#ctx.tracker.add(upstream);
      if (early.length > 0) {
        this.#req.session.up(early.length);
        upstream.write(early);
      }
      this.splice(upstream);
    } catch (err) {
      upstream.destroy();
      this.#crashed(err);
    }
  }

  tunnelEnded(end: TunnelEnd): void {
    this.#ctx.tracker.forget(this.server!);
    const f = this.#drainCut;
    if (f !== undefined && end === 'gateway') this.#end(cutFields(f, fieldsOf(this.#responder.okFields, null, end, this.#address)));
    else this.#end(fieldsOf(this.#responder.okFields, null, end, this.#address));
  }

  /**
   * close() cuts this tunnel at the drain timeout: both sockets destroyed, and the record says
   * the proxy ended it (`cut`'s failure), unless its client had left first (its FIN read, or a
   * reset), which stays the client's. A tunnel still dialling is recorded so too.
   */
  cutAtDrain(cut: ConnectionsCut): void {
    if (this.#done) return;
    const f = connectionCut(cut, this.client, this.server === undefined ? 'connect' : 'body');
    if (f !== undefined) {
      this.#drainCut = f;
      this.endedBy ??= 'gateway';
    }
    this.client.destroy();
    this.server?.destroy();
  }

  /**
   * The record of a tunnel whose client closed before it opened: the client's, or the drain's
   * cut. A tunnel whose client connection close() cut while it was held before this run
   * existed (a password check, an authorize hook, admission: no `cutAtDrain` reached it) is the
   * drain's too, unless its client had left first (`connectionCut`).
   */
  #goneFields(address: string | null | undefined): FinishFields {
    return leftFields(this.#ctx.cut, this.client, fieldsOf(this.#responder.gone(), null, 'client', address), this.#drainCut);
  }

  onNotReading(detail: string): void {
    this.#req.session.cutDetail = detail;
  }

  // The quota is checked before a chunk is counted: the chunk that crosses the limit still
  // goes through (the user's bytes up to the limit arrive whole) and the next one is cut.
  // The chunk that is cut is never passed on (both sockets are destroyed before `onData`
  // writes it), so it is not counted either: a user is billed for what was delivered.
  onUp(n: number): void {
    const user = this.#req.route.user;
    if (user !== null && this.#cutByQuota(user)) return;
    this.#req.session.up(n);
  }

  onDown(n: number): void {
    const user = this.#req.route.user;
    if (user !== null && this.#cutByQuota(user)) return;
    this.#req.session.down(n);
  }

  /** Whether this tunnel is (now) cut by a byte quota. */
  #cutByQuota(user: string): boolean {
    if (this.#cut) return true;
    const over = quotaOver(this.#ctx.plans, user);
    if (!over) return false;
    this.#cut = true;
    this.#req.session.quotaCut = over.detail;
    this.client.destroy();
    this.server?.destroy();
    return true;
  }

  /** Record once, then give the slot back. */
  #end(fields: FinishFields): void {
    if (this.#done) return;
    try {
      this.#req.session.finish(fields);
    } finally {
      this.#finishRelease();
    }
  }

  #finishRelease(): void {
    if (this.#done) return;
    this.#done = true;
    this.#release();
  }

  /** A bug on the way (a front that threw): refused as the pipeline refuses what it cannot classify. */
  #crashed(err: unknown): void {
    if (this.#done) return;
    try {
      if (!this.#req.session.finished) this.#pipeline.refuse(this.#req, this.#responder, classify(err, NOT_CONNECTED));
    } finally {
      this.#finishRelease();
    }
  }
}
