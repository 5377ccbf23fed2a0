import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { Gateway } from '../gateway/server.js';
import { attachAccessLog, createLogger, flushLogger } from '../observe/access-log.js';
import type { AdminControl } from '../observe/admin.js';
import { raiseMallocTrimThreshold } from './malloc-tuning.js';

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
    drain: (cluster, endpoint, draining) => gw.ctx.clusters.get(cluster)?.setDraining(endpoint, draining) ?? false,
  };
}

export interface Runtime {
  gateway: Gateway | undefined;
  logger: Logger;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  accessLog?: boolean;
  logger?: Logger;
}

/** Wire the parts for a config: gateway, access log, metrics and admin listener. */
export async function startRuntime(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
  raiseMallocTrimThreshold();
  const logger = opts.logger ?? createLogger({ level: config.log.level, file: config.log.file });
  const detachLog = (opts.accessLog ?? config.log.access) ? attachAccessLog(logger) : undefined;
  // prom-client and the admin listener load only when configured: less memory at idle.
  const metrics = config.admin ? (await import('../observe/metrics.js')).attachMetrics(undefined, { defaultMetrics: true }) : undefined;
  const gateway = config.listeners.length > 0 ? new Gateway(config) : undefined;
  const closers: Array<() => Promise<unknown>> = [];
  try {
    if (gateway) {
      const addrs = await gateway.listen();
      closers.push(() => gateway.close());
      logger.info({ type: 'lifecycle', event: 'ready', listeners: addrs.map((a) => a.url), identity: gateway.ctx.identity }, 'gateway listening');
      logger.flush(); // lifecycle lines go out now, not with the next batch
    }
    if (config.forward) {
      const { startForwardProxy } = await import('../forward/index.js');
      const fwd = await startForwardProxy(config.forward, { logger });
      closers.push(() => fwd.close());
      logger.info({ type: 'lifecycle', event: 'forward-ready', listeners: fwd.addresses() }, 'forward proxy listening');
      logger.flush(); // lifecycle lines go out now, not with the next batch
    }
    if (config.admin && metrics) {
      const { startAdmin } = await import('../observe/admin.js');
      const admin = await startAdmin(config.admin.address, config.admin.port, metrics.registry, () => !gateway?.ctx.draining, gateway && gatewayControl(gateway));
      closers.push(() => admin.close());
      logger.info({ type: 'lifecycle', event: 'admin', url: admin.url }, 'admin listening');
      logger.flush(); // lifecycle lines go out now, not with the next batch
    }
  } catch (err) {
    await Promise.allSettled(closers.map((c) => c()));
    detachLog?.();
    metrics?.detach();
    throw err;
  }
  return {
    gateway,
    logger,
    async close() {
      await Promise.allSettled(closers.map((c) => c()));
      detachLog?.();
      metrics?.detach();
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
      rt.logger.info({ type: 'lifecycle', event: 'signal', signal: sig }, 'draining in-flight requests');
      rt.logger.flush(); // lifecycle lines go out now, not with the next batch
      rt.close().then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}
