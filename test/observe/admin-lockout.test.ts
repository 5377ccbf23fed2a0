import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/access-log.js';
import { sumOf } from '../helpers/metrics-text.js';
import { between, seededRun } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';

/**
 * Wrong admin tokens are limited per client address (net/auth-lockout.ts): past
 * `admin.lockout.maxFailures` within `window`, the address is answered 429 locked-out (with
 * Retry-After and the admin problem) for a lockout, the right token included, without the
 * token being compared. Source addresses are 127.0.0.x, bound with localAddress.
 */

const TOKEN = 'admin-lockout-token-0123456789';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function call(base: string, path: string, token: string | undefined, from: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { localAddress: from, headers: token ? { authorization: `Bearer ${token}` } : {}, agent: false, timeout: GUARD_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${GUARD_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function runtimeWith(lockout: Record<string, unknown> | undefined): Promise<{ rt: Runtime; admin: string; lines: Array<Record<string, unknown>> }> {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => { for (const l of c.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l)); cb(); } }) });
  const config = validateConfig({
    listeners: [{ address: '127.0.0.1', port: 0 }],
    clusters: { c: { endpoints: ['http://127.0.0.1:9'] } },
    routes: [{ cluster: 'c' }],
    log: { access: false },
    admin: { port: 0, token: TOKEN, ...(lockout ? { lockout } : {}) },
  });
  const rt = await startRuntime(config, { probeUpstreams: false, logger });
  return { rt, admin: rt.adminUrl!, lines };
}

describe('admin token lockout', () => {
  it('by default, 10 wrong tokens from one address lock it out: the 11th request, right token and all, is 429 with Retry-After and a problem', { timeout: 60_000 }, async () => {
    const { rt, admin } = await runtimeWith(undefined);
    try {
      for (let i = 0; i < 10; i++) assert.equal((await call(admin, '/status', `wrong-token-${i}`, '127.0.0.2')).status, 401, `wrong token ${i + 1}`);
      const r = await call(admin, '/status', TOKEN, '127.0.0.2');
      assert.equal(r.status, 429, r.body);
      assert.match(String(r.headers['retry-after']), /^[1-9]\d*$/);
      assert.equal(r.headers['content-type'], 'application/problem+json');
      const p = JSON.parse(r.body) as Record<string, unknown>;
      assert.equal(p.code, 'locked-out');
      assert.equal(p.status, 429);
      assert.equal(p.type, 'tag:gatewise,2026:admin:locked-out');
      assert.equal((await call(admin, '/status', TOKEN, '127.0.0.3')).status, 200, 'another address is not locked out');
    } finally {
      await rt.close();
    }
  });

  it('over a range of thresholds: the n-th wrong token locks the address out; others are unaffected; one log line and one count', { timeout: 120_000 }, async () => {
    await seededRun('admin lockout family', async (rand) => {
      for (let c = 0; c < 4; c++) {
        const n = between(rand, 1, 9);
        const { rt, admin, lines } = await runtimeWith({ maxFailures: n, window: '1m', lockout: '1m' });
        const from = `127.0.0.${20 + c * 2}`;
        const elsewhere = `127.0.0.${21 + c * 2}`;
        try {
          for (let i = 0; i < n; i++) assert.equal((await call(admin, '/status', `wrong-token-${i}`, from)).status, 401, `n=${n}: wrong token ${i + 1} is judged`);
          const r = await call(admin, '/status', TOKEN, from);
          assert.equal(r.status, 429, `n=${n}: ${r.body}`);
          assert.ok(Number(r.headers['retry-after']) >= 1);
          assert.match(String(r.headers['retry-after']), /^\d+$/);
          // Open routes stay open (probes), and are answered as to a caller without the token.
          assert.equal((await call(admin, '/healthz', TOKEN, from)).status, 200);
          // Another address: a wrong token is 401, the right one 200, and one wrong token does not lock it.
          assert.equal((await call(admin, '/status', 'wrong-elsewhere', elsewhere)).status, 401);
          assert.equal((await call(admin, '/status', TOKEN, elsewhere)).status, n === 1 ? 429 : 200, `n=${n}: another address is judged on its own`);
          const logged = lines.filter((l) => l.type === 'auth-lockout');
          assert.equal(logged.length, n === 1 ? 2 : 1, `n=${n}: one line per lockout: ${JSON.stringify(logged)}`);
          assert.equal(logged[0]!.address, from);
          assert.equal(logged[0]!.face, 'admin');
          const metrics = await call(admin, '/metrics', TOKEN, n === 1 ? '127.0.0.99' : elsewhere);
          assert.equal(metrics.status, 200);
          assert.equal(sumOf(metrics.body, 'gatewise_auth_lockouts_total', { face: 'admin' }), n === 1 ? 2 : 1);
        } finally {
          await rt.close();
        }
      }
    });
  });

  it('a lockout ends after its time; the next is longer, up to maxLockout', { timeout: 60_000 }, async () => {
    const { rt, admin, lines } = await runtimeWith({ maxFailures: 3, window: '1m', lockout: '150ms', maxLockout: '400ms' });
    const from = '127.0.0.50';
    try {
      for (let round = 0; round < 4; round++) {
        for (let i = 0; i < 3; i++) assert.equal((await call(admin, '/status', `wrong-${round}-${i}`, from)).status, 401);
        assert.equal((await call(admin, '/status', TOKEN, from)).status, 429, `round ${round}: locked out`);
        let ok = false;
        for (const end = Date.now() + GUARD_MS; !ok && Date.now() < end; ) {
          const r = await call(admin, '/status', TOKEN, from);
          ok = r.status === 200;
          if (!ok) {
            assert.equal(r.status, 429, r.body);
            await new Promise((res) => setTimeout(res, 20)); // a poll's pace, not a synchronisation
          }
        }
        assert.ok(ok, `round ${round}: the lockout ended within ${GUARD_MS} ms`);
      }
      assert.deepEqual(lines.filter((l) => l.type === 'auth-lockout').map((l) => l.lockoutMs), [150, 300, 400, 400]);
    } finally {
      await rt.close();
    }
  });
});
