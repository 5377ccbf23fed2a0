import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { acmeHostsOfRoutes } from '../../src/config/schema.js';
import { checkConfigText } from '../../src/config/check.js';
import { Gateway } from '../../src/gateway/server.js';
import { writeFileSync } from 'node:fs';
import { ACME_CHALLENGE_PREFIX } from '../../src/tls/acme/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/redis.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom } from '../helpers/seeded.js';
import { certDir, type CertDir } from '../helpers/tls-certs.js';

/** tls.acme: configuration errors, the names a certificate gets, and the HTTP-01 answers of plain listeners. */

const ACME = { directory: 'https://127.0.0.1:1/dir', acceptTerms: true, storage: '/tmp/gatewise-acme-never-written', hosts: ['shop.example.com'] };

function config(acme: Record<string, unknown> | undefined, extra: { plain?: boolean; certificates?: unknown[]; routes?: unknown[] } = {}): unknown {
  return {
    listeners: [...(extra.plain === false ? [] : [{ port: 80 }]), { port: 443, tls: { ...(extra.certificates !== undefined ? { certificates: extra.certificates } : {}), ...(acme !== undefined ? { acme } : {}) } }],
    clusters: { app: { endpoints: ['http://127.0.0.1:3000'] } },
    routes: extra.routes ?? [{ cluster: 'app' }],
  };
}

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe('tls.acme configuration errors name the key and say what to do', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['terms not accepted', config({ ...ACME, acceptTerms: undefined }), /listeners\[1\]\.tls\.acme\.acceptTerms: set acceptTerms: true/],
    ['terms refused', config({ ...ACME, acceptTerms: false }), /acceptTerms: set acceptTerms: true/],
    ['plain http directory', config({ ...ACME, directory: 'http://127.0.0.1/dir' }), /acme\.directory: an ACME directory is served over https/],
    ['not a URL', config({ ...ACME, directory: 'letsencrypt' }), /acme\.directory: expected the https:\/\/ URL of an ACME directory/],
    ['wildcard host without dns-01', config({ ...ACME, hosts: ['*.example.com'] }), /acme\.hosts: \*\.example\.com is a wildcard: only DNS-01 validates it/],
    ['a wildcard not leftmost', config({ ...ACME, hosts: ['a.*.example.com'] }), /acme\.hosts\[0\]: a lower-case host name, or \*\.name for a wildcard \(dns-01 only\)/],
    ['no names anywhere', config({ ...ACME, hosts: undefined }), /acme\.hosts: acme needs host names/],
    ['only wildcard routes', config({ ...ACME, hosts: undefined }, { routes: [{ match: { host: '*.example.com' }, cluster: 'app' }] }), /acme\.hosts: acme needs host names/],
    ['no plain listener', config(ACME, { plain: false }), /tls\.acme: acme answers HTTP-01 challenges on a plain HTTP listener/],
    ['dns-01 without dns', config({ ...ACME, challenges: ['dns-01'] }), /acme\.dns: dns-01 needs dns/],
    ['an unknown type', config({ ...ACME, challenges: ['dns-02'] }), /acme\.challenges\[0\]: expected http-01, tls-alpn-01 or dns-01/],
    ['a type twice', config({ ...ACME, challenges: ['tls-alpn-01', 'tls-alpn-01'] }), /acme\.challenges: each challenge type once/],
    ['http-01 among others, no plain listener', config({ ...ACME, challenges: ['tls-alpn-01', 'http-01'] }, { plain: false }), /tls\.acme: acme answers HTTP-01 challenges on a plain HTTP listener .*or use challenges: \[tls-alpn-01\]/],
    ['renewBefore 0', config({ ...ACME, renewBefore: 0 }), /acme\.renewBefore: renewBefore is a number of days above zero/],
    ['backoff 0s', config({ ...ACME, backoff: { initial: '0s' } }), /acme\.backoff\.initial: expected a duration above zero/],
    ['bad e-mail', config({ ...ACME, email: 'ops' }), /acme\.email: expected an e-mail address/],
    ['unknown key', config({ ...ACME, directroy: 'x' }), /acme/],
    ['no storage', config({ ...ACME, storage: undefined }), /acme\.storage/],
    ['neither certificates nor acme', config(undefined), /tls\.certificates: a TLS listener needs at least one certificate, or acme to obtain one/],
  ];
  for (const [name, raw, want] of cases) {
    test(name, () => {
      const p = problems(raw);
      assert.ok(p.some((x) => want.test(x)), `${name}: ${JSON.stringify(p)}`);
    });
  }

  test('valid: acme alone, names from routes, defaults written', () => {
    const cfg = validateConfig(config({ ...ACME, hosts: undefined }, { routes: [{ match: { host: ['Shop.example.com', '*.example.com'] }, cluster: 'app' }] }));
    const acme = cfg.listeners[1]!.tls!.acme!;
    assert.equal(acme.renewBefore, 30);
    assert.deepEqual(acme.challenges, ['http-01']);
    assert.deepEqual(acme.backoff, { initial: '1m', max: '6h' });
    assert.deepEqual(cfg.listeners[1]!.tls!.certificates, []);
  });

  test('valid: tls-alpn-01 alone needs no plain listener', () => {
    const cfg = validateConfig(config({ ...ACME, challenges: ['tls-alpn-01'] }, { plain: false }));
    assert.deepEqual(cfg.listeners[0]!.tls!.acme!.challenges, ['tls-alpn-01']);
  });
});

