import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { freePorts } from './redis.js';
import { certDir, type CertDir } from './tls-certs.js';

/**
 * Let's Encrypt's Pebble (a small ACME server for tests, Debian package `pebble`) on
 * loopback ports, with `pebble-challtestsrv` (same package) as its DNS server answering
 * every name with 127.0.0.1 (and no AAAA), so its HTTP-01 validations come to the
 * gateway's plain listener at `httpPort`. No packet leaves loopback: the ACME client
 * (acme-client, with its own pre-check skipped) talks only to 127.0.0.1, and Pebble
 * resolves names only through the test's DNS server.
 */

export function pebbleBinaries(): { pebble: string; dns: string } | undefined {
  for (const dirName of ['/usr/bin', '/usr/local/bin']) {
    const pebble = join(dirName, 'pebble');
    const dns = join(dirName, 'pebble-challtestsrv');
    if (spawnSync(pebble, ['-h']).error === undefined && spawnSync(dns, ['-h']).error === undefined) return { pebble, dns };
  }
  return undefined;
}

export const NO_PEBBLE = 'pebble is not installed (apt-get install pebble; .ci/run installs it)';

export interface PebbleOptions {
  /** Where validations go: the gateway's plain listener port (Pebble's httpPort). */
  httpPort: number;
  /** Where TLS-ALPN-01 validations go: the gateway's TLS listener port (Pebble's tlsPort). Default: a free port where nothing listens. */
  tlsPort?: number;
  /** Seconds a certificate is valid (Pebble's certificateValidityPeriod). Default: Pebble's (about five years). */
  validitySeconds?: number;
}

interface Ports {
  acme: number;
  mgmt: number;
  dns: number;
  dnsMgmt: number;
  tls: number;
}

export class TestPebble {
  readonly dirUrl: string;
  readonly managementUrl: string;
  /** pebble-challtestsrv's management API (`/set-txt`, `/clear-txt`: the DNS-01 records Pebble's validations see). */
  readonly dnsManagementUrl: string;
  /** pebble-challtestsrv's DNS server (IP:port), Pebble's resolver. */
  readonly dnsServer: string;
  /** Pebble's own TLS certificate's CA (made for the test): trust it for the directory (acme.directoryCa). */
  readonly directoryCaFile: string;
  readonly #certs: CertDir;
  readonly #ports: Ports;
  readonly #bins: { pebble: string; dns: string };
  readonly #cfgFile: string;
  readonly #agent: Agent;
  #pebble: ChildProcess | undefined;
  #dns: ChildProcess | undefined;
  /** Pebble's and its DNS server's output, for a failing test's message. */
  output = '';

  private constructor(p: { certs: CertDir; caFile: string; caPem: string; ports: Ports; bins: { pebble: string; dns: string }; cfgFile: string }) {
    this.#certs = p.certs;
    this.#ports = p.ports;
    this.#bins = p.bins;
    this.#cfgFile = p.cfgFile;
    this.directoryCaFile = p.caFile;
    this.dirUrl = `https://127.0.0.1:${p.ports.acme}/dir`;
    this.managementUrl = `https://127.0.0.1:${p.ports.mgmt}`;
    this.dnsManagementUrl = `http://127.0.0.1:${p.ports.dnsMgmt}`;
    this.dnsServer = `127.0.0.1:${p.ports.dns}`;
    this.#agent = new Agent({ connect: { ca: p.caPem } });
  }

