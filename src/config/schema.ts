import { z } from 'zod';
import { durationString } from './duration-schema.js';
import { isLoopbackAddress } from '../net/ip-address.js';
import { parseDuration } from './duration.js';
import { forwardSchema } from './forward.js';
import { shutdownSchema } from './shutdown.js';
import { authLockoutSchema } from './auth-lockout.js';
import type { ProxyErrorType } from '../failure/types.js';
import { http2Schema, redirectSchema, reverseListenerTlsSchema } from './tls.js';
// A token (RFC 9110 §5.6.2): an upgrade protocol's name, a header name; the pattern the parsers judge names with.
import { TOKEN_RE as TOKEN } from '../http/token.js';
import { escapedSlashProblem, prefixProblem } from '../http/path.js';


/**
 * The one config schema: zod gives the TypeScript types, validation, and (via
 * `z.toJSONSchema`) the JSON Schema that `gatewise schema` prints for editors.
 * Keys are camelCase, durations are strings such as "1500ms", "2s", "1m".
 */

export const duration = (def: string, what: string) =>
  durationString()
    .refine((s) => parseDuration(s) !== undefined, { message: 'expected a duration such as "500ms", "2s" or "1m"' })
    .default(def)
    .describe(`${what} (duration: ms, s, m, h). Default ${def}.`);

const cidr = z
  .string()
  .regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'expected an IP address or CIDR such as 10.0.0.0/8 or ::1')
  .describe('IP address or CIDR block');

export const listenerSchema = z
  .object({
    address: z.string().default('127.0.0.1').describe('Address to listen on. Default 127.0.0.1.'),
    port: z.number().int().min(0).max(65535).describe('TCP port (0 picks a free one).'),
    requestHeaderTimeout: duration('10s', 'Time a client has to send the whole request head; then 408 (within 500 ms of it).'),
    keepAliveTimeout: duration('5s', 'How long an idle client connection is kept open. Answers say so in `Keep-Alive: timeout=`, whole seconds rounded down; under 1s with no hint (a timeout=0 would tell clients not to reuse the connection).'),
    clientBodyTimeout: duration('30s', 'Longest gap between two reads of a request body (nginx client_body_timeout); also the grace before clientBodyMinRate applies. Then 408 request_timeout (or the connection is cut once the response started) and the upstream request is aborted. Time the upstream holds the body back does not count. "0s": no limit (and no minimum rate).'),
    clientBodyMinRate: z
      .number()
      .int()
      .min(0)
      .default(500)
      .describe('Lowest average request body rate, in bytes per second, once clientBodyTimeout has passed: a body of N bytes may take clientBodyTimeout + N / rate in all (Apache mod_reqtimeout MinRate), so a trickle that beats the gap timer is cut too. 0: no minimum. Default 500.'),
    sendTimeout: duration('60s', 'Longest time a client may leave a response, or an upgraded (WebSocket) tunnel, unread (its connection\'s buffer full; nginx send_timeout, HAProxy timeout client); then the client connection and the upstream request (or the tunnel\'s upstream connection) are aborted, recorded endedBy client. "0s": no limit.'),
    maxHeaderSize: z
      .number()
      .int()
      .min(1024)
      .max(1024 * 1024)
      .default(16384)
      .describe('Largest request header section accepted, in bytes; larger gets 431. Default 16384.'),
    maxHeaderCount: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(100)
      .describe('Most request header fields (lines) accepted; more gets 431 header_fields_too_large instead of Node silently dropping the excess (Content-Length included). Default 100, as Envoy (max_request_headers_count) and Apache (LimitRequestFields).'),
    maxConnections: z
      .number()
      .int()
      .min(1)
      .default(4096)
      .describe('Client connections open at once on this listener; past it a new connection gets 503 connection_limit_reached with Retry-After (never a silent reset). Default 4096.'),
    maxConnectionsPerSource: z
      .number()
      .int()
      .min(0)
      .default(256)
      .describe('Client connections open at once from one client address (0: no per-address limit); past it 503 connection_limit_reached. Behind a load balancer that does not keep client addresses, every client has its address: raise it or set 0. Default 256.'),
    handshakeFloor: duration(
      '1s',
      'Under pressure the time for a first request head shrinks toward this floor: a connection accepted while the listener holds more than half of maxConnections gets max(handshakeFloor, requestHeaderTimeout × 2 × (1 − load)), load = connections / cap; then 408.',
    ),
    tls: reverseListenerTlsSchema.optional(),
    redirectToHttps: redirectSchema.optional(),
    http2: http2Schema.optional(),
    front: z
      .enum(['node', 'net'])
      .default('node')
      .describe('The HTTP/1.1 server side of this listener: node (node:http, the default) or net, Gatewise\'s own front on node:net sockets (a strict request-head parser, corked pre-built response heads; an experiment measured in docs/benchmarks.md, plain HTTP only: refused with tls or http2). Both answer parser errors, timeouts and limits with the same statuses.'),
  })
  .strict();

const endpointSchema = z.union([
  z.string().describe('Endpoint URL, http:// or https://'),
  z
    .object({
      url: z.string().describe('Endpoint URL, http:// or https://'),
      weight: z.number().int().min(1).max(1000).default(1).describe('Relative weight. Default 1.'),
      draining: z.boolean().default(false).describe('Send no new requests (in-flight ones finish). Default false.'),
    })
    .strict(),
]);

const statusRange = z
  .union([z.number().int().min(100).max(599), z.string().regex(/^\d{3}-\d{3}$/, 'a status or a range such as "200-399"')])
  .describe('A status code or a range "200-399".');

