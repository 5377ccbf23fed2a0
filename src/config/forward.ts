import { isIP } from 'node:net';
import { ipValue } from '../net/ip-address.js';
import { z } from 'zod';
import { durationString } from './duration-schema.js';
import { redisUrl } from './redis-url.js';
import { passwordHashProblem } from './scrypt-hash.js';
import { forwardListenerTlsSchema } from './tls.js';
import { parseDuration } from './duration.js';
import { shutdownSchema } from './shutdown.js';
import { authLockoutSchema } from './auth-lockout.js';

/**
 * Config of the forward proxy service (`forward:` in the main config).
 * Defaults live here so editors show them; durations are strings such as "30s".
 * Validation is self-contained (config imports nothing but failure types).
 */

/** The code of the "auth required, no users" problem: a library user's AuthProvider answers for the users instead. */
export const NO_USERS = 'no_users';

const duration = (def: string, what: string) =>
  durationString()
    .refine((s) => parseDuration(s) !== undefined, { message: 'expected a duration such as "250ms", "30s", "5m" or "1h"' })
    .default(def)
    .describe(`${what} Duration such as "30s"; default ${def}.`);


const HOST_PATTERN_RE = /^(\*|(\*\.)?[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\.?|[0-9A-Fa-f:.]+)$/;

function isCidr(s: string): boolean {
  const [addr, prefix, extra] = s.split('/');
  if (extra !== undefined || !addr) return false;
  const fam = isIP(addr);
  if (fam === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (fam === 4 ? 32 : 128);
}

function isPortSpec(p: number | string): boolean {
  if (typeof p === 'number') return Number.isInteger(p) && p >= 1 && p <= 65535;
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(p);
  if (!m) return false;
  const lo = Number(m[1]);
  const hi = m[2] !== undefined ? Number(m[2]) : lo;
  return lo >= 1 && hi <= 65535 && lo <= hi;
}

const portSpec = z
  .union([z.number().int().min(1).max(65535), z.string()])
  .refine(isPortSpec, { message: 'expected a port (1-65535) or a range such as "8000-8999"' })
  .describe('A port number, or an inclusive range written "low-high".');

export const forwardRuleSchema = z.strictObject({
    hosts: z
      .array(z.string().regex(HOST_PATTERN_RE, 'expected a host name, "*.example.com" or "*"'))
      .optional()
      .describe('Host name patterns: "example.com" (exactly), "*.example.com" (subdomains), "*" (any).'),
    cidrs: z
      .array(z.string().refine(isCidr, { message: 'expected an IP address or CIDR range such as "10.0.0.0/8"' }))
      .optional()
      .describe('Address ranges, matched against the resolved address ("10.0.0.0/8", "2001:db8::/32", "127.0.0.1").'),
    ports: z.array(portSpec).optional().describe('Destination ports or port ranges.'),
  })
  .refine((r) => Boolean(r.hosts?.length || r.cidrs?.length || r.ports?.length), {
    message: 'a rule needs at least one of hosts, cidrs or ports',
  })
  .describe('A destination rule; it matches when every selector it has matches.');

/**
 * The default of `rules.httpPorts`: where an absolute-form request (`GET http://host:port/`) may
 * go. In the spirit of Squid's `Safe_ports` for a proxy that speaks only HTTP: 80, 443 and the
 * unprivileged ports 1025–65535, less the ports of text protocols that would read an HTTP
 * request's lines as their own commands (a cross-protocol relay): the high ports of the Fetch
 * standard's "bad ports" (what browsers refuse for the same reason: 1719, 1720 H.323, 1723 PPTP,
 * 2049 NFS, 3659 apple-sasl, 4045 lockd, 4190 ManageSieve, 5060, 5061 SIP, 6000 X11, 6566 SANE,
 * 6665–6669, 6697 IRC, 10080 Amanda), Redis (6379, Sentinel 26379) and memcached (11211).
 * Below 1025 everything but 80 and 443 is refused (SMTP 25, POP 110, IMAP 143, …).
 */
export const DEFAULT_HTTP_PORTS: ReadonlyArray<number | string> = [
  80,
  443,
  '1025-1718',
  '1721-1722',
  '1724-2048',
  '2050-3658',
  '3660-4044',
  '4046-4189',
  '4191-5059',
  '5062-5999',
  '6001-6378',
  '6380-6565',
  '6567-6664',
  '6670-6696',
  '6698-10079',
  '10081-11210',
  '11212-26378',
  '26380-65535',
];

const ruleList = (what: string) => z.array(forwardRuleSchema).default([]).describe(what);

const usernameParams = z.string().min(1).max(200).regex(/^[A-Za-z0-9_.\-]+$/, 'expected username parameters such as "pool-dc" or "session-a1-ttl-10m"');

const cidr = z.string().refine(isCidr, { message: 'expected an IP address or CIDR range such as "203.0.113.0/24"' });

/** One entry of a user's address allowlist: a CIDR, or a CIDR with its own username parameters. */
export const allowFromSchema = z
  .union([cidr, z.strictObject({ cidr: cidr.describe('The client addresses.'), params: usernameParams.optional().describe('Username parameters for clients from these addresses (e.g. "pool-dc-session-a1"); absent: the listener\'s usernameParams.') })])
  .describe('Client addresses that authenticate as this user without a password: a CIDR ("203.0.113.7", "198.51.100.0/24") or { cidr, params }.');

export const forwardListenerSchema = z.strictObject({
    address: z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IP address' }).default('127.0.0.1').describe('Local address to listen on.'),
    port: z.number().int().min(0).max(65535).describe('TCP port; 0 picks a free one.'),
    protocols: z
      .array(z.enum(['http', 'socks5', 'socks4']))
      .min(1)
      .default(['http', 'socks5', 'socks4'])
      .describe('Protocols served on this port, told apart by the first byte (0x05 SOCKS5, 0x04 SOCKS4, else HTTP).'),
    usernameParams: usernameParams.optional().describe('Username parameters (as after the user name, e.g. "pool-dc-session-a1") for clients this listener identifies by their address (users[].allowFrom) whose allowlist entry has no params of its own.'),
    tls: forwardListenerTlsSchema
      .optional()
      .describe('An HTTPS proxy: clients speak TLS to the proxy (a ClientHello, first byte 0x16), then the listener\'s protocols inside it (HTTP proxy requests and CONNECT; SOCKS too when listed). Plain connections are refused (HTTP with a 400 saying so). Certificates, policy and client certificates as on reverse listeners (docs/tls.md), or a certificate obtained by ACME (acme, TLS-ALPN-01); hsts does not apply. Off unless set.'),
  })
  .describe('One listening socket of the forward proxy.');

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** "10GB" → 10000000000, "512MiB" → 536870912, 1000 → 1000; undefined when not a size. */
export function parseByteSize(v: number | string): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(v);
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * (BYTE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? 1));
}