  static async start(opts: PebbleOptions): Promise<TestPebble | undefined> {
    const bins = pebbleBinaries();
    if (bins === undefined) return undefined;
    const certs = certDir('gatewise-pebble-');
    const ca = certs.ca('Pebble WFE Test CA');
    const wfe = ca.issue('127.0.0.1', { dns: ['localhost'], ip: ['127.0.0.1'] });
    // Distinct ports (two picks in a row can return the same free port: a CI run had Pebble's
    // management interface and the DNS server on one port, and Pebble could not start).
    const [acme, mgmt, dns, dnsMgmt, tls] = (await freePorts(6)).filter((p) => p !== opts.tlsPort) as [number, number, number, number, number];
    const ports: Ports = { acme, mgmt, dns, dnsMgmt, tls: opts.tlsPort ?? tls };
    const config = {
      pebble: {
        listenAddress: `127.0.0.1:${ports.acme}`,
        managementListenAddress: `127.0.0.1:${ports.mgmt}`,
        certificate: wfe.certFile,
        privateKey: wfe.keyFile,
        httpPort: opts.httpPort,
        tlsPort: ports.tls,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        ...(opts.validitySeconds !== undefined ? { certificateValidityPeriod: opts.validitySeconds } : {}),
      },
    };
    const cfgFile = join(certs.dir, 'pebble.json');
    writeFileSync(cfgFile, JSON.stringify(config));
    const p = new TestPebble({ certs, caFile: ca.certFile, caPem: ca.cert, ports, bins, cfgFile });
    try {
      await p.#startDns();
      await p.restart();
    } catch (err) {
      await p.close();
      throw err;
    }
    return p;
  }

  async #startDns(): Promise<void> {
    const p = this.#ports;
    this.#dns = spawn(this.#bins.dns, ['-dns01', `127.0.0.1:${p.dns}`, '-management', `127.0.0.1:${p.dnsMgmt}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-http01', '', '-https01', '', '-tlsalpn01', ''], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#dns.stdout!.on('data', (b: Buffer) => (this.output += b.toString()));
    this.#dns.stderr!.on('data', (b: Buffer) => (this.output += b.toString()));
    await this.#until(async () => {
      const r = await request(`http://127.0.0.1:${p.dnsMgmt}/`).catch(() => undefined);
      await r?.body.dump();
      return r !== undefined;
    }, 'pebble-challtestsrv did not start');
  }

  /** Start Pebble (again, after `stop`): a new Pebble has a new root and forgets every account and order. */
  async restart(): Promise<void> {
    this.#pebble = spawn(this.#bins.pebble, ['-config', this.#cfgFile, '-dnsserver', `127.0.0.1:${this.#ports.dns}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    });
    this.#pebble.stdout!.on('data', (b: Buffer) => (this.output += b.toString()));
    this.#pebble.stderr!.on('data', (b: Buffer) => (this.output += b.toString()));
    await this.#until(async () => {
      const r = await request(this.dirUrl, { dispatcher: this.#agent }).catch(() => undefined);
      await r?.body.dump();
      return r?.statusCode === 200;
    }, 'pebble did not start');
  }

  /** Stop Pebble (the directory is then down: connections refused). */
  async stop(): Promise<void> {
    const c = this.#pebble;
    this.#pebble = undefined;
    if (c === undefined || c.exitCode !== null) return;
    c.kill('SIGTERM');
    await once(c, 'exit');
  }

  /** Pebble's root certificate (PEM): what a client trusts for the certificates it issues. */
  async root(): Promise<string> {
    const r = await request(`${this.managementUrl}/roots/0`, { dispatcher: this.#agent });
    return r.body.text();
  }

  /** How many orders Pebble was asked for since it started (its log says "There are now N orders"). */
  orders(): number {
    return [...this.output.matchAll(/Added order "/g)].length;
  }

  /** Accounts Pebble holds (its log's last "There are now N accounts in memory"). */
  accounts(): number {
    const all = [...this.output.matchAll(/There are now (\d+) accounts/g)];
    return all.length === 0 ? 0 : Number(all[all.length - 1]![1]);
  }

  async #until(check: () => Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${what} within 15 s: ${this.output.slice(-2000)}`);
  }

  async close(): Promise<void> {
    await this.stop();
    const d = this.#dns;
    this.#dns = undefined;
    if (d !== undefined && d.exitCode === null) {
      d.kill('SIGTERM');
      await once(d, 'exit');
    }
    await this.#agent.close();
    this.#certs.remove();
  }
}
