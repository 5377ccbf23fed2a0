import { Failure } from '../../failure/index.js';
import { customerFacingFailure } from '../../tenants/limit-refusal.js';
import type { AddressGuard, DialTarget, ResolvedAddress } from '../../egress/index.js';
import { CidrSet } from './cidr-set.js';
import { HostPatterns, hostNeed, readHost, type CheckedHost, type HostNeed } from '../../egress/index.js';
import { canonicalAddress, embeddedIPv4s } from '../../net/ip-canonical.js';
import { PortSet, type PortSpec } from './port-set.js';
import { isPrivateAddress } from './private-ranges.js';
import { ownListenerAt } from '../../net/own-listeners.js';

/**
 * Where the forward proxy may connect. Evaluation, first decision wins:
 *
 *   the unspecified address (0.0.0.0, ::), which reaches this host → refuse
 *   this process's admin listener (its address and port: net/own-listeners.ts) → refuse
 *   for the user's own rules, then the rules for everyone:
 *     a matching deny rule   → refuse
 *     a matching allow rule  → allow (skips the later levels' deny rules)
 *   the address is private (loopback, RFC 1918, link-local, metadata, …) and neither
 *     `allowPrivate` nor an allow rule whose `cidrs` contain it → refuse
 *   no allow rule matched and `defaultAction` is deny → refuse
 *   otherwise allow.
 *
 * A rule matches when every selector it has matches (hosts by name pattern, cidrs by
 * the resolved address, ports by the destination port). A deny rule also judges the IPv4 address
 * an IPv6 one carries (NAT64 64:ff9b::/96, local-use 64:ff9b:1::/48 in each RFC 6052 layout,
 * 6to4, SIIT, Teredo: `embeddedIPv4s`): its cidrs by the resolved address's, its IP host patterns
 * by the named literal's. Allow rules do not: a carried spelling opens nothing its IPv4 form's
 * allow rule opens. Rules without `cidrs` are also applied before name resolution, so a denied
 * name is never looked up.
 */

export interface RuleSpec {
  hosts?: readonly string[];
  cidrs?: readonly string[];
  ports?: readonly PortSpec[];
}

export interface RuleSetSpec {
  allow?: readonly RuleSpec[];
  deny?: readonly RuleSpec[];
}

export interface GlobalRulesSpec extends RuleSetSpec {
  allowPrivate: boolean;
  defaultAction: 'allow' | 'deny';
}

class Rule {
  readonly hosts: HostPatterns | undefined;
  readonly cidrs: CidrSet | undefined;
  readonly #ports: PortSet | undefined;

  constructor(spec: RuleSpec) {
    this.hosts = spec.hosts?.length ? new HostPatterns(spec.hosts) : undefined;
    this.cidrs = spec.cidrs?.length ? new CidrSet(spec.cidrs) : undefined;
    this.#ports = spec.ports?.length ? new PortSet(spec.ports) : undefined;
  }

