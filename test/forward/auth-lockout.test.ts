import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { attachMetrics } from '../../src/observe/metrics.js';
import { hashPassword, UserDirectory } from '../../src/tenants/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { sumOf } from '../helpers/metrics-text.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { frontBytes, type Front } from './front-clients.js';
import { PASSWORD, readUntil, startOrigin, startTestProxy, USER, type Origin, type TestProxy } from './helpers.js';

/**
 * Wrong credentials are limited per client address (net/auth-lockout.ts): past
 * `auth.lockout.maxFailures` within `window`, the address is refused for a lockout (growing,
 * capped) without a password check, a right password included. The source addresses are
 * 127.0.0.x, bound with localAddress, so each case has its own.
 */

interface Answer {
  /** The credential was taken (200 from the origin, a CONNECT 200, SOCKS5 auth success). */
  ok: boolean;
  /** HTTP status, or the RFC 1929 status byte for SOCKS5. */
  status: number;
  head: string;
}

/** One attempt through `front` from `from`, with USER and `password`; the answer to the credential. */
async function attempt(front: Front, port: number, originPort: number, from: string, password: string): Promise<Answer> {
  const s: Socket = connect({ port, host: '127.0.0.1', localAddress: from });
  s.on('error', () => {});
  try {
    await once(s, 'connect');
    s.write(frontBytes(front, '127.0.0.1', originPort, USER, password));
    if (front === 'socks5') {
      // VER METHOD, then VER STATUS of RFC 1929.
      const b = await readUntil(s, (x) => x.length >= 4, undefined, 'the SOCKS5 method and auth status');
      assert.equal(b[1], 2, 'username/password method chosen');
      return { ok: b[3] === 0, status: b[3]!, head: b.toString('hex') };
    }
    const b = await readUntil(s, (x) => x.includes('\r\n\r\n'), undefined, 'a response head');
    const head = b.toString('latin1').split('\r\n\r\n')[0]!;
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    return { ok: status === 200, status, head };
  } finally {
    s.destroy();
  }
}

/** Whether the socket was closed by the proxy after a SOCKS5 refusal (the RFC 1929 failure reply, then close). */
async function socksClosedAfterFailure(port: number, from: string): Promise<boolean> {
  const s: Socket = connect({ port, host: '127.0.0.1', localAddress: from });
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(frontBytes('socks5', '127.0.0.1', 9, USER, PASSWORD));
  const b = await readUntil(s, () => false, GUARD_MS);
  const closed = s.destroyed || s.readableEnded;
  s.destroy();
  return closed && b.length === 4 && b[2] === 1 && b[3] === 1;
}

const refusedStatus = (front: Front): number => (front === 'socks5' ? 1 : 407);

