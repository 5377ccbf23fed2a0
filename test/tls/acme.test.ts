import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Registry } from 'prom-client';
import { startLab, type Lab } from '../../src/lab/index.js';
import { attachMetrics } from '../../src/observe/metrics.js';
import { createLogger } from '../../src/observe/access-log.js';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { Writable } from 'node:stream';
import { certDir, type CertDir } from '../helpers/tls-certs.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { NO_PEBBLE, TestPebble, pebbleBinaries } from '../helpers/pebble.js';
import { freePort } from '../helpers/redis.js';
import { acmeEvents, acmeSite, curlH2, expectObtained, pebbleAcme, peerCert, writePebbleRoot, type AcmeEvents, type AcmeSite } from '../helpers/acme.js';

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

function gatewayConfig(s: AcmeSite, pebble: TestPebble, acme: Record<string, unknown> = {}): Parameters<typeof startTestGateway>[0] {
  return {
    listeners: [
      // Plain HTTP redirects to HTTPS; ACME validations are answered before the redirect.
      { address: '127.0.0.1', port: s.httpPort, redirectToHttps: { port: s.httpsPort } },
      {
        address: '127.0.0.1',
        port: s.httpsPort,
        tls: { acme: pebbleAcme(pebble, { email: 'ops@gatewise.test', storage: s.storage, backoff: { initial: '200ms', max: '2s' }, ...acme }) },
        http2: {},
      },
    ] as never,
    clusters: { lab: { endpoints: [lab.url] } },
    // The certificate's names come from the routes' hosts (acme.hosts not set).
    routes: [{ match: { host: HOSTS }, cluster: 'lab' }],
  };
}

