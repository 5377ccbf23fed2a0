import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { startLab, type Lab } from '../../src/lab/index.js';
import { validateConfig, type ConfigError } from '../../src/config/load.js';
import { registerDnsProvider } from '../../src/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { NO_PEBBLE, TestPebble, pebbleBinaries } from '../helpers/pebble.js';
import { freePort } from '../helpers/redis.js';
import { acmeEvents } from '../helpers/acme.js';

/**
 * DNS-01 and wildcard certificates against Pebble, whose resolver is pebble-challtestsrv
 * (both from Debian's `pebble`): the TXT records are written through challtestsrv's
 * management API (`/set-txt`, `/clear-txt`) by the built-in exec provider (a small Node
 * script run as `<command> present|cleanup <name> <value>`), or by a provider registered
 * through the library API. Everything on loopback.
 */

const skip = pebbleBinaries() === undefined ? NO_PEBBLE : false;
const WILDCARD = '*.wild.gatewise.test';
const UNDER = ['a.wild.gatewise.test', 'b.wild.gatewise.test'];

let lab: Lab;
let work: string;
let script: string;

before(async () => {
  if (skip) return;
  lab = await startLab();
  work = mkdtempSync(join(tmpdir(), 'gatewise-dns01-'));
  // The exec provider's command: argv <mgmt> <log> present|cleanup <fqdn> <value>, exit 0 on success.
  script = join(work, 'dns-hook.mjs');
  writeFileSync(script, `
import { appendFileSync } from 'node:fs';
const [mgmt, log, action, host, value] = process.argv.slice(2);
const path = action === 'present' ? '/set-txt' : action === 'cleanup' ? '/clear-txt' : undefined;
if (!path) { console.error('unknown action ' + action); process.exit(2); }
const body = action === 'present' ? { host, value } : { host };
const r = await fetch(mgmt + path, { method: 'POST', body: JSON.stringify(body) });
if (!r.ok) { console.error('challtestsrv answered ' + r.status); process.exit(1); }
appendFileSync(log, action + ' ' + host + ' ' + value + '\\n');
`);
});

after(async () => {
  await lab?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The certificate a TLS handshake with `servername` gets from the gateway (verified against Pebble's root). */
function served(port: number, servername: string, root: string): Promise<{ authorized: boolean; error?: string; names: string }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ca: root, ALPNProtocols: ['http/1.1'] }, () => {
      const cert = s.getPeerX509Certificate();
      resolve({ authorized: s.authorized, error: s.authorizationError?.toString(), names: cert?.subjectAltName ?? '' });
      s.destroy();
    });
    s.on('error', reject);
    s.setTimeout(20_000, () => s.destroy(new Error('handshake timeout')));
  });
}

function gatewayConfig(p: { httpsPort: number; storage: string; pebble: TestPebble; dns: Record<string, unknown> }): Parameters<typeof startTestGateway>[0] {
  return {
    listeners: [
      {
        address: '127.0.0.1',
        port: p.httpsPort,
        tls: {
          acme: {
            directory: p.pebble.dirUrl,
            directoryCa: p.pebble.directoryCaFile,
            acceptTerms: true,
            storage: p.storage,
            hosts: [WILDCARD, 'wild.gatewise.test'],
            challenges: ['dns-01'],
            dns: p.dns,
            backoff: { initial: '200ms', max: '2s' },
          },
        },
      },
    ] as never,
    clusters: { lab: { endpoints: [lab.url] } },
    routes: [{ cluster: 'lab' }],
  };
}

describe('ACME DNS-01: a wildcard certificate through the exec provider, with the propagation check', { skip }, () => {
  let pebble: TestPebble;
  let gw: TestGateway;
  let events: ReturnType<typeof acmeEvents>;
  let httpsPort: number;
  let log: string;

  before(async () => {
    // HTTP-01 and TLS-ALPN-01 validations would go to ports where nothing listens: only DNS-01 can pass.
    pebble = (await TestPebble.start({ httpPort: await freePort() }))!;
    httpsPort = await freePort();
    log = join(work, 'exec.log');
    events = acmeEvents();
    gw = await startTestGateway(gatewayConfig({
      httpsPort,
      storage: join(work, 'exec'),
      pebble,
      dns: { command: [process.execPath, script, pebble.dnsManagementUrl, log], timeout: '20s', propagation: { resolvers: [pebble.dnsServer], timeout: '20s', interval: '100ms' } },
    }));
  });

  after(async () => {
    events?.stop();
    await gw?.close();
    await pebble?.close();
  });

  test('obtained; served by SNI for two names under the wildcard and for the base name; each record presented then cleaned up', { timeout: 120_000 }, async () => {
    const e = await events.next((x) => x.event === 'obtained' || x.event === 'failed');
    assert.equal(e.event, 'obtained', `${JSON.stringify(e)}\n${pebble.output.slice(-3000)}`);
    assert.deepEqual(e.names, [WILDCARD, 'wild.gatewise.test']);
    const root = await pebble.root();
    for (const name of [...UNDER, 'wild.gatewise.test']) {
      const r = await served(httpsPort, name, root);
      assert.ok(r.authorized, `${name}: ${r.error}`);
      assert.match(r.names, /DNS:\*\.wild\.gatewise\.test/, `${name}: ${r.names}`);
    }
    const cert = new X509Certificate(readFileSync(join(work, 'exec', `${WILDCARD}.crt`)));
    assert.ok(cert.checkHost('a.wild.gatewise.test') !== undefined);
    // Two authorizations (the wildcard and its base name), one record name: present and cleanup for each value.
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    const presents = lines.filter((l) => l.startsWith('present _acme-challenge.wild.gatewise.test. '));
    const cleanups = lines.filter((l) => l.startsWith('cleanup _acme-challenge.wild.gatewise.test. '));
    assert.equal(presents.length, 2, lines.join('\n'));
    assert.deepEqual(cleanups.map((l) => l.split(' ')[2]).sort(), presents.map((l) => l.split(' ')[2]).sort(), 'each value cleaned up');
  });
});

