import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, test } from 'node:test';
import { startLabDnsServer, type LabDnsServer } from '../../src/lab/index.js';

let dns: LabDnsServer;
let resolver: Resolver;

before(async () => {
  dns = await startLabDnsServer({
    records: { 'api.lab.test': ['127.0.0.1', '127.0.0.2'], 'One.Lab.Test.': ['10.1.2.3'] },
    servfail: ['broken.lab.test'],
    timeout: ['silent.lab.test'],
  });
  resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${dns.port}`]);
});

after(async () => {
  resolver.cancel();
  await dns.close();
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return String((err as { code?: unknown }).code);
  }
  return 'resolved';
}

test('A records for listed names (any case, with or without the final dot)', async () => {
  assert.deepEqual((await resolver.resolve4('api.lab.test')).sort(), ['127.0.0.1', '127.0.0.2']);
  assert.deepEqual(await resolver.resolve4('ONE.lab.test'), ['10.1.2.3']);
  const withTtl = await resolver.resolve4('one.lab.test', { ttl: true });
  assert.deepEqual(withTtl, [{ address: '10.1.2.3', ttl: 60 }]);
});

test('NXDOMAIN for unknown names → ENOTFOUND', async () => {
  assert.equal(await code(resolver.resolve4('nowhere.lab.test')), 'ENOTFOUND');
});

test('SERVFAIL → ESERVFAIL', async () => {
  assert.equal(await code(resolver.resolve4('broken.lab.test')), 'ESERVFAIL');
});

test('names never answered → ETIMEOUT', async () => {
  const t0 = Date.now();
  assert.equal(await code(resolver.resolve4('silent.lab.test')), 'ETIMEOUT');
  assert.ok(Date.now() - t0 < 3000);
});

test('AAAA of a known name: empty NOERROR → ENODATA', async () => {
  assert.equal(await code(resolver.resolve6('api.lab.test')), 'ENODATA');
});

test('every query is counted', async () => {
  const before = dns.queries;
  await resolver.resolve4('api.lab.test');
  assert.equal(dns.queries, before + 1);
});

test('a record that is not IPv4 is refused at start', async () => {
  await assert.rejects(startLabDnsServer({ records: { x: ['::1'] } }), { name: 'LabDnsRecordError' });
});