  /** Host and port selectors only (cidrs ignored). `host`: read once per check (`DestinationRules.#read`). */
  matchesName(host: CheckedHost, port: number): boolean {
    if (this.hosts && !this.hosts.matches(host)) return false;
    if (this.#ports && !this.#ports.has(port)) return false;
    return true;
  }

  matches(host: CheckedHost, port: number, address: string): boolean {
    if (!this.matchesName(host, port)) return false;
    return !this.cidrs || this.cidrs.has(address);
  }

  /**
   * A deny rule's match by what the destination carries: its host patterns by the host or one
   * of `hosts` (the IPv4 literals the named IPv6 literal carries), its cidrs by `address` or one
   * of `addresses` (the IPv4 addresses the resolved one carries), its ports by the port.
   */
  matchesCarried(host: CheckedHost, hosts: readonly CheckedHost[], port: number, address: string, addresses: readonly string[]): boolean {
    if (this.#ports && !this.#ports.has(port)) return false;
    const hp = this.hosts;
    if (hp && !hp.matches(host) && !hosts.some((c) => hp.matches(c))) return false;
    const cidrs = this.cidrs;
    return !cidrs || cidrs.has(address) || addresses.some((a) => cidrs.has(a));
  }
}

const NO_HOSTS: readonly CheckedHost[] = [];
const NO_ADDRESSES: readonly string[] = [];

class RuleSet {
  readonly allow: Rule[];
  readonly deny: Rule[];
  /** A deny rule has cidrs (they judge the IPv4 address an IPv6 one carries). */
  readonly denyCidrs: boolean;
  /** A deny rule has a host pattern that is an IP address (it judges the IPv4 literal an IPv6 one carries). */
  readonly denyHostAddresses: boolean;

  constructor(spec: RuleSetSpec | undefined) {
    this.allow = (spec?.allow ?? []).map((r) => new Rule(r));
    this.deny = (spec?.deny ?? []).map((r) => new Rule(r));
    this.denyCidrs = this.deny.some((r) => r.cidrs !== undefined);
    this.denyHostAddresses = this.deny.some((r) => r.hosts?.hasAddress === true);
  }

  get empty(): boolean {
    return this.allow.length === 0 && this.deny.length === 0;
  }
}

/** `checkName` at one level: no rule decided, go on to the next level. */
const CONTINUE = Symbol('continue');

function label(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

const MAX_USER_GUARDS = 10_000;

export class DestinationRules {
  readonly #global: RuleSet;
  readonly #allowPrivate: boolean;
  readonly #defaultDeny: boolean;
  readonly #users = new Map<string, RuleSet>();
  /** What the rules' host patterns need read of a destination's host at each check. */
  readonly #hostNeed: HostNeed;
  /** A deny rule of any level has cidrs: else the IPv4 address an IPv6 one carries is not looked for (every IPv6 dial and datagram asks). */
  readonly #denyCidrs: boolean;
  /** A deny rule of any level has an IP host pattern: else the IPv4 literal an IPv6 literal carries is not looked for. */
  readonly #denyHostAddresses: boolean;

  /** The proxy's scope of its own listeners (net/own-listeners.ts), refused whatever the rules; '' (the default): none. */
  readonly #ownScope: string;

  constructor(global: GlobalRulesSpec, users: ReadonlyArray<{ name: string } & RuleSetSpec> = [], ownScope = '') {
    this.#ownScope = ownScope;
    this.#global = new RuleSet(global);
    this.#allowPrivate = global.allowPrivate;
    this.#defaultDeny = global.defaultAction === 'deny';
    for (const u of users) {
      const rs = new RuleSet(u);
      if (!rs.empty) this.#users.set(u.name, rs);
    }
    const levels = [this.#global, ...this.#users.values()];
    this.#hostNeed = hostNeed(levels.flatMap((l) => [...l.allow, ...l.deny].map((r) => r.hosts)));
    this.#denyCidrs = levels.some((l) => l.denyCidrs);
    this.#denyHostAddresses = levels.some((l) => l.denyHostAddresses);
  }

  /** True when the user has rules of their own (their upstream pools are kept apart). */
  hasOwnRules(user: string | null): boolean {
    return user !== null && this.#users.has(user);
  }

  /**
   * A deny rule matched the destination the client named: the detail says whose rule (the
   * user's own or their plan's, or the rules for everyone) and is shown to the client
   * (customer-facing: it names only what the client asked for).
   */
  #denied(level: RuleSet, user: string | null, nextHop: string): Failure {
    const whose = level !== this.#global && user !== null ? `a deny rule of user ${user} or of their plan` : 'a rule';
    return customerFacingFailure({ type: 'http_request_denied', phase: 'route', nextHop, detail: `destination ${nextHop} is denied by ${whose}` });
  }

  /** The user's own rules (and their plan's), when they have any; the global ones apply after them. */
  #own(user: string | null): RuleSet | undefined {
    return user !== null ? this.#users.get(user) : undefined;
  }

  /**
   * Before resolution: refuse names that no address could make acceptable. The user's own
   * level first, then the global one; no array, and the `host:port` label is made only for a
   * refusal (this runs once per tunnel). With `defaultAction: deny`, a name no allow rule can
   * match whatever it resolves to (none matches its name and port) is refused here, as the
   * address stage would refuse it (SSRF audit: the name stage let it go, and through an upstream
   * proxy exit nothing judged it again).
   */
  checkName(user: string | null, host: string, port: number): Failure | undefined {
    return this.#nameStage(user, host, port, false);
  }

  /**
   * A name this host does not resolve, because an upstream proxy exit resolves it: the only
   * judgement it gets (egress/exit.ts `refuseLiteral`, through the guard's `unresolved`). The
   * name stage, except that an allow rule with `cidrs` allows nothing, since no address is known
   * here to be in them; then `defaultAction`. Deny rules with `cidrs` and the private ranges
   * cannot judge it (docs/forward-proxy.md). SSRF audit: a user's allow rule with `cidrs` "may
   * match" any name, which ended the name stage before the global deny rules, and the name went
   * to the exit past a deny of it for everyone (test/forward/rules-unresolved-names.test.ts).
   */
  checkUnresolved(user: string | null, host: string, port: number): Failure | undefined {
    return this.#nameStage(user, host, port, true);
  }

  #nameStage(user: string | null, host: string, port: number, unresolved: boolean): Failure | undefined {
    const own = this.#own(user);
    const h = readHost(host, this.#hostNeed);
    const ch = this.#carriedHosts(h);
    if (own !== undefined) {
      const r = this.#checkNameAt(own, user, host, h, ch, port, unresolved);
      if (r !== CONTINUE) return r;
    }
    const r = this.#checkNameAt(this.#global, user, host, h, ch, port, unresolved);
    if (r !== CONTINUE) return r;
    return this.#defaultDeny ? this.#notAllowed(label(host, port)) : undefined;
  }

  /** No allow rule matched and `defaultAction` is deny (the name stage and the address stage alike). */
  #notAllowed(nextHop: string): Failure {
    return new Failure({ type: 'http_request_denied', phase: 'route', nextHop, detail: `destination ${nextHop} is not allowed by any rule` });
  }

  /**
   * The IPv4 literals the named host carries when it is an IPv6 literal (NAT64, 6to4, SIIT,
   * Teredo), as the host patterns read them; empty unless a deny rule has an IP host pattern
   * (probe of session 38: a deny of `hosts: ["127.0.0.2"]` let `64:ff9b::7f00:2` through, which
   * a deny cidr of 127.0.0.2/32 refuses; test/forward/rules-carried-ipv4.test.ts).
   */
  #carriedHosts(h: CheckedHost): readonly CheckedHost[] {
    const a = h.address;
    if (!this.#denyHostAddresses || a === undefined || !a.includes(':')) return NO_HOSTS;
    const v4s = embeddedIPv4s(a);
    return v4s.length === 0 ? NO_HOSTS : v4s.map((v) => ({ name: v, address: v }));
  }

  /** One level's name stage; `unresolved`: an allow rule with cidrs cannot match (no address will be known). */
  #checkNameAt(level: RuleSet, user: string | null, host: string, h: CheckedHost, ch: readonly CheckedHost[], port: number, unresolved: boolean): Failure | undefined | typeof CONTINUE {
    const deny = level.deny;
    for (let i = 0; i < deny.length; i++) {
      const r = deny[i]!;
      if (!r.cidrs && (r.matchesName(h, port) || (ch.length !== 0 && r.matchesCarried(h, ch, port, '', NO_ADDRESSES)))) return this.#denied(level, user, label(host, port));
    }
    // An allow rule that may match (by name) ends the name stage: the address stage decides.
    const allow = level.allow;
    for (let i = 0; i < allow.length; i++) {
      const r = allow[i]!;
      if ((!unresolved || r.cidrs === undefined) && r.matchesName(h, port)) return undefined;
    }
    return CONTINUE;
  }

