import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { accessLine } from '../../src/observe/access-log.js';
import { ADMIN_ROUTES } from '../../src/observe/admin.js';
import { LiveTraffic } from '../../src/observe/live.js';
import { redactSecrets, REDACTED } from '../../src/observe/redact.js';
import { seededRandom } from '../helpers/seeded.js';
import { REFUSAL_REASONS, ERROR_TYPES } from '../../src/failure/types.js';
import type { RequestRecord } from '../../src/record/index.js';
import { ADMIN_TOKEN, FWD_PASSWORD, FWD_USER, PROXY_SECRET, eventually, startAdminStack } from '../helpers/admin-stack.js';

interface Failure { requestId: string; face: string; error?: string; reason?: string; explain: { code: string; title: string; explain: string }; [k: string]: unknown }

test('admin API, both faces under one runtime: bearer token, failures by request id (the access-log record), exits, sessions, users with quotas and refusals, redacted config', async () => {
  const s = await startAdminStack();
  try {
    // The token: open routes answer without it, the others do not.
    assert.equal((await s.api('/healthz', { token: null })).status, 200);
    assert.equal((await s.api('/ready', { token: null })).status, 200);
    assert.equal((await s.api('/openapi.json', { token: null })).status, 200);
    const page = await s.api<string>('/', { token: null });
    assert.equal(page.status, 200);
    assert.match(page.body, /<title>Gatewise — live<\/title>/);
    for (const path of ['/clusters', '/failures', '/config', '/metrics', '/users']) {
      assert.equal((await s.api(path, { token: null })).status, 401, path);
      assert.equal((await s.api(path, { token: 'wrong-token-wrong-token' })).status, 401, path);
    }
    const noAuth = await request(`${s.admin}/clusters`);
    assert.match(String(noAuth.headers['www-authenticate']), /^Bearer /);
    await noAuth.body.dump();

    // Reverse: one success, one refused connection (a failure kept with its attempts).
    const ok = await request(`${s.gateway}/ok`);
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
    const bad = await request(`${s.gateway}/dead/anything`);
    assert.equal(bad.statusCode, 502);
    await bad.body.dump();
    const rid = String(bad.headers['x-request-id']);
    assert.ok(rid.length > 0);

    // Forward: a sticky session through pool dc, then past the daily quota (3000 bytes down).
    const first = await s.viaProxy(`${FWD_USER}-session-s1`, FWD_PASSWORD, `${s.lab.url}/ok`);
    assert.equal(first.status, 200);
    await s.viaProxy(FWD_USER, FWD_PASSWORD, `${s.lab.url}/bytes?n=8000`);
    const refused = await eventually(async () => {
      const r = await s.viaProxy(FWD_USER, FWD_PASSWORD, `${s.lab.url}/ok`);
      return r.status === 429 ? r : undefined;
    }, 5000, 'a 429 past the quota');
    assert.match(String(refused.headers['proxy-status']), /error=http_request_denied/);
    const wrong = await s.viaProxy(FWD_USER, 'not-the-password', `${s.lab.url}/ok`);
    assert.equal(wrong.status, 407);

    // GET /failures/:id is the whole record, field for field the access-log line.
    const one = await eventually(async () => {
      const r = await s.api<Failure>(`/failures/${encodeURIComponent(rid)}`);
      return r.status === 200 ? r.body : undefined;
    }, 3000, 'the failure by request id');
    assert.equal(one.requestId, rid);
    assert.equal(one.error, 'connection_refused');
    assert.equal(one.explain.title, ERROR_TYPES.connection_refused.title);
    assert.equal(one.explain.explain, ERROR_TYPES.connection_refused.explain);
    const logLine = JSON.parse(accessLine(one as unknown as RequestRecord)) as Record<string, unknown>;
    const logged = s.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.type === 'access' && l.requestId === rid);
    assert.ok(logged, 'the access log has the line');
    for (const k of Object.keys(logged)) if (k !== 'time') assert.deepEqual(logLine[k], logged[k], `field ${k}`);
    assert.ok(Array.isArray(one.attempts) && (one.attempts as unknown[]).length >= 1);
    assert.equal((await s.api(`/failures/no-such-request-id`)).status, 404);

    const list = (await s.api<{ failures: Failure[] }>('/failures?limit=50')).body.failures;
    assert.ok(list.some((f) => f.requestId === rid));
    assert.ok(list.some((f) => f.face === 'forward' && f.reason === 'too_many_requests' && f.explain.explain === REFUSAL_REASONS.too_many_requests.explain));
    assert.ok(list.some((f) => f.face === 'forward' && f.reason === 'proxy_auth_required'));

    // Clusters and endpoints.
    const clusters = (await s.api<Record<string, Array<{ endpoint: string; available: boolean; inflight: number; draining: boolean; health: string; ejectedForMs: number }>>>('/clusters')).body;
    assert.deepEqual(Object.keys(clusters).sort(), ['app', 'dead']);
    assert.equal(clusters.app![0]!.available, true);
    assert.equal(clusters.app![0]!.draining, false);
    assert.equal(typeof clusters.app![0]!.inflight, 'number');

    // Exits and pools, and the live sticky session.
    const exits = (await s.api<{ pools: Record<string, { strategy: string; sessions: number; exits: Array<{ exit: string; uses: number; down: boolean; active: number }> }> }>('/exits')).body.pools;
    assert.deepEqual(Object.keys(exits).sort(), ['dc', 'resi']);
    assert.equal(exits.dc!.exits[0]!.exit, '127.0.0.1');
    assert.ok(exits.dc!.exits[0]!.uses >= 1);
    assert.equal(exits.dc!.sessions, 1);
    assert.ok(!JSON.stringify(exits).includes(PROXY_SECRET));
    const sessions = (await s.api<{ total: number; sessions: Array<{ pool: string; user: string; session: string; exit: string; expiresInMs: number }> }>('/sessions')).body;
    assert.equal(sessions.total, 1);
    assert.equal(sessions.sessions[0]!.pool, 'dc');
    assert.equal(sessions.sessions[0]!.user, FWD_USER);
    assert.equal(sessions.sessions[0]!.session, 's1');
    assert.equal(sessions.sessions[0]!.exit, '127.0.0.1');
    assert.ok(sessions.sessions[0]!.expiresInMs > 0);

    // Users: bytes, plan, the quota's fill, and the top refusal in plain words.
    interface User { user: string; plan: string; bytesDown: number; requests: number; quotas: Array<{ quota: string; used: number; limit: number; fraction: number }>; refusals: Array<{ code: string; count: number; title: string; explain: string }> }
    const users = (await s.api<{ users: User[] }>('/users')).body.users;
    const alice = users.find((u) => u.user === FWD_USER)!;
    assert.ok(alice, JSON.stringify(users));
    assert.equal(alice.plan, 'small');
    assert.ok(alice.bytesDown >= 3000, String(alice.bytesDown));
    assert.equal(alice.quotas[0]!.quota, 'bytesPerDay.down');
    assert.equal(alice.quotas[0]!.limit, 3000);
    assert.ok(alice.quotas[0]!.fraction >= 1, JSON.stringify(alice.quotas));
    const top = alice.refusals.find((r) => r.code === 'too_many_requests')!;
    assert.ok(top.count >= 1);
    assert.equal(top.title, REFUSAL_REASONS.too_many_requests.title);
    assert.equal(top.explain, REFUSAL_REASONS.too_many_requests.explain);
    assert.equal((await s.api<User>(`/users/${FWD_USER}`)).body.user, FWD_USER);
    assert.equal((await s.api(`/users/nobody`)).status, 404);

    // Traffic by cause.
    const traffic = (await s.api<{ totals: { reverse: number; forward: number }; causes: Array<{ code: string; count: number; lastMinute: number }> }>('/traffic?seconds=60')).body;
    assert.ok(traffic.totals.reverse >= 2 && traffic.totals.forward >= 4, JSON.stringify(traffic.totals));
    assert.equal(traffic.causes.find((c) => c.code === 'connection_refused')!.lastMinute, 1);

    // The running config, secrets redacted.
    const config = await s.api<string>('/config');
    assert.equal(config.status, 200);
    const text = JSON.stringify(config.body);
    assert.ok(!text.includes(s.hash), 'password hash shown');
    assert.ok(!text.includes('scrypt$'), 'password hash shown');
    assert.ok(!text.includes(ADMIN_TOKEN), 'admin token shown');
    assert.ok(!text.includes(PROXY_SECRET), 'proxy credentials shown');
    assert.match(text, /"http:\/\/\[redacted\]@127\.0\.0\.1:\d+"/);
    assert.match(text, /"name":"alice"/);

    // Status.
    const status = (await s.api<{ ready: boolean; faces: { reverse: boolean; forward: boolean }; forwardListeners: Array<{ accepted: number }> }>('/status')).body;
    assert.deepEqual(status.faces, { reverse: true, forward: true });
    assert.equal(status.ready, true);
    assert.ok(status.forwardListeners[0]!.accepted >= 4);

    // Wrong method, unknown route.
    assert.equal((await s.api('/failures', { method: 'POST' })).status, 405);
    assert.equal((await s.api('/nope')).status, 404);
  } finally {
    await s.close();
  }
});

