/** Gatewise as a library. */
export * from './failure/index.js';
export { configSchema, jsonSchema, type Config, type ConfigInput } from './config/schema.js';
export { validateConfig, parseConfigText, loadConfigFile, ConfigError, type ConfigProblem } from './config/load.js';
export { parseDuration } from './config/duration.js';
export { Gateway, startGateway, type ListeningAddress } from './gateway/server.js';
export type { GatewayOptions } from './gateway/context.js';
export type { GatewayHooks, HookRequest, ResponseHead } from './gateway/hooks.js';
export { CERTIFICATE_CHANNEL, registerDnsProvider, type CertificateEvent, type CertificateInfo, type ClientCertificate, type TlsInfo, type DnsProvider, type DnsProviderFactory } from './tls/index.js';
export type { RetryDecision, TryFacts, RetryRules } from './gateway/retry-policy.js';
export { BALANCER_KINDS, type Balancer, type BalancerFactory, type BalancerOptions, type BalancerKind, type PickContext } from './upstream/balancers/balancer.js';
export type { Endpoint } from './upstream/endpoint.js';
export type { RequestRecord, ReverseRecord, ForwardRecord, AttemptRecord, Face } from './record/index.js';
export { REQUEST_END_CHANNEL } from './record/index.js';
export { attachAccessLog, createLogger } from './observe/access-log.js';
export { attachMetrics } from './observe/metrics.js';
export { startAdmin, ADMIN_ROUTES, type AdminOptions, type AdminControl, type AdminForwardView, type AdminServer } from './observe/admin.js';
export { LiveTraffic, explainReason, type LiveOptions } from './observe/live.js';
export { redactSecrets } from './observe/redact.js';
export type { GatewayTracing } from './gateway/tracing.js';
export type { Tracing, TracingConfig } from './observe/tracing.js';

/**
 * OpenTelemetry spans for a gateway: `startGateway(config, { tracing: (await startTracing(config.tracing)).gateway })`.
 * @opentelemetry/api loads only when this is called (docs/tracing.md).
 */
export async function startTracing(cfg: import('./observe/tracing.js').TracingConfig): Promise<import('./observe/tracing.js').Tracing> {
  return (await import('./observe/tracing.js')).startTracing(cfg);
}
export { startLab, LAB_FAULTS, startLabDnsServer, type Lab, type LabOptions, type LabFault } from './lab/index.js';
// The forward proxy service (also at the `gatewise/forward` subpath).
export * from './forward/index.js';
export { MemoryStore, type Store } from './state/index.js';
