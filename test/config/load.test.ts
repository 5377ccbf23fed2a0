import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfigText, validateConfig } from '../../src/config/load.js';
import { jsonSchema } from '../../src/config/schema.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

const GOOD = `
listeners:
  - port: 8080
clusters:
  api:
    endpoints: [http://127.0.0.1:3000, { url: "https://10.0.0.2:8443", weight: 3 }]
routes:
  - match: { host: "*.example.com", pathPrefix: /api }
    cluster: api
    stripPrefix: true
`;

test('a good YAML config gets its defaults', () => {
  const c = parseConfigText(GOOD, 'good.yaml');
  assert.equal(c.listeners[0]!.address, '127.0.0.1');
  assert.equal(c.listeners[0]!.maxHeaderSize, 16384);
  assert.equal(c.clusters.api!.timeouts.connect, '5s');
  assert.equal(c.clusters.api!.tls.verify, true);
  assert.equal(c.routes[0]!.host, 'preserve');
});

test('JSON is accepted and located by line too', () => {
  const text = '{\n  "listeners": [{ "port": 8080 }],\n  "clusters": { "a": { "endpoints": ["ftp://x"] } },\n  "routes": [{ "cluster": "a" }]\n}\n';
  const err = (() => {
    try {
      parseConfigText(text, 'c.json');
    } catch (e) {
      return e as ConfigError;
    }
    throw new Error('expected a ConfigError');
  })();
  assert.equal(err.problems.length, 1);
  assert.equal(err.problems[0]!.path, 'clusters.a.endpoints[0]');
  assert.equal(err.problems[0]!.line, 3);
});

test('a bad config lists every problem by path and line', () => {
  const text = `listeners:
  - port: 99999
    keepAliveTimeout: soon
clusters:
  api:
    endpoints: []
routes:
  - cluster: nope
    bogus: 1
`;
  try {
    parseConfigText(text, 'bad.yaml');
    assert.fail('expected a ConfigError');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const byPath = new Map(e.problems.map((p) => [p.path, p]));
    assert.equal(byPath.get('listeners[0].port')?.line, 2);
    assert.equal(byPath.get('listeners[0].keepAliveTimeout')?.line, 3);
    assert.match(byPath.get('listeners[0].keepAliveTimeout')!.message, /duration/);
    assert.equal(byPath.get('clusters.api.endpoints')?.line, 6);
    // An unknown key is named at its own line, with the nearest allowed key when one is close.
    assert.match(byPath.get('routes[0].bogus')!.message, /unknown key "bogus"/);
    assert.equal(byPath.get('routes[0].bogus')?.line, 9);
    // The reference problem is there too, beside the type errors (not after they are fixed).
    assert.match(byPath.get('routes[0].cluster')!.message, /no cluster named "nope"/);
    assert.ok(e.problems.length >= 4, e.message);
    assert.match(e.message, /bad\.yaml:2:/);
    assert.equal(e.code, 'GATEWISE_CONFIG_INVALID');
  }
});

test('a route to a missing cluster is refused with the known names', () => {
  const text = `listeners: [{ port: 1 }]\nclusters: { a: { endpoints: ["http://127.0.0.1:1"] } }\nroutes:\n  - cluster: b\n`;
  assert.throws(() => parseConfigText(text), (e: ConfigError) => e.problems.some((p) => p.path === 'routes[0].cluster' && /known: a/.test(p.message) && p.line === 4));
});

test('YAML syntax errors carry a line', () => {
  assert.throws(() => parseConfigText('listeners:\n  - port: [1\n'), (e: ConfigError) => e.problems[0]!.line !== undefined);
});

test('endpoint URLs must be scheme://host:port', () => {
  assert.throws(
    () => validateConfig({ listeners: [{ port: 1 }], clusters: { a: { endpoints: ['http://x:1/path'] } }, routes: [{ cluster: 'a' }] }),
    (e: ConfigError) => /no path/.test(e.problems[0]!.message),
  );
});

test('the JSON Schema describes the config for editors', () => {
  const s = jsonSchema() as { properties: Record<string, { description?: string }> };
  assert.ok(s.properties.listeners);
  assert.ok(s.properties.clusters);
  assert.match(String(s.properties.name!.description), /Proxy-Status/);
});

