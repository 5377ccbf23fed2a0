import { isIP } from 'node:net';
import { z } from 'zod';
import { parseDuration } from './duration.js';

/**
 * Config of the forward proxy service (`forward:` in the main config).
 * Defaults live here so editors show them; durations are strings such as "30s".
 * Validation is self-contained (config imports nothing but failure types).
 */

const duration = (def: string, what: string) =>
  z
    .string()
    .refine((s) => parseDuration(s) !== undefined, { message: 'expected a duration such as "250ms", "30s", "5m" or "1h"' })
    .default(def)
    .describe(`${what} Duration such as "30s"; default ${def}.`);

const HOST_PATTERN_RE = /^(\*|(\*\.)?[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*\.?|[0-9A-Fa-f:.]+)$/;
const SCRYPT_RE = /^scrypt\$\d{1,8}\$\d{1,3}\$\d{1,3}\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/;

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
  .union([z.number().int(), z.string()])
  .refine(isPortSpec, { message: 'expected a port (1-65535) or a range such as "8000-8999"' })
  .describe('A port number, or an inclusive range written "low-high".');

export const forwardRuleSchema = z
  .object({
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

const ruleList = (what: string) => z.array(forwardRuleSchema).default([]).describe(what);

export const forwardListenerSchema = z
  .object({
    address: z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IP address' }).default('127.0.0.1').describe('Local address to listen on.'),
    port: z.number().int().min(0).max(65535).describe('TCP port; 0 picks a free one.'),
    protocols: z
      .array(z.enum(['http', 'socks5', 'socks4']))
      .min(1)
      .default(['http', 'socks5', 'socks4'])
      .describe('Protocols served on this port, told apart by the first byte (0x05 SOCKS5, 0x04 SOCKS4, else HTTP).'),
  })
  .describe('One listening socket of the forward proxy.');

export const forwardUserSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[^:\s]+$/, 'user names cannot contain ":" or spaces')
      .describe('User name, as sent in Proxy-Authorization or the SOCKS5 username.'),
    password: z
      .string()
      .regex(SCRYPT_RE, 'expected a scrypt hash (scrypt$N$r$p$salt$hash); create one with `gatewise passwd`')
      .describe('Password hash in the form scrypt$N$r$p$saltB64$hashB64, as printed by `gatewise passwd`.'),
    allow: z.array(forwardRuleSchema).optional().describe("This user's allow rules; checked before the rules for everyone."),
    deny: z.array(forwardRuleSchema).optional().describe("This user's deny rules; checked before the rules for everyone."),
    maxConnections: z.number().int().positive().optional().describe('Most requests, tunnels and associations this user may have open at once (overrides limits.maxConnectionsPerUser).'),
    maxTunnels: z.number().int().positive().optional().describe('Most CONNECT/SOCKS tunnels and UDP associations this user may have open at once (overrides limits.maxTunnelsPerUser).'),
  })
  .describe('A user of the forward proxy.');

export const forwardSchema = z
  .object({
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
    revealDetails: z.boolean().default(false).describe('Show next-hop and detail text in Proxy-Status and error bodies (topology; for trusted clients).'),
    accessLog: z.boolean().default(true).describe('Write one JSON line per request, tunnel and association.'),
    auth: z
      .object({
        required: z.boolean().default(true).describe('Require a user name and password. Turning this off logs a warning at start.'),
        realm: z.string().regex(/^[^"\\\r\n]*$/).default('gatewise').describe('Realm in Proxy-Authenticate.'),
        cacheTtl: duration('1m', 'How long a successful password check is remembered (scrypt is slow on purpose); "0s" disables.'),
        users: z.array(forwardUserSchema).default([]).describe('Users and their scrypt password hashes.'),
      })
      .prefault({})
      .describe('Who may use the proxy.'),
    rules: z
      .object({
        allowPrivate: z.boolean().default(false).describe('Allow private, loopback, link-local and metadata addresses (10/8, 127/8, 169.254/16, fc00::/7, …). Off by default.'),
        defaultAction: z.enum(['allow', 'deny']).default('allow').describe('What happens to destinations no allow rule matches.'),
        allow: ruleList('Allow rules for everyone. An allow rule whose cidrs contain a private address also lets it through.'),
        deny: ruleList('Deny rules for everyone.'),
        connectPorts: z.array(portSpec).min(1).default([443]).describe('Ports HTTP CONNECT may open tunnels to (SOCKS is not limited by this).'),
      })
      .prefault({})
      .describe('Where the proxy may connect; checked on the resolved address.'),
    timeouts: z
      .object({
        connect: duration('10s', 'Connecting to a destination.'),
        dns: duration('5s', 'Resolving a destination name.'),
        handshake: duration('10s', 'A client has this long to send a complete request head or SOCKS handshake.'),
        tunnelIdle: duration('5m', 'Close a tunnel when no byte has moved either way for this long.'),
        udpIdle: duration('2m', 'End a UDP association when no datagram has moved for this long.'),
        responseHeaders: duration('60s', 'Waiting for a destination\'s response headers (HTTP proxy).'),
        responseBodyIdle: duration('5m', 'Gap allowed between response body bytes (HTTP proxy).'),
        clientKeepAlive: duration('5s', 'Keep an idle client connection open this long between requests.'),
      })
      .prefault({})
      .describe('Time limits.'),
    limits: z
      .object({
        maxConnectionsPerUser: z.number().int().positive().default(256).describe('Requests, tunnels and associations one user may have open at once.'),
        maxTunnelsPerUser: z.number().int().positive().default(64).describe('Tunnels and UDP associations one user may have open at once.'),
        maxClientConnections: z.number().int().positive().default(4096).describe('Client connections per listener.'),
        maxHeaderSize: z.number().int().min(1024).max(1048576).default(16384).describe('Largest request header section, in bytes.'),
      })
      .prefault({})
      .describe('Capacity limits.'),
  })
  .superRefine((c, ctx) => {
    if (c.auth.required && c.auth.users.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['auth', 'users'], message: 'auth.required is true but no users are configured: add users or set auth.required to false' });
    }
    const names = new Set<string>();
    c.auth.users.forEach((u, i) => {
      if (names.has(u.name)) ctx.addIssue({ code: 'custom', path: ['auth', 'users', i, 'name'], message: `duplicate user ${u.name}` });
      names.add(u.name);
    });
    const bound = new Set<string>();
    c.listeners.forEach((l, i) => {
      if (l.port === 0) return;
      const k = `${l.address}|${l.port}`;
      if (bound.has(k)) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'port'], message: `${l.address}:${l.port} is listed twice` });
      bound.add(k);
    });
  })
  .describe('The forward proxy service: HTTP proxy with CONNECT, SOCKS5 and SOCKS4.');

export type ForwardConfig = z.output<typeof forwardSchema>;
export type ForwardConfigInput = z.input<typeof forwardSchema>;
export type ForwardRule = z.output<typeof forwardRuleSchema>;
export type ForwardListener = z.output<typeof forwardListenerSchema>;
export type ForwardUser = z.output<typeof forwardUserSchema>;