const healthCheckSchema = z
  .object({
    kind: z.enum(['http', 'tcp']).default('http').describe('http: GET path and check the status; tcp: connect only. Default http.'),
    path: z.string().startsWith('/').default('/').describe('Path to GET. Default "/".'),
    host: z.string().optional().describe('Host header for the check. Default: the endpoint\'s host.'),
    expectStatuses: z.array(statusRange).default(['200-399']).describe('Statuses that pass. Default ["200-399"].'),
    interval: duration('5s', 'Time between checks of one endpoint.'),
    jitter: z.number().min(0).max(1).default(0.1).describe('Random spread of the interval, as a fraction. Default 0.1.'),
    timeout: duration('2s', 'Time one check may take.'),
    rise: z.number().int().min(1).default(2).describe('Consecutive passes to mark an endpoint healthy. Default 2.'),
    fall: z.number().int().min(1).default(3).describe('Consecutive failures to mark it unhealthy. Default 3.'),
  })
  .strict();

const outlierSchema = z
  .object({
    enabled: z.boolean().default(true).describe('Eject endpoints that keep failing. Default true.'),
    consecutiveGatewayFailures: z.number().int().min(1).default(5).describe('Connect failures, resets, timeouts and protocol errors in a row that eject an endpoint. Default 5.'),
    consecutive5xx: z.number().int().min(1).default(5).describe('Upstream 5xx answers in a row that eject an endpoint. Default 5.'),
    consecutiveTimeouts: z
      .number()
      .int()
      .min(0)
      .default(3)
      .describe('Response timeouts (no response head within the try\'s timeout) in a row that eject an endpoint; they also count as gateway failures. Lower than the others because each one cost a client the whole wait. 0: only consecutiveGatewayFailures counts them. Default 3.'),
    baseEjection: duration('30s', 'First ejection time; doubles with each repeat ejection.'),
    maxEjection: duration('5m', 'Longest ejection.'),
    maxEjectedPercent: z.number().min(0).max(100).default(50).describe('Never eject more than this share of a cluster. Default 50.'),
  })
  .strict();

const limitsSchema = z
  .object({
    maxConcurrent: z.number().int().min(1).optional().describe('Most requests in flight to the cluster. Default: unlimited.'),
    maxQueued: z.number().int().min(0).default(0).describe('Requests that may wait for a slot beyond maxConcurrent; more get 503 at once. Default 0.'),
    queueTimeout: duration('1s', 'Longest wait in the queue; then 503 connection_limit_reached.'),
    adaptive: z
      .object({
        kind: z.enum(['aimd', 'gradient']).default('gradient').describe('gradient: follow the ratio of the lowest to the current latency; aimd: add one per good window, halve on latency above targetLatency. Default gradient.'),
        min: z.number().int().min(1).default(1).describe('Lowest concurrency limit. Default 1.'),
        max: z.number().int().min(1).default(1000).describe('Highest concurrency limit. Default 1000.'),
        initial: z.number().int().min(1).default(20).describe('Concurrency limit at start. Default 20.'),
        targetLatency: duration('250ms', 'AIMD: latency above this shrinks the limit.'),
      })
      .strict()
      .optional()
      .describe('Find the upstream\'s capacity from latency instead of a fixed maxConcurrent.'),
  })
  .strict();

const retryBudgetSchema = z
  .object({
    ratio: z.number().min(0).max(10).default(0.2).describe('Retries allowed as a share of requests over the window. Default 0.2.'),
    minPerSecond: z.number().min(0).default(3).describe('Retries always allowed in any one second, for quiet clusters: a rate, not a reserve (a burst gets at most this many beyond the ratio in its second). Default 3.'),
    window: duration('10s', 'Window the ratio is measured over.'),
  })
  .strict();

export const RETRY_ON = ['connect-failure', 'reset', 'invalid-response', 'timeout', '502', '503', '504'] as const;

const retrySchema = z
  .object({
    tries: z.number().int().min(1).max(10).default(3).describe('Most attempts per request, the first included. 1 turns retries off. A request that lost the keep-alive race (a reused connection closed before any response byte) is sent again on a fresh connection whatever this says, and that does not count as a try (as nginx), up to 3 times per request (at maxConnections the retry may have to wait behind a busy connection and lose again; later losses count as tries). Default 3.'),
    on: z
      .array(z.enum(RETRY_ON))
      .default(['connect-failure', 'reset', 'invalid-response', 'timeout', '502', '503', '504'])
      .describe('Which failures retry: connect-failure (DNS, refused, connect timeout, TLS: always safe, any method), reset (closed before any response byte), invalid-response (a response head that is not valid HTTP, too large, or cut short, before anything was passed on), timeout (no response head within the try\'s timeout; retried only on another endpoint), and upstream 502/503/504 answers. All but connect-failure retry idempotent requests only. Default all.'),
    perTryTimeout: durationString()
      .refine((s) => parseDuration(s) !== undefined, { message: 'expected a duration such as "500ms", "2s" or "1m"' })
      .optional()
      .describe('Response-head timeout of every attempt (a retry\'s cut to what is left of `deadline`). Default: a try that may be retried on a timeout (idempotent, tries left, another endpoint available) waits half of the cluster\'s response timeout, any other try what is left of it, so the response timeout bounds the whole wait.'),
    deadline: durationString()
      .refine((s) => parseDuration(s) !== undefined, { message: 'expected a duration such as "500ms", "2s" or "1m"' })
      .optional()
      .describe('No retry starts after this much time since the request arrived, and none waits past it: a retry whose wait (back-off, Retry-After) would end at or past it is not made, and the client gets the last answer (an upstream 502/503/504 with its Retry-After) or failure; a retry\'s response-head timeout is cut to what is left. Default: none.'),
    backoff: z
      .object({ base: duration('25ms', 'First back-off.'), max: duration('250ms', 'Largest back-off.') })
      .strict()
      .default({ base: '25ms', max: '250ms' })
      .describe('Exponential back-off with full jitter between attempts.'),
    retryAfterMax: duration('1s', 'Honour an upstream Retry-After up to this long; longer ones are passed to the client.'),
    idempotencyKey: z.boolean().default(false).describe('Also retry non-idempotent requests that carry an Idempotency-Key header. Default false.'),
  })
  .strict();

