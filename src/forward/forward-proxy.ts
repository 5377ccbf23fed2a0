import { channel } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import { forwardSchema, type ForwardConfig, type ForwardConfigInput } from '../config/forward.js';
import { DirectDialer, DirectUdpDialer, resolverFromLookup, systemResolver, type Dialer, type LookupFunction, type Resolver, type UdpDialer } from '../egress/index.js';
import type { FinishedRecord } from '../tenants/index.js';
import { ConcurrencyLimits, Meter, UserDirectory } from '../tenants/index.js';
import { attachAccessLog } from './access-log.js';
import type { ForwardContext } from './context.js';
import { HttpFront } from './http-front.js';
import { ForwardListener, type ForwardProtocol } from './listener.js';
import { ResourceTracker } from './resource-tracker.js';
import { DestinationRules } from './rules/destination-rules.js';
import { toSettings } from './settings.js';
import { Socks4Handler } from './socks/socks4-handler.js';
import { Socks5Handler } from './socks/socks5-handler.js';
import { UpstreamAgents } from './upstream-agents.js';

/** diagnostics_channel name carrying every FinishedRecord of the forward proxy. */
export const FINISHED_CHANNEL = 'gatewise:forward:finished';

export interface ForwardDeps {
  /** Logger for the access log and warnings; default pino to stdout. */
  logger?: Logger;
  /**
   * Name resolution for destinations; default the system resolver (getaddrinfo).
   * Either a Resolver (hostname → Promise of addresses) or a `dns.lookup`-style function.
   */
  resolver?: Resolver | LookupFunction;
  /** How connections leave (default: direct). */
  dialer?: Dialer;
  udpDialer?: UdpDialer;
}

export interface ForwardProxy {
  addresses(): Array<{ protocols: ForwardProtocol[]; address: string; port: number }>;
  readonly meter: Meter;
  close(): Promise<void>;
}

/**
 * Start the forward proxy service: validate the config, open every listener, and
 * return a handle whose close() stops listening and ends every connection, tunnel and
 * association.
 */
export async function startForwardProxy(input: ForwardConfig | ForwardConfigInput, deps: ForwardDeps = {}): Promise<ForwardProxy> {
  const config = forwardSchema.parse(input);
  const logger = deps.logger ?? pino();
  const settings = toSettings(config);
  const resolver: Resolver = !deps.resolver ? systemResolver : deps.resolver.length >= 3 ? resolverFromLookup(deps.resolver as LookupFunction) : (deps.resolver as Resolver);
  const rules = new DestinationRules(
    { allowPrivate: config.rules.allowPrivate, defaultAction: config.rules.defaultAction, allow: config.rules.allow, deny: config.rules.deny },
    config.auth.users,
  );
  const tracker = new ResourceTracker();
  const dialer = deps.dialer ?? new DirectDialer({ resolver });
  const trackSocket = (s: Socket): (() => void) => tracker.track(s);
  const ctx: ForwardContext = {
    settings,
    users: new UserDirectory(config.auth.users, { cacheTtlMs: settings.authCacheTtlMs }),
    rules,
    dialer,
    udpDialer: deps.udpDialer ?? new DirectUdpDialer({ resolver }),
    agents: new UpstreamAgents(dialer, rules, settings, trackSocket),
    meter: new Meter(),
    limits: new ConcurrencyLimits(),
    tracker,
    logger,
  };
  const detachLog = config.accessLog ? attachAccessLog(ctx.meter, logger) : () => {};
  // Observers (metrics, dashboard) subscribe here; the hot path does not import them.
  const finishedChannel = channel(FINISHED_CHANNEL);
  const publish = (rec: FinishedRecord): void => {
    if (finishedChannel.hasSubscribers) finishedChannel.publish(rec);
  };
  ctx.meter.on('finished', publish);
  if (!settings.authRequired) {
    logger.warn({ component: 'forward' }, 'forward proxy runs WITHOUT authentication (auth.required: false): anyone who can reach it may use it');
  }
  if (config.rules.allowPrivate) {
    logger.warn({ component: 'forward' }, 'forward proxy may connect to private, loopback and link-local addresses (rules.allowPrivate: true)');
  }

  const http = new HttpFront(ctx);
  const handlers = { http, socks5: new Socks5Handler(ctx).handle, socks4: new Socks4Handler(ctx).handle };
  const listeners = config.listeners.map((l) => new ForwardListener(l, ctx, handlers));
  try {
    for (const l of listeners) await l.listen();
  } catch (err) {
    await Promise.allSettled(listeners.map((l) => l.close()));
    await ctx.agents.close();
    detachLog();
    throw err;
  }
  for (const l of listeners) {
    const a = l.address();
    logger.info({ component: 'forward', ...a }, `forward proxy listening on ${a.address}:${a.port} (${a.protocols.join(', ')})`);
  }

  let closing: Promise<void> | undefined;
  return {
    addresses: () => listeners.map((l) => l.address()),
    meter: ctx.meter,
    close: () =>
      (closing ??= (async () => {
        const stopped = Promise.allSettled(listeners.map((l) => l.close()));
        http.close();
        tracker.destroyAll();
        await ctx.agents.close();
        await stopped;
        detachLog();
        ctx.meter.off('finished', publish);
      })()),
  };
}