test('acme names from routes: the exact host names, lower-case, in order, once each (seeded family)', () => {
  const rand = seededRandom();
  const seed = rand.seed;
  const rnd = rand.next;
  const pool = ['a.example.com', 'B.example.com', '*.example.com', 'c.example.org', '', 'a.example.com'];
  for (let round = 0; round < 200; round++) {
    const routes = Array.from({ length: Math.floor(rnd() * 5) }, () => {
      const k = Math.floor(rnd() * 4);
      const pick = (): string => pool[Math.floor(rnd() * pool.length)]!;
      return k === 0 ? { cluster: 'x' } : k === 1 ? { match: { host: pick() }, cluster: 'x' } : { match: { host: [pick(), pick()] }, cluster: 'x' };
    });
    const want: string[] = [];
    for (const r of routes) {
      const h = (r as { match?: { host?: string | string[] } }).match?.host;
      for (const n of h === undefined ? [] : Array.isArray(h) ? h : [h]) {
        const l = n.toLowerCase();
        if (l !== '' && !l.includes('*') && !want.includes(l)) want.push(l);
      }
    }
    assert.deepEqual(acmeHostsOfRoutes(routes), want, `seed ${seed} round ${round}: ${JSON.stringify(routes)}`);
  }
});

describe('HTTP-01 answers on plain listeners', () => {
  let gw: TestGateway;
  let upstream: ScriptedUpstream;
  let certs: CertDir;
  let plain: string;
  let tlsPort: number;

  before(async () => {
    upstream = await startScriptedUpstream((req, res) => res.end(`upstream ${req.url}`));
    certs = certDir();
    const leaf = certs.ca('Static CA').issue('shop.example.com', { dns: ['shop.example.com'] });
    tlsPort = await freePort();
    const httpPort = await freePort();
    // The directory is a closed loopback port: orders fail (and back off); the answers below do not need one.
    gw = await startTestGateway({
      listeners: [
        { address: '127.0.0.1', port: httpPort, redirectToHttps: { port: tlsPort } },
        { address: '127.0.0.1', port: tlsPort, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }], acme: { ...ACME, directory: `https://127.0.0.1:${await freePort()}/dir`, storage: `${certs.dir}/acme`, backoff: { initial: '1h' } } } },
      ] as never,
      clusters: { up: { endpoints: [upstream.url] } },
      routes: [{ cluster: 'up' }],
    });
    plain = `http://127.0.0.1:${httpPort}`;
  });

  after(async () => {
    await gw?.close();
    await upstream?.close();
    certs?.remove();
  });

  test('a pending token is answered 200 with its key authorization, before the redirect; an unknown one gets 404 destination_not_found', async () => {
    gw.gw.ctx.acme!.set('tok-1', 'tok-1.thumbprint');
    try {
      const ok = await request(`${plain}${ACME_CHALLENGE_PREFIX}tok-1`, { headers: { host: 'shop.example.com' } });
      assert.equal(ok.statusCode, 200);
      assert.equal(await ok.body.text(), 'tok-1.thumbprint');
      assert.match(String(ok.headers['proxy-status']), /;error=proxy_internal_response$/);
      const line = await gw.logFor(String(ok.headers['x-request-id']));
      assert.equal(line.status, 200);
      const unknown = await request(`${plain}${ACME_CHALLENGE_PREFIX}nope`, { headers: { host: 'shop.example.com' } });
      assert.equal(unknown.statusCode, 404);
      await unknown.body.dump();
      assert.match(String(unknown.headers['proxy-status']), /error=destination_not_found/);
    } finally {
      gw.gw.ctx.acme!.delete('tok-1');
    }
    const gone = await request(`${plain}${ACME_CHALLENGE_PREFIX}tok-1`, { headers: { host: 'shop.example.com' } });
    await gone.body.dump();
    assert.equal(gone.statusCode, 404, 'answered only while pending');
    // Every other path still redirects.
    const other = await request(`${plain}/shop`, { headers: { host: 'shop.example.com' } });
    await other.body.dump();
    assert.equal(other.statusCode, 308);
    assert.equal(other.headers.location, `https://shop.example.com:${tlsPort}/shop`);
  });

  test('a gateway without acme has no challenge table (nothing tested per request but one field)', async () => {
    const plainOnly = await startTestGateway({ clusters: { up: { endpoints: [upstream.url] } }, routes: [{ cluster: 'up' }] });
    try {
      assert.equal(plainOnly.gw.ctx.acme, undefined);
      const r = await request(`${plainOnly.url}${ACME_CHALLENGE_PREFIX}tok`);
      assert.equal(await r.body.text(), `upstream ${ACME_CHALLENGE_PREFIX}tok`, 'routed like any path');
    } finally {
      await plainOnly.close();
    }
  });
});