test('every route the admin API serves is in its /openapi.json, answers, and is documented in docs/admin.md', async () => {
  const s = await startAdminStack();
  try {
    const doc = (await s.api<{ openapi: string; paths: Record<string, Record<string, unknown>> }>('/openapi.json', { token: null })).body;
    assert.equal(doc.openapi, '3.1.0');
    assert.ok(ADMIN_ROUTES.length >= 15);
    for (const r of ADMIN_ROUTES) assert.ok(doc.paths[r.path]?.[r.method.toLowerCase()], `${r.method} ${r.path} missing from /openapi.json`);
    let documented = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const method of Object.keys(methods)) {
        documented++;
        assert.ok(ADMIN_ROUTES.some((r) => r.path === path && r.method.toLowerCase() === method), `${method} ${path} documented but not served`);
        // Served: every documented route answers something other than "no such route".
        const concrete = path.replace('{cluster}', 'app').replace('{user}', 'nobody').replace('{requestId}', 'none');
        const r = await request(`${s.admin}${concrete}${method === 'post' ? '?endpoint=1.2.3.4:1' : ''}`, { method: method.toUpperCase() as 'GET', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
        const body = await r.body.text();
        assert.notEqual(r.statusCode, 405, `${method} ${path}`);
        assert.ok(!/every route is listed in \/openapi\.json/.test(body), `${method} ${path} is not served: ${body}`);
      }
    }
    assert.equal(documented, ADMIN_ROUTES.length);
    const md = readFileSync(new URL('../../../docs/admin.md', import.meta.url), 'utf8');
    for (const r of ADMIN_ROUTES) assert.ok(md.includes(`${r.method} ${r.path}\``) || md.includes(`\`${r.method} ${r.path}\``), `docs/admin.md lacks \`${r.method} ${r.path}\``);
  } finally {
    await s.close();
  }
});

