import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Registry } from 'prom-client';
import { startLab, type Lab } from '../../src/lab/index.js';
import { attachMetrics } from '../../src/observe/metrics.js';
import { ACME_CHANNEL, type AcmeEvent } from '../../src/tls/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { NO_PEBBLE, TestPebble, pebbleBinaries } from '../helpers/pebble.js';
import { freePort } from '../helpers/redis.js';

/**
 * Automatic certificates against a real ACME server: Pebble (Debian's `pebble`), on
 * loopback, validating HTTP-01 at the gateway's plain listener. Names resolve to
 * 127.0.0.1 through Pebble's test DNS server; curl and Node clients are pointed at
 * 127.0.0.1 (`--resolve`). Nothing leaves loopback.
 */

const skip = pebbleBinaries() === undefined ? NO_PEBBLE : false;
const HOSTS = ['shop.gatewise.test', 'api.gatewise.test'];

let lab: Lab;
let work: string;

before(async () => {
  if (skip) return;
  lab = await startLab();
  work = mkdtempSync(join(tmpdir(), 'gatewise-acme-'));
});

after(async () => {
  await lab?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** ACME events, recorded from now on; `next` waits (bounded) for one that matches. */
function acmeEvents(): { list: AcmeEvent[]; next(match: (e: AcmeEvent) => boolean, ms?: number): Promise<AcmeEvent>; stop(): void } {
  const list: AcmeEvent[] = [];
  const waiters: Array<{ match: (e: AcmeEvent) => boolean; resolve: (e: AcmeEvent) => void }> = [];
  const onEvent = (m: unknown): void => {
    const e = m as AcmeEvent;
    list.push(e);
    for (const w of [...waiters]) {
      if (w.match(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  };
  subscribe(ACME_CHANNEL, onEvent);
  return {
    list,
    next(match, ms = 20_000) {
      const seen = list.find(match);
      if (seen !== undefined) {
        list.splice(list.indexOf(seen), 1);
        return Promise.resolve(seen);
      }
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching ACME event within ${ms} ms; saw ${JSON.stringify(list)}`)), ms);
        waiters.push({
          match,
          resolve: (e) => {
            clearTimeout(t);
            list.splice(list.indexOf(e), 1);
            resolve(e);
          },
        });
      });
    },
    stop: () => unsubscribe(ACME_CHANNEL, onEvent),
  };
}

interface Setup {
  httpPort: number;
  httpsPort: number;
  storage: string;
}

async function ports(name: string): Promise<Setup> {
  return { httpPort: await freePort(), httpsPort: await freePort(), storage: join(work, name) };
}

function gatewayConfig(s: Setup, pebble: TestPebble, acme: Record<string, unknown> = {}): Parameters<typeof startTestGateway>[0] {
  return {
    listeners: [
      // Plain HTTP redirects to HTTPS; ACME validations are answered before the redirect.
      { address: '127.0.0.1', port: s.httpPort, redirectToHttps: { port: s.httpsPort } },
      {
        address: '127.0.0.1',
        port: s.httpsPort,
        tls: { acme: { directory: pebble.dirUrl, directoryCa: pebble.directoryCaFile, acceptTerms: true, email: 'ops@gatewise.test', storage: s.storage, backoff: { initial: '200ms', max: '2s' }, ...acme } },
        http2: {},
      },
    ] as never,
    clusters: { lab: { endpoints: [lab.url] } },
    // The certificate's names come from the routes' hosts (acme.hosts not set).
    routes: [{ match: { host: HOSTS }, cluster: 'lab' }],
  };
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

/** curl --http2 https://host:port/path through the gateway, trusting Pebble's root only. */
async function curlH2(host: string, port: number, rootFile: string, path = '/bytes?n=100'): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('curl', ['--silent', '--show-error', '--http2', '--cacert', rootFile, '--resolve', `${host}:${port}:127.0.0.1`, '--output', '/dev/null', '--write-out', '%{http_version} %{http_code}', `https://${host}:${port}${path}`]);
}

/** The certificate a new TLS connection for `host` gets: serial and expiry. */
function peerCert(host: string, port: number, root: string): Promise<{ serial: string; validTo: string; socket: TLSSocket }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: host, ca: root, ALPNProtocols: ['http/1.1'] }, () => {
      const c = s.getPeerCertificate();
      resolve({ serial: c.serialNumber, validTo: c.valid_to, socket: s });
    });
    s.once('error', reject);
  });
}

describe('ACME: obtain on start', { skip }, () => {
  let pebble: TestPebble;
  let gw: TestGateway;
  let s: Setup;
  let events: ReturnType<typeof acmeEvents>;
  let rootFile: string;

  before(async () => {
    s = await ports('obtain');
    pebble = (await TestPebble.start({ httpPort: s.httpPort }))!;
    events = acmeEvents();
    gw = await startTestGateway(gatewayConfig(s, pebble));
    rootFile = join(work, 'pebble-root-obtain.pem');
  });

  after(async () => {
    events?.stop();
    await gw?.close();
    await pebble?.close();
  });

  test('the certificate is obtained, stored 0600, and curl --http2 gets 200 from the lab through it', async () => {
    const e = await events.next((x) => x.event === 'obtained' || x.event === 'failed');
    assert.equal(e.event, 'obtained', `${JSON.stringify(e)}\n${pebble.output.slice(-3000)}`);
    assert.deepEqual(e.names, HOSTS);
    writeFileSync(rootFile, await pebble.root());
    for (const host of HOSTS) {
      const r = await curlH2(host, s.httpsPort, rootFile);
      assert.equal(r.stdout, '2 200', `${host}: ${r.stderr}`);
    }
    for (const f of ['shop.gatewise.test.crt', 'shop.gatewise.test.key']) {
      assert.equal(statSync(join(s.storage, f)).mode & 0o777, 0o600, f);
    }
    const m = await gw.registry.getSingleMetric('gatewise_tls_acme_orders_total')!.get();
    assert.equal(m.values.find((v) => v.labels.result === 'obtained')?.value, 1);
    // gatewise_tls_certificate_days_left reads the stores' certificates (scraped by the runtime's metrics).
    const days = attachMetrics(new Registry(), { certificates: () => gw.gw.certificateStores().flatMap((c) => c.certificates()) });
    try {
      const v = (await days.registry.getSingleMetric('gatewise_tls_certificate_days_left')!.get()).values;
      assert.ok(v.some((x) => String(x.labels.cert).endsWith('shop.gatewise.test.crt') && x.value > 30), JSON.stringify(v));
    } finally {
      days.detach();
    }
  });
});