  /** After resolution: judge the address the connection would go to. */
  checkAddress(user: string | null, host: string, port: number, address: string): Failure | undefined {
    const canon = canonicalAddress(address);
    if (!canon) return new Failure({ type: 'destination_ip_prohibited', phase: 'connect', nextHop: label(host, port), detail: `not an IP address: ${address}` });
    const addr = canon.address;
    // The unspecified address is never a destination: a connection to it reaches this host (the
    // bound source address, else loopback), which no rule on 0.0.0.0 or :: judges (adversarial
    // review, session 35: with allowPrivate and a cidr rule denying 127.0.0.0/8, `0.0.0.0` passed).
    if (addr === '0.0.0.0' || addr === '0:0:0:0:0:0:0:0') {
      const nextHop = label(host, port);
      return new Failure({ type: 'destination_ip_prohibited', phase: 'connect', nextHop, detail: `address ${addr} of ${nextHop} is the unspecified address, which reaches this host` });
    }
    // This process's admin listener, whatever the rules: on loopback without a token it takes a
    // local caller for the operator (adversarial probe, session adminsec: a user allowed
    // 127.0.0.0/8 read /config and drained an endpoint). One Map lookup by port.
    if (ownListenerAt(addr, port)) {
      const nextHop = label(host, port);
      return new Failure({ type: 'destination_ip_prohibited', phase: 'connect', nextHop, detail: `${nextHop} is this gateway's admin listener, which the proxy never connects to` });
    }
    // Its own listener: the loop's connection comes from this host, where an address
    // allowlist (allowFrom) would take it for another user without a password (net/own-listeners.ts).
    if (this.#ownScope !== '' && ownListenerAt(addr, port, 'forward', this.#ownScope)) {
      const nextHop = label(host, port);
      return new Failure({ type: 'destination_ip_prohibited', phase: 'connect', nextHop, detail: `${nextHop} is this proxy's own listener, which the proxy never connects to` });
    }
    let allowedBy: Rule | undefined;
    const own = this.#own(user);
    const h = readHost(host, this.#hostNeed);
    // The IPv4 address an IPv6 one carries (NAT64, 6to4, SIIT: ip-canonical.ts): deny cidrs
    // judge it too, as the private ranges do (adversarial probe: a deny of 127.0.0.2/32 let
    // 64:ff9b::7f00:2 through; test/forward/rules.test.ts). Allow cidrs do not: a carried
    // spelling opens nothing its IPv4 form's allow rule opens. Undefined for IPv4, and when no
    // deny rule has cidrs (no work; the private ranges decode it themselves, isPrivateAddress).
    // Every layout's reading of the local-use NAT64 prefix is one (ip-canonical.ts).
    const carried = canon.family === 6 && this.#denyCidrs ? embeddedIPv4s(addr) : NO_ADDRESSES;
    const ch = this.#carriedHosts(h);
    if (own !== undefined) {
      const r = this.#checkAddressAt(own, user, host, h, ch, port, addr, carried);
      if (r instanceof Failure) return r;
      allowedBy = r;
    }
    if (allowedBy === undefined) {
      const r = this.#checkAddressAt(this.#global, user, host, h, ch, port, addr, carried);
      if (r instanceof Failure) return r;
      allowedBy = r;
    }
    if (!this.#allowPrivate && isPrivateAddress(addr) && !allowedBy?.cidrs?.has(addr)) {
      const nextHop = label(host, port);
      return new Failure({ type: 'destination_ip_prohibited', phase: 'connect', nextHop, detail: `address ${addr} of ${nextHop} is private, loopback or link-local` });
    }
    if (!allowedBy && this.#defaultDeny) return this.#notAllowed(label(host, port));
    return undefined;
  }

  /** One level's rules for an address (`ch`, `carried`: the IPv4 literals the host and the IPv4 addresses the address carry, judged by deny rules too): a deny's refusal, the allow rule that matched, or undefined (none). */
  #checkAddressAt(level: RuleSet, user: string | null, host: string, h: CheckedHost, ch: readonly CheckedHost[], port: number, addr: string, carried: readonly string[]): Failure | Rule | undefined {
    const deny = level.deny;
    const extra = ch.length !== 0 || carried.length !== 0;
    for (let i = 0; i < deny.length; i++) {
      const r = deny[i]!;
      if (r.matches(h, port, addr) || (extra && r.matchesCarried(h, ch, port, addr, carried))) {
        const nextHop = label(host, port);
        return r.cidrs
          ? new Failure({ type: 'destination_ip_prohibited', phase: 'connect', nextHop, detail: `address ${addr} of ${nextHop} is denied by a rule` })
          : this.#denied(level, user, nextHop);
      }
    }
    const allow = level.allow;
    for (let i = 0; i < allow.length; i++) if (allow[i]!.matches(h, port, addr)) return allow[i];
    return undefined;
  }

  /** The dialer's guard for one user. */
  /** The guard of requests without a user (no authentication): made once, not per tunnel. */
  #anonymousGuard: AddressGuard | undefined;
  readonly #userGuards = new Map<string, AddressGuard>();

  guardFor(user: string | null): AddressGuard {
    if (user === null) return (this.#anonymousGuard ??= this.#guard(null));
    // One guard per user, kept (a closure per tunnel before; bounded like the other per-user maps).
    let g = this.#userGuards.get(user);
    if (g === undefined) {
      if (this.#userGuards.size >= MAX_USER_GUARDS) this.#userGuards.clear();
      g = this.#guard(user);
      this.#userGuards.set(user, g);
    }
    return g;
  }

  /** A guard for `user`: the address stage, and the judgement of a name an upstream exit resolves (`checkUnresolved`). Made once per user. */
  #guard(user: string | null): AddressGuard {
    const unresolved = (t: DialTarget): Failure | undefined => this.checkUnresolved(user, t.host, t.port);
    return Object.assign((a: ResolvedAddress, t: DialTarget) => this.checkAddress(user, t.host, t.port, a.address), { unresolved });
  }
}