function failure(i: number): RequestRecord {
  return {
    face: 'reverse', protocol: 'http', time: 1_000_000 + i, requestId: `r${i}`, clientAddress: '127.0.0.1', method: 'GET', status: 502, error: 'connection_refused', reason: undefined, phase: 'connect',
    endedBy: 'upstream', detail: undefined, bytesUp: 0, bytesDown: 0, durationMs: 1, listener: 'l', host: 'h', path: '/', httpVersion: '1.1', route: 'r', cluster: 'c', attempts: [], upgrade: false,
  };
}

test('the failure ring is bounded: the oldest failures are dropped and no longer found by id', () => {
  let now = 5_000_000;
  const live = new LiveTraffic({ failures: 3, now: () => now });
  for (let i = 0; i < 5; i++) live.add(failure(i));
  assert.deepEqual(live.failures().map((r) => r.requestId), ['r4', 'r3', 'r2']);
  assert.equal(live.failure('r0'), undefined);
  assert.equal(live.failure('r1'), undefined);
  assert.equal(live.failure('r2')!.requestId, 'r2');
  now += 2000;
  const t = live.timeline(5);
  assert.equal(t.seconds.length, 5);
  assert.equal(t.seconds[2]!.errors.connection_refused, 5);
  assert.equal(t.causes[0]!.count, 5);
});

test('redaction: password hashes, tokens, Authorization and the credentials of proxy URLs; the rest unchanged', () => {
  const out = redactSecrets({
    admin: { port: 1, token: 'abc' },
    forward: { auth: { users: [{ name: 'a', password: 'scrypt$1$2$3$x$y' }] }, egress: { pools: { p: { proxies: ['socks5://u:p@h:1', { url: 'http://x:y@h:2', weight: 2 }] } } } },
    clusters: { c: { hashOn: { header: 'x-user' }, endpoints: ['http://h:1'] } },
    headers: { authorization: 'Basic Zm9v' },
  }) as Record<string, any>;
  assert.equal(out.admin.token, REDACTED);
  assert.equal(out.admin.port, 1);
  assert.equal(out.forward.auth.users[0].password, REDACTED);
  assert.equal(out.forward.auth.users[0].name, 'a');
  assert.equal(out.forward.egress.pools.p.proxies[0], `socks5://${REDACTED}@h:1`);
  assert.equal(out.forward.egress.pools.p.proxies[1].url, `http://${REDACTED}@h:2`);
  assert.equal(out.forward.egress.pools.p.proxies[1].weight, 2);
  assert.deepEqual(out.clusters.c, { hashOn: { header: 'x-user' }, endpoints: ['http://h:1'] });
  assert.equal(out.headers.authorization, REDACTED);
});

test('redaction: a password holding @ and the secret keys of DNS providers and header matches are hidden whole (seeded)', () => {
  // Finding (adversarial review, session 29): `http://bob:pa@SECRET@h` showed `SECRET`, and
  // secretAccessKey, api-key and a route's x-api-key match value were shown.
  const rand = seededRandom();
  for (let i = 0; i < 40; i++) {
    const secret = `S${rand.int(1e9)}x`;
    const extra = rand.pick(['@', '@@', '%40', ':']);
    const scheme = rand.pick(['http', 'socks5', 'redis', 'https']);
    const key = rand.pick(['secretAccessKey', 'api-key', 'x-api-key', 'apiKey', 'accessKey', 'private_key', 'clientSecret', 'AWS_SECRET_ACCESS_KEY']);
    const out = JSON.stringify(redactSecrets({ url: `${scheme}://user:pa${extra}${secret}@127.0.0.1:9/p?q=1`, dns: { options: { [key]: secret } }, match: { headers: { [key]: secret } } }));
    assert.ok(!out.includes(secret), `seed ${rand.seed}: ${out}`);
    assert.ok(out.includes('127.0.0.1:9/p?q=1'), `the host and path stay: ${out}`);
  }
});
