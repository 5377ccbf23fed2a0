import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redactSecrets, redactUrl, REDACTED } from '../../src/observe/redact.js';
import { between, seededRun } from '../helpers/seeded.js';
import { closedPort } from '../helpers/admin-stack.js';
import { startTestProxy } from '../forward/helpers.js';

// Finding F2 (admin review): GET /config showed query-string credentials in URLs, the values of
// routes[].match.headers, and ACME DNS-provider options under keys such as hmacKey or pass.

const QUERY_NAMES = ['password', 'pass', 'passwd', 'pwd', 'token', 'access_token', 'secret', 'client_secret', 'key', 'apikey', 'api_key', 'auth', 'authorization', 'sig', 'signature', 'X-Amz-Signature', 'X-Amz-Credential', 'passphrase', 'PASSWORD', 'Token'];
const SECRET_KEYS = ['password', 'hmacKey', 'tsigKey', 'tsig', 'hmac', 'sharedKey', 'pass', 'auth', 'privateKeyPem', 'private_key', 'passphrase', 'sslPassphrase', 'apiToken', 'secretAccessKey', 'clientSecret', 'x-api-key', 'bearerAuth', 'userPass', 'key', 'passwordHash', 'credentials', 'AWS_SECRET_ACCESS_KEY', 'signingKey'];
const SCHEMES = ['redis', 'rediss', 'http', 'https', 'socks5'];

test('redaction: secret query parameters in URLs, anywhere in the config and in free text; the name, host, path and other parameters stay (seeded)', async () => {
  await seededRun('redact query', (rand) => {
    for (let i = 0; i < 200; i++) {
      const secret = `Q${Math.floor(rand() * 1e9)}z`;
      const name = QUERY_NAMES[between(rand, 0, QUERY_NAMES.length - 1)]!;
      const scheme = SCHEMES[between(rand, 0, SCHEMES.length - 1)]!;
      const before = rand() < 0.5 ? 'db=0&' : '';
      const after = rand() < 0.5 ? '&family=4' : '';
      const userinfo = rand() < 0.3 ? 'u:p@' : '';
      const url = `${scheme}://${userinfo}127.0.0.1:6379/0?${before}${name}=${secret}${after}`;
      const where = between(rand, 0, 3);
      const cfg = where === 0 ? { forward: { state: { redis: { url } } } } : where === 1 ? { list: ['x', url] } : where === 2 ? { note: `see ${url} for more` } : { a: { b: { c: [{ endpoint: url }] } } };
      const out = JSON.stringify(redactSecrets(cfg));
      assert.ok(!out.includes(secret), `${url} → ${out}`);
      assert.ok(out.includes(`${name}=${REDACTED}`), `the parameter's name stays: ${out}`);
      assert.ok(out.includes('127.0.0.1:6379/0?'), `host and path stay: ${out}`);
      if (before) assert.ok(out.includes('db=0&'), out);
      if (after) assert.ok(out.includes('&family=4'), out);
      assert.equal(redactUrl(url).includes(secret), false, redactUrl(url));
    }
  });
});

test('redaction: plain query parameters and non-secret URLs are left alone', () => {
  for (const url of ['redis://127.0.0.1:6379/0?db=2&family=6', 'http://h:1/p?q=1&keyPrefix=x&page=2&monkey=3', 'https://h/x?maxKeys=10&tokenizer=a']) {
    assert.equal(redactSecrets({ url }) && (redactSecrets({ url }) as { url: string }).url, url);
    assert.equal(redactUrl(url), url);
  }
});

test('redaction: every value of routes[].match.headers and of ACME dns options, whatever the key (seeded)', async () => {
  await seededRun('redact headers and options', (rand) => {
    for (let i = 0; i < 100; i++) {
      const secret = `H${Math.floor(rand() * 1e9)}y`;
      const header = ['X-Internal', 'x-tenant', 'X-Shared-Passphrase', 'X-Route', 'X-Env', 'Host'][between(rand, 0, 5)]!;
      const optKey = ['zone', 'server', 'hmacKey', 'user', 'endpoint', 'nested', 'credentialsJson'][between(rand, 0, 6)]!;
      const optVal = optKey === 'nested' ? { deep: [secret] } : secret;
      const cfg = {
        routes: [{ match: { path: '/p', headers: { [header]: secret } }, cluster: 'c' }],
        listeners: [{ port: 443, tls: { acme: { email: 'ops@example.com', dns: { provider: 'rfc2136', options: { [optKey]: optVal, port: 53 } } } } }],
        forward: { listeners: [{ port: 1, tls: { acme: { dns: { provider: 'x', options: { [optKey]: optVal } } } } }] },
      };
      const out = redactSecrets(cfg) as any;
      const text = JSON.stringify(out);
      assert.ok(!text.includes(secret), text);
      assert.equal(out.routes[0].match.headers[header], REDACTED);
      assert.equal(out.routes[0].match.path, '/p');
      assert.equal(out.routes[0].cluster, 'c');
      assert.equal(out.listeners[0].tls.acme.dns.provider, 'rfc2136');
      assert.equal(out.listeners[0].tls.acme.email, 'ops@example.com');
      assert.equal(out.listeners[0].tls.acme.dns.options.port, REDACTED);
    }
  });
});

