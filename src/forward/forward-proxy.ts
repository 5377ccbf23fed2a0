import { channel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { z } from 'zod';
import { parseDuration } from '../config/duration.js';
import { NO_USERS, forwardSchema, forwardUserSchema, type ForwardConfig, type ForwardConfigInput, type ForwardUser } from '../config/forward.js';
import {
  DirectDialer,
  DirectUdpDialer,
  buildEgress,
  resolverFromLookup,
  systemResolver,
  type Dialer,
  type EgressRouter,
  type EgressSpec,
  type LookupFunction,
  type Resolver,
  type UdpDialer,
} from '../egress/index.js';
import { MemoryStore, type Store } from '../state/index.js';
import type { AuthProvider } from '../tenants/index.js';
import { ConcurrencyLimits, Meter, PlanEnforcer, UserDirectory, UsersFile, type PlanSpec } from '../tenants/index.js';
import { AccessLog, createLogger } from '../observe/access-log.js';
import { ConfigError } from '../config/load.js';
import { issuesToProblems } from '../config/check.js';
import { requestEnd, type ForwardRecord } from '../record/index.js';
import type { ForwardContext } from './context.js';
import { HttpFront } from './http-front.js';
import { ForwardListener, type ForwardProtocol } from './listener.js';
import type { GateStats } from '../http/connection-gate.js';
import { ResourceTracker } from './resource-tracker.js';
import type { CertificateStore } from '../tls/index.js';
import { DestinationRules } from './rules/destination-rules.js';
import { toSettings } from './settings.js';
import { Socks4Front } from './socks/socks4-front.js';
import { Socks5Front } from './socks/socks5-front.js';
import { UpstreamAgents } from './upstream-agents.js';
import { UpstreamTls } from './upstream-tls.js';
import { mergeForwardHooks, type ForwardHooks } from './hooks.js';
import { ForwardPipeline } from './pipeline.js';

/** diagnostics_channel name carrying exit failures ({ pool, exit, host, scope, cooled, type }). */
export const EXIT_FAILURE_CHANNEL = 'gatewise:forward:exit-failure';

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
  /** Where usage counters live (default: a MemoryStore). */
  store?: Store;
  /** Clock for sessions, cool-downs and quotas (tests). */
  now?: () => number;
  /** Who credentials belong to, instead of the config's users (see AuthProvider). */
  authProvider?: AuthProvider;
  /** Extension hooks at the pipeline's fixed phases (see docs/extending.md), run in this order. */
  hooks?: readonly ForwardHooks[];
}