describe('ACME DNS-01: a provider registered through the library API', { skip }, () => {
  let pebble: TestPebble;
  let gw: TestGateway;
  let events: ReturnType<typeof acmeEvents>;
  let httpsPort: number;
  const calls: string[] = [];

  before(async () => {
    pebble = (await TestPebble.start({ httpPort: await freePort() }))!;
    httpsPort = await freePort();
    const mgmt = pebble.dnsManagementUrl;
    registerDnsProvider('challtestsrv', (options) => ({
      async present(fqdn, value) {
        calls.push(`present ${fqdn} ${String(options.zone)}`);
        const r = await fetch(`${mgmt}/set-txt`, { method: 'POST', body: JSON.stringify({ host: fqdn, value }) });
        if (!r.ok) throw new Error(`set-txt ${r.status}`);
      },
      async cleanup(fqdn) {
        calls.push(`cleanup ${fqdn}`);
        await fetch(`${mgmt}/clear-txt`, { method: 'POST', body: JSON.stringify({ host: fqdn }) });
      },
    }));
    events = acmeEvents();
    gw = await startTestGateway(gatewayConfig({ httpsPort, storage: join(work, 'registered'), pebble, dns: { provider: 'challtestsrv', options: { zone: 'gatewise.test' } } }));
  });

  after(async () => {
    events?.stop();
    await gw?.close();
    await pebble?.close();
  });

  test('obtained through the registered provider (its options passed), served by SNI under the wildcard', { timeout: 120_000 }, async () => {
    const e = await events.next((x) => x.event === 'obtained' || x.event === 'failed');
    assert.equal(e.event, 'obtained', `${JSON.stringify(e)}\n${pebble.output.slice(-3000)}`);
    const root = await pebble.root();
    for (const name of UNDER) {
      const r = await served(httpsPort, name, root);
      assert.ok(r.authorized, `${name}: ${r.error}`);
    }
    assert.ok(calls.includes('present _acme-challenge.wild.gatewise.test. gatewise.test'), calls.join('\n'));
    assert.equal(calls.filter((c) => c.startsWith('cleanup')).length, 2, calls.join('\n'));
  });
});

describe('ACME DNS-01 config', () => {
  const base = (acme: Record<string, unknown>): unknown => ({
    listeners: [{ port: 0, tls: { acme: { directory: 'https://127.0.0.1:14000/dir', acceptTerms: true, storage: '/tmp/x', ...acme } } }],
    clusters: { lab: { endpoints: ['http://127.0.0.1:1'] } },
    routes: [{ cluster: 'lab' }],
  });
  const problems = (input: unknown): Array<{ path: string; message: string }> => {
    try {
      validateConfig(input);
      return [];
    } catch (err) {
      return (err as ConfigError).problems as Array<{ path: string; message: string }>;
    }
  };

  test('a wildcard needs dns-01; dns-01 needs dns; exec needs a command; resolvers are IP:port', () => {
    const wildcardHttp = problems(base({ hosts: ['*.example.test'] }));
    assert.ok(wildcardHttp.some((p) => p.path.endsWith('acme.hosts') && /only DNS-01 validates it/.test(p.message)), JSON.stringify(wildcardHttp));
    const wildcardAlpn = problems(base({ hosts: ['*.example.test'], challenges: ['tls-alpn-01'] }));
    assert.ok(wildcardAlpn.some((p) => p.path.endsWith('acme.hosts')), JSON.stringify(wildcardAlpn));
    const noDns = problems(base({ hosts: ['*.example.test'], challenges: ['dns-01'] }));
    assert.ok(noDns.some((p) => p.path.endsWith('acme.dns') && /needs dns/.test(p.message)), JSON.stringify(noDns));
    const noCommand = problems(base({ challenges: ['dns-01'], dns: {} }));
    assert.ok(noCommand.some((p) => p.path.endsWith('acme.dns.command')), JSON.stringify(noCommand));
    const badResolver = problems(base({ challenges: ['dns-01'], dns: { command: ['x'], propagation: { resolvers: ['ns1.example.test'] } } }));
    assert.ok(badResolver.some((p) => p.path.includes('propagation.resolvers')), JSON.stringify(badResolver));
    for (const bad of ['*.*.example.test', 'a.*.example.test', '*example.test']) {
      assert.ok(problems(base({ hosts: [bad], challenges: ['dns-01'], dns: { command: ['x'] } })).some((p) => p.path.includes('acme.hosts')), bad);
    }
    assert.deepEqual(problems(base({ hosts: ['*.example.test', 'example.test'], challenges: ['dns-01'], dns: { command: ['/usr/local/bin/dns-hook'] } })), []);
    assert.deepEqual(problems(base({ hosts: ['example.test'], challenges: ['dns-01', 'tls-alpn-01'], dns: { provider: 'mine' } })), []);
  });
});
