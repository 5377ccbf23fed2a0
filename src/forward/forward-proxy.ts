import { channel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import { parseDuration } from '../config/duration.js';
import { NO_USERS, allowlistOverlaps, forwardSchema, forwardUserSchema, type ForwardConfig, type ForwardConfigInput, type ForwardListener as ForwardListenerConfig, type ForwardUser } from '../config/forward.js';
import {
  DirectDialer,
  DirectUdpDialer,
  buildEgress,
  resolverFromLookup,
  systemResolver,
  type Dialer,
  type EgressRouter,
  type ExitPool,
  type EgressSpec,
  type LookupFunction,
  type Resolver,
  type UdpDialer,
  type EgressEvents,
} from '../egress/index.js';
import { MemoryStore, SharedState, type StateHealth, type Store } from '../state/index.js';
import type { AuthProvider } from '../tenants/index.js';
import { within } from '../timing/within.js';
import { ConcurrencyLimits, Meter, PlanEnforcer, SourceAllowlist, type TrafficLimit, UserDirectory, UsersFile, type PlanSpec, type UserEntry } from '../tenants/index.js';
import { AccessLog, createLogger } from '../observe/access-log.js';
import { ConfigError } from '../config/load.js';
import { issuesToProblems } from '../config/check.js';
import { requestEnd, type ForwardRecord } from '../record/index.js';
import type { ForwardContext } from './context.js';
import { HttpFront, idleHttpConnection } from './http-front.js';
import { TunnelRun } from './tunnel-run.js';
import { ForwardRelay } from './forward-relay.js';
import { ConnectionsCut } from '../failure/index.js';
import { kSocketUser, type SlottedSocket } from '../net/index.js';
import { AuthLockout, lockoutLogLine } from '../net/auth-lockout.js';
import { joinLockoutGroup } from '../net/auth-lockout-group.js';
import { LockoutFleet, type FleetLockoutStore } from '../net/auth-lockout-fleet.js';
import { ForwardListener, IN_TLS, type ForwardProtocol, type ListenerHandlers } from './listener.js';
import type { GateStats } from '../http/connection-gate.js';
import { ResourceTracker } from './resource-tracker.js';
import type { CertificateStore } from '../tls/index.js';
import { DestinationRules } from './rules/destination-rules.js';
import { toSettings, type ForwardSettings } from './settings.js';
import { Socks4Front } from './socks/socks4-front.js';
import { Socks5Front } from './socks/socks5-front.js';
import { DirectPools } from './direct-pools.js';
import { UpstreamTls } from './upstream-tls.js';
import { mergeForwardHooks, type ForwardHooks } from './hooks.js';
import { AccountService, type UserStore } from './accounts.js';
import { ForwardPipeline } from './pipeline.js';
import { redactUrl } from '../observe/redact.js';

/** diagnostics_channel name carrying exit failures ({ pool, exit, host, scope, cooled, type }). */
export const EXIT_FAILURE_CHANNEL = 'gatewise:forward:exit-failure';

/** The plans with `debug: true`, or undefined when none (then the request path tests one field). */
function debugPlansOf(plans: Record<string, { debug?: boolean | undefined }>): ReadonlySet<string> | undefined {
  const on = Object.entries(plans).filter(([, p]) => p.debug === true).map(([name]) => name);
  return on.length > 0 ? new Set(on) : undefined;
}

export interface ForwardDeps {
  /** Logger for the access log and warnings; default pino to stdout. */
  logger?: Logger;
  /**
   * Name resolution for destinations; default the system resolver (getaddrinfo).
   * Either a Resolver (hostname → Promise of addresses) or a `dns.lookup`-style function.
   */
  resolver?: Resolver | LookupFunction;
  /** How connections leave when no egress pool applies (default: direct). */
  dialer?: Dialer;
  udpDialer?: UdpDialer;
  /**
   * Where usage counters live (default: a MemoryStore, or Redis when `state.redis` is
   * configured). A `shared` store (an `IpcStore` in a worker) also holds rate cells, sticky
   * sessions, leases and cool-downs, reached through `SharedState`.
   */
  store?: Store;
  /** Clock for sessions, cool-downs and quotas (tests). */
  now?: () => number;
  /** Who credentials belong to, instead of the config's users (see AuthProvider). */
  authProvider?: AuthProvider;
  /** Extension hooks at the pipeline's fixed phases (see docs/extending.md), run in this order. */
  hooks?: readonly ForwardHooks[];
  /**
   * The longest the `authorize` hooks of one request may take together, in ms; past it the
   * request is refused 500 `proxy_internal_error`. Default 10,000; 0: no bound.
   */
  hookTimeoutMs?: number;
  /**
   * Log the `forward proxy listening on …` and egress pool lines once the listeners bind
   * (default true); false: the caller logs them with `announce()` once its whole start
   * succeeded (the runtime, which binds the gateway and admin listeners too).
   */
  announce?: boolean;
}

export interface ForwardProxy {
  addresses(): Array<{ protocols: ForwardProtocol[]; address: string; port: number }>;
  /** Log the listening and egress pool lines (see `ForwardDeps.announce`). */
  announce(): void;
  /** Per listener: connections admitted, refused ones waiting for their first bytes, shed, refused in all. */
  connectionStats(): GateStats[];
  /** The certificates of the HTTPS proxy listeners (reload, metrics). */
  certificateStores(): CertificateStore[];
  readonly meter: Meter;
  readonly egress: EgressRouter;
  readonly plans: PlanEnforcer;
  readonly store: Store;
  /** The shared state (Redis, or the primary with --workers) and whether it is degraded; undefined when state is this process's own. */
  readonly shared: SharedState | undefined;
  /** The state layer's health for /ready and the metrics. */
  stateHealth(): StateHealth;
  /** With `state.redis`: the fleet's wrong-credential count, which this proxy's users' limiter joined (`forward`) and the admin listener's may join (`admin`). */
  readonly lockoutFleet: LockoutFleet | undefined;
  /** The running config (validated, defaults applied). */
  readonly config: ForwardConfig;
  /** Service operations on users (admin API `/accounts`, `/usage`); see docs/admin.md. */
  readonly accounts: AccountService;
  /** Re-read auth.usersFile now; false (old users kept) when it is invalid. */
  reloadUsers(): Promise<boolean>;
  /**
   * Apply a new forward config in place (see docs/forward-proxy.md, "Reload"): throws, with
   * nothing changed, when it is invalid (a ConfigError) or a new listener cannot bind.
   */
  reload(next: ForwardConfig | ForwardConfigInput): Promise<ForwardReloadSummary>;
  /**
   * Stop accepting, close idle client connections, let requests and tunnels in flight finish
   * for `drainMs` (default `shutdown.drainTimeout`), cut what is left (recorded as the proxy's
   * doing, GATEWISE_DRAIN_TIMEOUT), then close everything.
   */
  close(drainMs?: number): Promise<void>;
}

function ms(s: string): number {
  const v = parseDuration(s);
  if (v === undefined) throw new TypeError(`not a duration: ${s}`);
  return v;
}

/** The egress part of the config, durations in ms. */
export function egressSpecOf(config: ForwardConfig): EgressSpec {
  const pools: EgressSpec['pools'] = {};
  for (const [name, p] of Object.entries(config.egress.pools)) {
    pools[name] = {
      addresses: p.addresses,
      proxies: p.proxies,
      strategy: p.strategy,
      sessionTtlMs: ms(p.sessionTtl),
      sessionIdleMs: ms(p.sessionIdle),
      maxAttempts: p.maxAttempts,
      failure: { threshold: p.failure.threshold, cooldownMs: ms(p.failure.cooldown), maxCooldownMs: ms(p.failure.maxCooldown) },
    };
  }
  return { pools, routing: config.egress.routing, defaultPool: config.egress.defaultPool };
}

/** Proxies started in this process: each one's own-listener scope. */
let proxies = 0;

/** Users of the config and the users file, with their plan's rules added to their own. */
function rulesFor(config: ForwardConfig, users: readonly ForwardUser[], ownScope: string): DestinationRules {
  const withPlans = users.map((u) => {
    const plan = u.plan !== undefined ? config.plans[u.plan] : undefined;
    if (!plan?.allow && !plan?.deny) return u;
    return { ...u, allow: [...(u.allow ?? []), ...(plan.allow ?? [])], deny: [...(u.deny ?? []), ...(plan.deny ?? [])] };
  });
  return new DestinationRules({ allowPrivate: config.rules.allowPrivate, defaultAction: config.rules.defaultAction, allow: config.rules.allow, deny: config.rules.deny }, withPlans, ownScope);
}

/** Validate; with an AuthProvider, users need not be in the config (told apart by the issue's code). */
function parseForwardConfig(input: ForwardConfig | ForwardConfigInput, external: boolean): ForwardConfig {
  const r = forwardSchema.safeParse(input);
  if (r.success) return r.data;
  const issues = external ? r.error.issues.filter((i) => !(i.code === 'custom' && (i as { params?: { gatewise?: string } }).params?.gatewise === NO_USERS)) : r.error.issues;
  // The same refusal as the reverse gateway's: every problem, by path, with a stable code.
  if (issues.length > 0) throw new ConfigError(issuesToProblems(issues, forwardSchema));
  // Only the users problem, and a provider answers for users: the schema's transforms ran before its checks.
  const relaxed = forwardSchema.safeParse({ ...input, auth: { ...(input as ForwardConfigInput).auth, required: false } });
  if (!relaxed.success) throw new ConfigError(issuesToProblems(relaxed.error.issues, forwardSchema));
  return { ...relaxed.data, auth: { ...relaxed.data.auth, required: true } };
}

/**
 * Start the forward proxy service: validate the config, open every listener, and
 * return a handle whose close() stops listening and ends every connection, tunnel and
 * association.
 */
export async function startForwardProxy(input: ForwardConfig | ForwardConfigInput, deps: ForwardDeps = {}): Promise<ForwardProxy> {
  let config = parseForwardConfig(input, deps.authProvider !== undefined);
  const logger = deps.logger ?? createLogger();
  const settings = toSettings(config);
  const resolver: Resolver = !deps.resolver ? systemResolver : deps.resolver.length >= 3 ? resolverFromLookup(deps.resolver as LookupFunction) : (deps.resolver as Resolver);
  let remote: Store | undefined = deps.store?.shared ? deps.store : undefined;
  if (config.state.redis) {
    // Loaded only when configured: ioredis costs nothing otherwise.
    const { RedisStore } = await import('../state/redis-store.js');
    const r = config.state.redis;
    remote = new RedisStore({ url: r.url, keyPrefix: r.keyPrefix, connectTimeoutMs: ms(r.connectTimeout) });
    // Start even when Redis is down (the node runs on local state, degraded), but give it a moment to connect.
    if (!(await (remote as InstanceType<typeof RedisStore>).connected(ms(r.connectTimeout)))) {
      logger.warn({ component: 'state', backend: 'redis' }, `Redis at ${redactUrl(r.url)} is not reachable yet; starting on local state`);
    }
  }
  const shared = remote
    ? new SharedState(remote, {
        backend: config.state.redis ? 'redis' : 'ipc',
        budgetMs: ms(config.state.timeout),
        leaseTtlMs: ms(config.state.leaseTtl),
        log: { warn: (o, m) => logger.warn(o, m), info: (o, m) => logger.info(o, m) },
        now: deps.now,
        credit: config.state.redis && config.state.credit.max > 0 ? { max: config.state.credit.max, share: config.state.credit.share } : undefined,
      })
    : undefined;
  const store: Store = shared ? shared.usage : (deps.store ?? new MemoryStore({ now: deps.now }));
  // Wrong credentials counted fleet-wide (net/auth-lockout-fleet.ts): a store that offers it (Redis), each ask bounded by the state's budget.
  const lockoutFleet =
    shared !== undefined && remote?.lockoutFailed !== undefined && remote.onLockout !== undefined
      ? new LockoutFleet(remote as FleetLockoutStore, (ask, fallback) => shared.read(ask, fallback))
      : undefined;
  const ownStore = deps.store === undefined || shared !== undefined;
  if (config.state.file && store instanceof MemoryStore) {
    try {
      await store.load(config.state.file);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') logger.warn({ component: 'forward', stateFile: config.state.file, err: (err as Error).message }, 'state file unreadable; starting with empty usage');
    }
  }

  const userPlans = new Map<string, string>();
  /** Users' own trafficLimit, enforced by the plan enforcer as a byte quota (and by the sweep, which disables). */
  const userTraffic = new Map<string, TrafficLimit>();
  /** The users file's users as last read (a reload of the config combines them with its own users). */
  let fileUsers: readonly ForwardUser[] = [];
  const applyUsers = (fromFile: readonly ForwardUser[]): ForwardUser[] => {
    const names = new Set(config.auth.users.map((u) => u.name));
    const all = [...config.auth.users, ...fromFile.filter((u) => !names.has(u.name))];
    for (const u of all) if (u.plan !== undefined && !config.plans[u.plan]) throw new TypeError(`user ${u.name}: no plan named ${u.plan}`);
    const overlap = allowlistOverlaps(all)[0];
    if (overlap) throw new TypeError(overlap.message);
    return all;
  };
  const setTables = (all: readonly ForwardUser[]): void => {
    const userLimits = ctx.settings.userLimits as Map<string, { maxConnections?: number; maxTunnels?: number }>;
    userPlans.clear();
    userTraffic.clear();
    userLimits.clear();
    for (const u of all) {
      if (u.plan !== undefined) userPlans.set(u.name, u.plan);
      if (u.trafficLimit !== undefined) userTraffic.set(u.name, { limit: u.trafficLimit, period: u.trafficPeriod ?? 'month' });
      userLimits.set(u.name, { maxConnections: u.maxConnections, maxTunnels: u.maxTunnels });
    }
  };

  let users = applyUsers([]);
  // This proxy's own listeners, which its rules never let it dial (net/own-listeners.ts): by
  // proxy, not process, so that proxies chained in one process (exits of each other) still reach each other.
  const ownScope = `forward#${++proxies} `;
  let rules = rulesFor(config, users, ownScope);
  /** Users who may authenticate now: not disabled, not expired. */
  /** Users of the config file the sweep disabled (expired, traffic limit reached): they cannot be written, so until restart. */
  const disabledInMemory = new Map<string, string>();
  const activeOf = (all: readonly ForwardUser[], now = Date.now()): ForwardUser[] =>
    all.filter((u) => !u.disabled && !disabledInMemory.has(u.name) && !(u.expires !== undefined && Date.parse(u.expires) <= now));
  const withPassword = (all: readonly ForwardUser[]): UserEntry[] => all.flatMap((u) => (u.password !== undefined ? [{ name: u.name, password: u.password }] : []));
  const allowlistOf = (all: readonly ForwardUser[]): SourceAllowlist | undefined =>
    SourceAllowlist.of(all.flatMap((u) => (u.allowFrom ?? []).map((e) => (typeof e === 'string' ? { user: u.name, cidr: e } : { user: u.name, cidr: e.cidr, params: e.params }))));
  const tracker = new ResourceTracker();
  const dialer = deps.dialer ?? new DirectDialer({ resolver });
  const udpDialer = deps.udpDialer ?? new DirectUdpDialer({ resolver });
  const trackSocket = (s: Socket): (() => void) => tracker.track(s);
  const exitFailureChannel = channel(EXIT_FAILURE_CHANNEL);
  const egressDeps = {
    direct: dialer,
    directUdp: udpDialer,
    resolver,
    now: deps.now,
    shared,
    events: {
      onExitFailure: (e: Parameters<NonNullable<EgressEvents['onExitFailure']>>[0]) => {
        if (e.cooled) {
          // The egress of now (a reload may have replaced it; the pools it kept are the same objects).
          const forMs = ctx.egress.pools.get(e.pool)?.marker.coolingFor(e.exit, e.scope === 'domain' ? e.host : undefined) ?? 0;
          const reason = `${e.failure.type}${e.failure.detail ? `: ${e.failure.detail}` : ''}`;
          logger.warn(
            { component: 'forward', type: 'exit', event: 'cooled', pool: e.pool, exit: e.exit, host: e.scope === 'domain' ? e.host : undefined, error: e.failure.type, forMs, reason },
            `exit ${e.exit} of pool ${e.pool} cools down${e.scope === 'domain' ? ` for ${e.host}` : ''} for ${Math.ceil(forMs / 1000)} s after failing: ${reason}`,
          );
          logger.flush();
        }
        if (exitFailureChannel.hasSubscribers) exitFailureChannel.publish({ pool: e.pool, exit: e.exit, host: e.host, scope: e.scope, cooled: e.cooled, type: e.failure.type });
      },
      onExitReturn: (e: Parameters<NonNullable<EgressEvents['onExitReturn']>>[0]) => {
        logger.info(
          { component: 'forward', type: 'exit', event: 'returned', pool: e.pool, exit: e.exit, host: e.host, forMs: e.forMs },
          `exit ${e.exit} of pool ${e.pool} is back in service${e.host !== undefined ? ` for ${e.host}` : ''} after a ${Math.ceil(e.forMs / 1000)} s cool-down`,
        );
      },
      onRepin: (e: Parameters<NonNullable<EgressEvents['onRepin']>>[0]) => {
        // Users are named here as in the access log; a re-pin happens at most once per session per failing exit.
        logger.info(
          { component: 'forward', type: 'session', event: 'repinned', pool: e.pool, user: e.user ?? undefined, session: e.session, from: e.from, to: e.to, reason: e.why },
          `sticky session ${e.session ?? '(pool-wide)'}${e.user ? ` of ${e.user}` : ''} in pool ${e.pool} re-pinned from exit ${e.from} to ${e.to}: ${e.why}`,
        );
      },
    },
  };
  const egress = buildEgress(egressSpecOf(config), egressDeps);
  const hooks = mergeForwardHooks(deps.hooks ?? [], deps.hookTimeoutMs);
  /** Plans by name: one map, changed in place by a reload (the enforcer keeps its usage and blocks). */
  const planTable = new Map<string, PlanSpec>(Object.entries(config.plans));
  const plans = new PlanEnforcer(planTable, userPlans, store, deps.now, shared, userTraffic);
  const directory = new UserDirectory(withPassword(activeOf(users)), {
    cacheTtlMs: settings.authCacheTtlMs,
    failureCacheTtlMs: settings.authFailureCacheTtlMs,
    maxConcurrentChecks: settings.authMaxConcurrentChecks,
    maxConcurrentChecksPerSource: settings.authMaxConcurrentChecksPerSource,
    checkThreads: settings.authCheckThreads,
  });
  const tlsFor = (s: ForwardSettings): ForwardContext['tls'] => ({
    direct: new UpstreamTls({ connectTimeoutMs: s.connectTimeoutMs, resumeSessions: true }),
    pooled: new UpstreamTls({ connectTimeoutMs: s.connectTimeoutMs, resumeSessions: false }),
  });
  const tls = tlsFor(settings);
  const grammarOf = (c: ForwardConfig): ForwardContext['grammar'] => ({ separator: c.usernameGrammar.separator, keys: { session: c.usernameGrammar.session, ttl: c.usernameGrammar.ttl, pool: c.usernameGrammar.pool, debug: c.usernameGrammar.debug }, maxTtlMs: ms(c.usernameGrammar.maxTtl) });
  const relayTimeoutsOf = (s: ForwardSettings): ForwardContext['relayTimeouts'] => ({ headersMs: s.responseHeadersMs, bodyIdleMs: s.responseBodyIdleMs, sendMs: s.sendMs });
  const direct = new DirectPools(dialer, () => rules, settings, trackSocket, tls.direct);
  let accessLogOn = config.accessLog;
  const ctx: ForwardContext = {
    ownScope,
    settings,
    users: deps.authProvider ?? directory,
    authLockout: new AuthLockout('forward', settings.authLockout, (e) => logger.warn(...lockoutLogLine(e))),
    get rules() {
      return rules;
    },
    dialer,
    udpDialer,
    direct,
    meter: new Meter({ onBytes: (u, dir, n, since) => plans.record(u, dir, n, since) }),
    limits: new ConcurrencyLimits(),
    shared,
    tracker,
    logger,
    egress,
    plans,
    grammar: grammarOf(config),
    debugPlans: debugPlansOf(config.plans),
    tls,
    relayTimeouts: relayTimeoutsOf(settings),
    allowlist: allowlistOf(activeOf(users)),
    listenerParams: new Map(),
    recordsObserved: () => accessLogOn || requestEnd.hasSubscribers || hooks.onFinish !== undefined,
    draining: false,
    cut: undefined,
    held: new Set(),
  };
  setTables(users);
  const pipeline = new ForwardPipeline(ctx, hooks);

  const applyAll = (all: ForwardUser[]): void => {
    const nextRules = rulesFor(config, all, ownScope);
    const active = activeOf(all);
    directory.replace(withPassword(active));
    ctx.allowlist = allowlistOf(active);
    users = all;
    rules = nextRules;
    setTables(all);
    ctx.direct.reset();
  };
  const applyFromFile = (all: ForwardUser[]): void => {
    const configNames = new Set(config.auth.users.map((u) => u.name));
    fileUsers = all.filter((u) => !configNames.has(u.name));
    applyAll(all);
  };
  const openUsersFile = async (file: string): Promise<UsersFile<ForwardUser[]>> => {
    const list = z.array(forwardUserSchema);
    const f = new UsersFile<ForwardUser[]>(file, {
      parse: (raw) => {
        const parsed = list.parse(raw);
        const seen = new Set<string>();
        for (const u of parsed) {
          if (seen.has(u.name)) throw new TypeError(`duplicate user ${u.name}`);
          seen.add(u.name);
        }
        return applyUsers(parsed);
      },
      // The file's own users are known once applied (after the write, for a change by the admin API).
      apply: applyFromFile,
      logger: { info: (o, m) => logger.info({ component: 'users', ...o }, m), error: (o, m) => logger.error({ component: 'users', ...o }, m) },
      intervalMs: ms(config.auth.usersFileCheck),
    });
    await f.start();
    return f;
  };
  let usersFile: UsersFile<ForwardUser[]> | undefined = config.auth.usersFile ? await openUsersFile(config.auth.usersFile) : undefined;
  if (settings.authRequired && users.length === 0 && deps.authProvider === undefined) {
    usersFile?.close();
    await directory.close();
    throw new TypeError('auth.required is true but no users are configured (auth.users and auth.usersFile are empty)');
  }

  let flush: NodeJS.Timeout | undefined;
  const stateFile = config.state.file;
  const saveState = async (): Promise<void> => {
    // Usage waits in the ledger for up to a second: write it first.
    await plans.flush();
    if (stateFile && store instanceof MemoryStore) {
      await store.save(stateFile).catch((err: unknown) => logger.warn({ component: 'forward', stateFile, err: (err as Error).message }, 'cannot write the state file'));
    }
  };
  if (stateFile) {
    flush = setInterval(() => void saveState(), ms(config.state.flushInterval));
    flush.unref();
  }

  // This proxy's own records go to its own access log (another proxy in the same process
  // has its own); every observer (metrics, dashboard) reads them on `gatewise:request:end`.
  const accessLog = new AccessLog(logger, { gather: true });
  const onFinish = hooks.onFinish;
  const publish = (rec: ForwardRecord, ownId?: boolean): void => {
    if (accessLogOn) accessLog.write(rec, ownId === true);
    if (requestEnd.hasSubscribers) requestEnd.publish(rec);
    onFinish?.(rec);
  };
  ctx.meter.on('finished', publish);
  // `publish` is the one 'finished' listener of its own; the meter builds no record when it would go nowhere.
  ctx.meter.recordWanted = () => accessLogOn || onFinish !== undefined || requestEnd.hasSubscribers;
  const detachLog = (): void => {
    ctx.meter.off('finished', publish);
    accessLog.close();
  };
  const warnings = (c: ForwardConfig): void => {
    if (!c.auth.required) logger.warn({ component: 'forward' }, 'forward proxy runs WITHOUT authentication (auth.required: false): anyone who can reach it may use it');
    if (c.rules.allowPrivate) logger.warn({ component: 'forward' }, 'forward proxy may connect to private, loopback and link-local addresses (rules.allowPrivate: true)');
  };
  warnings(config);

  /** Every HTTP front made (a reload makes one; the older ones keep serving their connections). */
  const httpFronts: HttpFront[] = [];
  const frontsFor = (): ListenerHandlers => {
    const http = new HttpFront(pipeline);
    httpFronts.push(http);
    return { http, socks5: socks5Front, socks4: socks4Front };
  };
  const socks5Front = new Socks5Front(pipeline);
  const socks4Front = new Socks4Front(pipeline);
  let handlers = frontsFor();
  const listeners = config.listeners.map((l, i) => ({ cfg: l, listener: new ForwardListener(l, ctx, handlers, `forward.listeners[${i}]`) }));
  // In a worker of --workers N: one wrong-password count for the group (net/auth-lockout-group.ts).
  // Named by face, as the fleet's count is: the same in every worker whatever each has started
  // and stopped (a proxy counter made `forward#2` after a reload that stopped and started the
  // proxy, and `forward#1` in a respawned worker: two counts). Proxies in one process share it.
  const leaveLockoutGroup = joinLockoutGroup('forward', ctx.authLockout!);
  // With Redis: one count for the fleet (by face: the same name on every node), the group's only while Redis is away.
  const leaveLockoutFleet = lockoutFleet?.join('forward', ctx.authLockout!);
  const cleanup = async (): Promise<void> => {
    leaveLockoutFleet?.();
    leaveLockoutGroup();
    usersFile?.close();
    await directory.close();
    clearInterval(flush);
    await saveState();
    if (ownStore) await store.close();
  };
  try {
    // The fleet's lockouts in force, in the table before the first credential is checked (bounded by state.timeout).
    await lockoutFleet?.learned();
    for (const l of listeners) await l.listener.listen();
  } catch (err) {
    const closed = Promise.allSettled(listeners.map((l) => l.listener.close()));
    tracker.destroyAll();
    await closed;
    await ctx.direct.close();
    detachLog();
    await cleanup();
    throw err;
  }
  const setListenerParams = (): void => {
    const m = new Map<number, string>();
    for (const { cfg, listener } of listeners) if (cfg.usernameParams !== undefined) m.set(listener.address().port, cfg.usernameParams);
    ctx.listenerParams = m;
  };
  setListenerParams();
  const announce = (): void => {
    for (const { listener: l } of listeners) {
      const a = l.address();
      logger.info({ component: 'forward', ...a }, `forward proxy listening on ${a.address}:${a.port} (${a.protocols.join(', ')})`);
    }
    for (const [name, pool] of egress.pools) {
      logger.info({ component: 'forward', pool: name, exits: pool.exits.map((e) => e.label), strategy: pool.strategy }, `egress pool ${name}: ${pool.exits.length} exits, ${pool.strategy}`);
    }
  };
  if (deps.announce !== false) announce();

  // The service operations (admin API /accounts, /usage) and the auto-disable sweep.
  const userList = z.array(forwardUserSchema);
  const fileStore = (f: UsersFile<ForwardUser[]>): UserStore => ({
    list: () => fileUsers,
    update: async (change) => {
      await f.update((raw) => change(userList.parse(raw)));
    },
  });
  const accounts = new AccountService({
    store: () => (usersFile ? fileStore(usersFile) : undefined),
    config: () => config,
    plans,
    usage: store,
    now: deps.now,
    disabledInMemory,
    reapply: () => applyAll(users),
  });
  let sweeping = false;
  const sweep = setInterval(() => {
    if (sweeping || !users.some((u) => u.expires !== undefined || u.trafficLimit !== undefined)) return;
    sweeping = true;
    accounts
      .sweep()
      .then(
        (done) => {
          for (const d of done) logger.warn({ component: 'users', event: 'user-disabled', user: d.slice(0, d.lastIndexOf(':')), reason: d.slice(d.lastIndexOf(':') + 2) }, `user ${d} (disabled automatically)`);
        },
        (err: unknown) => logger.error({ component: 'users', err: (err as Error).message }, 'auto-disable sweep failed'),
      )
      .finally(() => (sweeping = false));
  }, 1000);
  sweep.unref();

  let closing: Promise<void> | undefined;
  let reloading: Promise<ForwardReloadSummary> | undefined;

  const reload = async (nextInput: ForwardConfig | ForwardConfigInput): Promise<ForwardReloadSummary> => {
    if (closing) throw new Error('the forward proxy is closing');
    const next = parseForwardConfig(nextInput, deps.authProvider !== undefined);
    const before = config;
    const summary: ForwardReloadSummary = {
      listeners: { added: [], removed: [], changed: [] },
      pools: { added: [], removed: [], changed: [], kept: [] },
      plans: diffNames(before.plans, next.plans),
      users: 0,
      restart: [],
    };
    // Everything that can fail first, with nothing changed yet: the users (file) under the new
    // config, the egress, the new listeners' ports.
    config = next;
    const prevFileUsers = fileUsers;
    let all: ForwardUser[];
    let nextFile: UsersFile<ForwardUser[]> | undefined;
    const sameFile = next.auth.usersFile === before.auth.usersFile;
    try {
      all = sameFile ? applyUsers(usersFile ? await usersFile.read() : []) : applyUsers([]);
      if (!sameFile && next.auth.usersFile) {
        nextFile = await openUsersFile(next.auth.usersFile); // applies the file's users at once
        all = users;
      }
      if (next.auth.required && all.length === 0 && deps.authProvider === undefined) throw new TypeError('auth.required is true but no users are configured (auth.users and auth.usersFile are empty)');
    } catch (err) {
      config = before;
      nextFile?.close();
      if (nextFile) applyFromFile(applyUsers((fileUsers = prevFileUsers)));
      throw err;
    }
    const nextSettings = toSettings(next);
    const spec = egressSpecOf(next);
    let nextEgress = ctx.egress;
    const sameEgress = JSON.stringify(next.egress) === JSON.stringify(before.egress);
    const wanted = new Map<string, ForwardListenerConfig[]>();
    for (const l of next.listeners) (wanted.get(fwdKey(l)) ?? wanted.set(fwdKey(l), []).get(fwdKey(l))!).push(l);
    const keep: Array<{ entry: (typeof listeners)[number]; cfg: ForwardListenerConfig }> = [];
    const drop: Array<(typeof listeners)[number]> = [];
    const added: Array<(typeof listeners)[number]> = [];
    try {
      if (!sameEgress) {
        nextEgress = buildEgress(spec, egressDeps);
        const pools = nextEgress.pools as Map<string, ExitPool>;
        for (const name of pools.keys()) {
          const was = before.egress.pools[name];
          if (was === undefined) summary.pools.added.push(name);
          else if (JSON.stringify(was) === JSON.stringify(next.egress.pools[name])) {
            // Unchanged pool: keep its sessions, cool-downs and counters.
            pools.set(name, ctx.egress.pools.get(name)!);
            summary.pools.kept.push(name);
          } else summary.pools.changed.push(name);
        }
        for (const name of Object.keys(before.egress.pools)) if (!next.egress.pools[name]) summary.pools.removed.push(name);
      }
      for (const e of listeners) {
        // A listener configured with port 0 is the same listener when the new config names the port it got.
        const cfg = wanted.get(`${e.cfg.address}:${e.listener.address().port}`)?.shift() ?? wanted.get(fwdKey(e.cfg))?.shift();
        if (cfg) keep.push({ entry: e, cfg });
        else drop.push(e);
      }
      for (const list of wanted.values()) for (const l of list) added.push({ cfg: l, listener: new ForwardListener(l, ctx, handlers, `forward.listeners[${next.listeners.indexOf(l)}]`) });
      await Promise.all(added.map((a) => a.listener.listen()));
    } catch (err) {
      for (const a of added) void a.listener.close();
      config = before;
      nextFile?.close();
      if (nextFile) applyFromFile(applyUsers((fileUsers = prevFileUsers)));
      throw err;
    }
    // Nothing fails from here: swap in place.
    const oldSettings = ctx.settings;
    ctx.settings = nextSettings;
    ctx.authLockout?.configure(nextSettings.authLockout);
    ctx.egress = nextEgress;
    ctx.grammar = grammarOf(next);
    ctx.debugPlans = debugPlansOf(next.plans);
    ctx.relayTimeouts = relayTimeoutsOf(nextSettings);
    if (nextSettings.connectTimeoutMs !== oldSettings.connectTimeoutMs) ctx.tls = tlsFor(nextSettings);
    const retiring = ctx.direct;
    ctx.direct = new DirectPools(dialer, () => rules, nextSettings, trackSocket, ctx.tls.direct);
    retiring.reset(); // graceful: requests on its connections finish, then its connections close
    planTable.clear();
    for (const [k, v] of Object.entries(next.plans)) planTable.set(k, v);
    if (nextFile) {
      usersFile?.close();
      usersFile = nextFile;
    } else if (!next.auth.usersFile && usersFile) {
      usersFile.close();
      usersFile = undefined;
      fileUsers = [];
      applyAll(applyUsers([]));
    } else applyFromFile(all);
    summary.users = users.length;
    accessLogOn = next.accessLog;
    // The HTTP front's server is built with these settings: a new front only when they changed
    // (connections already on the old one stay with it), so frequent reloads do not pile up fronts.
    const frontKey = (x: ForwardSettings): string => JSON.stringify([x.maxHeaderSize, x.maxHeaderCount, x.clientKeepAliveMs]);
    if (frontKey(oldSettings) !== frontKey(nextSettings)) handlers = frontsFor();
    for (const { entry, cfg } of keep) {
      entry.listener.swap(handlers, cfg.protocols);
      if (JSON.stringify(entry.cfg) !== JSON.stringify(cfg)) summary.listeners.changed.push(fwdKey(cfg));
      entry.cfg = cfg;
    }
    for (const d of drop) {
      summary.listeners.removed.push(fwdKey(d.cfg));
      void d.listener.close(); // stops accepting; its connections finish (close() ends what is left)
      listeners.splice(listeners.indexOf(d), 1);
    }
    for (const a of added) {
      const addr = a.listener.address();
      summary.listeners.added.push(`${addr.address}:${addr.port}`);
      listeners.push(a);
    }
    setListenerParams();
    for (const [what, a, b] of [
      ['limits.maxClientConnections / maxConnectionsPerSource, timeouts.handshake', [oldSettings.maxClientConnections, oldSettings.maxConnectionsPerSource, oldSettings.handshakeTimeoutMs, oldSettings.handshakeFloorMs], [nextSettings.maxClientConnections, nextSettings.maxConnectionsPerSource, nextSettings.handshakeTimeoutMs, nextSettings.handshakeFloorMs]],
      ['auth.cacheTtl / failureCacheTtl / maxConcurrentChecks / checkThreads', [oldSettings.authCacheTtlMs, oldSettings.authFailureCacheTtlMs, oldSettings.authMaxConcurrentChecks, oldSettings.authMaxConcurrentChecksPerSource, oldSettings.authCheckThreads], [nextSettings.authCacheTtlMs, nextSettings.authFailureCacheTtlMs, nextSettings.authMaxConcurrentChecks, nextSettings.authMaxConcurrentChecksPerSource, nextSettings.authCheckThreads]],
      ['state', before.state, next.state],
    ] as const) {
      if (JSON.stringify(a) !== JSON.stringify(b)) summary.restart.push(`forward.${what}`);
    }
    if (before.auth.required !== next.auth.required || before.rules.allowPrivate !== next.rules.allowPrivate) warnings(next);
    return summary;
  };

  return {
    addresses: () => listeners.map((l) => l.listener.address()),
    announce,
    connectionStats: () => listeners.map((l) => l.listener.stats),
    certificateStores: () => listeners.flatMap((l) => (l.listener.certificates !== undefined ? [l.listener.certificates] : [])),
    meter: ctx.meter,
    get egress() {
      return ctx.egress;
    },
    plans,
    store,
    shared,
    stateHealth: () => shared?.health() ?? { backend: 'memory', degraded: false, fallbacks: 0, recoveries: 0 },
    lockoutFleet,
    get config() {
      return config;
    },
    accounts,
    reloadUsers: async () => (usersFile ? usersFile.reload() : false),
    reload: (next) => {
      // One reload at a time: a second waits for the first.
      const run = (reloading ?? Promise.resolve()).catch(() => undefined).then(() => reload(next));
      reloading = run;
      return run;
    },
    close: (drainMs = ms(config.shutdown.drainTimeout)) =>
      (closing ??= (async () => {
        clearInterval(sweep);
        const stopped = Promise.allSettled(listeners.map((l) => l.listener.close()));
        await drain(ctx, drainMs);
        for (const h of httpFronts) h.close();
        tracker.destroyAll();
        await ctx.direct.close();
        await stopped;
        detachLog();
        ctx.meter.off('finished', publish);
        await cleanup();
      })()),
  };
}

/** A tracked socket; `server` is set (by Node, and net/accept.ts) on one a listener accepted, null on one dialled. */
type AcceptedSocket = SlottedSocket & { server?: unknown };

/** The longest the records of what the drain cut may take to come (their sockets' 'close' events). */
const CUT_RECORDS_MS = 1000;

/**
 * The graceful part of close(), after the listeners stopped accepting: idle client connections
 * are closed at once, and each keep-alive connection as its answer finishes (http-front.ts
 * `responseFinished`, while `ctx.draining`); requests and tunnels in flight (open meter
 * sessions) have until `drainMs`, then what is left is cut with `ctx.cut` noted first, so each
 * one it ends is recorded once as the proxy's doing (failure/connections-cut.ts), not as a
 * client that left nor an upstream that failed.
 *
 * Both waits, for what is in flight and then for the records of what was cut, are the meter's
 * `settled()` raced against a deadline on the process's deadline list (timing/within.ts): woken
 * by the last record or by the deadline. Before, the first looked at `meter.live` every 25 ms
 * and the second turned the event loop with `setImmediate` until it reached 0, a core busy for
 * as long as a record took, up to 1 s (test/forward/drain-waits.test.ts).
 */
async function drain(ctx: ForwardContext, drainMs: number): Promise<void> {
  ctx.draining = true;
  const meter = ctx.meter;
  if (meter.live > 0) ctx.logger.info({ component: 'forward', type: 'lifecycle', event: 'draining', inflight: meter.live, drainMs }, `draining ${meter.live} requests and tunnels in flight`);
  closeIdle(ctx);
  if (drainMs > 0) await untilSettled(meter, drainMs);
  if (meter.live === 0) return;
  const cut = new ConnectionsCut('GATEWISE_DRAIN_TIMEOUT', 'the forward proxy closed the connection at shutdown: the drain timeout passed');
  ctx.cut = cut;
  ctx.logger.info({ component: 'forward', type: 'lifecycle', event: 'drain-timeout', inflight: meter.live, drainMs }, `cutting ${meter.live} requests and tunnels still in flight after the ${drainMs} ms drain timeout`);
  for (const c of ctx.tracker.list()) {
    const s = c as AcceptedSocket;
    if (s.server == null || s.destroyed) continue; // not a client connection (a destination's, a pool's)
    const user = s[kSocketUser];
    if (user === IN_TLS) continue; // cut through its TLS socket (a raw socket destroyed first would end that one as a reset)
    if (user instanceof TunnelRun) user.cutAtDrain(cut);
    else {
      // An answer whose tail waits in this socket's buffer reads what is unsent before it goes.
      if (user instanceof ForwardRelay) user.cutAtDrain();
      s.destroy();
    }
  }
  // What waits on a check or hook is recorded now (its answer may never come); the rest from the sockets' 'close' events, a few turns of the loop from now.
  for (const recordCut of ctx.held) recordCut();
  ctx.held.clear();
  await untilSettled(meter, CUT_RECORDS_MS);
}

/** Until no meter session is open, or `ms` have passed (`ms` > 0). */
function untilSettled(meter: Meter, ms: number): Promise<void> {
  return within(meter.settled(), ms, () => undefined);
}

/**
 * Close the client connections that hold nothing in flight: an HTTP connection between requests
 * (keep-alive; ended after what it was sent is written) and a connection that sent nothing yet.
 * Tunnels, SOCKS handshakes and requests under way are left to finish.
 */
function closeIdle(ctx: ForwardContext): void {
  for (const c of ctx.tracker.list()) {
    const s = c as AcceptedSocket;
    if (s.server == null || s.destroyed || s.writableEnded || s[kSocketUser] !== undefined) continue;
    if (s.bytesRead === 0) s.destroy();
    else if (idleHttpConnection(s)) s.destroySoon();
  }
}

/** What a reload changed in the forward proxy. */
export interface ForwardReloadSummary {
  listeners: { added: string[]; removed: string[]; changed: string[] };
  pools: { added: string[]; removed: string[]; changed: string[]; kept: string[] };
  plans: { added: string[]; removed: string[]; changed: string[] };
  /** Users after the reload (config and users file). */
  users: number;
  /** Settings that changed but apply only after a restart. */
  restart: string[];
}

function fwdKey(l: ForwardListenerConfig): string {
  return `${l.address}:${l.port}`;
}

function diffNames(a: Record<string, unknown>, b: Record<string, unknown>): { added: string[]; removed: string[]; changed: string[] } {
  const out = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
  for (const k of Object.keys(b)) {
    if (!(k in a)) out.added.push(k);
    else if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) out.changed.push(k);
  }
  for (const k of Object.keys(a)) if (!(k in b)) out.removed.push(k);
  return out;
}
