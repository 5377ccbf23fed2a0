import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request } from 'undici';
import { startAdmin } from '../../src/observe/admin.js';
import { ADMIN_PROBLEMS } from '../../src/observe/admin-problem.js';
import { seededRun } from '../helpers/seeded.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { Writable } from 'node:stream';
import { hashPassword } from '../../src/tenants/index.js';
import { ADMIN_TOKEN, startAdminStack } from '../helpers/admin-stack.js';

// Every answer of the admin listener that is not a success is an RFC 9457 problem with a
// stable code from one table (src/observe/admin-problem.ts): the status comes from the table,
// never from the route that refused. Before, most refusals were `{ "error": "…" }` JSON with a
// status written where they were made, and only the account routes and the request-shape
// guard answered application/problem+json.

interface Case { name: string; method?: string; path: string; headers?: Record<string, string>; body?: string; status: number; code: string }

interface Problem { type: string; title: string; status: number; code: string; detail: string }

/** The checks every refusal must pass: the media type, the code's table entry, the status from it. */
async function refusal(base: string, c: Case): Promise<Problem> {
  const r = await request(`${base}${c.path}`, { method: (c.method ?? 'GET') as 'GET', headers: c.headers ?? {}, body: c.body });
  const text = await r.body.text();
  assert.equal(r.statusCode, c.status, `${c.name}: status (${text})`);
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/, `${c.name}: media type (${text})`);
  const p = JSON.parse(text) as Problem;
  assert.equal(p.code, c.code, `${c.name}: code`);
  const entry = ADMIN_PROBLEMS[p.code as keyof typeof ADMIN_PROBLEMS];
  assert.ok(entry, `${c.name}: code ${p.code} is in the table`);
  assert.equal(p.status, entry.status, `${c.name}: the body's status is the table's`);
  assert.equal(r.statusCode, entry.status, `${c.name}: the answer's status is the table's`);
  assert.equal(p.type, `tag:gatewise,2026:admin:${p.code}`, `${c.name}: type`);
  assert.equal(typeof p.title, 'string');
  assert.ok(p.title.length > 0, `${c.name}: title`);
  assert.equal(typeof p.detail, 'string');
  assert.ok(p.detail.length > 0, `${c.name}: detail`);
  return p;
}

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const post = { ...auth, 'gatewise-admin': '1' };

