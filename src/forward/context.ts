import type { Socket } from 'node:net';
import { newForwardRequestId } from '../http/request-id.js';
import { peerAddress } from '../http/peer.js';
import type { Logger } from 'pino';
import type { Dialer, EgressRouter, UdpDialer } from '../egress/index.js';
import type { AuthProvider, ConcurrencyLimits, Meter, PlanEnforcer, SourceAllowlist, UsernameGrammar } from '../tenants/index.js';
import type { ResourceTracker } from './resource-tracker.js';
import type { DestinationRules } from './rules/destination-rules.js';
import type { ForwardSettings } from './settings.js';
import type { DirectPools } from './direct-pools.js';
import type { RelayTimeouts } from './forward-relay.js';
import type { UpstreamTls } from './upstream-tls.js';
import type { SharedState } from '../state/index.js';
import type { ConnectionsCut } from '../failure/index.js';
import type { AuthLockout } from '../net/auth-lockout.js';

/**
 * What every protocol handler of one running forward proxy shares. A reload replaces the
 * config-derived fields (settings, egress, direct pools, grammar, relay timeouts) in place: a
 * request reads them as it goes, so what it has already taken (its pool, its exit, its
 * timers) stays the old config's until it ends; new requests read the new values.
 */
export interface ForwardContext {
  /** This proxy's scope among the process's own listeners (net/own-listeners.ts): its listeners are reserved in it, and its rules refuse them. */
  readonly ownScope: string;
  settings: ForwardSettings;
  /** Who credentials belong to: the or the library user's provider. */
  readonly users: AuthProvider;
  /** Wrong credentials per client address (net/auth-lockout.ts): a locked-out address is refused before its password is checked. */
  readonly authLockout?: AuthLockout;
  readonly rules: DestinationRules;
  readonly dialer: Dialer;
  readonly udpDialer: UdpDialer;
  /** The direct exit's connection pools, by rules scope and origin. */
  direct: DirectPools;
  readonly meter: Meter;
  readonly limits: ConcurrencyLimits;
  /** Shared state (Redis, or the primary with --workers): sold limits (plan and user maxConnections, user maxTunnels) are leases there. */
  readonly shared: SharedState | undefined;
  readonly tracker: ResourceTracker;
  readonly logger: Logger;
  /** Pools, exits and routing (direct when no pool applies). */
  egress: EgressRouter;
  readonly plans: PlanEnforcer;
  grammar: UsernameGrammar;
  /** Plans whose users get the Gatewise-Debug header; undefined when no plan turns it on (a reload replaces it with the plans). */
  debugPlans: ReadonlySet<string> | undefined;
  /** TLS to destinations: `direct` for the direct pools (sessions resumed), `pooled` for exits of a pool (never resumed). */
  tls: { readonly direct: UpstreamTls; readonly pooled: UpstreamTls };
  /** The HTTP relay's waits for the response head and between body bytes. */
  relayTimeouts: RelayTimeouts;
  /** IP allowlist authentication (users' allowFrom); undefined when no user has one (nothing checked). */
  allowlist: SourceAllowlist | undefined;
  /** Username parameters of allowlisted clients, by the local port of the listener they came to (listeners[].usernameParams). */
  listenerParams: ReadonlyMap<number, string>;
  /** Set by close(): new HTTP requests are answered with `Connection: close`, idle connections are closed. */
  draining: boolean;
  /**
   * Set when close() cuts the client connections still open at the drain timeout, before it
   * destroys them: the requests and tunnels they end are recorded as the proxy's doing with its
   * failure (failure/connections-cut.ts `connectionCut`), unless their client had left first.
   */
  cut: ConnectionsCut | undefined;
  /**
   * Requests held in work the proxy does not own (`ForwardPipeline.hold`: a password check, a
   * hook, a shared-state admission), each as what records it when close() cuts its connection.
   * A set on the context, not a 'close' listener per hold: pipelined requests held at once on
   * one connection passed Node's MaxListeners warning.
   */
  readonly held: Set<() => void>;
  /** Whether anything reads the finished records (access log, observers on the channel). */
  readonly recordsObserved: () => boolean;
}

/**
 * The client's address for the record, read only when something will see the record:
 * Node has no peer address from accept(), so it costs a getpeername() per connection.
 * Read through the handle (../http/peer.ts) rather than `remoteAddress`: CONNECT per tunnel
 * in the default configuration, callgrind (bench/tunnel-icount.ts, ICOUNT_ACCESS_LOG=1,
 * 20,000 warm, 6,000 counted): 275.5k and 281.0k instructions per tunnel before, 271.0k and
 * 270.8k after.
 */
export function clientAddressFor(ctx: ForwardContext, socket: Socket): string | undefined {
  return ctx.recordsObserved() ? peerAddress(socket) : undefined;
}

/** A new request id for a forward request, tunnel or association (src/http/request-id.ts). */
export const newRequestId: () => string = newForwardRequestId;

/** `host:port`, with IPv6 literals in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