export interface ForwardProxy {
  addresses(): Array<{ protocols: ForwardProtocol[]; address: string; port: number }>;
  /** Per listener: connections admitted, refused ones waiting for their first bytes, shed, refused in all. */
  connectionStats(): GateStats[];
  /** The certificates of the HTTPS proxy listeners (reload, metrics). */
  certificateStores(): CertificateStore[];
  readonly meter: Meter;
  readonly egress: EgressRouter;
  readonly plans: PlanEnforcer;
  readonly store: Store;
  /** Re-read auth.usersFile now; false (old users kept) when it is invalid. */
  reloadUsers(): Promise<boolean>;
  close(): Promise<void>;
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

/** Users of the config and the users file, with their plan's rules added to their own. */
function rulesFor(config: ForwardConfig, users: readonly ForwardUser[]): DestinationRules {
  const withPlans = users.map((u) => {
    const plan = u.plan !== undefined ? config.plans[u.plan] : undefined;
    if (!plan?.allow && !plan?.deny) return u;
    return { ...u, allow: [...(u.allow ?? []), ...(plan.allow ?? [])], deny: [...(u.deny ?? []), ...(plan.deny ?? [])] };
  });
  return new DestinationRules({ allowPrivate: config.rules.allowPrivate, defaultAction: config.rules.defaultAction, allow: config.rules.allow, deny: config.rules.deny }, withPlans);
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
  const config = parseForwardConfig(input, deps.authProvider !== undefined);
  const logger = deps.logger ?? createLogger();
  const settings = toSettings(config);
  const resolver: Resolver = !deps.resolver ? systemResolver : deps.resolver.length >= 3 ? resolverFromLookup(deps.resolver as LookupFunction) : (deps.resolver as Resolver);
  const store: Store = deps.store ?? new MemoryStore({ now: deps.now });
  const ownStore = deps.store === undefined;
  if (config.state.file && store instanceof MemoryStore) {
    try {
      await store.load(config.state.file);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') logger.warn({ component: 'forward', stateFile: config.state.file, err: (err as Error).message }, 'state file unreadable; starting with empty usage');
    }
  }

  const userPlans = new Map<string, string>();
  const userLimits = settings.userLimits as Map<string, { maxConnections?: number; maxTunnels?: number }>;
  const applyUsers = (fileUsers: readonly ForwardUser[]): ForwardUser[] => {
    const names = new Set(config.auth.users.map((u) => u.name));
    const all = [...config.auth.users, ...fileUsers.filter((u) => !names.has(u.name))];
    for (const u of all) if (u.plan !== undefined && !config.plans[u.plan]) throw new TypeError(`user ${u.name}: no plan named ${u.plan}`);
    return all;
  };
  const setTables = (all: readonly ForwardUser[]): void => {
    userPlans.clear();
    userLimits.clear();
    for (const u of all) {
      if (u.plan !== undefined) userPlans.set(u.name, u.plan);
      userLimits.set(u.name, { maxConnections: u.maxConnections, maxTunnels: u.maxTunnels });
    }
  };

  let users = applyUsers([]);
  let rules = rulesFor(config, users);
  const tracker = new ResourceTracker();
  const dialer = deps.dialer ?? new DirectDialer({ resolver });
  const udpDialer = deps.udpDialer ?? new DirectUdpDialer({ resolver });
  const trackSocket = (s: Socket): (() => void) => tracker.track(s);
  const exitFailureChannel = channel(EXIT_FAILURE_CHANNEL);
  const egress = buildEgress(egressSpecOf(config), {
    direct: dialer,
    directUdp: udpDialer,
    resolver,
    now: deps.now,
    events: {
      onExitFailure: (e) => {
        if (e.cooled) logger.warn({ component: 'forward', pool: e.pool, exit: e.exit, host: e.scope === 'domain' ? e.host : undefined, error: e.failure.type }, `exit ${e.exit} of pool ${e.pool} cools down${e.scope === 'domain' ? ` for ${e.host}` : ''}`);
        if (exitFailureChannel.hasSubscribers) exitFailureChannel.publish({ pool: e.pool, exit: e.exit, host: e.host, scope: e.scope, cooled: e.cooled, type: e.failure.type });
      },
    },
  });
  const hooks = mergeForwardHooks(deps.hooks ?? []);
  const plans = new PlanEnforcer(new Map<string, PlanSpec>(Object.entries(config.plans)), userPlans, store, deps.now);
  const directory = new UserDirectory(users, {
    cacheTtlMs: settings.authCacheTtlMs,
    failureCacheTtlMs: settings.authFailureCacheTtlMs,
    maxConcurrentChecks: settings.authMaxConcurrentChecks,
    maxConcurrentChecksPerSource: settings.authMaxConcurrentChecksPerSource,
    checkThreads: settings.authCheckThreads,
  });
  setTables(users);
  const tls = {
    direct: new UpstreamTls({ connectTimeoutMs: settings.connectTimeoutMs, resumeSessions: true }),
    pooled: new UpstreamTls({ connectTimeoutMs: settings.connectTimeoutMs, resumeSessions: false }),
  };
  const agents = new UpstreamAgents(dialer, () => rules, settings, trackSocket, tls.direct);
  const ctx: ForwardContext = {
    settings,
    users: deps.authProvider ?? directory,
    get rules() {
      return rules;
    },
    dialer,
    udpDialer,
    agents,
    meter: new Meter({ onBytes: (u, dir, n) => plans.record(u, dir, n) }),
    limits: new ConcurrencyLimits(),
    tracker,
    logger,
    egress,
    plans,
    grammar: { separator: config.usernameGrammar.separator, keys: { session: config.usernameGrammar.session, ttl: config.usernameGrammar.ttl, pool: config.usernameGrammar.pool } },
    tls,
    relayTimeouts: { headersMs: settings.responseHeadersMs, bodyIdleMs: settings.responseBodyIdleMs, sendMs: settings.sendMs },
    recordsObserved: () => config.accessLog || requestEnd.hasSubscribers || hooks.onFinish !== undefined,
  };
  const pipeline = new ForwardPipeline(ctx, hooks);

  let usersFile: UsersFile<ForwardUser[]> | undefined;
  if (config.auth.usersFile) {
    const list = z.array(forwardUserSchema);
    usersFile = new UsersFile<ForwardUser[]>(config.auth.usersFile, {
      parse: (raw) => {
        const fileUsers = list.parse(raw);
        const seen = new Set<string>();
        for (const u of fileUsers) {
          if (seen.has(u.name)) throw new TypeError(`duplicate user ${u.name}`);
          seen.add(u.name);
        }
        return applyUsers(fileUsers);
      },
      apply: (all) => {
        const nextRules = rulesFor(config, all);
        directory.replace(all);
        users = all;
        rules = nextRules;
        setTables(all);
        agents.reset();
      },
      logger: { info: (o, m) => logger.info({ component: 'users', ...o }, m), error: (o, m) => logger.error({ component: 'users', ...o }, m) },
      intervalMs: ms(config.auth.usersFileCheck),
    });
    await usersFile.start();
  }
  if (settings.authRequired && directory.size === 0 && deps.authProvider === undefined) {
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
  const accessLog = config.accessLog ? new AccessLog(logger) : undefined;
  const onFinish = hooks.onFinish;
  const publish = (rec: ForwardRecord): void => {
    accessLog?.write(rec);
    if (requestEnd.hasSubscribers) requestEnd.publish(rec);
    onFinish?.(rec);
  };
  ctx.meter.on('finished', publish);
  const detachLog = (): void => {
    ctx.meter.off('finished', publish);
  };
  if (!settings.authRequired) {
    logger.warn({ component: 'forward' }, 'forward proxy runs WITHOUT authentication (auth.required: false): anyone who can reach it may use it');
  }
  if (config.rules.allowPrivate) {
    logger.warn({ component: 'forward' }, 'forward proxy may connect to private, loopback and link-local addresses (rules.allowPrivate: true)');
  }

  const http = new HttpFront(pipeline);
  const handlers = { http, socks5: new Socks5Front(pipeline), socks4: new Socks4Front(pipeline) };
  const listeners = config.listeners.map((l, i) => new ForwardListener(l, ctx, handlers, `forward.listeners[${i}]`));
  const cleanup = async (): Promise<void> => {
    usersFile?.close();
    await directory.close();
    clearInterval(flush);
    await saveState();
    if (ownStore) await store.close();
  };
  try {
    for (const l of listeners) await l.listen();
  } catch (err) {
    const closed = Promise.allSettled(listeners.map((l) => l.close()));
    tracker.destroyAll();
    await closed;
    await ctx.agents.close();
    detachLog();
    await cleanup();
    throw err;
  }
  for (const l of listeners) {
    const a = l.address();
    logger.info({ component: 'forward', ...a }, `forward proxy listening on ${a.address}:${a.port} (${a.protocols.join(', ')})`);
  }
  for (const [name, pool] of egress.pools) {
    logger.info({ component: 'forward', pool: name, exits: pool.exits.map((e) => e.label), strategy: pool.strategy }, `egress pool ${name}: ${pool.exits.length} exits, ${pool.strategy}`);
  }

  let closing: Promise<void> | undefined;
  return {
    addresses: () => listeners.map((l) => l.address()),
    connectionStats: () => listeners.map((l) => l.stats),
    certificateStores: () => listeners.flatMap((l) => (l.certificates !== undefined ? [l.certificates] : [])),
    meter: ctx.meter,
    egress,
    plans,
    store,
    reloadUsers: async () => (usersFile ? usersFile.reload() : false),
    close: () =>
      (closing ??= (async () => {
        const stopped = Promise.allSettled(listeners.map((l) => l.close()));
        http.close();
        tracker.destroyAll();
        await ctx.agents.close();
        await stopped;
        detachLog();
        ctx.meter.off('finished', publish);
        await cleanup();
      })()),
  };
}
