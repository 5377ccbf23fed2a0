import { connect } from 'node:net';
import type { Logger } from 'pino';
import type { ForwardProxy } from '../forward/index.js';
import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/schema.js';
import { Gateway } from '../gateway/server.js';
import { attachAccessLog, createLogger, flushLogger } from '../observe/access-log.js';
import type { AdminControl } from '../observe/admin.js';
import { raiseMallocTrimThreshold } from './malloc-tuning.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { CERTIFICATE_CHANNEL, type CertificateEvent } from '../tls/index.js';

function gatewayControl(gw: Gateway): AdminControl {
  return {
    status: () => {
      const now = Date.now();
      const out: Record<string, unknown> = {};
      for (const [name, c] of gw.ctx.clusters) {
        out[name] = c.endpoints.map((e) => ({
          endpoint: e.nextHop,
          available: e.available(now),
          health: e.health,
          ejectedForMs: Math.max(0, e.ejectedUntil - now),
          draining: e.draining,
          inflight: e.inflight,
          connections: e.pool.size,
          learnedIdleMs: e.pool.learnedIdleMs === Infinity ? null : e.pool.learnedIdleMs,
        }));
      }
      return out;
    },
    admission: () => {
      const out: Record<string, { limit: number; inflight: number; queued: number }> = {};
      for (const [name, c] of gw.ctx.clusters) if (c.admission) out[name] = { limit: c.admission.limit, inflight: c.admission.inflight, queued: c.admission.queued };
      return out;
    },
    drain: (cluster, endpoint, draining) => gw.ctx.clusters.get(cluster)?.setDraining(endpoint, draining) ?? false,
  };
}

export interface Runtime {
  gateway: Gateway | undefined;
  logger: Logger;
  /** Settles when the start-up connect probe of every endpoint has ended (its warnings logged). */
  upstreamProbe: Promise<void>;
  /** The admin listener's URL (its dashboard is at `/`), when admin is configured. */
  adminUrl: string | undefined;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  accessLog?: boolean;
  /** One connect probe per endpoint at start, unreachable ones logged as warnings. Default true. */
  probeUpstreams?: boolean;
  logger?: Logger;
}

/**
 * One TCP connect to every endpoint of every cluster, at start, so an unreachable upstream is
 * said at once (a warning naming it) instead of at the first request. Never fatal: the
 * endpoint may come up later. Returns a promise for the end of all probes and a canceller.
 */
