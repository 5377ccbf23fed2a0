import cluster from 'node:cluster';
import { MemoryStore, type Store } from '../state/index.js';
import type { Logger } from 'pino';
import type { ForwardProxy } from '../forward/index.js';
import { upstreamSocket } from '../pool/index.js';
import { parseDuration } from '../config/duration.js';
import type { Config } from '../config/schema.js';
import type { ForwardConfig } from '../config/forward.js';
import { Gateway } from '../gateway/server.js';
import { purgePrefixTarget, purgeTarget } from '../gateway/cache-phase.js';
import { attachAccessLog, createLogger, flushLogger } from '../observe/access-log.js';
import type { AdminControl, AdminForwardView } from '../observe/admin.js';
import { raiseMallocTrimThreshold } from './malloc-tuning.js';
import { releaseYoungGeneration } from './young-generation.js';
import { ConfigReloader, type ReloadResult } from './reload.js';
import { configBindWords } from './bind-failure.js';
export type { ReloadResult } from './reload.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { lockoutSettings } from '../config/auth-lockout.js';
import { ACME_CHANNEL, CERTIFICATE_CHANNEL, OCSP_CHANNEL, type AcmeEvent, type CertificateEvent, type OcspEvent } from '../tls/index.js';

/** The admin API's view of the forward proxy, following the one running now (a reload may replace it). */
function forwardView(current: () => ForwardProxy | undefined): AdminForwardView {
  const f = (): ForwardProxy => {
    const v = current();
    if (!v) throw new Error('the forward proxy was stopped by a reload');
    return v;
  };
  return {
    get egress() {
      return f().egress;
    },
    get plans() {
      return f().plans;
    },
    connectionStats: () => current()?.connectionStats() ?? [],
  };
}

function gatewayControl(current: () => Gateway): AdminControl {
  return {
    status: () => {
      const gw = current();
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
      const gw = current();
      const out: Record<string, { limit: number; inflight: number; queued: number }> = {};
      for (const [name, c] of gw.ctx.clusters) if (c.admission) out[name] = { limit: c.admission.limit, inflight: c.admission.inflight, queued: c.admission.queued };
      return out;
    },
    drain: (cluster, endpoint, draining) => current().ctx.clusters.get(cluster)?.setDraining(endpoint, draining) ?? false,
    cacheStats: () => {
      const c = current().ctx.cache;
      if (c === undefined) return undefined;
      const st = c.store;
      return { keys: st.keys, entries: st.entries, bytes: st.bytes, maxBytes: st.maxBytes, evictions: st.evictions, collapsing: c.collapser.inflight };
    },
    purgeCache: ({ key, prefix }) => {
      const c = current().ctx.cache;
      if (c === undefined) return undefined;
      let n = 0;
      if (key) {
        // Any spelling of the key's target (host case, port, path encodings and dot segments).
        const target = purgeTarget(key, current().ctx.escapedSlashes);
        if (target !== undefined) n += c.invalidateTarget(target);
      }
      if (prefix) {
        // Any spelling of the prefix too (scheme and host case, port, trailing dot, path encodings).
        const target = purgePrefixTarget(prefix, current().ctx.escapedSlashes);
        if (target !== undefined) n += c.purgePrefix(target);
      }
      return n;
    },
  };
}