const byteSize = z
  .union([z.number().int().nonnegative(), z.string()])
  .refine((v) => parseByteSize(v) !== undefined, { message: 'expected a byte count or a size such as "500MB" or "10GiB"' })
  .transform((v) => parseByteSize(v)!)
  .describe('Bytes: a number, or a size such as "500MB", "10GB", "1GiB".');

const byteLimits = (what: string) =>
  z.strictObject({
      up: byteSize.optional().describe(`Bytes from clients to destinations per ${what} (absent = unlimited).`),
      down: byteSize.optional().describe(`Bytes from destinations to clients per ${what} (absent = unlimited).`),
    })
    .optional()
    .describe(`Byte quota per ${what} (UTC), up and down counted separately.`);

function isProxyUrlString(s: string): boolean {
  try {
    const u = new URL(s);
    return ['http:', 'socks5:', 'socks5h:', 'socks:'].includes(u.protocol) && u.hostname !== '' && (u.pathname === '' || u.pathname === '/') && !u.search;
  } catch {
    return false;
  }
}

/** RFC 1929: the user name and the password each have one length byte. */
const SOCKS5_CREDENTIAL_MAX_BYTES = 255;

/**
 * A SOCKS5 proxy URL whose user name or password is longer than RFC 1929 can carry (255
 * bytes each, UTF-8, after percent-decoding): the problem, or undefined. Never the value.
 */
function socks5CredentialProblem(s: string): string | undefined {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return undefined;
  }
  if (u.protocol === 'http:') return undefined;
  const bytes = (part: string): number => {
    try {
      return Buffer.byteLength(decodeURIComponent(part), 'utf8');
    } catch {
      return Buffer.byteLength(part, 'utf8');
    }
  };
  const user = bytes(u.username);
  const pass = bytes(u.password);
  const what = user > SOCKS5_CREDENTIAL_MAX_BYTES ? `user name is ${user} bytes` : pass > SOCKS5_CREDENTIAL_MAX_BYTES ? `password is ${pass} bytes` : undefined;
  return what && `this SOCKS5 proxy URL's ${what} (UTF-8, percent-decoded); RFC 1929 carries at most ${SOCKS5_CREDENTIAL_MAX_BYTES}`;
}

const proxyUrl = z
  .string()
  .refine(isProxyUrlString, { message: 'expected a proxy URL such as "http://user:pass@host:3128" or "socks5://user:pass@host:1080"' })
  .superRefine((s, ctx) => {
    const problem = socks5CredentialProblem(s);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  })
  .describe('An upstream proxy: http://[user:pass@]host:port (CONNECT, absolute-form for plain HTTP) or socks5://[user:pass@]host:port (user name and password at most 255 bytes each once percent-decoded, as RFC 1929 carries them; longer is refused).');

