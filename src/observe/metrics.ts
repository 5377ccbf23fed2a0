import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { REQUEST_END_CHANNEL, type RequestRecord } from '../record/index.js';

export interface GatewayMetrics {
  registry: Registry;
  detach(): void;
}

/**
 * Prometheus metrics fed by the gateway's events. The same story as the access log:
 * every gateway-made response counts under its RFC 9209 error type.
 */
export function attachMetrics(registry = new Registry(), opts: { defaultMetrics?: boolean } = {}): GatewayMetrics {
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'gatewise_requests_total',
    help: 'Requests, tunnels and associations finished, by face (reverse, forward), protocol, route, status and Proxy-Status error type ("" when none).',
    labelNames: ['face', 'protocol', 'route', 'cluster', 'status', 'error', 'ended_by'] as const,
    registers: [registry],
  });
  const attempts = new Counter({
    name: 'gatewise_upstream_attempts_total',
    help: 'Tries at upstream endpoints, by endpoint and error type ("" for a response).',
    labelNames: ['cluster', 'endpoint', 'error'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'gatewise_request_duration_seconds',
    help: 'Time from request to the end of the response.',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const onRequest = (msg: unknown): void => {
    const r = msg as RequestRecord;
    const route = r.face === 'reverse' ? (r.route ?? '') : '';
    const cluster = r.face === 'reverse' ? (r.cluster ?? '') : '';
    requests.inc({ face: r.face, protocol: r.protocol, route, cluster, status: r.status === undefined ? '' : String(r.status), error: r.error ?? '', ended_by: r.endedBy });
    duration.observe({ route }, r.durationMs / 1000);
    if (r.face === 'reverse') for (const a of r.attempts) attempts.inc({ cluster, endpoint: a.endpoint, error: a.error ?? '' });
  };
  subscribe(REQUEST_END_CHANNEL, onRequest);
  return { registry, detach: () => unsubscribe(REQUEST_END_CHANNEL, onRequest) };
}
