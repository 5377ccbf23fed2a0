import type { Socket } from 'node:net';
import { debugRefusalValue, wantsDebug } from './debug-header.js';
import { CLIENT_CLOSED_STATUS, Failure, classify, connectionCut, type EndedBy, type Phase } from '../failure/index.js';
import { DeadlineEntry, deadlines } from '../timing/deadlines.js';
import type { EgressRoute, ExitChoice } from '../egress/index.js';
import { customerFacingFailure, type FinishFields, type MeterSession, type MeteredProtocol } from '../tenants/index.js';
import { admitRequest } from './admission.js';
import { hostPort, type ForwardContext } from './context.js';
import { checkOutlastedHead, headDueAt } from './head-deadline.js';
import { clientLeft } from './client-fin.js';
import type { ForwardHookRequest, ForwardKind, MergedForwardHooks } from './hooks.js';
import { authenticate, authenticateNameFrom, type AuthOutcome, type Credentials } from './proxy-auth.js';
import { NOT_CONNECTED, cutFields, fieldsOf } from './record-fields.js';
import { TunnelRun } from './tunnel-run.js';
/** Before authentication: nobody (shared, never changed: `serve` assigns the request its own). */
const NO_ROUTE: EgressRoute = Object.freeze({ user: null });

/**
 * How a protocol front answers in its own protocol. The pipeline decides; the front
 * only speaks: an HTTP status with Proxy-Status, or a SOCKS reply code.
 */
export interface ForwardResponder {
  /**
   * Answer the refusal or failure and close as the protocol wants; the record fields it
   * produced (status or reply). `debug`: the Gatewise-Debug value, for a user who asked
   * (HTTP fronts send it; SOCKS has no place for it).
   */
  refuse(f: Failure, debug?: string): FinishFields;
  /**
   * Tunnels: the connection out is open. Tell the client (a SOCKS reply carries the
   * bound address) and return the bytes it sent early (to go upstream first), or
   * undefined when the client has already gone.
   */
  opened?(upstream: Socket, choice: ExitChoice | undefined): Buffer | undefined;
  /** The record fields of a success (after `opened`). */
  readonly okFields: FinishFields;
  /** The client left before the answer: release what the front holds; the record fields. */
  gone(): FinishFields;
}

/**
 * What the relay of a kind needs beyond the request value: set by the front that
 * parsed it. A tunnel needs nothing more; a request carries its HTTP exchange; an
 * association its relay.
 */
export interface Relay {
  /**
   * Run the relay once the request is authorised, planned and admitted. Returns the
   * finished record's fields; throws a Failure (before anything was answered) to refuse.
   */
  run(req: ForwardRequest, pipeline: ForwardPipeline): Promise<FinishFields>;
}

/**
 * One forward request, tunnel or association, as every front hands it to the pipeline:
 * what was asked (protocol, kind, target), by whom (set by `authenticate`), and the
 * meter session that becomes its record.
 */
export class ForwardRequest implements ForwardHookRequest {
  /** Set by the front as it reads: a SOCKS5 request learns its kind and target last. */
  kind: ForwardKind;
  #target: { readonly host: string; readonly port: number };
  #nextHop: string | undefined;
  readonly method: string | undefined;
  readonly session: MeterSession;
  readonly client: Socket;
  route: EgressRoute = NO_ROUTE;

  constructor(init: { kind: ForwardKind; target: { host: string; port: number }; method?: string; session: MeterSession; client: Socket }) {
    this.kind = init.kind;
    this.#target = init.target;
    this.method = init.method;
    this.session = init.session;
    this.client = init.client;
  }

  get protocol(): MeteredProtocol {
    return this.session.protocol;
  }

  get requestId(): string {
    return this.session.requestId;
  }

  get user(): string | null {
    return this.route.user;
  }

  get plan(): string | undefined {
    return this.session.plan;
  }

  get clientAddress(): string | undefined {
    return this.session.clientAddress ?? this.client.remoteAddress;
  }

  get target(): { readonly host: string; readonly port: number } {
    return this.#target;
  }

  set target(t: { readonly host: string; readonly port: number }) {
    this.#target = t;
    this.#nextHop = undefined;
  }