test('admin refusals without the faces, in a seeded order: each an application/problem+json with a stable code whose status is the table\'s', async () => {
  const bare = await startAdmin({ port: 0 });
  const tokened = await startAdmin({ port: 0, token: ADMIN_TOKEN });
  try {
    const cases: Array<Case & { base: string }> = [
      { base: bare.url, name: 'unknown route', path: '/no-such-route', status: 404, code: 'no-route' },
      { base: bare.url, name: 'wrong method', method: 'DELETE', path: '/healthz', status: 405, code: 'method-not-allowed' },
      { base: bare.url, name: 'no reverse gateway', path: '/clusters', status: 404, code: 'not-running' },
      { base: bare.url, name: 'no forward proxy', path: '/exits', status: 404, code: 'not-running' },
      { base: bare.url, name: 'no accounts', path: '/accounts', status: 404, code: 'not-running' },
      { base: bare.url, name: 'no metrics', path: '/metrics', status: 404, code: 'not-configured' },
      { base: bare.url, name: 'no config', path: '/config', status: 404, code: 'not-configured' },
      { base: bare.url, name: 'no reload', method: 'POST', path: '/reload', headers: { 'gatewise-admin': '1' }, status: 404, code: 'not-configured' },
      { base: bare.url, name: 'no reverse gateway for the cache', path: '/cache', status: 404, code: 'not-running' },
      { base: bare.url, name: 'unknown failure', path: '/failures/nope', status: 404, code: 'not-found' },
      { base: bare.url, name: 'bodiless POST without the header', method: 'POST', path: '/reload', status: 403, code: 'simple-request' },
      { base: bare.url, name: 'a body that is not JSON', method: 'POST', path: '/accounts', headers: { 'content-type': 'text/plain' }, body: 'x', status: 415, code: 'unsupported-media-type' },
      { base: bare.url, name: 'a foreign Origin', method: 'POST', path: '/reload', headers: { origin: 'http://evil.example', 'gatewise-admin': '1' }, status: 403, code: 'cross-site' },
      { base: bare.url, name: 'a rebound Host', path: '/status', headers: { host: 'evil.example' }, status: 403, code: 'rebound-host' },
      { base: tokened.url, name: 'no token', path: '/status', status: 401, code: 'unauthorized' },
      { base: tokened.url, name: 'a wrong token', path: '/status', headers: { authorization: 'Bearer wrong-wrong-wrong' }, status: 401, code: 'unauthorized' },
    ];
    await seededRun('admin-problems', async (rand) => {
      const order = cases.map((c) => ({ c, k: rand() })).sort((a, b) => a.k - b.k).map((x) => x.c);
      for (const c of order) await refusal(c.base, c);
    });
    // The unauthorised answer still names its scheme.
    const r = await request(`${tokened.url}/status`);
    assert.match(String(r.headers['www-authenticate']), /^Bearer /);
    await r.body.dump();
    // A request target the URL parser refuses (sent raw: no client sends it).
    const raw = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(new URL(bare.url).port), '127.0.0.1');
      let got = '';
      s.on('data', (b: Buffer) => (got += b.toString('latin1')));
      s.on('end', () => resolve(got));
      s.on('error', reject);
      s.write('GET //[ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    });
    assert.match(raw, /^HTTP\/1\.1 400 /);
    assert.match(raw, /content-type: application\/problem\+json/i);
    assert.match(raw, /"code": "bad-target"/);
  } finally {
    await bare.close();
    await tokened.close();
  }
});

test('admin refusals of the running faces (drain, purge, users, accounts, usage): the account service\'s refusals from the same table', async () => {
  const s = await startAdminStack();
  try {
    const cases: Case[] = [
      { name: 'drain without endpoint', method: 'POST', path: '/clusters/app/drain', headers: post, status: 400, code: 'missing-parameter' },
      { name: 'drain of an unknown endpoint', method: 'POST', path: '/clusters/app/drain?endpoint=127.0.0.1:1', headers: post, status: 404, code: 'not-found' },
      { name: 'purge without key', method: 'POST', path: '/cache/purge', headers: post, status: 400, code: 'missing-parameter' },
      { name: 'purge with no cache', method: 'POST', path: '/cache/purge?key=example.com/x', headers: post, status: 404, code: 'not-configured' },
      { name: 'cache counts with no cache', path: '/cache', headers: auth, status: 404, code: 'not-configured' },
      { name: 'an unseen user', path: '/users/nobody', headers: auth, status: 404, code: 'not-found' },
      { name: 'accounts without a users file', method: 'POST', path: '/accounts', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'carol', password: 'long-enough-pass' }), status: 409, code: 'no-users-file' },
      { name: 'an account body that is not JSON', method: 'POST', path: '/accounts', headers: { ...auth, 'content-type': 'application/json' }, body: '{', status: 400, code: 'invalid-input' },
      { name: 'a bad usage period', path: '/usage?period=week', headers: auth, status: 400, code: 'invalid-input' },
      { name: 'usage of an unknown user', path: '/usage?user=nobody', headers: auth, status: 404, code: 'not-found' },
    ];
    for (const c of cases) await refusal(s.admin, c);
  } finally {
    await s.close();
  }
});

