/**
 * Upstream connection pools (HTTP/1.1, and HTTP/2 on node:http2), shared by both faces: `ConnectionPool` (the connections
 * to one origin, written for the keep-alive race), `PoolSet` (pools by key, for a face that
 * reaches many origins), the connect timings and the race rule.
 */
export { ConnectionPool, PooledClient, type ConnectionPoolOptions, type PoolConnection, type TimedExpectClient } from './connection-pool.js';
export { NativeClient, type CheckedDispatchOptions, type NativeClientOptions } from './native-client.js';
export { PoolSet, type PoolSetOptions } from './pool-set.js';
export { timedConnector, type ConnectTimings, type PoolConnector } from './timed-connector.js';
export { upstreamConnector, upstreamSocket, type UpstreamConnectOptions } from './plain-connector.js';
export { lostKeepAliveRace } from './race.js';
export { H2Client, type H2ClientOptions } from './h2-client.js';
export { H2NotProcessedError, H2StreamWatch, h2NotProcessed, type H2NotProcessed } from './h2-streams.js';
