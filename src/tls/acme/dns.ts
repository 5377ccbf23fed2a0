import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';

/**
 * DNS-01 (RFC 8555 §8.4): the TXT record `_acme-challenge.<name>` holds the challenge's
 * digest while the ACME server validates. A provider puts it in the zone and takes it out
 * again; the gateway has no DNS vendor SDK, so one provider is built in (`exec`, a command
 * run with the action, the name and the value, as lego's exec provider) and others are
 * registered through the library API (`registerDnsProvider`).
 */
export interface DnsProvider {
  /** Put the TXT record `fqdn` = `value` in the zone (added beside others of the same name: a wildcard and its base name share one). */
  present(fqdn: string, value: string): Promise<void>;
  /** Take that record out again (after the validation, whatever its outcome). */
  cleanup(fqdn: string, value: string): Promise<void>;
}

/** Makes a provider from the listener's `tls.acme.dns.options` (its own settings, checked by the factory). */
export type DnsProviderFactory = (options: Record<string, unknown>) => DnsProvider;

const providers = new Map<string, DnsProviderFactory>();

/** Register a DNS-01 provider under `name` (`tls.acme.dns.provider`); a second registration of a name replaces the first. */
export function registerDnsProvider(name: string, factory: DnsProviderFactory): void {
  if (name === 'exec') throw new Error('the DNS-01 provider name "exec" is the built-in one');
  providers.set(name, factory);
}

/** The registered provider names (with the built-in exec). */
export function dnsProviderNames(): string[] {
  return ['exec', ...providers.keys()];
}

/** The DNS settings of `tls.acme.dns` the solver reads. */
export interface DnsSettings {
  provider: string;
  command?: readonly string[];
  timeoutMs: number;
  options?: Record<string, unknown>;
  propagation?: { resolvers: readonly string[]; timeoutMs: number; intervalMs: number };
}

/** A provider by name: the built-in exec or a registered one; undefined when none has this name. */
export function dnsProvider(s: DnsSettings): DnsProvider | undefined {
  if (s.provider === 'exec') return s.command === undefined ? undefined : new ExecDnsProvider(s.command, s.timeoutMs);
  return providers.get(s.provider)?.(s.options ?? {});
}

/** A command failed (exit status, signal or timeout): the step that called it fails with it. */
export class DnsProviderError extends Error {
  readonly code = 'GATEWISE_DNS_PROVIDER_FAILED';
}

/**
 * The built-in provider: `command` (argv, no shell) run with `present|cleanup`, the FQDN (with
 * its final dot) and the value appended, as lego's exec provider calls its program. Exit 0 is
 * success; anything else (or no exit within `timeoutMs`) fails the challenge with the
 * command's stderr.
 */
export class ExecDnsProvider implements DnsProvider {
  readonly #argv: readonly string[];
  readonly #timeoutMs: number;

  constructor(argv: readonly string[], timeoutMs: number) {
    this.#argv = argv;
    this.#timeoutMs = timeoutMs;
  }

  present(fqdn: string, value: string): Promise<void> {
    return this.#run('present', fqdn, value);
  }

  cleanup(fqdn: string, value: string): Promise<void> {
    return this.#run('cleanup', fqdn, value);
  }

  #run(action: string, fqdn: string, value: string): Promise<void> {
    const [cmd, ...args] = this.#argv;
    return new Promise((resolve, reject) => {
      execFile(cmd!, [...args, action, fqdn, value], { timeout: this.#timeoutMs, maxBuffer: 64 * 1024 }, (err, _stdout, stderr) => {
        if (err === null) return resolve();
        const how = (err as { killed?: boolean }).killed === true ? `did not finish within ${this.#timeoutMs} ms` : `failed (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
        reject(new DnsProviderError(`DNS-01 exec provider: ${cmd} ${action} ${fqdn} ${how}${stderr ? `: ${String(stderr).trim().slice(0, 500)}` : ''}`, { cause: err }));
      });
    });
  }
}

/** `_acme-challenge.<name>.` for a DNS identifier (a wildcard's record is its base name's, RFC 8555 §8.4). */
export function challengeRecordName(identifier: string): string {
  return `_acme-challenge.${identifier.replace(/^\*\./, '')}.`;
}

/**
 * Wait until every resolver answers the TXT record with `value` (polled every `intervalMs`,
 * at most `timeoutMs`), so the CA is told only once the record can be seen. Resolvers are
 * `host:port` of the zone's authoritative servers (or any the CA's view matches).
 */
export async function waitForTxt(fqdn: string, value: string, p: { resolvers: readonly string[]; timeoutMs: number; intervalMs: number }): Promise<void> {
  const deadline = Date.now() + p.timeoutMs;
  const name = fqdn.endsWith('.') ? fqdn.slice(0, -1) : fqdn;
  for (const server of p.resolvers) {
    const r = new Resolver({ timeout: Math.min(2000, p.timeoutMs), tries: 1 });
    r.setServers([server]);
    for (;;) {
      const found = await r.resolveTxt(name).then((rs) => rs.some((chunks) => chunks.join('') === value), () => false);
      if (found) break;
      if (Date.now() >= deadline) throw new DnsProviderError(`DNS-01: the TXT record ${fqdn} with the challenge value was not seen at ${server} within ${p.timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, p.intervalMs));
    }
  }
}