test('redaction: secret-named keys in many spellings and positions are hidden; ordinary fields are not (seeded)', async () => {
  await seededRun('redact keys', (rand) => {
    for (let i = 0; i < 200; i++) {
      const secret = `K${Math.floor(rand() * 1e9)}w`;
      const key = SECRET_KEYS[between(rand, 0, SECRET_KEYS.length - 1)]!;
      const depth = between(rand, 0, 3);
      let v: unknown = rand() < 0.2 ? { [key]: [secret] } : { [key]: secret };
      for (let d = 0; d < depth; d++) v = rand() < 0.5 ? { ['k' + d]: v } : [v];
      const text = JSON.stringify(redactSecrets(v));
      assert.ok(!text.includes(secret), `${key}: ${text}`);
    }
  });
  // A PEM private key is hidden under any key.
  assert.equal((redactSecrets({ cert: '-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----' }) as any).cert, REDACTED);
  // Not secrets: file paths, counts, names, prefixes, booleans.
  const plain = {
    listeners: [{ tls: { certificates: [{ cert: '/etc/gw/a.pem', key: '/etc/gw/a.key' }], keyFile: '/etc/k.pem' } }],
    clusters: { c: { hashOn: { cookie: 'session', header: 'x-user' } } },
    cache: { maxKeys: 100, keyPrefix: 'gw:', monkey: 'banana' },
    routes: [{ retry: { idempotencyKey: true } }],
    forward: { auth: { required: true, realm: 'proxy' }, state: { redis: { keyPrefix: 'gatewise:' } } },
    authorityName: 'a', tokenizer: 'x', passive: 'yes', author: 'me', keyboard: 'qwerty',
  };
  assert.deepEqual(redactSecrets(plain), plain);
});

test('the "Redis is not reachable" startup warning does not print a query-string password', async () => {
  const port = await closedPort();
  const p = await startTestProxy({ state: { redis: { url: `redis://127.0.0.1:${port}/0?password=LogQueryPw77&db=0`, connectTimeout: '200ms' } } } as never);
  try {
    const line = p.lines.map((l) => JSON.stringify(l)).find((l) => l.includes('is not reachable'));
    assert.ok(line, `the warning is logged: ${p.lines.map((l) => JSON.stringify(l)).join('\n')}`);
    assert.ok(!line.includes('LogQueryPw77'), line);
    assert.ok(line.includes(`password=${REDACTED}`) || line.includes('password=%5Bredacted%5D'), line);
  } finally {
    await p.close();
  }
});

// Finding (admin review, session 32): numbers and booleans under secret-named keys were shown
// (`{ pin: …, hmacKey: 123456 }`), and so were the values of a route's `match.query`.
test('redaction: numbers and booleans under secret-named keys, at any depth and in arrays, are hidden like strings; under plain keys they stay (seeded)', async () => {
  await seededRun('redact non-string secrets', (rand) => {
    for (let i = 0; i < 200; i++) {
      const key = SECRET_KEYS[between(rand, 0, SECRET_KEYS.length - 1)]!;
      const n = 100_000_000 + Math.floor(rand() * 8e8);
      const kind = between(rand, 0, 3);
      const value: unknown = kind === 0 ? n : kind === 1 ? rand() < 0.5 : kind === 2 ? [n, rand() < 0.5] : -n / 7;
      const expected: unknown = Array.isArray(value) ? value.map(() => REDACTED) : REDACTED;
      const depth = between(rand, 0, 3);
      let cfg: unknown = { [key]: value, port: n + 1, enabled: true };
      let want: unknown = { [key]: expected, port: n + 1, enabled: true };
      for (let d = 0; d < depth; d++) {
        if (rand() < 0.5) {
          cfg = { ['k' + d]: cfg };
          want = { ['k' + d]: want };
        } else {
          cfg = [cfg];
          want = [want];
        }
      }
      assert.deepEqual(redactSecrets(cfg), want, `${key}: ${JSON.stringify(cfg)}`);
    }
  });
  // A flag whose name only looks like a secret's stays: retry.idempotencyKey.
  assert.deepEqual(redactSecrets({ routes: [{ retry: { idempotencyKey: true, tries: 3 } }] }), { routes: [{ retry: { idempotencyKey: true, tries: 3 } }] });
});

test('redaction: every value of routes[].match.query, whatever the parameter name and value type (seeded)', async () => {
  await seededRun('redact match.query', (rand) => {
    for (let i = 0; i < 100; i++) {
      const secret = `M${Math.floor(rand() * 1e9)}q`;
      const name = ['tenant', 'v', 'signature', 'api_key', 'x', 'debug'][between(rand, 0, 5)]!;
      const kind = between(rand, 0, 3);
      const value: unknown = kind === 0 ? secret : kind === 1 ? [secret, 'b'] : kind === 2 ? Number(secret.slice(1, -1)) : { nested: secret };
      const cfg = { routes: [{ name: 'r', match: { pathPrefix: '/p', query: { [name]: value }, headers: { 'x-a': secret } }, cluster: 'c' }] };
      const out = redactSecrets(cfg) as { routes: Array<{ name: string; match: { pathPrefix: string; query: Record<string, unknown> }; cluster: string }> };
      const text = JSON.stringify(out);
      assert.ok(!text.includes(secret.slice(1, -1)), text);
      assert.deepEqual(Object.keys(out.routes[0]!.match.query), [name], 'the parameter names stay');
      assert.equal(out.routes[0]!.match.pathPrefix, '/p');
      assert.equal(out.routes[0]!.name, 'r');
    }
  });
});
