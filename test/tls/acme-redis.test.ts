import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { NO_PEBBLE, TestPebble, pebbleBinaries } from '../helpers/pebble.js';
import { NO_REDIS, TestRedis, freePort, redisBinary } from '../helpers/redis.js';
import { acmeEvents, acmeSite, expectObtained, pebbleAcme, type AcmeEvents, type AcmeSite } from '../helpers/acme.js';

/**
 * ACME certificates shared by a fleet through Redis (tls.acme.redis): two gateways, each with
 * its own storage folder (no shared disk), one test Redis, one Pebble on loopback. One order
 * for both; both serve the same certificate (fingerprints through real TLS handshakes); a
 * renewal by one is installed by the other; a validation that reaches the node that did not
 * order is answered there (HTTP-01 and TLS-ALPN-01).
 */

const skip = pebbleBinaries() === undefined ? NO_PEBBLE : redisBinary() === undefined ? NO_REDIS : false;
const HOSTS = ['fleet.gatewise.test', 'www.fleet.gatewise.test'];

let lab: Lab;
let redis: TestRedis;
let work: string;

before(async () => {
  if (skip) return;
  lab = await startLab();
  redis = (await TestRedis.start())!;
  work = mkdtempSync(join(tmpdir(), 'gatewise-acme-redis-'));
});

after(async () => {
  await lab?.close();
  await redis?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function config(n: AcmeSite, pebble: TestPebble, prefix: string, acme: Record<string, unknown> = {}): Parameters<typeof startTestGateway>[0] {
  return {
    listeners: [
      { address: '127.0.0.1', port: n.httpPort },
      {
        address: '127.0.0.1',
        port: n.httpsPort,
        tls: { acme: pebbleAcme(pebble, { storage: n.storage, hosts: HOSTS, backoff: { initial: '300ms', max: '3s' }, redis: { url: redis.url, keyPrefix: prefix }, ...acme }) },
      },
    ] as never,
    clusters: { lab: { endpoints: [lab.url] } },
    routes: [{ match: { host: HOSTS }, cluster: 'lab' }],
  };
}

/** The SHA-256 fingerprint of the certificate a new TLS connection for `host` gets. */
function fingerprint(port: number, host: string, root: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: host, ca: root }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.destroy();
    });
    s.once('error', reject);
  });
}

describe('ACME through Redis: two gateways, no shared disk', { skip }, () => {
  let pebble: TestPebble | undefined;
  let events: AcmeEvents;

  before(() => {
    events = acmeEvents();
  });

  after(async () => {
    events?.stop();
    await pebble?.close();
  });

  test('one order for both; both serve the same certificate; a renewal by one is installed by the other', async () => {
    const a = await acmeSite(work, 'a');
    const b = await acmeSite(work, 'b');
    // Certificates valid 120 s, renewed 100 s before expiry: due 20 s after issue. Validations reach A's plain listener only.
    pebble = (await TestPebble.start({ httpPort: a.httpPort, validitySeconds: 120 }))!;
    events.list.length = 0;
    const renewBefore = 100 / 86_400;
    const [ga, gb] = await Promise.all([startTestGateway(config(a, pebble, 'fleet1:', { renewBefore })), startTestGateway(config(b, pebble, 'fleet1:', { renewBefore }))]);
    try {
      await expectObtained(events, pebble);
      const adopted = await events.next((x) => x.event === 'reused' || x.event === 'obtained' || x.event === 'failed');
      assert.equal(adopted.event, 'reused', JSON.stringify(adopted));
      assert.equal(adopted.detail, 'shared store');
      assert.equal(pebble.orders(), 1, 'Pebble issued once');
      const root = await pebble.root();
      for (const host of HOSTS) {
        const [fa, fb] = [await fingerprint(a.httpsPort, host, root), await fingerprint(b.httpsPort, host, root)];
        assert.equal(fa, fb, `${host}: both nodes serve the same certificate`);
      }
      const first = await fingerprint(a.httpsPort, HOSTS[0]!, root);
      assert.equal(pebble.accounts(), 1, 'one account for the fleet');

      // The renewal: one node orders (the lock), the other installs the new certificate.
      const renewed = await events.next((x) => x.event === 'renewed' || x.event === 'failed', 90_000);
      assert.equal(renewed.event, 'renewed', JSON.stringify(renewed));
      const picked = await events.next((x) => x.event === 'reused' || x.event === 'renewed' || x.event === 'failed', 60_000);
      assert.equal(picked.event, 'reused', `the other node installs it: ${JSON.stringify(picked)}`);
      assert.equal(pebble.orders(), 2, 'one renewal order for the fleet');
      const [ra, rb] = [await fingerprint(a.httpsPort, HOSTS[0]!, root), await fingerprint(b.httpsPort, HOSTS[0]!, root)];
      assert.notEqual(ra, first, 'a new certificate');
      assert.equal(ra, rb, 'both serve the renewed certificate');
      assert.equal(events.list.filter((e) => e.event === 'ordering').length, 2, 'two orders began in the fleet: the first and the renewal');
    } finally {
      await Promise.all([ga.close(), gb.close()]);
    }
  });

  for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
    test(`${challenge}: a validation that reaches only the node that did not order is answered there`, async () => {
      const a = await acmeSite(work, `a-${challenge}`);
      const b = await acmeSite(work, `b-${challenge}`);
      await pebble?.close();
      // Every validation goes to A (its plain port for HTTP-01, its TLS port for TLS-ALPN-01).
      pebble = (await TestPebble.start({ httpPort: a.httpPort, tlsPort: a.httpsPort }))!;
      const prefix = `fleet-${challenge}:`;
      // A orders nothing that succeeds (a closed directory, other names, tried once an hour) but shares the Redis.
      const ga = await startTestGateway(config(a, pebble, prefix, { directory: `https://127.0.0.1:${await freePort()}/dir`, hosts: ['other.gatewise.test'], challenges: [challenge], backoff: { initial: '1h', max: '1h' } }));
      try {
        events.list.length = 0;
        const gb = await startTestGateway(config(b, pebble, prefix, { challenges: [challenge] }));
        try {
          await expectObtained(events, pebble, (x) => x.names[0] === HOSTS[0]);
          if (challenge === 'tls-alpn-01') assert.ok(ga.gw.ctx.acme!.alpnAnswered >= HOSTS.length, `A answered the validations: ${ga.gw.ctx.acme!.alpnAnswered}`);
          assert.equal(gb.gw.acmeManagers()[0]!.current()?.names.join(','), HOSTS.join(','));
          // The word that the challenges are done reaches A (pub/sub): waited for, bounded.
          const until = Date.now() + 30_000;
          while (ga.gw.ctx.acme!.size + ga.gw.ctx.acme!.alpnPending > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
          assert.equal(ga.gw.ctx.acme!.size + ga.gw.ctx.acme!.alpnPending, 0, 'A holds no challenge after the order');
        } finally {
          await gb.close();
        }
      } finally {
        await ga.close();
      }
    });
  }
});