test('a reload whose routes give the ACME certificate other names says a restart is needed', async () => {
  const certs = certDir();
  try {
    const httpPort = await freePort();
    const tlsPort = await freePort();
    const closed = await freePort();
    const input = (hosts: string[]): Parameters<typeof startTestGateway>[0] => ({
      listeners: [
        { address: '127.0.0.1', port: httpPort },
        { address: '127.0.0.1', port: tlsPort, tls: { acme: { ...ACME, hosts: undefined, directory: `https://127.0.0.1:${closed}/dir`, storage: `${certs.dir}/acme`, backoff: { initial: '1h' } } } },
      ] as never,
      clusters: { up: { endpoints: ['http://127.0.0.1:9'] } },
      routes: [{ match: { host: hosts }, cluster: 'up' }],
    });
    const gw = await startTestGateway(input(['a.example.com']));
    try {
      assert.deepEqual(gw.gw.acmeManagers()[0]!.names, ['a.example.com']);
      const same = await gw.gw.reload(validateConfig(input(['a.example.com'])));
      assert.deepEqual(same.restart, []);
      const other = await gw.gw.reload(validateConfig(input(['a.example.com', 'b.example.com'])));
      assert.ok(other.restart.some((r) => r.includes('tls.acme host names')), JSON.stringify(other.restart));
    } finally {
      await gw.close();
    }
  } finally {
    certs.remove();
  }
});

test('files named by tls.acme that cannot be used are ConfigErrors at start, and gatewise check names directoryCa', async () => {
  const certs = certDir();
  try {
    const raw = (acme: Record<string, unknown>): unknown => ({
      listeners: [{ address: '127.0.0.1', port: 0 }, { address: '127.0.0.1', port: 0, tls: { acme: { ...ACME, ...acme } } }],
      clusters: { up: { endpoints: ['http://127.0.0.1:9'] } },
      routes: [{ cluster: 'up' }],
    });
    const missingCa = `${certs.dir}/no-such-ca.pem`;
    const startProblems = (acme: Record<string, unknown>): string[] => {
      try {
        new Gateway(validateConfig(raw(acme))).close(0).catch(() => {});
        return [];
      } catch (err) {
        if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
        throw err;
      }
    };
    assert.deepEqual(startProblems({ storage: `${certs.dir}/acme`, directoryCa: missingCa }), [`listeners[1].tls.acme.directoryCa: CA file ${missingCa} cannot be read (ENOENT)`]);
    // A folder under a regular file cannot be made (even by root).
    writeFileSync(`${certs.dir}/file`, 'x');
    const under = startProblems({ storage: `${certs.dir}/file/acme` });
    assert.equal(under.length, 1);
    assert.match(under[0]!, /^listeners\[1\]\.tls\.acme\.storage: the ACME storage folder .* cannot be created or written \(ENOTDIR\)$/);
    const checked = checkConfigText(JSON.stringify(raw({ storage: `${certs.dir}/acme`, directoryCa: missingCa })));
    assert.ok(checked.problems.some((p) => p.path === 'listeners[1].tls.acme.directoryCa' && /cannot be read/.test(p.message)), JSON.stringify(checked.problems));
  } finally {
    certs.remove();
  }
});
