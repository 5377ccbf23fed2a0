import { parseDuration } from '../config/duration.js';
import type { ForwardConfig } from '../config/forward.js';
import { PortSet } from './rules/port-set.js';
import { lockoutSettings } from '../config/auth-lockout.js';
import type { AuthLockoutSettings } from '../net/auth-lockout.js';

/** The config turned into the numbers the handlers use. */
export interface ForwardSettings {
  name: string;
  revealDetails: boolean;
  /** Prefix of problem+json types (forward.problemTypeBase). */
  problemTypeBase: string | undefined;
  authRequired: boolean;
  realm: string;
  authCacheTtlMs: number;
  authFailureCacheTtlMs: number;
  authMaxConcurrentChecks: number;
  authMaxConcurrentChecksPerSource: number;
  authCheckThreads: number;
  /** Wrong passwords per client address (auth.lockout). */
  authLockout: AuthLockoutSettings;
  connectPorts: PortSet;
  /** Ports an absolute-form HTTP request may go to (rules.httpPorts). */
  httpPorts: PortSet;
  connectTimeoutMs: number;
  dnsTimeoutMs: number;
  handshakeTimeoutMs: number;
  handshakeFloorMs: number;
  tunnelIdleMs: number;
  udpIdleMs: number;
  responseHeadersMs: number;
  responseBodyIdleMs: number;
  clientKeepAliveMs: number;
  clientBodyMs: number;
  clientBodyMinRate: number;
  sendMs: number;
  maxConnectionsPerUser: number;
  maxTunnelsPerUser: number;
  maxClientConnections: number;
  maxConnectionsPerSource: number;
  maxHeaderSize: number;
  maxHeaderCount: number;
  userLimits: ReadonlyMap<string, { maxConnections?: number; maxTunnels?: number }>;
}

function ms(s: string): number {
  const v = parseDuration(s);
  if (v === undefined) throw new TypeError(`not a duration: ${s}`);
  return v;
}

export function toSettings(c: ForwardConfig): ForwardSettings {
  const userLimits = new Map<string, { maxConnections?: number; maxTunnels?: number }>();
  for (const u of c.auth.users) userLimits.set(u.name, { maxConnections: u.maxConnections, maxTunnels: u.maxTunnels });
  return {
    name: c.name,
    revealDetails: c.revealDetails,
    problemTypeBase: c.problemTypeBase,
    authRequired: c.auth.required,
    realm: c.auth.realm,
    authCacheTtlMs: ms(c.auth.cacheTtl),
    authFailureCacheTtlMs: ms(c.auth.failureCacheTtl),
    authMaxConcurrentChecks: c.auth.maxConcurrentChecks,
    authMaxConcurrentChecksPerSource: c.auth.maxConcurrentChecksPerSource,
    authCheckThreads: c.auth.checkThreads,
    authLockout: lockoutSettings(c.auth.lockout),
    connectPorts: new PortSet(c.rules.connectPorts),
    httpPorts: new PortSet(c.rules.httpPorts),
    connectTimeoutMs: ms(c.timeouts.connect),
    dnsTimeoutMs: ms(c.timeouts.dns),
    handshakeTimeoutMs: ms(c.timeouts.handshake),
    handshakeFloorMs: ms(c.timeouts.handshakeFloor),
    tunnelIdleMs: ms(c.timeouts.tunnelIdle),
    udpIdleMs: ms(c.timeouts.udpIdle),
    responseHeadersMs: ms(c.timeouts.responseHeaders),
    responseBodyIdleMs: ms(c.timeouts.responseBodyIdle),
    clientKeepAliveMs: ms(c.timeouts.clientKeepAlive),
    clientBodyMs: ms(c.timeouts.clientBody),
    clientBodyMinRate: c.timeouts.clientBodyMinRate,
    sendMs: ms(c.timeouts.send),
    maxConnectionsPerUser: c.limits.maxConnectionsPerUser,
    maxTunnelsPerUser: c.limits.maxTunnelsPerUser,
    maxClientConnections: c.limits.maxClientConnections,
    maxConnectionsPerSource: c.limits.maxConnectionsPerSource,
    maxHeaderSize: c.limits.maxHeaderSize,
    maxHeaderCount: c.limits.maxHeaderCount,
    userLimits,
  };
}