const POOL_NAME_RE = /^[A-Za-z0-9_]{1,64}$/;

export const egressPoolSchema = z.strictObject({
    addresses: z
      .array(
        z.union([
          z.string().refine((s) => isIP(s) !== 0, { message: 'expected a local IP address' }),
          z.strictObject({
            address: z.string().refine((s) => isIP(s) !== 0, { message: 'expected a local IP address' }).describe('A local source address.'),
            weight: z.number().positive().default(1).describe('Relative share for random picks. Default 1.'),
          }),
        ]),
      )
      .optional()
      .describe('Local source addresses (IPv4 or IPv6) outgoing connections are bound to ("datacenter proxies"). Each must be configured on this host.'),
    proxies: z
      .array(
        z.union([
          proxyUrl,
          z.strictObject({ url: proxyUrl, weight: z.number().positive().default(1).describe('Relative share for random picks.') }),
          z.strictObject({ chain: z.array(proxyUrl).min(1).describe('Hops in order: the first is dialed, each asks for the next, the last reaches the destination.'), weight: z.number().positive().default(1) }),
        ]),
      )
      .optional()
      .describe('Upstream proxies ("rotating proxies"): URLs, { url, weight }, or { chain: [url, ...] } for a chain of proxies.'),
    strategy: z
      .enum(['request', 'round-robin', 'random', 'least-used', 'hash', 'sticky'])
      .default('request')
      .describe('How an exit is picked when no session is asked for: request (a new random exit per connection/request), round-robin, random (weighted), least-used, hash (of the destination host), sticky (per user for sessionTtl).'),
    sessionTtl: duration('10m', 'How long a username session (or a sticky user) keeps its exit, unless the username says -ttl-…'),
    sessionIdle: duration('5m', 'A session unused for this long ends early.'),
    maxAttempts: z.number().int().min(1).max(10).default(3).describe('Exits tried for one connection when the earlier ones fail before anything was sent.'),
    failure: z.strictObject({
        threshold: z.number().int().min(1).default(3).describe('Consecutive failures after which an exit (or the exit for one domain) cools down.'),
        cooldown: duration('30s', 'First cool-down; it doubles each time the exit trips again.'),
        maxCooldown: duration('10m', 'Longest cool-down.'),
      })
      .prefault({})
      .describe('Failure markers: connect failures, 407s, timeouts and resets through an exit count against it.'),
  })
  .refine((p) => Boolean(p.addresses?.length || p.proxies?.length), { message: 'a pool needs addresses or proxies' })
  .describe('A pool of exits with a rotation strategy.');

export const routingRuleSchema = z.strictObject({
    users: z.array(z.string()).optional().describe('Users this rule applies to (absent = everyone).'),
    hosts: z.array(z.string().regex(HOST_PATTERN_RE, 'expected a host name, "*.example.com" or "*"')).optional().describe('Destination host patterns (absent = any). SOCKS5 UDP datagrams are routed by them one by one, as TCP connections to the same host.'),
    pool: z.string().describe('The pool for matching connections.'),
  })
  .describe('Routing rule: first match wins; a -pool-NAME username parameter overrides the rules.');

export const planSchema = z.strictObject({
    maxConnections: z.number().int().positive().optional().describe('Requests, tunnels and associations open at once (over: 429).'),
    requestsPerSecond: z.number().int().positive().optional().describe('New requests, tunnels and associations per second (over: 429 with Retry-After).'),
    bytesPerDay: byteLimits('day'),
    bytesPerMonth: byteLimits('month'),
    pools: z.array(z.string()).optional().describe('Egress pools the plan may use (absent = any); another pool: 403.'),
    allow: z.array(forwardRuleSchema).optional().describe('Allow rules for every user of the plan (before the rules for everyone).'),
    deny: z.array(forwardRuleSchema).optional().describe('Deny rules for every user of the plan (before the rules for everyone).'),
    debug: z.boolean().optional().describe('Add the Gatewise-Debug header (exit, pool, bytes up, what decided) to every answer of this plan\'s users (a user turns it off with -debug-0). Default false; a user turns it on alone with -debug-1.'),
  })
  .describe('What a customer bought. Over a limit: HTTP 429/403 with Proxy-Status error=http_request_denied and a detail naming the limit and its reset; SOCKS reply 0x02 (SOCKS4 0x5b); UDP datagrams dropped and counted.');