test('the OpenAPI document says every refusal is application/problem+json and lists the codes', async () => {
  const admin = await startAdmin({ port: 0 });
  try {
    const r = await request(`${admin.url}/openapi.json`);
    const doc = (await r.body.json()) as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>; components: { schemas: { Problem: { properties: { code: { enum: string[] } } } } } };
    let seen = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (method === 'head') continue;
        for (const [code, resp] of Object.entries(op.responses)) {
          if (code.startsWith('2')) continue;
          seen++;
          assert.deepEqual(Object.keys(resp.content ?? {}), ['application/problem+json'], `${method} ${path} ${code}`);
        }
      }
    }
    assert.ok(seen > 20, `refusals documented: ${seen}`);
    assert.deepEqual([...doc.components.schemas.Problem.properties.code.enum].sort(), Object.keys(ADMIN_PROBLEMS).sort());
  } finally {
    await admin.close();
  }
});

test('docs/admin.md lists every refusal code with the table\'s status, and no other', () => {
  const doc = readFileSync(new URL('../../../docs/admin.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `([a-z-]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])] as const);
  assert.deepEqual(
    rows.map(([c, s]) => `${c} ${s}`).sort(),
    Object.entries(ADMIN_PROBLEMS).map(([c, e]) => `${c} ${e.status}`).sort(),
  );
});

/** Raw bytes to the admin listener; the whole answer once the listener closes the connection. */
function rawAnswer(url: string, bytes: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = connect(Number(new URL(url).port), '127.0.0.1');
    let got = '';
    s.on('data', (b: Buffer) => (got += b.toString('latin1')));
    s.on('close', () => resolve(got));
    s.on('error', reject);
    s.write(bytes);
  });
}

test('requests the HTTP parser refuses (a bad header, a head too large, a head too slow) are problems too, not Node\'s bare answers', async () => {
  const admin = await startAdmin({ port: 0, limits: { headersTimeoutMs: 300, requestTimeoutMs: 600 } });
  try {
    const cases: Array<[string, string, number, string]> = [
      ['a bad header line', 'GET /status HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n', 400, 'bad-request'],
      ['a head past Node\'s limit', `GET /status HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'head-too-large'],
      ['a head not finished in time', 'GET /status HTTP/1.1\r\nHost: a\r\n', 408, 'request-timeout'],
    ];
    for (const [name, bytes, status, code] of cases) {
      const raw = await rawAnswer(admin.url, bytes);
      assert.match(raw, new RegExp(`^HTTP/1\\.1 ${status} `), `${name}: ${raw.slice(0, 200)}`);
      assert.match(raw, /\r\ncontent-type: application\/problem\+json\r\n/i, `${name}: media type: ${raw.slice(0, 300)}`);
      const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Problem;
      assert.equal(body.code, code, name);
      assert.equal(body.status, ADMIN_PROBLEMS[code as keyof typeof ADMIN_PROBLEMS].status, name);
    }
  } finally {
    await admin.close();
  }
});

test('an account change whose users file cannot be written is the gateway\'s failure (500 write-failed), not the body\'s (400 invalid-input)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-admin-write-'));
  const usersFile = join(dir, 'users.yaml');
  const hash = await hashPassword('bob-password-1', { N: 1024, r: 8, p: 1 });
  writeFileSync(usersFile, `users:\n  - { name: bob, password: "${hash}" }\n`);
  const logger = createLogger({ destination: new Writable({ write: (_c: Buffer, _e, cb) => cb() }) });
  const rt = await startRuntime(
    validateConfig({
      listeners: [],
      admin: { port: 0, token: ADMIN_TOKEN },
      forward: { listeners: [{ address: '127.0.0.1', port: 0 }], accessLog: false, auth: { usersFile }, rules: { allowPrivate: true } },
    }),
    { logger, probeUpstreams: false },
  );
  try {
    rmSync(dir, { recursive: true, force: true });
    const p = await refusal(rt.adminUrl!, { name: 'users file gone', method: 'POST', path: '/accounts', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'carol', password: 'long-enough-pass' }), status: 500, code: 'write-failed' });
    assert.match(p.detail, /ENOENT/);
  } finally {
    await rt.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