  /** `host:port` of the target (brackets around IPv6), made once. */
  get nextHop(): string {
    return (this.#nextHop ??= hostPort(this.#target.host, this.#target.port));
  }
}

/**
 * The one forward pipeline: every protocol front (HTTP proxy, CONNECT, SOCKS5, SOCKS5
 * UDP, SOCKS4) turns what it read into a `ForwardRequest` and a `ForwardResponder`, and
 * this runs the same phases in the same order for all of them:
 *
 *   authenticate → authorize (ports, destination rules, hooks) → plan (pool, rate, quota)
 *   → admit (connection and tunnel slots) → egress + relay (by kind) → finish (once)
 *
 * A new check or limit is one edit here, not five. The checks that need no I/O return
 * plain values and are not awaited: an `await` of a value still costs a microtask turn,
 * and a tunnel runs through six of these phases (measured in the last stage: the
 * forward path answers a known user without a promise; see docs/architecture.md).
 */
export class ForwardPipeline {
  readonly #ctx: ForwardContext;
  readonly #hooks: MergedForwardHooks;

  constructor(ctx: ForwardContext, hooks: MergedForwardHooks) {
    this.#ctx = ctx;
    this.#hooks = hooks;
  }

  get ctx(): ForwardContext {
    return this.#ctx;
  }