export const forwardUserSchema = z.strictObject({
    name: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[^:\s]+$/, 'user names cannot contain ":" or spaces')
      .describe('User name, as sent in Proxy-Authorization or the SOCKS5 username.'),
    password: z
      .string()
      .superRefine((v, ctx) => {
        const problem = passwordHashProblem(v);
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional()
      .describe('Password hash in the form scrypt$N$r$p$saltB64$hashB64, as printed by `gatewise passwd`. Optional for a user with allowFrom (address allowlist only).'),
    allow: z.array(forwardRuleSchema).optional().describe("This user's allow rules; checked before the rules for everyone."),
    deny: z.array(forwardRuleSchema).optional().describe("This user's deny rules; checked before the rules for everyone."),
    maxConnections: z.number().int().positive().optional().describe('Most requests, tunnels and associations this user may have open at once (overrides limits.maxConnectionsPerUser).'),
    maxTunnels: z.number().int().positive().optional().describe('Most CONNECT/SOCKS tunnels and UDP associations this user may have open at once (overrides limits.maxTunnelsPerUser).'),
    plan: z.string().optional().describe('The plan (key of plans) whose limits apply to this user.'),
    disabled: z.boolean().optional().describe('A disabled user is refused as a wrong password would be (407; SOCKS5 auth failure); set by the admin API, or automatically at expires or trafficLimit.'),
    disabledReason: z.string().max(200).optional().describe('Why the user was disabled (written by the admin API: "expired", "trafficLimit", or the operator\'s words).'),
    expires: z.string().datetime({ offset: true }).optional().describe('ISO 8601 time after which the user is refused and disabled (e.g. "2027-01-01T00:00:00Z").'),
    trafficLimit: byteSize.optional().describe('Bytes up and down together per trafficPeriod; reaching it refuses new requests of the user (429) and cuts open tunnels and HTTP bodies at their next chunk, and disables the user within a second.'),
    trafficPeriod: z.enum(['day', 'month']).optional().describe('The period trafficLimit counts (UTC). Default month.'),
    allowFrom: z.array(allowFromSchema).optional().describe('IP allowlist: clients from these addresses are this user without a password (HTTP proxy and CONNECT without Proxy-Authorization, SOCKS5 "no authentication", SOCKS4 without a name:password USERID). Allowlists of two users must not overlap.'),
  })
  .refine((u) => u.password !== undefined || (u.allowFrom?.length ?? 0) > 0, { message: 'a user needs a password, an allowFrom list, or both', path: ['password'] })
  .describe('A user of the forward proxy.');

export const forwardSchema = z.strictObject({
    listeners: z
      .array(forwardListenerSchema)
      .min(1)
      .default([{ address: '127.0.0.1', port: 3128, protocols: ['http', 'socks5', 'socks4'] }])
      .describe('Where the forward proxy listens.'),
    name: z
      .string()
      .regex(/^[A-Za-z0-9._\-]+$/)
      .default('gatewise')
      .describe('This proxy\'s name in Via and Proxy-Status.'),
    problemTypeBase: z.string().min(1).optional().describe("Prefix of the `type` URI of problem+json error bodies; the error type's anchor in docs/errors.md follows (connection-refused). Default: a name, not a link (tag:gatewise,2026:error:). Set it to where you publish docs/errors.md, ending in \"#\", to make the types links."),
    revealDetails: z.boolean().default(false).describe('Show next-hop and detail text in Proxy-Status and error bodies (topology; for trusted clients).'),
    accessLog: z.boolean().default(true).describe('Write one JSON line per request, tunnel and association.'),
    auth: z.strictObject({
        required: z.boolean().default(true).describe('Require a user name and password. Turning this off logs a warning at start.'),
        realm: z.string().regex(/^[^"\\\r\n]*$/).default('gatewise').describe('Realm in Proxy-Authenticate.'),
        cacheTtl: duration('1m', 'How long a successful password check is remembered (scrypt is slow on purpose); "0s" disables.'),
        failureCacheTtl: duration('5m', 'How long a failed check is remembered (keyed by an HMAC of name and password, never the password), so the same wrong password again is refused without scrypt; "0s" disables.'),
        maxConcurrentChecks: z
          .number()
          .int()
          .positive()
          .default(32)
          .describe('Password checks (scrypt runs) waiting or running at once, from all clients; past it: HTTP 503 with Retry-After and Proxy-Status error=http_request_denied, SOCKS auth failure. Default 32.'),
        maxConcurrentChecksPerSource: z
          .number()
          .int()
          .positive()
          .default(4)
          .describe('Password checks waiting or running at once from one client address; past it: HTTP 429 with Retry-After and Proxy-Status error=http_request_denied, SOCKS auth failure. Default 4.'),
        checkThreads: z
          .number()
          .int()
          .min(1)
          .max(64)
          .default(1)
          .describe("Worker threads that run scrypt, apart from libuv's thread pool where DNS lookups run. Default 1."),
        users: z.array(forwardUserSchema).default([]).describe('Users and their scrypt password hashes.'),
        usersFile: z.string().optional().describe('A YAML or JSON file with more users (a list, or { users: [...] }), reloaded on change without restart; a bad file keeps the old users.'),
        usersFileCheck: duration('5s', 'How often the users file is checked for changes (besides fs.watch).'),
        lockout: authLockoutSchema.describe('Wrong passwords limited per client address (HTTP proxy, CONNECT, SOCKS5, SOCKS4): past maxFailures within window, every attempt from that address is refused for the lockout before its password is checked (no scrypt run), the right password too: HTTP 429 with Retry-After and Proxy-Status error=http_request_denied, SOCKS5 the RFC 1929 failure reply then close, SOCKS4 request rejected. See docs/security.md.'),
      })
      .prefault({})
      .describe('Who may use the proxy.'),
    rules: z.strictObject({
        allowPrivate: z.boolean().default(false).describe('Allow private, loopback, link-local and metadata addresses (10/8, 127/8, 169.254/16, fc00::/7, …). Off by default.'),
        defaultAction: z.enum(['allow', 'deny']).default('allow').describe('What happens to destinations no allow rule matches.'),
        allow: ruleList('Allow rules for everyone. An allow rule whose cidrs contain a private address also lets it through.'),
        deny: ruleList('Deny rules for everyone.'),
        connectPorts: z.array(portSpec).min(1).default([443]).describe('Ports HTTP CONNECT may open tunnels to (SOCKS is not limited by this).'),
        httpPorts: z
          .array(portSpec)
          .min(1)
          .default([...DEFAULT_HTTP_PORTS])
          .describe(
            'Ports an absolute-form HTTP request (GET http://host:port/, through the HTTP proxy) may be sent to; the port omitted is 80 (443 for https://). Another port: 403 http_request_denied, nothing dialled. Default: 80, 443 and 1025-65535 except the ports of text protocols an HTTP request could speak to: 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665-6669, 6697, 10080 (the Fetch standard\'s bad ports), 6379, 26379 (Redis) and 11211 (memcached); see docs/security.md. SOCKS is not limited by this.',
          ),
      })
      .prefault({})
      .describe('Where the proxy may connect; checked on the resolved address.'),
    timeouts: z.strictObject({
        connect: duration('10s', 'Connecting to a destination.'),
        dns: duration('5s', 'Resolving a destination name.'),
        handshake: duration('10s', 'A client has this long, from its connection, to send its first complete request head or SOCKS handshake; "0s": no limit.'),
        handshakeFloor: duration(
          '1s',
          'Under pressure the handshake time shrinks toward this floor: a connection accepted while the listener holds more than half of limits.maxClientConnections gets max(handshakeFloor, handshake × 2 × (1 − load)), load = connections / cap. Also how long a connection refused at a limit may take to send its first bytes (to be answered in its protocol).',
        ),
        tunnelIdle: duration('5m', 'Close a tunnel when no byte has moved either way for this long; "0s": never.'),
        udpIdle: duration('2m', 'End a UDP association when no datagram has moved for this long.'),
        responseHeaders: duration('60s', 'Waiting for a destination\'s response headers (HTTP proxy); "0s": no limit.'),
        responseBodyIdle: duration('5m', 'Gap allowed between response body bytes (HTTP proxy); "0s": no limit.'),
        clientKeepAlive: duration('5s', 'Keep an idle client connection open this long between requests. Answers say so in `Keep-Alive: timeout=`, whole seconds rounded down; under 1s with no hint (a timeout=0 would tell clients not to reuse the connection).'),
        clientBody: duration('30s', 'Longest gap between two reads of a request body (HTTP proxy; nginx client_body_timeout), and the grace before clientBodyMinRate applies: then 408 request_timeout (or the connection is cut once the response started) and the destination request is aborted. Time the destination holds the body back does not count. "0s": no limit (and no minimum rate).'),
        clientBodyMinRate: z
          .number()
          .int()
          .min(0)
          .default(500)
          .describe('Lowest average request body rate (HTTP proxy), in bytes per second, once clientBody has passed: a body of N bytes may take clientBody + N / rate in all (Apache mod_reqtimeout MinRate), so a trickle that beats the gap timer is cut too. 0: no minimum. Default 500.'),
        send: duration('60s', 'Longest time a client may leave response bytes unread (its buffer full; nginx send_timeout, HAProxy timeout client): HTTP responses and tunnels are then cut, and the destination connection with them. "0s": no limit.'),
      })
      .prefault({})
      .describe('Time limits.'),
    shutdown: shutdownSchema,
    usernameGrammar: z.strictObject({
        separator: z.string().min(1).max(3).default('-').describe('Between the base name, keys and values.'),
        session: z.string().regex(/^[A-Za-z0-9_]+$/).default('session').describe('Key for the session id: same id, same exit.'),
        ttl: z.string().regex(/^[A-Za-z0-9_]+$/).default('ttl').describe('Key for the session lifetime ("10m").'),
        pool: z.string().regex(/^[A-Za-z0-9_]+$/).default('pool').describe('Key for the egress pool.'),
        debug: z.string().regex(/^[A-Za-z0-9_]+$/).default('debug').describe('Key for per-request debug: NAME-debug-1 adds the Gatewise-Debug header (exit, pool, bytes up, what decided) to the answers of that request or tunnel; -debug-0 turns a plan\'s debug off. See docs/forward-proxy.md.'),
        maxTtl: duration('24h', 'The longest session lifetime a username may ask for with the ttl key; a longer one is refused (407 Proxy User Name Not Understood, the parameter and this cap named).'),
      })
      .prefault({})
      .describe('Username parameters: NAME-session-ID-ttl-10m-pool-NAME-debug-1 by default, each part optional, any order; NAME authenticates.'),
    egress: z.strictObject({
        pools: z.record(z.string().regex(POOL_NAME_RE, 'pool names are letters, digits and _'), egressPoolSchema).default({}).describe('Named pools of exits.'),
        routing: z.array(routingRuleSchema).default([]).describe('Which pool a connection uses, by user and destination host; first match wins.'),
        defaultPool: z.string().optional().describe('Pool for connections no rule matches; absent = leave directly.'),
      })
      .prefault({})
      .describe('How connections leave: local address pools and upstream proxy pools.'),
    plans: z.record(z.string().regex(POOL_NAME_RE, 'plan names are letters, digits and _'), planSchema).default({}).describe('Customer plans, referenced by users[].plan.'),
    state: z.strictObject({
        file: z.string().optional().describe('Write usage counters to this JSON file (read by `gatewise usage --state FILE`) and load them at start. In-memory state only (with --workers: written by the primary); with `redis` the usage lives in Redis and this is not used.'),
        flushInterval: duration('10s', 'How often the state file is written.'),
        redis: z.strictObject({
            url: redisUrl('Where the shared Redis is: redis://[user:password@]host:port[/db], or rediss:// for TLS.'),
            keyPrefix: z.string().min(1).max(64).default('gatewise:').describe('Put before every key and channel, so several fleets can share one Redis.'),
            connectTimeout: duration('2s', 'Give up one connection attempt after this long (Redis is retried in the background; the node runs on local state meanwhile).'),
          })
          .optional()
          .describe('Share limits, sessions, leases, cool-downs, usage and wrong-credential lockouts (forward.auth.lockout, admin.lockout) with every node that names the same Redis (docs/fleet.md). Absent: this process (with --workers: the primary) holds them.'),
        timeout: duration('50ms', 'Longest a request waits for the shared state (Redis, or the primary with --workers), counted as the time of the store: while the event loop of this node is blocked the wait is extended, to at most 4 times this; past it the node answers from local state and says it is degraded.'),
        leaseTtl: duration('15s', "A node's concurrency leases lapse this long after it stops (it renews them every third of it)."),
        credit: z
          .strictObject({
            max: z.number().int().min(0).max(10_000).default(64).describe('Largest credit block: how many requests (of requestsPerSecond) and connection slots (of maxConnections, maxTunnels) a node takes from Redis at once and spends without asking it. 0: off (one Redis call per admission).'),
            share: z.number().gt(0).max(0.5).default(0.02).describe("A block is at most this share of the limit (floor): limits under 1/share get no block, only one Redis call for the admissions of one event-loop turn."),
          })
          .prefault({})
          .describe('Credit blocks (with redis): a node keeps up to a block of a busy user\'s rate and connection limits to spend locally, so most admissions ask Redis nothing. Bound: over any interval the fleet admits at most N × block requests past requestsPerSecond (N nodes); maxConnections is never exceeded, but a node may be refused while other nodes hold up to a block each unused (docs/fleet.md).'),
      })
      .prefault({})
      .describe('Where usage counters, limits and sessions live: in memory (optionally saved to a file), shared by workers through the primary, or in Redis for a fleet.'),
    limits: z.strictObject({
        maxConnectionsPerUser: z.number().int().positive().default(256).describe('Requests, tunnels and associations one user may have open at once.'),
        maxTunnelsPerUser: z.number().int().positive().default(64).describe('Tunnels and UDP associations one user may have open at once.'),
        maxClientConnections: z
          .number()
          .int()
          .positive()
          .default(4096)
          .describe('Client connections per listener. Past it a connection is answered in its protocol (HTTP 503 connection_limit_reached with Retry-After, SOCKS5 reply 0x01, SOCKS4 0x5B), not reset.'),
        maxConnectionsPerSource: z
          .number()
          .int()
          .nonnegative()
          .default(256)
          .describe('Client connections per listener from one client address; past it the same answer as at maxClientConnections. 0: no per-address limit. Default 256.'),
        maxHeaderSize: z.number().int().min(1024).max(1048576).default(16384).describe('Largest request header section, in bytes.'),
        maxHeaderCount: z
          .number()
          .int()
          .min(8)
          .max(10000)
          .default(256)
          .describe('Most header lines in a request head (HTTP proxy and CONNECT); past it: 431 with Proxy-Status error=http_request_error (never header lines dropped without a word, as Node does past its maxHeadersCount). Default 256.'),
      })
      .prefault({})
      .describe('Capacity limits.'),
  })
  .superRefine((c, ctx) => {
    for (const p of forwardCrossChecks(c)) ctx.addIssue({ code: 'custom', path: p.path, message: p.message, ...(p.code ? { params: { gatewise: p.code } } : {}) });
  })
  .describe('The forward proxy service: HTTP proxy with CONNECT, SOCKS5 and SOCKS4.');

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const listOf = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/**
 * The forward proxy's checks across keys (users, plans, pools, listeners), reading the config
 * defensively: `gatewise check` runs them on a config with type errors too (paths relative to
 * `forward`), the schema on a valid one.
 */
export function forwardCrossChecks(raw: unknown): Array<{ path: Array<string | number>; message: string; code?: string }> {
  const out: Array<{ path: Array<string | number>; message: string; code?: string }> = [];
  if (!isObj(raw)) return out;
  const auth = isObj(raw.auth) ? raw.auth : {};
  const users = listOf(auth.users);
  const plans = isObj(raw.plans) ? raw.plans : {};
  const egress = isObj(raw.egress) ? raw.egress : {};
  const pools = isObj(egress.pools) ? egress.pools : {};
  const has = (o: Record<string, unknown>, k: unknown): boolean => typeof k === 'string' && Object.prototype.hasOwnProperty.call(o, k);
  if (auth.required !== false && users.length === 0 && !auth.usersFile) {
    out.push({ path: ['auth', 'users'], code: NO_USERS, message: 'auth.required is true but no users are configured: add users or set auth.required to false' });
  }
  const names = new Set<unknown>();
  users.forEach((u, i) => {
    if (!isObj(u)) return;
    if (names.has(u.name)) out.push({ path: ['auth', 'users', i, 'name'], message: `duplicate user ${String(u.name)}` });
    names.add(u.name);
  });
  users.forEach((u, i) => {
    if (isObj(u) && typeof u.plan === 'string' && !has(plans, u.plan)) out.push({ path: ['auth', 'users', i, 'plan'], message: `no plan named ${u.plan}` });
  });
  for (const o of allowlistOverlaps(users.map((u) => (isObj(u) ? { name: String(u.name), allowFrom: listOf(u.allowFrom) } : { name: '', allowFrom: [] })))) {
    out.push({ path: ['auth', 'users', o.b.user, 'allowFrom', o.b.index], message: o.message });
  }
  listOf(egress.routing).forEach((r, i) => {
    if (isObj(r) && typeof r.pool === 'string' && !has(pools, r.pool)) out.push({ path: ['egress', 'routing', i, 'pool'], message: `no pool named ${r.pool}` });
  });
  if (typeof egress.defaultPool === 'string' && !has(pools, egress.defaultPool)) {
    out.push({ path: ['egress', 'defaultPool'], message: `no pool named ${egress.defaultPool}` });
  }
  for (const [name, p] of Object.entries(plans)) {
    if (!isObj(p)) continue;
    listOf(p.pools).forEach((pool, i) => {
      if (typeof pool === 'string' && !has(pools, pool)) out.push({ path: ['plans', name, 'pools', i], message: `no pool named ${pool}` });
    });
  }
  const bound = new Set<string>();
  listOf(raw.listeners).forEach((l, i) => {
    if (!isObj(l) || typeof l.port !== 'number' || l.port === 0) return;
    const k = `${typeof l.address === 'string' ? l.address : '127.0.0.1'}|${l.port}`;
    if (bound.has(k)) out.push({ path: ['listeners', i, 'port'], message: `${k.replace('|', ':')} is listed twice` });
    bound.add(k);
  });
  return out;
}

/** A CIDR's address and prefix length (a bare address is a /32 or /128). */
function cidrParts(s: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  if (typeof s !== 'string' || !isCidr(s)) return undefined;
  const [address, p] = s.split('/') as [string, string | undefined];
  const family = isIP(address) === 4 ? 'ipv4' : 'ipv6';
  return { address, prefix: p === undefined ? (family === 'ipv4' ? 32 : 128) : Number(p), family };
}

/** The CIDR of an allowFrom entry (a string or { cidr }). */
export function allowFromCidr(e: unknown): string | undefined {
  return typeof e === 'string' ? e : isObj(e) && typeof e.cidr === 'string' ? e.cidr : undefined;
}

type Overlap = { a: { user: number; index: number }; b: { user: number; index: number }; message: string };
interface RangeEntry {
  /** Position in the order the users list them (the order the pairs are named in). */
  pos: number;
  user: number;
  index: number;
  name: string;
  cidr: string;
}
/** One range (start, prefix) and the entries that list it, by user. */
interface RangeGroup {
  start: bigint;
  end: bigint;
  byUser: Map<number, RangeEntry[]>;
}

/**
 * Allowlist entries of two users that overlap (one client address would pick two users):
 * CIDR ranges are nested or apart, so two overlap exactly when the wider one holds the
 * narrower one. Each pair is named by user index and entry index, both ways, in the order the
 * entries are listed. O(n log n) plus the pairs found: the ranges of a family sorted by start
 * (wider first), a sweep keeps the chain of ranges that hold the current one (at most 33 or
 * 129 deep), and entries that list the same range are grouped by user.
 */
export function allowlistOverlaps(users: ReadonlyArray<{ name: string; allowFrom?: readonly unknown[] }>): Overlap[] {
  const keyed: Array<{ e: RangeEntry; family: 'ipv4' | 'ipv6'; start: bigint; end: bigint; prefix: number }> = [];
  const all: RangeEntry[] = [];
  users.forEach((u, ui) =>
    (u.allowFrom ?? []).forEach((entry, index) => {
      const c = allowFromCidr(entry);
      const parts = c === undefined ? undefined : cidrParts(c);
      if (!parts) return;
      const e: RangeEntry = { pos: all.length, user: ui, index, name: u.name, cidr: c! };
      all.push(e);
      const host = BigInt((parts.family === 'ipv4' ? 32 : 128) - parts.prefix);
      const start = (ipValue(parts.address, parts.family) >> host) << host;
      keyed.push({ e, family: parts.family, start, end: start + (1n << host) - 1n, prefix: parts.prefix });
    }),
  );
  const pairs: Array<[number, number]> = [];
  const emit = (xs: readonly RangeEntry[], ys: readonly RangeEntry[]): void => {
    for (const p of xs) for (const q of ys) pairs.push(p.pos < q.pos ? [p.pos, q.pos] : [q.pos, p.pos]);
  };
  // Entries of different users in two groups (one holding the other).
  const cross = (x: RangeGroup, y: RangeGroup): void => {
    for (const [ux, xs] of x.byUser) for (const [uy, ys] of y.byUser) if (ux !== uy) emit(xs, ys);
  };
  for (const family of ['ipv4', 'ipv6'] as const) {
    const sorted = keyed.filter((k) => k.family === family).sort((p, q) => (p.start < q.start ? -1 : p.start > q.start ? 1 : p.prefix - q.prefix || p.e.pos - q.e.pos));
    const chain: RangeGroup[] = [];
    for (let i = 0; i < sorted.length; ) {
      const first = sorted[i]!;
      const group: RangeGroup = { start: first.start, end: first.end, byUser: new Map() };
      for (; i < sorted.length && sorted[i]!.start === first.start && sorted[i]!.prefix === first.prefix; i++) {
        const e = sorted[i]!.e;
        const list = group.byUser.get(e.user);
        if (list) list.push(e);
        else group.byUser.set(e.user, [e]);
      }
      while (chain.length > 0 && chain[chain.length - 1]!.end < group.start) chain.pop();
      // Every range left in the chain holds this one (nested or apart).
      for (const outer of chain) cross(outer, group);
      // Users listing the same range.
      const lists = [...group.byUser.values()];
      for (let x = 0; x < lists.length; x++) for (let y = x + 1; y < lists.length; y++) emit(lists[x]!, lists[y]!);
      chain.push(group);
    }
  }
  pairs.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  return pairs.map(([i, j]) => {
    const x = all[i]!;
    const y = all[j]!;
    return { a: { user: x.user, index: x.index }, b: { user: y.user, index: y.index }, message: `allowFrom ${y.cidr} of user ${y.name} overlaps allowFrom ${x.cidr} of user ${x.name}: one client address would be two users` };
  });
}

export type ForwardConfig = z.output<typeof forwardSchema>;
export type ForwardConfigInput = z.input<typeof forwardSchema>;
export type ForwardListener = z.output<typeof forwardListenerSchema>;
export type ForwardUser = z.output<typeof forwardUserSchema>;