export interface Runtime {
  gateway: Gateway | undefined;
  /** The forward proxy, when configured. */
  readonly forward: ForwardProxy | undefined;
  /**
   * Re-read the config file (`RuntimeOptions.configFile`) and apply it in place (SIGHUP,
   * `POST /reload`). Never throws: an invalid config is refused with its problems and the
   * running one stays. The result is logged as one line.
   */
  reload(): Promise<ReloadResult>;
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
  /** The config file a reload re-reads (absent: reload answers that there is none). */
  configFile?: string;
  /**
   * The words for a listener that could not bind (cli/bind-failure.ts): a one-liner names its
   * flags. Default: the config's entries (`listeners[0] of FILE`).
   */
  bindWords?: (err: unknown) => string | undefined;
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
          // Made and shaped as the gateway's upstream sockets are: this is the first socket the
          // process makes, and Node's stream sites are shared by all of them (its unshaped map and
          // options object were one too many at the `_handle` getter and in ReadableState, which
          // went megamorphic: docs/benchmarks.md §52).
          const s = upstreamSocket();
          s.connect({ host, port });
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

/** A worker of --workers without Redis: its forward state is the primary's, over IPC (cli/workers.ts). */
async function workerStore(c: ForwardConfig): Promise<Store | undefined> {
  return cluster.isWorker && !c.state.redis ? new (await import('../state/index.js')).IpcStore() : undefined;
}

/** How long a worker waits for the group to confirm a mark of its forward proxy's connection to an own gateway listener. */
const PEER_GROUP_WAIT_MS = 1000;

/**
 * In a worker: every worker of the group keeps the marks of the forward proxy's connections
 * to the group's own gateway listeners (net/own-listeners.ts `ForwardPeerGroup`), relayed by
 * the primary as a gather (observe/worker-ipc.ts); a mark counts once each worker answered.
 */
async function shareForwardPeersInGroup(): Promise<() => void> {
  const { gather, serveGather } = await import('../observe/worker-ipc.js');
  const { groupForwardPeer, shareForwardPeers } = await import('../net/own-listeners.js');
  const stop = serveGather('forward-peer', (arg) => {
    const m = arg as { end?: unknown; on?: unknown } | null;
    if (m === null || typeof m !== 'object' || typeof m.end !== 'string' || typeof m.on !== 'boolean') throw new Error('forward-peer: expected { end: string, on: boolean }');
    groupForwardPeer(m.end, m.on);
    return true;
  });
  shareForwardPeers({
    announce: async (end, on) => {
      const g = await gather<boolean>('forward-peer', { end, on }, PEER_GROUP_WAIT_MS);
      return g.late !== true && g.missing === 0 && g.parts.length > 0 && g.parts.every((p) => p.ok);
    },
  });
  return () => {
    shareForwardPeers(undefined);
    stop();
  };
}

/** Wire the parts for a config: gateway, access log, metrics and admin listener. */
export async function startRuntime(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
  void raiseMallocTrimThreshold(); // resolves once its scratch input is released; nothing waits for it
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
  // Stapled OCSP statuses: fetched (info), a fetch that failed (warn: the last good one stays until it expires), revoked (error).
  const onOcsp = (m: unknown): void => {
    const e = m as OcspEvent;
    const fields = { component: 'tls', type: 'ocsp', event: e.event, listener: e.listener, cert: e.cert, url: e.url, nextUpdate: e.nextUpdate, detail: e.detail };
    if (e.event === 'stapled') logger.info(fields, `OCSP status of ${e.cert} stapled (good until ${e.nextUpdate ?? '?'})`);
    else if (e.event === 'revoked') logger.error(fields, `certificate ${e.cert} is revoked (OCSP, ${e.url ?? ''}): no status is stapled; replace the certificate`);
    else if (e.event === 'failed') logger.warn(fields, `OCSP status of ${e.cert} not refreshed: ${e.detail ?? ''}${e.nextUpdate ? `; the last good one stays until ${e.nextUpdate}` : ''}`);
    else logger.debug(fields, `no OCSP stapling for ${e.cert}: ${e.detail ?? ''}`);
  };
  subscribe(OCSP_CHANNEL, onOcsp);
  // ACME orders: a failure names its step and when the next try is (the certificate in use keeps serving).
  const onAcme = (m: unknown): void => {
    const e = m as AcmeEvent;
    const fields = { component: 'tls', type: 'lifecycle', event: `acme-${e.event}`, listener: e.listener, names: e.names, notAfter: e.notAfter, reason: e.reason, detail: e.detail, nextInMs: e.nextInMs };
    if (e.event === 'failed') logger.warn(fields, `ACME order for ${e.names.join(', ')} failed at ${e.reason ?? '?'}: ${e.detail ?? ''}; next try in ${Math.round((e.nextInMs ?? 0) / 1000)} s, the certificate in use keeps serving`);
    else logger.info(fields, `ACME certificate for ${e.names.join(', ')}: ${e.event}${e.notAfter !== undefined ? ` (expires ${e.notAfter})` : ''}`);
  };
  subscribe(ACME_CHANNEL, onAcme);
  // In a worker of --workers N: the forward proxy's marks of its connections to the group's own
  // gateway listeners reach every worker before a byte goes (net/own-listeners.ts).
  const stopPeerGroup = cluster.isWorker ? await shareForwardPeersInGroup() : undefined;
  const detachLog = (): void => {
    stopPeerGroup?.();
    detachAccess?.();
    unsubscribe(CERTIFICATE_CHANNEL, onCertificate);
    unsubscribe(OCSP_CHANNEL, onOcsp);
    unsubscribe(ACME_CHANNEL, onAcme);
  };
  // The admin API's view of the traffic (both faces): subscribed before any listener takes a request.
  const live = config.admin ? new (await import('../observe/live.js')).LiveTraffic({ failures: config.admin.failures }).attach() : undefined;
  // OpenTelemetry only when enabled: the module (and @opentelemetry/api) is not even loaded otherwise.
  const tracing = config.tracing.enabled ? await (await import('../observe/tracing.js')).startTracing(config.tracing) : undefined;
  let gateway = config.listeners.length > 0 ? new Gateway(config, { tracing: tracing?.gateway }) : undefined;
  let forward: ForwardProxy | undefined;
  // prom-client and the admin listener load only when configured: less memory at idle.
  const metrics = config.admin
    ? (await import('../observe/metrics.js')).attachMetrics(undefined, {
        defaultMetrics: true,
        clusters: () => gateway?.ctx.clusters.values() ?? [],
        egress: () => forward?.egress,
        state: () => forward?.stateHealth(),
        certificates: () => [...(gateway?.certificateStores() ?? []), ...(forward?.certificateStores() ?? [])].flatMap((s) => s.certificates()),
      })
    : undefined;
  const closers: Array<() => Promise<unknown>> = [];
  let probe: ReturnType<typeof probeUpstreams> | undefined;
  let adminUrl: string | undefined;
  const reloader = new ConfigReloader({
    file: opts.configFile,
    logger,
    running: config,
    gateway: () => gateway,
    forward: () => forward,
    startGateway: async (c) => {
      const gw = new Gateway(c, { tracing: tracing?.gateway });
      try {
        await gw.listen();
      } catch (err) {
        // Refused: its clusters (health checks) go with it.
        await gw.close(0);
        throw err;
      }
      gateway = gw;
      closers.push(() => gw.close());
    },
    startForward: async (c) => {
      const { startForwardProxy } = await import('../forward/index.js');
      const fwd = await startForwardProxy(c, { logger, store: await workerStore(c) });
      forward = fwd;
      closers.push(() => fwd.close());
    },
    stopForward: async () => {
      const f = forward;
      forward = undefined;
      if (!f) return;
      // close() stops accepting at once; its drain (up to forward.shutdown.drainTimeout) runs
      // behind the reload, not in it: a reload that waited would hold this one and every one
      // queued after it (POST /reload too) for as long as a tunnel stays open, 30 s by
      // default (found by the session's review). The runtime's own close waits for it.
      const closing = f.close();
      closers.push(() => closing);
      closing.catch((err: unknown) => logger.error({ component: 'forward', type: 'lifecycle', err: (err as Error).message }, 'the stopped forward proxy failed to close'));
    },
  });
  // The lines saying a listener is up (ready, forward-ready, admin, and the listeners' own:
  // the gateway's `listening` lifecycle event, `forward proxy listening on …`, the egress pools)
  // are written once every listener is: a start whose admin or forward listener failed to bind
  // said "gateway listening" before "not started" (finding, error-story probe; then the
  // listeners' own lines, review finding; test/cli/failed-start.test.ts).
  const readyLines: Array<() => void> = [];
  try {
    if (gateway) {
      const gw = gateway;
      // Closed on a failed start too: its clusters run health checks from the start.
      closers.push(() => gw.close());
      const addrs = await gw.listen({ announce: false });
      readyLines.push(() => gw.announce());
      readyLines.push(() => logger.info({ component: 'gateway', type: 'lifecycle', event: 'ready', listeners: addrs.map((a) => a.url), identity: gw.ctx.identity }, 'gateway listening'));
    }
    if (config.forward) {
      const { startForwardProxy } = await import('../forward/index.js');
      const fwd = await startForwardProxy(config.forward, { logger, store: await workerStore(config.forward), announce: false });
      // The admin API's and the metrics' view follow `forward`: a reload may start or stop it.
      forward = fwd;
      closers.push(() => fwd.close());
      readyLines.push(() => fwd.announce());
      readyLines.push(() => logger.info({ component: 'forward', type: 'lifecycle', event: 'forward-ready', listeners: fwd.addresses() }, 'forward proxy listening'));
    }
    if (config.admin && metrics) {
      const { startAdmin } = await import('../observe/admin.js');
      const gatewayView = gatewayControl(() => gateway!);
      const forwardAdminView = forwardView(() => forward);
      const admin = await startAdmin({
        address: config.admin.address,
        port: config.admin.port,
        registry: metrics.registry,
        ready: () => !gateway?.ctx.draining,
        // Faces asked at each request: a reload may start the gateway or start or stop the forward proxy.
        state: () => forward?.stateHealth(),
        gateway: () => (gateway ? gatewayView : undefined),
        forward: () => (forward ? forwardAdminView : undefined),
        reload: () => reloader.reload(),
        accounts: () => forward?.accounts,
        logger,
        live,
        config: () => reloader.running,
        // Read from the running config at each request: a reload that changes the token revokes the old one at once.
        // A reload that removes the admin section (the listener runs until a restart) keeps the last token.
        token: (() => {
          let last = config.admin.token;
          return () => {
            const admin = reloader.running.admin;
            if (admin) last = admin.token;
            return last;
          };
        })(),
        // Wrong tokens per client address; the running config's settings, made again only when a reload replaced the admin section.
        lockout: (() => {
          let section = config.admin;
          let settings = lockoutSettings(section.lockout);
          return () => {
            const admin = reloader.running.admin;
            if (admin && admin !== section) settings = lockoutSettings((section = admin).lockout);
            return settings;
          };
        })(),
        // With state.redis: wrong tokens counted with the fleet's (the forward proxy's Redis; net/auth-lockout-fleet.ts).
        lockoutFleet: () => forward?.lockoutFleet,
        // In a worker of --workers N: answer for the whole group. Usage is per worker while each keeps its own memory store.
        group: cluster.isWorker
          ? {
              get perProcessUsage() {
                return forward === undefined || forward.store instanceof MemoryStore;
              },
            }
          : undefined,
      });
      adminUrl = admin.url;
      closers.push(() => admin.close());
      readyLines.push(() => logger.info({ component: 'admin', type: 'lifecycle', event: 'admin', url: admin.url, dashboard: `${admin.url}/` }, `admin listening; dashboard at ${admin.url}/`));
    }
  } catch (err) {
    // One line says why it did not start; then the log is detached before what had started is
    // closed: a gateway closed here never served, and its "draining 0 requests in flight" and
    // "closed" read as if it had run (finding, probe session 37).
    const words = opts.bindWords !== undefined ? opts.bindWords(err) : configBindWords(config, err, opts.configFile);
    logger.error({ component: 'runtime', type: 'lifecycle', event: 'start-failed', code: (err as NodeJS.ErrnoException)?.code }, `not started: ${words ?? (err as Error)?.message ?? String(err)}`);
    flushLogger(logger);
    detachLog?.();
    await Promise.allSettled(closers.map((c) => c()));
    metrics?.detach();
    live?.detach();
    tracing?.detach();
    throw err;
  }
  for (const line of readyLines) line();
  logger.flush(); // lifecycle lines go out now, not with the next batch
  // The start-up probe of the upstreams, once the start cannot fail: a failed one probes nothing.
  if (gateway && opts.probeUpstreams !== false) {
    probe = probeUpstreams(config, logger);
    const p = probe;
    closers.push(async () => p.cancel());
    void p.done.then(() => logger.flush());
  }
  releaseYoungGeneration(); // started: traffic gets V8's own young-generation growth
  return {
    get gateway() {
      return gateway;
    },
    get forward() {
      return forward;
    },
    reload: () => reloader.reload(),
    logger,
    upstreamProbe: probe?.done ?? Promise.resolve(),
    adminUrl,
    async close() {
      await Promise.allSettled(closers.map((c) => c()));
      detachLog?.();
      metrics?.detach();
      live?.detach();
      tracing?.detach();
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
    // SIGHUP: re-read the config file; the result is logged (the reloader never throws).
    const onHup = (): void => void rt.reload();
    process.on('SIGHUP', onHup);
    process.once('SIGTERM', (s) => (process.off('SIGHUP', onHup), onSignal(s)));
    process.once('SIGINT', (s) => (process.off('SIGHUP', onHup), onSignal(s)));
  });
}