export const clusterSchema = z
  .object({
    endpoints: z.array(endpointSchema).min(1).describe('One or more endpoints (URLs with scheme, host and port).'),
    tls: z
      .object({
        verify: z.boolean().default(true).describe('Verify upstream certificates. Default true.'),
        ca: z.string().optional().describe('Path to a PEM file of CA certificates to trust for this cluster (in addition to none: replaces the system roots).'),
        servername: z.string().optional().describe('SNI / certificate name to expect, when it differs from the endpoint host.'),
      })
      .strict()
      .default({ verify: true })
      .describe('TLS settings for https:// endpoints.'),
    timeouts: z
      .object({
        connect: duration('5s', 'Time to open a connection (TCP + TLS) to an endpoint; then 504 connection_timeout.'),
        response: duration('30s', 'Time to wait for response headers after sending the request, retries on another endpoint included (a try that may be retried on a timeout waits half of it); then 504 http_response_timeout.'),
        idle: duration('60s', 'Longest silence from the upstream while a response body streams (time the client takes to read does not count); then the client connection is aborted (connection_read_timeout).'),
        tunnelIdle: duration('5m', 'Close a switched (upgraded: WebSocket) connection when no byte has moved either way for this long, recorded endedBy idle (nginx proxy_read_timeout on such tunnels; the forward proxy\'s tunnelIdle). "0s": never.'),
      })
      .strict()
      .default({ connect: '5s', response: '30s', idle: '60s', tunnelIdle: '5m' })
      .describe('Time limits toward the endpoints.'),
    keepAlive: duration('4s', 'How long an idle upstream connection is kept for reuse (capped by the upstream\'s Keep-Alive: timeout hint and by the idle timeout learned from its closes).'),
    balancer: z
      .union([
        z.enum(['round-robin', 'least-request', 'peak-ewma', 'random', 'ring-hash', 'maglev']),
        // A custom balancer registered with startGateway(config, { balancers }); checked when the gateway starts.
        z.string().regex(/^custom:[a-z0-9][a-z0-9._-]*$/i, 'a balancer is one of round-robin, least-request, peak-ewma, random, ring-hash, maglev, or a registered custom balancer named custom:<name>'),
      ])
      .default('least-request')
      .describe('How an endpoint is picked. least-request = fewest in flight of two random choices. Default least-request. A custom balancer registered in code is named custom:<name>.'),
    hashOn: z
      .object({
        header: z.string().optional().describe('Hash the value of this request header.'),
        cookie: z.string().optional().describe('Hash the value of this cookie.'),
        clientAddress: z.boolean().optional().describe('Hash the client address.'),
      })
      .strict()
      .optional()
      .describe('For ring-hash and maglev: what to hash (a header, a cookie, or the client address).'),
    slowStart: duration('10s', 'An endpoint that joins or recovers ramps up to its full weight over this time.'),
    healthCheck: healthCheckSchema.optional().describe('Active health checks. Off unless set.'),
    outlierDetection: outlierSchema.default({ enabled: true, consecutiveGatewayFailures: 5, consecutive5xx: 5, consecutiveTimeouts: 3, baseEjection: '30s', maxEjection: '5m', maxEjectedPercent: 50 }).describe('Passive health checks: eject endpoints that keep failing.'),
    limits: limitsSchema.default({ maxQueued: 0, queueTimeout: '1s' }).describe('Overload protection: concurrency limit and queue.'),
    waitForEndpoint: z
      .object({
        timeout: duration(
          '3s',
          'While every endpoint is down (failing health checks, ejected, draining, or refusing connections), hold a request this long for one to come back (Caddy lb_try_duration) before answering 503 destination_unavailable, or the connect failure. A held request wakes on the event that brings an endpoint back (a health check passing, an ejection ending, an undrain, a connection opening), never on a sleep; the request deadline and the client leaving end the hold too. Only requests that never reached an upstream are held, so any method may be. "0s": answer at once.',
        ),
        maxWaiting: z.number().int().min(0).default(1000).describe('Requests held at once per cluster; past it a request is answered at once. Default 1000.'),
      })
      .strict()
      .default({ timeout: '3s', maxWaiting: 1000 })
      .describe('Ride out a restart: hold requests briefly while every endpoint is down.'),
    retryBudget: retryBudgetSchema.default({ ratio: 0.2, minPerSecond: 3, window: '10s' }).describe('Caps retries so they never multiply an overload.'),
    maxConnections: z.number().int().min(1).optional().describe('Most connections to each endpoint. With all of them busy a request waits behind one in flight, at most its response timeout; then 503 connection_limit_reached (never sent, so retried on another endpoint where the retry policy allows). Default: unlimited.'),
    maxResponseHeaderSize: z.number().int().min(1024).default(16384).describe('Largest response header section accepted from an endpoint, in bytes. Default 16384.'),
    h2MaxStreams: z
      .number()
      .int()
      .min(1)
      .max(2 ** 31 - 1)
      .optional()
      .describe('HTTP/2 toward the endpoints (protocol h2 or h2c): requests carried at once on one upstream connection; one more opens another connection (within maxConnections). An endpoint that announces a lower SETTINGS_MAX_CONCURRENT_STREAMS holds the excess in the connection\'s queue instead. Only with protocol h2 or h2c. Default 100.'),
    protocol: z
      .enum(['http1', 'h2', 'h2c'])
      .default('http1')
      .describe('HTTP version toward the endpoints: http1 (HTTP/1.1), h2 (HTTP/2 over TLS, https:// endpoints; an endpoint that does not offer h2 by ALPN is spoken to in HTTP/1.1) or h2c (HTTP/2 with prior knowledge over cleartext, http:// endpoints). gRPC needs h2 or h2c: its trailers (grpc-status) are passed through to the client. Default http1.'),
    client: z
      .enum(['undici', 'native'])
      .optional()
      .describe('The HTTP/1.1 client toward the endpoints: native, Gatewise\'s own keep-alive client on node:net (the default with protocol http1: 1.3-1.5x less CPU per request at 1 KiB, 1.6-2.4x at 1 MiB, docs/benchmarks.md), or undici (llhttp). Not with protocol h2 or h2c, whose connections are Gatewise\'s HTTP/2 client on node:http2 (native is refused with them). Both keep the same pool, timeouts, retries and error types (docs/upstream-client.md).'),
  })
  .strict();

