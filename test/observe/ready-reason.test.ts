import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startAdmin } from '../../src/observe/admin.js';
import { SharedState } from '../../src/state/index.js';
import { RedisStore } from '../../src/state/redis-store.js';
import { closedPort } from '../helpers/admin-stack.js';

// Finding (admin review, session 32): the open /ready showed why the shared state degraded (an
// error's code or message, which may name an internal host or URL) to anyone. Now only a caller
// with the token (or any caller of a loopback listener without a token) reads the reason; others
// get the status and the word "degraded".

const TOKEN = 'ready-reason-token-0123456789';

/** Shared state over a Redis that is not there (a port bound, then closed): degraded once its first heartbeat fails; resolves when it said so. */
async function degradedState(): Promise<{ shared: SharedState; reason: string }> {
  const port = await closedPort();
  const remote = new RedisStore({ url: `redis://127.0.0.1:${port}/0`, keyPrefix: 'ready:', connectTimeoutMs: 200 });
  let said: (reason: string) => void = () => {};
  const degraded = new Promise<string>((r) => (said = r));
  const shared = new SharedState(remote, { backend: 'redis', budgetMs: 50, probeMs: 60_000, log: { warn: (o) => o.event === 'state-degraded' && said(String(o.reason)), info: () => {} } });
  let timer: NodeJS.Timeout | undefined;
  try {
    const reason = await Promise.race([degraded, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('never degraded')), 10_000)))]);
    return { shared, reason };
  } catch (err) {
    await shared.close();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function ready(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const r = await request(`${url}/ready`, { headers });
  return { status: r.statusCode, body: await r.body.text() };
}

test('/ready with a token: the state\'s failure reason only with the token; without it the status and "degraded"', async () => {
  const { shared, reason } = await degradedState();
  const admin = await startAdmin({ port: 0, token: TOKEN, state: () => shared.health() });
  try {
    assert.ok(reason.length > 0);
    const open = await ready(admin.url);
    assert.equal(open.status, 200);
    assert.equal(open.body, 'ready: accepting traffic\nstate: degraded\n');
    for (const wrong of ['Bearer not-the-token-at-all-0000', 'Basic dXNlcjpwYXNz']) {
      const w = await ready(admin.url, { authorization: wrong });
      assert.equal(w.status, 200, 'the probe stays open');
      assert.equal(w.body, 'ready: accepting traffic\nstate: degraded\n', wrong);
    }
    const authed = await ready(admin.url, { authorization: `Bearer ${TOKEN}` });
    assert.equal(authed.status, 200);
    assert.match(authed.body, /^ready: accepting traffic\nstate: degraded \(redis unavailable since \S+: /);
    assert.ok(authed.body.includes(reason), authed.body);
  } finally {
    await admin.close();
    await shared.close();
  }
});

test('/ready on a loopback listener without a token: the reason, as before (only local callers reach it)', async () => {
  const { shared, reason } = await degradedState();
  const admin = await startAdmin({ port: 0, address: '127.0.0.1', state: () => shared.health() });
  try {
    const r = await ready(admin.url);
    assert.equal(r.status, 200);
    assert.ok(r.body.includes(`: ${reason})`), r.body);
  } finally {
    await admin.close();
    await shared.close();
  }
});