describe('ACME: obtain on start', { skip }, () => {
  let pebble: TestPebble;
  let gw: TestGateway;
  let s: AcmeSite;
  let events: AcmeEvents;
  let rootFile: string;

  before(async () => {
    s = await acmeSite(work, 'obtain');
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
    const e = await expectObtained(events, pebble);
    assert.deepEqual(e.names, HOSTS);
    await writePebbleRoot(pebble, rootFile);
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

/** One HTTP/1.1 request on an open TLS connection (keep-alive): the status line's code. */
function requestOn(socket: TLSSocket, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (b: Buffer): void => {
      buf += b.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      socket.off('data', onData);
      socket.off('error', reject);
      resolve(Number(buf.slice(9, 12)));
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET /bytes?n=10 HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
  });
}

describe('ACME: renewal ahead of expiry', { skip }, () => {
  let pebble: TestPebble;
  let gw: TestGateway;
  let s: AcmeSite;
  let events: AcmeEvents;

  before(async () => {
    s = await acmeSite(work, 'renew');
    // Certificates valid for 60 s; renewal 55 s before expiry: due about 5 s after each is issued.
    pebble = (await TestPebble.start({ httpPort: s.httpPort, validitySeconds: 60 }))!;
    events = acmeEvents();
    gw = await startTestGateway(gatewayConfig(s, pebble, { renewBefore: 55 / 86_400 }));
  });

  after(async () => {
    events?.stop();
    await gw?.close();
    await pebble?.close();
  });

  test('a certificate within renewBefore is renewed: new connections get the new one, an open keep-alive connection keeps working', async () => {
    const first = await expectObtained(events, pebble);
    assert.ok(first.nextInMs !== undefined && first.nextInMs > 0 && first.nextInMs <= 6_000, `renewal scheduled ${first.nextInMs} ms ahead`);
    const root = await pebble.root();
    const old = await peerCert(HOSTS[0]!, s.httpsPort, root);
    assert.equal(await requestOn(old.socket, HOSTS[0]!), 200);
    const renewed = await events.next((x) => x.event === 'renewed' || x.event === 'failed', 60_000);
    assert.equal(renewed.event, 'renewed', JSON.stringify(renewed));
    const fresh = await peerCert(HOSTS[0]!, s.httpsPort, root);
    fresh.socket.destroy();
    assert.notEqual(fresh.serial, old.serial, 'a new connection gets the renewed certificate');
    // The connection opened before the renewal keeps its certificate and keeps being served.
    assert.equal(await requestOn(old.socket, HOSTS[0]!), 200);
    assert.equal(old.socket.getPeerCertificate().serialNumber, old.serial);
    old.socket.destroy();
    assert.equal(pebble.accounts(), 1, 'the renewal used the same account');
  });
});

describe('ACME: failures back off, are logged and counted, and the certificate in use keeps serving', { skip }, () => {
  let pebble: TestPebble;
  let rt: Runtime;
  let s: AcmeSite;
  let events: AcmeEvents;
  let metrics: ReturnType<typeof attachMetrics>;
  const lines: Array<Record<string, unknown>> = [];

  before(async () => {
    s = await acmeSite(work, 'fail');
    pebble = (await TestPebble.start({ httpPort: s.httpPort, validitySeconds: 60 }))!;
    events = acmeEvents();
    metrics = attachMetrics(new Registry());
    const logger = createLogger({ level: 'info', destination: new Writable({ write: (c: Buffer, _e, cb) => (String(c).split('\n').filter(Boolean).forEach((l) => lines.push(JSON.parse(l) as Record<string, unknown>)), cb()) }) });
    rt = await startRuntime(validateConfig({ ...gatewayConfig(s, pebble, { renewBefore: 55 / 86_400 }), log: { access: false } } as never), { probeUpstreams: false, logger });
  });

  after(async () => {
    events?.stop();
    metrics?.detach();
    await rt?.close();
    await pebble?.close();
  });

  test('directory down: failed (unreachable) with doubling waits, a warning line, the failure metric; the old certificate serves', async () => {
    await expectObtained(events, pebble);
    const root = await pebble.root();
    const before = await peerCert(HOSTS[0]!, s.httpsPort, root);
    before.socket.destroy();
    await pebble.stop();
    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const f = await events.next((x) => x.event === 'failed' || x.event === 'renewed', 60_000);
      assert.equal(f.event, 'failed', JSON.stringify(f));
      assert.equal(f.reason, 'unreachable', JSON.stringify(f));
      waits.push(f.nextInMs!);
    }
    // backoff 200ms doubling (up to 10 % more), at most 2s.
    assert.ok(waits[0]! >= 200 && waits[0]! <= 220, `${waits}`);
    assert.ok(waits[1]! >= 400 && waits[1]! <= 440, `${waits}`);
    assert.ok(waits[2]! >= 800 && waits[2]! <= 880, `${waits}`);
    const warn = lines.find((l) => l.event === 'acme-failed');
    assert.ok(warn !== undefined, 'a log line for the failure');
    assert.equal(warn.level, 'warn');
    assert.equal(warn.reason, 'unreachable');
    assert.match(String(warn.msg), /failed at unreachable: .*next try in/);
    const m = await metrics.registry.getSingleMetric('gatewise_tls_acme_orders_total')!.get();
    assert.ok((m.values.find((v) => v.labels.result === 'failed' && v.labels.reason === 'unreachable')?.value ?? 0) >= 3, JSON.stringify(m.values));
    // The certificate obtained before keeps serving (it has not expired yet).
    const after = await peerCert(HOSTS[0]!, s.httpsPort, root);
    assert.equal(after.serial, before.serial);
    after.socket.destroy();
    const rootFile = join(work, 'pebble-root-fail.pem');
    writeFileSync(rootFile, root);
    assert.equal((await curlH2(HOSTS[0]!, s.httpsPort, rootFile)).stdout, '2 200');
    // The directory back: the next try renews.
    await pebble.restart();
    const back = await events.next((x) => x.event === 'renewed', 60_000);
    assert.equal(back.event, 'renewed');
  });
});

describe('ACME: a challenge that fails leaves the default certificate serving', { skip }, () => {
  let pebble: TestPebble;
  let gw: TestGateway;
  let s: AcmeSite;
  let events: AcmeEvents;
  let certs: CertDir;

  before(async () => {
    s = await acmeSite(work, 'challenge');
    // Pebble validates at a port where nothing listens: every HTTP-01 challenge fails.
    pebble = (await TestPebble.start({ httpPort: await freePort() }))!;
    certs = certDir();
    const fallback = certs.ca('Fallback CA').issue('fallback', { dns: ['fallback.gatewise.test'] });
    events = acmeEvents();
    const cfg = gatewayConfig(s, pebble) as { listeners: Array<{ tls?: { certificates?: unknown[] } }> };
    cfg.listeners[1]!.tls!.certificates = [{ cert: fallback.certFile, key: fallback.keyFile }];
    gw = await startTestGateway(cfg as never);
  });

  after(async () => {
    events?.stop();
    await gw?.close();
    await pebble?.close();
    certs?.remove();
  });

  test('failed at challenge, retried with back-off; handshakes get the configured default certificate', async () => {
    const f = await events.next((x) => x.event === 'failed' || x.event === 'obtained');
    assert.equal(f.event, 'failed', JSON.stringify(f));
    assert.equal(f.reason, 'challenge', JSON.stringify(f));
    const again = await events.next((x) => x.event === 'failed', 60_000);
    assert.ok(again.nextInMs! > f.nextInMs!, 'the wait grows');
    const c = await new Promise<string>((resolve, reject) => {
      const sock = tlsConnect({ host: '127.0.0.1', port: s.httpsPort, servername: HOSTS[0], rejectUnauthorized: false }, () => {
        resolve(String(sock.getPeerCertificate().subjectaltname));
        sock.destroy();
      });
      sock.once('error', reject);
    });
    assert.equal(c, 'DNS:fallback.gatewise.test');
    assert.equal(gw.gw.acmeManagers()[0]!.current(), undefined);
  });
});

describe('ACME: a restart reuses the stored account and certificate', { skip }, () => {
  let pebble: TestPebble;
  let s: AcmeSite;
  let events: AcmeEvents;

  before(async () => {
    s = await acmeSite(work, 'restart');
    pebble = (await TestPebble.start({ httpPort: s.httpPort }))!;
    events = acmeEvents();
  });

  after(async () => {
    events?.stop();
    await pebble?.close();
  });

  test('no new order while the stored certificate is not due; a due one is ordered with the same account', async () => {
    const one = await startTestGateway(gatewayConfig(s, pebble));
    await expectObtained(events, pebble);
    const root = await pebble.root();
    const served = await peerCert(HOSTS[0]!, s.httpsPort, root);
    served.socket.destroy();
    await one.close();
    const orders = pebble.orders();
    const accounts = pebble.accounts();
    assert.equal(orders, 1);
    assert.equal(accounts, 1);

    events.list.length = 0;
    const two = await startTestGateway(gatewayConfig(s, pebble));
    try {
      const reused = await events.next((x) => x.event === 'reused');
      assert.equal(reused.detail, join(s.storage, 'shop.gatewise.test.crt'));
      const again = await peerCert(HOSTS[0]!, s.httpsPort, root);
      again.socket.destroy();
      assert.equal(again.serial, served.serial, 'the stored certificate is served');
      assert.ok(two.gw.acmeManagers()[0]!.nextAt! - Date.now() > 86_400_000, 'next check at its renewal time, not now');
      assert.equal(events.list.filter((e) => e.event === 'ordering').length, 0, 'nothing ordered');
      assert.equal(pebble.orders(), orders);
    } finally {
      await two.close();
    }

    // The same storage with a renewBefore longer than the certificate's life: due at once.
    const three = await startTestGateway(gatewayConfig(s, pebble, { renewBefore: 100_000 }));
    try {
      const renewed = await events.next((x) => x.event === 'renewed' || x.event === 'failed');
      assert.equal(renewed.event, 'renewed', JSON.stringify(renewed));
      assert.equal(pebble.orders(), orders + 1);
      assert.equal(pebble.accounts(), accounts, 'the stored account was used');
    } finally {
      await three.close();
    }
  });
});

describe('ACME: processes sharing the storage folder order once (workers, nodes on a shared disk)', { skip }, () => {
  let pebble: TestPebble;
  let events: AcmeEvents;

  before(async () => {
    events = acmeEvents();
  });

  after(async () => {
    events?.stop();
    await pebble?.close();
  });

  test('two gateways on one storage: one order, both serve its certificate; the validation reaches either', async () => {
    const a = await acmeSite(work, 'shared');
    const b = { ...(await acmeSite(work, 'shared')), storage: a.storage };
    // Validations go to gateway A's plain listener only: when B holds the lock, A answers B's token from the shared folder.
    pebble = (await TestPebble.start({ httpPort: a.httpPort }))!;
    const [ga, gb] = await Promise.all([startTestGateway(gatewayConfig(a, pebble)), startTestGateway(gatewayConfig(b, pebble))]);
    try {
      await expectObtained(events, pebble);
      const adopted = await events.next((x) => x.event === 'reused' || x.event === 'obtained' || x.event === 'failed');
      assert.equal(adopted.event, 'reused', JSON.stringify(adopted));
      assert.equal(pebble.orders(), 1);
      const root = await pebble.root();
      const ca = await peerCert(HOSTS[0]!, a.httpsPort, root);
      const cb = await peerCert(HOSTS[0]!, b.httpsPort, root);
      ca.socket.destroy();
      cb.socket.destroy();
      assert.equal(ca.serial, cb.serial);
    } finally {
      await Promise.all([ga.close(), gb.close()]);
    }
  });

  test('a validation that reaches another process sharing the folder is answered from the token file', async () => {
    const a = await acmeSite(work, 'shared-tokens');
    const b = { ...(await acmeSite(work, 'shared-tokens')), storage: a.storage };
    await pebble?.close();
    pebble = (await TestPebble.start({ httpPort: a.httpPort }))!;
    // A orders nothing that succeeds (its directory is a closed port) but shares the folder; B's validations reach A only.
    const deadDirectory = `https://127.0.0.1:${await freePort()}/dir`;
    const ga = await startTestGateway(gatewayConfig(a, pebble, { directory: deadDirectory, hosts: ['other.gatewise.test'], backoff: { initial: '1h', max: '1h' } }));
    try {
      events.list.length = 0;
      const gb = await startTestGateway(gatewayConfig(b, pebble));
      try {
        await expectObtained(events, pebble, (x) => x.names[0] === HOSTS[0]);
        assert.equal(gb.gw.acmeManagers()[0]!.current()?.names.join(','), HOSTS.join(','));
      } finally {
        await gb.close();
      }
    } finally {
      await ga.close();
    }
  });
});