/** Upstream statuses a stale copy may answer for (`serveStaleOn`), beside RFC 9209 error types. */
const STALE_STATUSES = ['500', '502', '503', '504'] as const;

/**
 * The RFC 9209 types a stale copy can answer for: the failures the reverse gateway names
 * before a response head is passed on (failure/classify.ts, and the exchange's pick and admit
 * refusals). Any other type would never apply (the client's faults, what happens before the
 * cache phase, a body cut after its head went out), so it is refused rather than ignored.
 * test/cache/serve-stale.test.ts causes each of them for real (but two loopback cannot make).
 * `connection_write_timeout` (an upstream that stopped reading the request body, a timeout of
 * the try like `http_response_timeout`) is refused too: a request with a body never reads the
 * cache (gateway/cache-phase.ts `request-content`), so no stored copy is there to answer it,
 * stale-if-error or not (test/cache/stale-write-timeout.test.ts).
 */
const STALE_TYPES = [
  'dns_timeout',
  'dns_error',
  'destination_unavailable',
  'destination_ip_unroutable',
  'connection_refused',
  'connection_terminated',
  'connection_timeout',
  'connection_limit_reached',
  'tls_protocol_error',
  'tls_certificate_error',
  'tls_alert_received',
  'http_response_incomplete',
  'http_response_header_section_size',
  'http_response_timeout',
  'http_protocol_error',
] as const satisfies readonly ProxyErrorType[];

/** The request fields `routes[].cache.bypassOn` names (lower case, as `BypassReason` names them). */
export const CREDENTIAL_FIELDS = ['authorization', 'cookie'] as const;

/** Every value `routes[].cache.serveStaleOn` accepts. */
export const SERVE_STALE_ON: readonly string[] = [...STALE_TYPES, ...STALE_STATUSES];

const routeCacheSchema = z
  .object({
    serveStaleOn: z
      .array(z.enum([...STALE_TYPES, ...STALE_STATUSES], { error: (iss) => `${JSON.stringify(iss.input)} is not a failure a stale copy can answer for; one of ${SERVE_STALE_ON.join(', ')}` }))
      .default([])
      .describe('Failures a stale stored copy answers for even when the response did not say stale-if-error: RFC 9209 error types (connection_refused, connection_timeout, http_response_timeout, destination_unavailable, connection_limit_reached, ...) and upstream statuses ("500", "502", "503", "504"); the types that can happen before a response head is passed on are accepted, any other is refused. The answer is 200 from the cache with Cache-Status `fwd=stale; detail=<type>` and Proxy-Status naming the failure. Never for a response with must-revalidate, proxy-revalidate, no-cache or s-maxage. Default none (stale-if-error in the response or request still applies).'),
    maxStale: duration('1h', 'How stale a stored copy may be to answer for a serveStaleOn failure.'),
    collapseWait: duration('5s', 'How long a miss waits for another request for the same key that is already on its way upstream (request collapsing); then it goes upstream itself. "0s": no collapsing.'),
    maxObjectSize: z.number().int().min(0).default(1048576).describe('Responses with a larger body are passed through and not stored, in bytes. Default 1048576 (1 MiB).'),
    bypassOn: z
      .array(z.enum(CREDENTIAL_FIELDS))
      .default([...CREDENTIAL_FIELDS])
      .describe('Request fields that say who the client is, with which a GET or HEAD neither reads nor fills the store: it goes upstream and its answer is not stored (Cache-Status `fwd=bypass; detail=authorization` or `detail=cookie`, the access log\'s `bypass`, gatewise_cache_bypasses_total). The field is read as it goes upstream (a request hook that removes it lets the request use the store). A stored response came from another client, and an upstream that personalises its answer by the field would have one user\'s page answer another\'s request. Leave a field out only when the route\'s answers do not depend on it (cookies only an analytics script reads): its requests then share the store, and RFC 9111 §3.5 still keeps an answer to a request with Authorization out of the store unless it says public, s-maxage or must-revalidate. Default both (as Varnish; nginx caches with either). Proxy-Authorization is not one: the gateway drops it (hop-by-hop, this hop\'s credentials), so no answer depends on it (docs/cache.md).'),
  })
  .strict();