describe('forward auth lockout', () => {
  let origin: Origin;
  let hash: string;
  before(async () => {
    origin = await startOrigin();
    hash = await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 });
  });
  after(async () => {
    await origin.close();
  });

  it('by default, the 11th attempt after 10 wrong passwords from one address is refused 429 (the right password too)', { timeout: 120_000 }, async () => {
    const proxy = await startTestProxy();
    try {
      for (let i = 0; i < 10; i++) {
        const a = await attempt('http', proxy.port, origin.port, '127.0.0.2', `wrong-${i}`);
        assert.equal(a.status, 407, `wrong password ${i + 1}: ${a.head}`);
      }
      const locked = await attempt('http', proxy.port, origin.port, '127.0.0.2', PASSWORD);
      assert.equal(locked.status, 429, locked.head);
      assert.match(locked.head, /\r\nretry-after: [1-9]\d*\r\n/i);
      assert.match(locked.head, /\r\nproxy-status: gatewise;error=http_request_denied;details="too many wrong credentials from this address[^"]*"/i);
      const other = await attempt('http', proxy.port, origin.port, '127.0.0.3', PASSWORD);
      assert.equal(other.status, 200, `another address is not locked out: ${other.head}`);
    } finally {
      await proxy.close();
    }
  });

  it('over a range of thresholds and fronts: n wrong passwords lock the address out, no password check runs then, other addresses pass, one log line and one count per lockout', { timeout: 300_000 }, async () => {
    await seededRun('auth lockout family', async (rand) => {
      const fronts: Front[] = ['http', 'connect', 'socks5'];
      for (let c = 0; c < 6; c++) {
        const front = fronts[c % 3]!;
        const n = between(rand, 1, 7);
        const users = new UserDirectory([{ name: USER, password: hash }], { cacheTtlMs: 60_000 });
        const registry = new Registry();
        const metrics = attachMetrics(registry);
        const proxy: TestProxy = await startTestProxy({ auth: { lockout: { maxFailures: n, window: '1m', lockout: '1m' } } }, { authProvider: users });
        const from = `127.0.0.${10 + c * 2}`;
        const elsewhere = `127.0.0.${11 + c * 2}`;
        const what = `case ${c}: ${front}, maxFailures ${n}`;
        try {
          for (let i = 0; i < n; i++) {
            const a = await attempt(front, proxy.port, origin.port, from, `wrong-${c}-${i}`);
            assert.equal(a.status, refusedStatus(front), `${what}: wrong password ${i + 1} is judged: ${a.head}`);
          }
          assert.equal(users.hashing.started, n, `${what}: one scrypt run per wrong password`);
          const locked = await attempt(front, proxy.port, origin.port, from, PASSWORD);
          assert.equal(locked.ok, false, `${what}: the right password during the lockout is refused`);
          if (front === 'socks5') assert.equal(locked.status, 1, `${what}: RFC 1929 failure`);
          else {
            assert.equal(locked.status, 429, `${what}: ${locked.head}`);
            assert.match(locked.head, /\r\nretry-after: (\d+)\r\n/i);
            assert.ok(Number(/\r\nretry-after: (\d+)\r\n/i.exec(locked.head)![1]) >= 1, `${what}: Retry-After at least 1`);
            assert.match(locked.head, /\r\nproxy-status: gatewise;error=http_request_denied/i);
          }
          // Further wrong attempts during the lockout are refused the same way, unjudged.
          const more = await attempt(front, proxy.port, origin.port, from, `wrong-${c}-more`);
          assert.equal(more.ok, false);
          assert.equal(users.hashing.started, n, `${what}: no scrypt run during the lockout`);
          // Another address is unaffected: its right password is checked and taken.
          const other = await attempt(front, proxy.port, origin.port, elsewhere, PASSWORD);
          assert.equal(other.ok, true, `${what}: another address passes: ${other.head}`);
          assert.equal(users.hashing.started, n + 1, `${what}: the other address's password was checked`);
          // One log line for the lockout, naming the address; one count in the metric.
          const logged = proxy.lines.filter((l) => l.type === 'auth-lockout');
          assert.equal(logged.length, 1, `${what}: one line per lockout: ${JSON.stringify(logged)}`);
          assert.equal(logged[0]!.address, from);
          assert.equal(logged[0]!.face, 'forward');
          assert.equal(sumOf(await registry.metrics(), 'gatewise_auth_lockouts_total', { face: 'forward' }), 1, `${what}: counted once`);
          if (front === 'socks5') assert.ok(await socksClosedAfterFailure(proxy.port, from), `${what}: SOCKS5 answers the RFC 1929 failure and closes`);
        } finally {
          metrics.detach();
          await proxy.close();
          await users.close();
        }
      }
    });
  });

  it('a lockout ends after its time, and the next one is longer (capped)', { timeout: 120_000 }, async () => {
    const users = new UserDirectory([{ name: USER, password: hash }], { cacheTtlMs: 60_000 });
    const proxy = await startTestProxy({ auth: { lockout: { maxFailures: 2, window: '1m', lockout: '200ms', maxLockout: '300ms' } } }, { authProvider: users });
    const from = '127.0.0.40';
    try {
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 2; i++) assert.equal((await attempt('http', proxy.port, origin.port, from, `wrong-${round}-${i}`)).status, 407);
        assert.equal((await attempt('http', proxy.port, origin.port, from, PASSWORD)).status, 429, `round ${round}: locked out`);
        // Polled with a deadline: refused attempts do not count, and the lockout ends by itself.
        let ok = false;
        for (const end = Date.now() + GUARD_MS; !ok && Date.now() < end; ) {
          const a = await attempt('http', proxy.port, origin.port, from, PASSWORD);
          ok = a.status === 200;
          if (!ok) {
            assert.equal(a.status, 429, a.head);
            await new Promise((r) => setTimeout(r, 25)); // a poll's pace, not a synchronisation
          }
        }
        assert.ok(ok, `round ${round}: the lockout ended within ${GUARD_MS} ms`);
      }
      const lengths = proxy.lines.filter((l) => l.type === 'auth-lockout').map((l) => l.lockoutMs);
      assert.deepEqual(lengths, [200, 300, 300], 'doubled, capped at maxLockout');
    } finally {
      await proxy.close();
      await users.close();
    }
  });
});