  /**
   * Phase 1 alone, for fronts that must answer authentication before they read the
   * target (SOCKS5's RFC 1929 sub-negotiation). `'malformed'`: credentials that could
   * not be decoded. A plain value when no password check is needed.
   */
  authenticate(creds: Credentials | 'malformed' | undefined, client: Socket): AuthOutcome | Promise<AuthOutcome> {
    if (creds === 'malformed') return authenticate(this.#ctx, undefined, true);
    return authenticate(this.#ctx, creds, false, client);
  }

  /**
   * Name and password as SOCKS sends them (no decoding step): the route, undefined when
   * wrong, or a Failure when the check cannot be made now (too many from this client).
   */
  authenticateName(name: string, password: string, client: Socket): EgressRoute | Failure | undefined | Promise<EgressRoute | Failure | undefined> {
    return authenticateNameFrom(this.#ctx, name, password, client);
  }

  /**
   * Phases 1–6 for a front that has everything at once (the HTTP fronts: absolute-form
   * requests and CONNECT). Never throws: every outcome is answered through the responder and
   * recorded once.
   *
   * A password check under way (a promise: an auth provider, a hash not checked recently) must
   * answer within the time the request's head was read under (head-deadline.ts): at that
   * deadline the client is answered 408 and the request recorded as ended by the proxy
   * (`CheckDeadline`), and the check's later answer leads nowhere. Before, nothing timed the
   * check: a slow provider held the client past its handshake time, and a right answer then
   * dialled (test/forward/http-handshake-slow-check.test.ts). A check answered at once (a
   * known client) arms nothing. A provider that fails after the deadline (its failure comes
   * as an answer, proxy-auth.ts `checkFailed`) finds the request finished too: no 500, no
   * second record, not counted (as on the SOCKS fronts, socks/byte-reader.ts `during`;
   * test/forward/auth-provider-late-failure.test.ts).
   */
  run(req: ForwardRequest, creds: Credentials | 'malformed' | undefined, responder: ForwardResponder, relay: Relay | undefined): Promise<void> | void {
    const authed = this.authenticate(creds, req.client);
    if (authed instanceof Promise) {
      const due = this.#checkDeadline(req, responder);
      return this.hold(req, responder, authed, 'its password check', 'connect', due).then(
        (a) => {
          due?.cancel();
          if (!req.session.finished) return this.#afterAuth(req, a, responder, relay);
        },
        (err: unknown) => {
          due?.cancel();
          this.refuse(req, responder, classify(err, NOT_CONNECTED));
        },
      );
    }
    return this.#afterAuth(req, authed, responder, relay);
  }

  /** The deadline of a password check under way for an HTTP front's request (see `run`); undefined when its head had none. */
  #checkDeadline(req: ForwardRequest, responder: ForwardResponder): CheckDeadline | undefined {
    const now = performance.now();
    const dueAt = headDueAt(req.client, this.#ctx.settings.handshakeTimeoutMs, now);
    if (dueAt === Infinity) return undefined;
    const d = new CheckDeadline(this, req, responder);
    deadlines.add(d, now, Math.max(0, dueAt - now));
    return d;
  }

  /**
   * `work`, something the request waits on that the proxy does not own (a password check, an
   * `authorize` hook, a shared-state admission), with the client's connection watched while it
   * is under way: when close() cuts that connection at the drain timeout (`ctx.cut`) first, the
   * request is recorded then, once, as the drain's (`connectionCut` in `phase`, ended by the
   * gateway; `what` names the hold in the record's detail) and `due` (the check's deadline) is
   * cancelled; the work's answer, when it comes, finds the request finished and goes no further
   * (each caller looks). Before, the record came only with that answer: a check or hook that
   * never answered left the request unrecorded and its meter session open, and close() returned
   * with it (test/forward/drain-held-forever.test.ts). A client that left by itself is not
   * recorded here: the work's answer finds it gone, as before (client-fin.ts). One entry in
   * `ctx.held` per hold, which close() calls at its cut, only when the work is a promise:
   * nothing on a path that does not wait.
   */
  hold<T>(req: ForwardRequest, responder: ForwardResponder, work: Promise<T>, what: string, phase: Phase, due?: { cancel(): void }): Promise<T> {
    const client = req.client;
    const held = this.#ctx.held;
    const atCut = (): void => {
      const session = req.session;
      if (session.finished) return;
      const f = connectionCut(this.#ctx.cut, client, phase);
      if (f === undefined) return;
      due?.cancel();
      const gone = responder.gone();
      // An HTTP request's record carries the status of the failure (nothing was answered); a tunnel's, its front's.
      session.finish(cutFields(f, fieldsOf(req.kind === 'request' ? { ...gone, status: f.status } : gone, null, 'gateway', undefined), `held in ${what}, which had not answered`));
    };
    held.add(atCut);
    const off = (): void => void held.delete(atCut);
    work.then(off, off);
    return work;
  }

  /**
   * A request the front could not accept (bad target, loop): who asks still comes first,
   * so an unauthenticated client is answered 407 and learns nothing about the rest.
   */
  refuseAfterAuth(req: ForwardRequest, creds: Credentials | 'malformed' | undefined, responder: ForwardResponder, f: Failure): void {
    const authed = this.authenticate(creds, req.client);
    if (authed instanceof Promise) {
      // Timed as in `run`: the refusal waits on the check, within the head's time.
      const due = this.#checkDeadline(req, responder);
      void this.hold(req, responder, authed, 'its password check', 'connect', due).then(
        (a) => {
          due?.cancel();
          if (!req.session.finished) this.#refuseAuthed(req, responder, a, f);
        },
        () => {
          due?.cancel();
          this.refuse(req, responder, f);
        },
      );
    } else {
      this.#refuseAuthed(req, responder, authed, f);
    }
  }

  #refuseAuthed(req: ForwardRequest, responder: ForwardResponder, auth: AuthOutcome, f: Failure): void {
    if (auth.ok) req.session.user = auth.user;
    this.refuse(req, responder, auth.ok ? f : auth.failure);
  }

  #afterAuth(req: ForwardRequest, auth: AuthOutcome, responder: ForwardResponder, relay: Relay | undefined): Promise<void> | void {
    if (!auth.ok) {
      if (auth.user !== undefined) req.session.user = auth.user; // refused after the password was verified
      return this.refuse(req, responder, auth.failure);
    }
    return this.serve(req, auth.route, responder, relay);
  }

  /**
   * Phases 2–6 for an authenticated request. Never throws. Written as steps that return a
   * plain value and chain a promise only where a phase really waits (a hook, a shared-state
   * limit, a relay): a tunnel with no hooks and in-memory limits runs from here to its dial
   * without a promise or an async frame, and its relay (`TunnelRun`) works by callbacks.
   * A promise returned here settles when the phases that wait are done, not when a tunnel ends.
   */
  serve(req: ForwardRequest, route: EgressRoute, responder: ForwardResponder, relay: Relay | undefined): Promise<void> | void {
    req.route = route;
    req.session.user = route.user;
    req.session.plan = this.#ctx.plans.planName(route.user);
    if (req.kind !== 'datagram') req.session.destination = req.nextHop;
    try {
      const r = this.#authorizeStep(req, responder, relay);
      if (r instanceof Promise) return r.catch((err: unknown) => this.#crashed(req, responder, err));
    } catch (err) {
      this.#crashed(req, responder, err);
    }
  }

  /** A phase threw (a hook, a bug): refused, unless it was already recorded. */
  #crashed(req: ForwardRequest, responder: ForwardResponder, err: unknown): void {
    if (!req.session.finished) this.refuse(req, responder, classify(err, NOT_CONNECTED));
  }

  // --- authorize: the built-in checks, then the hook (only when one is registered)
  #authorizeStep(req: ForwardRequest, responder: ForwardResponder, relay: Relay | undefined): Promise<void> | void {
    const denied = this.#authorize(req);
    if (denied) return this.refuse(req, responder, denied);
    const hook = this.#hooks.authorize;
    if (hook) return this.#hookAuthorize(hook, req, responder, relay);
    return this.#planStep(req, responder, relay);
  }

  async #hookAuthorize(hook: NonNullable<MergedForwardHooks['authorize']>, req: ForwardRequest, responder: ForwardResponder, relay: Relay | undefined): Promise<void> {
    const answer = hook(req);
    const f = answer instanceof Promise ? await this.hold(req, responder, answer, 'an authorize hook', 'connect') : answer;
    // Recorded meanwhile (close() cut its connection): the hook's answer goes nowhere.
    if (req.session.finished) return;
    if (f) return this.refuse(req, responder, f);
    return this.#planStep(req, responder, relay);
  }