function probeUpstreams(config: Config, logger: Logger): { done: Promise<void>; cancel(): void } {
  const sockets = new Set<import('node:net').Socket>();
  const probes: Array<Promise<void>> = [];
  for (const [name, cluster] of Object.entries(config.clusters)) {
    const timeoutMs = Math.min(parseDuration(cluster.timeouts.connect) ?? 5000, 5000);
    for (const ep of cluster.endpoints) {
      const url = new URL(typeof ep === 'string' ? ep : ep.url);
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const endpoint = `${url.protocol}//${url.host}`;
      probes.push(
        new Promise<void>((resolve) => {
          const s = connect({ host, port });
          sockets.add(s);
          const end = (err?: Error & { code?: string }): void => {
            clearTimeout(timer);
            sockets.delete(s);
            s.destroy();
            if (err) {
              const reason = err.code ?? err.message;
              logger.warn(
                { component: 'upstream', type: 'lifecycle', event: 'upstream-unreachable', cluster: name, endpoint, err: reason },
                `upstream ${endpoint} of cluster ${name} is unreachable at start (${reason}); requests to it fail until it is up`,
              );
            }
            resolve();
          };
          const timer = setTimeout(() => end(Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
          timer.unref();
          s.once('connect', () => end());
          s.once('error', (err) => end(err));
          s.unref();
        }),
      );
    }
  }
  return {
    done: Promise.all(probes).then(() => undefined),
    cancel: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

/** Wire the parts for a config: gateway, access log, metrics and admin listener. */
export async function startRuntime(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
  raiseMallocTrimThreshold();
  const logger = opts.logger ?? createLogger({ level: config.log.level, file: config.log.file });
  // The reverse gateway's records; the forward proxy writes its own through the same writer.
  const detachAccess = (opts.accessLog ?? config.log.access) ? attachAccessLog(logger, { face: 'reverse' }) : undefined;
  // Certificates of TLS listeners: loaded, reloaded after a change, or a reload refused (the old one stays).
  const onCertificate = (m: unknown): void => {
    const e = m as CertificateEvent;
    const fields = { component: 'tls', type: 'lifecycle', event: `certificate-${e.event}`, listener: e.listener, cert: e.cert, names: e.names, notAfter: e.notAfter, detail: e.detail };
    if (e.event === 'reload-failed') logger.warn(fields, `certificate ${e.cert} was not reloaded: ${e.detail ?? ''}; the one loaded before stays in use`);
    else logger.info(fields, `certificate ${e.cert} ${e.event} for ${e.names.join(', ')} (expires ${e.notAfter ?? '?'})`);
  };
  subscribe(CERTIFICATE_CHANNEL, onCertificate);
  const detachLog = (): void => {
    detachAccess?.();
    unsubscribe(CERTIFICATE_CHANNEL, onCertificate);
  };
  // The admin API's view of the traffic (both faces): subscribed before any listener takes a request.
  const live = config.admin ? new (await import('../observe/live.js')).LiveTraffic({ failures: config.admin.failures }).attach() : undefined;
  const gateway = config.listeners.length > 0 ? new Gateway(config) : undefined;
  let forward: ForwardProxy | undefined;
  // prom-client and the admin listener load only when configured: less memory at idle.
  const metrics = config.admin
    ? (await import('../observe/metrics.js')).attachMetrics(undefined, {
        defaultMetrics: true,
        clusters: () => gateway?.ctx.clusters.values() ?? [],
        egress: () => forward?.egress,
        certificates: () => [...(gateway?.certificateStores() ?? []), ...(forward?.certificateStores() ?? [])].flatMap((s) => s.certificates()),
      })
    : undefined;
  const closers: Array<() => Promise<unknown>> = [];
  let probe: ReturnType<typeof probeUpstreams> | undefined;
  let adminUrl: string | undefined;
  try {
    if (gateway) {
      const addrs = await gateway.listen();
      closers.push(() => gateway.close());
      logger.info({ component: 'gateway', type: 'lifecycle', event: 'ready', listeners: addrs.map((a) => a.url), identity: gateway.ctx.identity }, 'gateway listening');
      logger.flush(); // lifecycle lines go out now, not with the next batch
      if (opts.probeUpstreams !== false) {
        probe = probeUpstreams(config, logger);
        const p = probe;
        closers.push(async () => p.cancel());
        void p.done.then(() => logger.flush());
      }
    }
    if (config.forward) {
      const { startForwardProxy } = await import('../forward/index.js');
      const fwd = await startForwardProxy(config.forward, { logger });
      forward = fwd;
      closers.push(() => fwd.close());
      logger.info({ component: 'forward', type: 'lifecycle', event: 'forward-ready', listeners: fwd.addresses() }, 'forward proxy listening');
      logger.flush(); // lifecycle lines go out now, not with the next batch
    }
    if (config.admin && metrics) {
      const { startAdmin } = await import('../observe/admin.js');
      const admin = await startAdmin({
        address: config.admin.address,
        port: config.admin.port,
        registry: metrics.registry,
        ready: () => !gateway?.ctx.draining,
        gateway: gateway && gatewayControl(gateway),
        forward,
        live,
        config,
        token: config.admin.token,
      });
      adminUrl = admin.url;
      closers.push(() => admin.close());
      logger.info({ component: 'admin', type: 'lifecycle', event: 'admin', url: admin.url, dashboard: `${admin.url}/` }, `admin listening; dashboard at ${admin.url}/`);
      logger.flush(); // lifecycle lines go out now, not with the next batch
    }
  } catch (err) {
    await Promise.allSettled(closers.map((c) => c()));
    detachLog?.();
    metrics?.detach();
    live?.detach();
    throw err;
  }
  return {
    gateway,
    logger,
    upstreamProbe: probe?.done ?? Promise.resolve(),
    adminUrl,
    async close() {
      await Promise.allSettled(closers.map((c) => c()));
      detachLog?.();
      metrics?.detach();
      live?.detach();
      flushLogger(logger);
    },
  };
}

/** Drain on SIGTERM/SIGINT, then resolve. A second signal exits at once. */
export function untilSignal(rt: Runtime): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) process.exit(130);
      stopping = true;
      rt.logger.info({ component: 'runtime', type: 'lifecycle', event: 'signal', signal: sig }, 'draining in-flight requests');
      rt.logger.flush(); // lifecycle lines go out now, not with the next batch
      rt.close().then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