const routeSchema = z
  .object({
    name: z.string().optional().describe('Name used in logs and metrics. Default: route-<index>.'),
    match: z
      .object({
        host: z
          .union([z.string(), z.array(z.string())])
          .optional()
          .describe('Host names (exact, or *.example.com for any subdomain). Default: any.'),
        pathPrefix: z
          .string()
          .startsWith('/', { error: (iss) => `${JSON.stringify(iss.input)} can never match: request paths start with "/"` })
          .superRefine((p, ctx) => {
            const why = prefixProblem(p);
            if (why !== undefined) ctx.addIssue({ code: 'custom', message: why });
          })
          .default('/').describe('Path prefix, matched on segment boundaries against the normalised path (percent-encoded unreserved characters decoded, dot segments resolved, empty segments merged) without its ";" path parameters (/admin;x takes the /admin route); see docs/security.md. A prefix not in that form can never match and is refused (//admin, /admin;x, /a/./b, /%61dmin, /a%2fb, a backslash, %00, "?", "#", a space or non-ASCII character: write it percent-encoded). Default "/".'),
        caseInsensitive: z
          .boolean()
          .default(false)
          .describe('Compare pathPrefix without ASCII case (A-Z as a-z; percent-encoded and other characters as they are): /ADMIN takes an /admin route. For an upstream whose router ignores case (Express\'s default, ASP.NET, IIS), where /ADMIN is /admin. The path is forwarded as the client spelled it; stripPrefix and rewritePrefix replace the matched part. Default false (compared with case, as nginx and Envoy do).'),
        methods: z.array(z.string().regex(/^[A-Z]+$/, 'methods are upper-case tokens')).optional().describe('Methods the route takes. GET brings HEAD with it (RFC 9110 §9.3.2: HEAD is GET without content). A request whose host, path and headers some routes match, but whose method none of them takes, is answered 405 with Allow listing the methods they take (and OPTIONS); an OPTIONS none of them takes is answered by the gateway, 204 with that Allow. Default: any.'),
        headers: z.record(z.string(), z.string()).optional().describe('Header name → exact value that must be present.'),
      })
      .strict()
      .default({ pathPrefix: '/', caseInsensitive: false })
      .describe('What a request must have to take this route; every condition given must hold. Default: every request.'),
    cluster: z.string().describe('Name of the cluster to send matching requests to.'),
    stripPrefix: z.boolean().default(false).describe('Remove the matched path prefix before forwarding.'),
    rewritePrefix: z.string().startsWith('/').optional().describe('Replace the matched path prefix with this one.'),
    retry: retrySchema
      .default({ tries: 3, on: ['connect-failure', 'reset', 'invalid-response', 'timeout', '502', '503', '504'], backoff: { base: '25ms', max: '250ms' }, retryAfterMax: '1s', idempotencyKey: false })
      .describe('Automatic retries. Idempotent methods only, except failures that prove the request never left the gateway.'),
    upgrades: z
      .array(z.string().regex(TOKEN, 'a protocol name (a token) such as websocket'))
      .default(['websocket'])
      .describe('Upgrade protocols tunnelled after a 101 (names compared without case or version). A request offering none of them is forwarded as plain HTTP without its Upgrade header (RFC 9110 §7.8 lets a server ignore it), so bytes after its head never reach the upstream unrouted (h2c smuggling). Default ["websocket"].'),
    cache: routeCacheSchema.optional().describe('Cache responses of this route (RFC 9111 shared cache, stale-while-revalidate, stale-if-error, request collapsing; docs/cache.md). Off unless set; the store is the top-level `cache`.'),
    host: z
      .union([z.literal('preserve'), z.literal('endpoint'), z.string().min(1).regex(/^[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?$/, 'a Host value: visible ASCII, no control bytes, no space at either end')])
      .default('preserve')
      .describe('Host header sent upstream: "preserve" (the client\'s), "endpoint" (the endpoint\'s host:port), or a literal value.'),
  })
  .strict();

export const configSchema = z
  .object({
    $schema: z.string().optional().describe('URL or path of the JSON Schema, for editors (`gatewise schema`); ignored by Gatewise.'),
    name: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9._-]*$/, 'a token: letters, digits, . _ -')
      .default('gatewise')
      .describe('This gateway\'s name in Proxy-Status and Via; also used to detect loops. Default "gatewise".'),
    listeners: z.array(listenerSchema).default([]).describe('Where the reverse gateway listens.'),
    clusters: z.record(z.string(), clusterSchema).default({}).describe('Named groups of upstream endpoints.'),
    routes: z.array(routeSchema).default([]).describe('Routes, tried in order; the first match wins.'),
    trustedProxies: z
      .array(cidr)
      .default([])
      .describe('Clients whose Forwarded / X-Forwarded-* headers are kept and extended; from anyone else they are replaced.'),
    underscoreHeaders: z
      .enum(['drop', 'forward'])
      .default('drop')
      .describe('Request header names with "_" (Transfer_Encoding, X_User): dropped by default, like nginx, since some backends read "_" as "-". "forward" passes them on, except the underscore spellings of fields the gateway writes or reads itself (X_Forwarded_For, X_Request_Id, Content_Length, ...), which are always dropped. Default drop.'),
    escapedSlashes: z
      .enum(['keep', 'reject', 'decode'])
      .default('keep')
      .describe('Encoded slashes and backslashes (%2F, %5C, any case) in a request path, as Envoy\'s path_with_escaped_slashes_action. "keep": they stay encoded, are not separators and are forwarded so (/admin%2Fpanel takes the / route; an upstream that decodes them, as nginx does, reads /admin/panel; some APIs, such as GitLab\'s, use %2F in identifiers). "reject": a path with one is refused with 400. "decode": %2F is read as "/" and %5C as "\\" before the path is normalised and routed, and the decoded path is forwarded (a backslash is then refused with 400, as a literal one is). A route pathPrefix with %2F or %5C can match only under "keep". See docs/security.md. Default keep.'),
    forwardedHeaders: z
      .enum(['x-forwarded', 'forwarded', 'both', 'none'])
      .default('x-forwarded')
      .describe('Which forwarding headers to send upstream. Default x-forwarded.'),
    requestId: z
      .object({
        header: z
          .string()
          .regex(TOKEN, 'a header name (a token), such as x-request-id')
          .default('x-request-id')
          .describe('Header carrying the request id (a header name, compared without case). Default x-request-id.'),
        trustIncoming: z.boolean().default(false).describe('Take the id from the incoming request when present. Default false.'),
      })
      .strict()
      .default({ header: 'x-request-id', trustIncoming: false })
      .describe('The request id: in the access log, the error bodies and the request sent upstream.'),
    proxyStatus: z
      .object({
        revealTopology: z
          .enum(['always', 'trusted', 'never'])
          .default('trusted')
          .describe('When Proxy-Status and error bodies include next-hop and details: always, only for trustedClients, or never. Default trusted.'),
        trustedClients: z
          .array(cidr)
          .default(['127.0.0.0/8', '::1'])
          .describe('Clients that may see topology. Default loopback.'),
        problemTypeBase: z.string().min(1).optional().describe("Prefix of the `type` URI of problem+json error bodies; the error type's anchor in docs/errors.md follows (connection-refused). Default: a name, not a link (tag:gatewise,2026:error:). Set it to where you publish docs/errors.md, ending in \"#\", to make the types links."),
      })
      .strict()
      .default({ revealTopology: 'trusted', trustedClients: ['127.0.0.0/8', '::1'] })
      .describe('What the Proxy-Status header and error bodies reveal, and to whom.'),
    dns: z
      .object({
        servers: z.array(z.string()).optional().describe('DNS servers (ip or ip:port) to resolve endpoint names with, instead of the system resolver. `localhost` and names under `.localhost` are loopback (RFC 6761) and asked of neither.'),
        timeout: duration('2s', 'Time for one DNS query.'),
        tries: z.number().int().min(1).max(5).default(2).describe('Tries per DNS query. Default 2.'),
      })
      .strict()
      .default({ timeout: '2s', tries: 2 })
      .describe('How endpoint host names are resolved.'),
    log: z
      .object({
        access: z.boolean().default(true).describe('Write one JSON access-log line per request. Default true.'),
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info').describe('Lowest level written. Default info.'),
        file: z.string().optional().describe('Write logs to this file instead of standard output.'),
      })
      .strict()
      .default({ access: true, level: 'info' })
      .describe('Logging: one JSON line per event and per request.'),
    admin: z
      .object({
        address: z.string().default('127.0.0.1').describe('Address of the admin listener. Keep it private: it can drain endpoints. Default 127.0.0.1.'),
        port: z.number().int().min(0).max(65535).describe('Port of the admin listener (/metrics, /healthz, /ready, the JSON API and the dashboard at /).'),
        token: z
          .string()
          .min(16, 'an admin token is at least 16 characters')
          .regex(/^[\x21-\x7e]+$/, 'an admin token is printable ASCII without spaces')
          .optional()
          .describe('Bearer token: when set, every admin route but /healthz, /ready, /openapi.json and the dashboard page needs `Authorization: Bearer TOKEN` (open the dashboard as /#token=TOKEN). A reload (POST /reload, SIGHUP) applies a changed token at once: the old one is refused from then on. Default: none (loopback only is the protection; required on any other address unless allowUnauthenticated).'),
        allowUnauthenticated: z
          .boolean()
          .default(false)
          .describe('Serve the admin API without `token` on an address that is not loopback (127.0.0.0/8, ::1, localhost). Without a token every peer that reaches the address can create forward users (an open proxy), reload the config, drain endpoints and read the redacted config, so `gatewise check` and `run` refuse that combination unless this is true: set it only when something else guards the address (a private management network, a firewall). Default false.'),
        failures: z.number().int().min(1).max(100_000).default(1000).describe('Recent failures kept for GET /failures and /failures/ID (a ring buffer: the oldest go first). Default 1000.'),
        lockout: authLockoutSchema.describe('Wrong bearer tokens limited per client address: past maxFailures within window, every request from that address to a route that needs the token is answered 429 locked-out (application/problem+json, Retry-After) for the lockout, the right token too, without the token being compared; open routes still answer, as to a caller without the token. See docs/security.md.'),
      })
      .strict()
      .optional()
      .describe('Admin listener: the JSON admin API (clusters, endpoints, exits, sessions, users, recent failures, redacted config, drain), Prometheus /metrics, /healthz (liveness), /ready (readiness: 503 while draining), /openapi.json and the live dashboard at /. See docs/admin.md. Off unless set.'),
    tracing: z
      .object({
        enabled: z.boolean().default(false).describe('Make OpenTelemetry spans: one per request (reverse and forward) and, on the reverse gateway, one per try at an endpoint, with the RFC 9209 error type. Default false: @opentelemetry/api is not even loaded.'),
        setup: z.string().optional().describe('An ES module imported at start when enabled (a path, relative to the working directory, or a package name) that registers a tracer provider and exporter with @opentelemetry/api. Without it, spans go to whatever provider is registered already (a library user\'s, or one loaded with node --import); with none, they cost next to nothing and go nowhere.'),
        propagate: z.boolean().default(true).describe('Send W3C traceparent upstream (reverse gateway): each try carries its own span as the parent; the client\'s traceparent is continued. Default true.'),
      })
      .strict()
      .default({ enabled: false, propagate: true })
      .describe('OpenTelemetry traces. See docs/tracing.md.'),
    shutdown: shutdownSchema,
    cache: z
      .object({
        maxSize: z.number().int().min(1024).default(67108864).describe('Bytes the in-memory store may hold (bodies, headers and a small overhead per entry); the least recently used keys go first. Default 67108864 (64 MiB).'),
        dir: z.string().min(1).optional().describe('A directory for a disk store: stored responses are also written there and survive a restart (loaded at start, bounded by maxDiskSize). Default: memory only.'),
        maxDiskSize: z.number().int().min(1024).default(1073741824).describe('Bytes the disk store may hold. Default 1073741824 (1 GiB).'),
      })
      .strict()
      .default({ maxSize: 67108864, maxDiskSize: 1073741824 })
      .describe('The response cache store shared by every route with `cache` (docs/cache.md).'),
    forward: forwardSchema.optional().describe('The forward proxy service (HTTP proxy, CONNECT, SOCKS).'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    for (const p of configCrossChecks(cfg)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
  });

export interface CrossProblem {
  path: Array<string | number>;
  message: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const listOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);


/**
 * The checks across keys (references, endpoint URLs, combinations). They read the config
 * defensively, so `gatewise check` runs them on a config that also has type errors and
 * lists every problem at once; the schema runs the same function on a valid config.
 */
export function configCrossChecks(raw: unknown): CrossProblem[] {
  const out: CrossProblem[] = [];
  if (!isObj(raw)) return out;
  const clusters = isObj(raw.clusters) ? raw.clusters : {};
  const routes = listOf(raw.routes);
  const listeners = listOf(raw.listeners);
  const admin = raw.admin;
  if (isObj(admin) && admin.token === undefined && admin.allowUnauthenticated !== true) {
    const address = typeof admin.address === 'string' ? admin.address : '127.0.0.1';
    if (!isLoopbackAddress(address)) {
      out.push({ path: ['admin', 'address'], message: `the admin listener on ${address} is not loopback and has no admin.token: anyone who reaches it could create forward users, reload the config and drain endpoints. Set admin.token, bind it to 127.0.0.1 (or ::1), or set admin.allowUnauthenticated: true when something else guards that address` });
    }
  }
  routes.forEach((r, i) => {
    if (!isObj(r)) return;
    if (typeof r.cluster === 'string' && !Object.prototype.hasOwnProperty.call(clusters, r.cluster)) {
      out.push({ path: ['routes', i, 'cluster'], message: `no cluster named "${r.cluster}" (known: ${Object.keys(clusters).join(', ') || 'none'})` });
    }
    const prefix = isObj(r.match) ? r.match.pathPrefix : undefined;
    if ((raw.escapedSlashes === 'reject' || raw.escapedSlashes === 'decode') && typeof prefix === 'string' && prefixProblem(prefix) === undefined) {
      const why = escapedSlashProblem(prefix, raw.escapedSlashes);
      if (why !== undefined) out.push({ path: ['routes', i, 'match', 'pathPrefix'], message: why });
    }
    if (r.stripPrefix === true && typeof r.rewritePrefix === 'string') {
      out.push({ path: ['routes', i, 'rewritePrefix'], message: 'use either stripPrefix or rewritePrefix, not both' });
    }
  });
  for (const [name, c] of Object.entries(clusters)) {
    if (!isObj(c)) continue;
    if ((c.balancer === 'ring-hash' || c.balancer === 'maglev') && !c.hashOn) {
      out.push({ path: ['clusters', name, 'hashOn'], message: `balancer ${c.balancer} needs hashOn (header, cookie or clientAddress)` });
    }
    if (c.client === 'native' && (c.protocol === 'h2' || c.protocol === 'h2c')) {
      out.push({ path: ['clusters', name, 'client'], message: `client native speaks HTTP/1.1 only: it cannot serve protocol ${c.protocol} (use client undici, or protocol http1)` });
    }
    if (isObj(c.limits) && c.limits.adaptive && c.limits.maxConcurrent) {
      out.push({ path: ['clusters', name, 'limits'], message: 'use either maxConcurrent or adaptive, not both' });
    }
    listOf(c.endpoints).forEach((ep, j) => {
      const url = typeof ep === 'string' ? ep : isObj(ep) && typeof ep.url === 'string' ? ep.url : undefined;
      if (url === undefined) return;
      let u: URL | undefined;
      try {
        u = new URL(url);
      } catch {
        u = undefined;
      }
      const path = typeof ep === 'string' ? ['clusters', name, 'endpoints', j] : ['clusters', name, 'endpoints', j, 'url'];
      if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
        out.push({ path, message: `"${url}" is not an http:// or https:// URL` });
      } else if (u.pathname !== '/' || u.search || u.username) {
        out.push({ path, message: `endpoint "${url}" must be scheme://host[:port] only (no path, query or credentials)` });
      } else if (c.protocol === 'h2c' && u.protocol !== 'http:') {
        out.push({ path, message: `protocol h2c is HTTP/2 without TLS: endpoint "${url}" must be http:// (use protocol h2 for https://)` });
      } else if (c.protocol === 'h2' && u.protocol !== 'https:') {
        out.push({ path, message: `protocol h2 is HTTP/2 over TLS: endpoint "${url}" must be https:// (use protocol h2c for http://)` });
      }
    });
  }
  for (const [name, c] of Object.entries(clusters)) {
    if (isObj(c) && c.h2MaxStreams !== undefined && c.protocol !== 'h2' && c.protocol !== 'h2c') {
      out.push({ path: ['clusters', name, 'h2MaxStreams'], message: `h2MaxStreams is the HTTP/2 stream limit per upstream connection: it needs protocol h2 or h2c (cluster "${name}" speaks ${typeof c.protocol === 'string' ? c.protocol : 'http1'})` });
    }
  }
  listeners.forEach((l, i) => {
    if (isObj(l) && isObj(l.http2) && l.tls === undefined && l.http2.h2c !== true) {
      out.push({ path: ['listeners', i, 'http2'], message: 'http2 on a plain listener needs h2c: true (HTTP/2 with prior knowledge), or tls on the same listener (h2 negotiated by ALPN)' });
    }
    if (isObj(l) && isObj(l.http2) && l.tls !== undefined && l.http2.h2c === true) {
      out.push({ path: ['listeners', i, 'http2', 'h2c'], message: 'h2c is HTTP/2 without TLS: on a TLS listener HTTP/2 is negotiated by ALPN (remove h2c)' });
    }
    if (isObj(l) && l.tls !== undefined && l.redirectToHttps !== undefined) {
      out.push({ path: ['listeners', i, 'redirectToHttps'], message: 'a TLS listener cannot redirect to HTTPS (it is HTTPS): set redirectToHttps on a plain listener' });
    }
    if (isObj(l) && isObj(l.tls)) out.push(...acmeChecks(l.tls, i, routes, listeners));
    if (isObj(l) && l.front === 'net' && l.tls !== undefined) {
      out.push({ path: ['listeners', i, 'front'], message: 'front: net is plain HTTP/1.1 only: a TLS listener uses front: node' });
    }
    if (isObj(l) && l.front === 'net' && l.http2 !== undefined) {
      out.push({ path: ['listeners', i, 'front'], message: 'front: net speaks HTTP/1.1 only: a listener with http2 (h2c) uses front: node' });
    }
  });
  if (listeners.length > 0 && routes.length === 0) {
    out.push({ path: ['routes'], message: 'listeners are configured but no route sends requests anywhere' });
  }
  if (listeners.length === 0 && (raw.forward === undefined || raw.forward === null)) {
    out.push({ path: ['listeners'], message: 'nothing to run: configure at least one listener (or the forward proxy)' });
  }
  return out;
}