  // --- plan: the pool (a chooseEgress hook first), the plan's pools, rate and quotas
  #planStep(req: ForwardRequest, responder: ForwardResponder, relay: Relay | undefined): Promise<void> | void {
    const choose = this.#hooks.chooseEgress;
    if (choose && req.route.pool === undefined) {
      const pool = choose(req);
      if (pool !== undefined) req.route = { ...req.route, pool, poolByHook: true };
    }
    // --- plan + admit: the plan's pools, rate and quotas, and the connection and tunnel slots (one call: one round trip to a shared store)
    const admitted = admitRequest(this.#ctx, req.route, req.kind === 'datagram' ? '*' : req.target.host, req.kind === 'request' ? 'request' : 'tunnel', req.kind === 'datagram' ? 'udp' : req.nextHop);
    if (admitted instanceof Promise) {
      return this.hold(req, responder, admitted, 'admission', 'connect').then((r) => {
        // Recorded meanwhile (close() cut its connection): the slot it was given goes back, no dial.
        if (!req.session.finished) return this.#relayStep(req, responder, relay, r);
        if (!(r instanceof Failure)) r();
      });
    }
    return this.#relayStep(req, responder, relay, admitted);
  }

  // --- egress + relay (by kind), then finish once; the slot is released after the record
  #relayStep(req: ForwardRequest, responder: ForwardResponder, relay: Relay | undefined, release: (() => void) | Failure): Promise<void> | void {
    if (release instanceof Failure) return this.refuse(req, responder, release);
    if (relay !== undefined) return this.#runRelay(req, responder, relay, release);
    new TunnelRun(this, req, responder, release).start();
  }