test('front: net is plain HTTP/1.1: refused with tls or http2 by the field; node is the default', () => {
  const base = "clusters: { a: { endpoints: ['http://127.0.0.1:1'] } }\nroutes: [{ cluster: a }]\n";
  assert.equal(parseConfigText(`listeners: [{ port: 8080 }]\n${base}`).listeners[0]!.front, 'node');
  assert.equal(parseConfigText(`listeners: [{ port: 8080, front: net }]\n${base}`).listeners[0]!.front, 'net');
  const refused = (listener: string, why: RegExp): void =>
    assert.throws(
      () => parseConfigText(`listeners: [${listener}]\n${base}`),
      (e: ConfigError) => e.problems.some((p) => p.path === 'listeners[0].front' && why.test(p.message)),
    );
  refused('{ port: 8080, front: net, http2: { h2c: true } }', /HTTP\/1\.1 only/);
  refused('{ port: 8443, front: net, tls: { certificates: [{ cert: /x.pem, key: /x.key }] } }', /TLS listener/);
  assert.throws(() => parseConfigText(`listeners: [{ port: 8080, front: fast }]\n${base}`), (e: ConfigError) => e.problems.some((p) => p.path === 'listeners[0].front'));
});

test('values the gateway sends upstream without judging them again are judged at load: the request-id header is a token, a literal route host holds no control byte', () => {
  // gateway/exchange.ts (#fieldsChecked) sends these as they are: a bad one is a config error
  // with its path and line, not a request refused at run time or a field injected upstream.
  const bad: Array<[string, string, RegExp]> = [
    ['requestId:\n  header: "x request id"\n', 'requestId.header', /a header name/],
    ['requestId:\n  header: "x-id\\r\\nx-injected: 1"\n', 'requestId.header', /a header name/],
    ['requestId:\n  header: ""\n', 'requestId.header', /a header name/],
    ['routes:\n  - cluster: app\n    host: "a\\r\\nx-injected: 1"\n', 'routes[0].host', /a Host value/],
    ['routes:\n  - cluster: app\n    host: "a\\u0000b"\n', 'routes[0].host', /a Host value/],
    ['routes:\n  - cluster: app\n    host: " padded"\n', 'routes[0].host', /a Host value/],
  ];
  const base = 'listeners:\n  - port: 8080\nclusters:\n  app:\n    endpoints: [http://127.0.0.1:3000]\n';
  for (const [text, path, message] of bad) {
    assert.throws(
      () => parseConfigText(base + (text.startsWith('routes') ? text : `routes:\n  - cluster: app\n${text}`)),
      (e: ConfigError) => e.problems.some((p) => p.path === path && message.test(p.message) && p.line !== undefined),
      JSON.stringify(text),
    );
  }
  for (const ok of ['requestId:\n  header: x-correlation-id\n', 'requestId:\n  header: X-Correlation-Id\n', 'routes:\n  - cluster: app\n    host: api.internal:8443\n']) {
    parseConfigText(base + (ok.startsWith('routes') ? ok : `routes:\n  - cluster: app\n${ok}`));
  }
});

test('a duration without a unit is refused where it is written (the docs say ms, s, m, h: "30" is not 30 seconds, and was taken as 30 ms); seeded numbers', async () => {
  const rand = seededRandom();
  await withSeed(rand, async () => {
    for (let i = 0; i < 20; i++) {
      const n = rand.pick(['0', '1', '5', '30', '250', '2.5', String(1 + rand.int(100_000))]);
      // One key from each place the schema builds a duration: a listener, a cluster, a route's
      // retry, the shutdown shape, the forward proxy.
      const text = (v: string) => `listeners:
  - port: 8080
    requestHeaderTimeout: "${v}"
clusters:
  api:
    endpoints: [http://127.0.0.1:3000]
    timeouts: { response: "${v}" }
routes:
  - cluster: api
    retry: { perTryTimeout: "${v}" }
shutdown: { drainTimeout: "${v}" }
forward:
  listeners: [{ port: 3128 }]
  auth: { required: false }
  timeouts: { connect: "${v}" }
`;
      let err: unknown;
      try {
        parseConfigText(text(n), 'bare.yaml');
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof ConfigError, `"${n}" without a unit was accepted`);
      const byPath = new Map(err.problems.map((p) => [p.path, p]));
      for (const [path, line] of [['listeners[0].requestHeaderTimeout', 3], ['clusters.api.timeouts.response', 7], ['routes[0].retry.perTryTimeout', 10], ['shutdown.drainTimeout', 11], ['forward.timeouts.connect', 15]] as const) {
        assert.equal(byPath.get(path)?.line, line, `${path} = "${n}": ${err.message}`);
        assert.match(byPath.get(path)!.message, /duration/);
      }
      // A number with a unit is a duration.
      const good = `${1 + rand.int(59)}${rand.pick(['s', 'm'])}`;
      assert.equal(parseConfigText(text(good), 'unit.yaml').clusters.api!.timeouts.response, good);
    }
  });
});