/** A TLS listener needs certificates or acme; acme needs host names, and a plain listener to answer HTTP-01 on when it uses http-01. */
function acmeChecks(tls: Record<string, unknown>, i: number, routes: unknown[], listeners: unknown[]): CrossProblem[] {
  const out: CrossProblem[] = [];
  const acme = tls.acme;
  if (listOf(tls.certificates).length === 0 && !isObj(acme)) {
    out.push({ path: ['listeners', i, 'tls', 'certificates'], message: 'a TLS listener needs at least one certificate, or acme to obtain one' });
  }
  if (!isObj(acme)) return out;
  if (acme.hosts === undefined && acmeHostsOfRoutes(routes).length === 0) {
    out.push({ path: ['listeners', i, 'tls', 'acme', 'hosts'], message: 'acme needs host names: list them in acme.hosts, or give routes exact match.host names (wildcards cannot be validated by HTTP-01)' });
  }
  // tls-alpn-01 is answered on the TLS listener itself; http-01 (the default) needs a plain one.
  const types = Array.isArray(acme.challenges) ? acme.challenges : ['http-01'];
  if (types.includes('http-01') && !listeners.some((o) => isObj(o) && o.tls === undefined)) {
    out.push({ path: ['listeners', i, 'tls', 'acme'], message: 'acme answers HTTP-01 challenges on a plain HTTP listener (port 80 for a public CA): add one (it may redirect to HTTPS), or use challenges: [tls-alpn-01] or [dns-01]' });
  }
  return out;
}

/** The exact (not wildcard) host names the routes match, lower-case, in order, once each: acme's default names. */
export function acmeHostsOfRoutes(routes: readonly unknown[]): string[] {
  const names = new Set<string>();
  for (const r of routes) {
    if (!isObj(r) || !isObj(r.match)) continue;
    const h = r.match.host;
    for (const n of typeof h === 'string' ? [h] : listOf(h)) {
      if (typeof n === 'string' && n !== '' && !n.includes('*')) names.add(n.toLowerCase());
    }
  }
  return [...names];
}

export type ConfigInput = z.input<typeof configSchema>;
export type Config = z.output<typeof configSchema>;
export type ListenerConfig = z.output<typeof listenerSchema>;
export type ClusterConfig = z.output<typeof clusterSchema>;
export type RouteConfig = Config['routes'][number];

/** The JSON Schema for editors (`gatewise schema`). */
export function jsonSchema(): unknown {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' });
}