  async #runRelay(req: ForwardRequest, responder: ForwardResponder, relay: Relay, release: () => void): Promise<void> {
    try {
      let fields: FinishFields;
      try {
        fields = await relay.run(req, this);
      } catch (err) {
        if (req.session.finished) return;
        return this.refuse(req, responder, err instanceof Failure ? err : classify(err, { ...NOT_CONNECTED, nextHop: req.session.destination ?? undefined }));
      }
      req.session.finish(fields);
    } finally {
      release();
    }
  }

  /**
   * The built-in authorisation: the port (CONNECT's against connectPorts, an absolute-form
   * request's against httpPorts: one lookup), then the destination rules on the name. Before
   * any resolution or dial, whatever the egress (direct or an upstream proxy exit). Before,
   * an absolute-form request went to any port: a relay of HTTP lines to SMTP, Redis or
   * memcached (test/forward/http-ports.test.ts).
   */
  #authorize(req: ForwardRequest): Failure | undefined {
    if (req.kind === 'datagram') return undefined; // each datagram is checked as it goes
    const { host, port } = req.target;
    if (req.kind === 'request') {
      if (!this.#ctx.settings.httpPorts.has(port)) return portRefused(req, `HTTP request to port ${port} is not allowed`);
    } else if (req.protocol === 'connect' && !this.#ctx.settings.connectPorts.has(port)) {
      return portRefused(req, `CONNECT to port ${port} is not allowed`);
    }
    return this.#ctx.rules.checkName(req.route.user, host, port);
  }

  /**
   * Answer a refusal or failure through the front, record it once. `endedBy`: who the record
   * says ended it, when not the failure's own source (the proxy, for a client's failure type
   * the proxy's own work caused).
   */
  refuse(req: ForwardRequest, responder: ForwardResponder, f: Failure, endedBy: EndedBy = f.source): void {
    if (req.session.finished) return;
    this.#hooks.onFailure?.(req, f);
    const fields = responder.refuse(f, wantsDebug(this.#ctx, req) ? debugRefusalValue(this.#ctx, req, f) : undefined);
    // The detail says which rule, limit or malformed field (docs/access-log.md): the operator's, whatever the client was shown.
    req.session.finish(fieldsOf(fields, f.type, endedBy, undefined, true, f.reason, f.phase, f.detail));
  }
}

/** A port outside the list for its kind (connectPorts, httpPorts): one refusal for both. */
/** The port is the client's own request, not the network's topology: the client is shown which (docs/forward-proxy.md, "Limits and their refusals"). */
function portRefused(req: ForwardRequest, detail: string): Failure {
  return customerFacingFailure({ type: 'http_request_denied', phase: 'route', nextHop: req.nextHop, detail });
}

/**
 * The deadline of an HTTP front's password check under way (`ForwardPipeline.run`): one entry
 * on the process's deadline list, made only when the check is a promise. When it passes, the
 * client is answered 408 (`request_timeout`, its connection closed) and the request recorded
 * as ended by the proxy, the same failure as a SOCKS handshake whose check outlasted its time
 * (head-deadline.ts `checkOutlastedHead`); the check's answer then finds the request finished.
 * A client that left meanwhile (reset, close or FIN, client-fin.ts) is not answered: its
 * connection is closed and the record says the client ended it (499), as the dial's own
 * reading would have once the check answered.
 *
 * The SOCKS fronts' counterpart is their byte reader's `during` (socks/byte-reader.ts), kept
 * apart on purpose: that reader's deadline already runs for the handshake's reads, and `during`
 * ties the check's promise to it inside an async front whose catch records; an HTTP head's
 * deadline is node:http's head timer or the connection gate's handshake time, which Gatewise
 * does not own, so this entry is the one armed for it, and it answers and records itself
 * (`run` is not an async chain: a check answered at once costs no promise).
 */
class CheckDeadline extends DeadlineEntry {
  readonly #pipeline: ForwardPipeline;
  readonly #req: ForwardRequest;
  readonly #responder: ForwardResponder;

  constructor(pipeline: ForwardPipeline, req: ForwardRequest, responder: ForwardResponder) {
    super();
    this.#pipeline = pipeline;
    this.#req = req;
    this.#responder = responder;
  }

  deadlineReached(): void {
    const req = this.#req;
    if (clientLeft(req.client)) {
      req.client.destroy();
      req.session.finish({ ...this.#responder.gone(), status: CLIENT_CLOSED_STATUS, error: null, endedBy: 'client', phase: 'accept', detail: 'the client left during the password check' });
      return;
    }
    this.#pipeline.refuse(req, this.#responder, checkOutlastedHead(req.protocol === 'connect' ? 'CONNECT' : 'HTTP request'), 'gateway');
  }

  cancel(): void {
    deadlines.remove(this);
  }
}
