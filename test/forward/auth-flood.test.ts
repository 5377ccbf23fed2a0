import assert from 'node:assert/strict';
import { Resolver as CaresResolver } from 'node:dns';
import { stat } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { LookupFunction } from '../../src/egress/index.js';
import { Failure } from '../../src/failure/index.js';
import type { ForwardContext } from '../../src/forward/context.js';
import { authenticate, authenticateNameFrom } from '../../src/forward/proxy-auth.js';
import { DEFAULT_GRAMMAR, hashPassword, isCustomerFacing, UserDirectory } from '../../src/tenants/index.js';
import { startLabDnsServer, type LabDnsServer } from '../../src/lab/index.js';
import { once } from 'node:events';
import { connect } from 'node:net';
import { basic, completeResponse, PASSWORD, PASSWORD2, rawExchange, readUntil, startOrigin, startTestProxy, USER, USER2, type Origin, type TestProxy } from './helpers.js';

/**
 * Issue 14, finding 1: wrong-password floods starved name resolution. scrypt ran on libuv's
 * four threads, where getaddrinfo (dns.lookup) waits too: 200 concurrent wrong passwords
 * made a logged-in user's name-based requests end in dns_timeout and a first login wait
 * seconds.
 *
 * The resolver here takes getaddrinfo's path: one task on libuv's thread pool per lookup
 * (an fs.stat stands in for getaddrinfo's slot, which would ask the machine's own DNS),
 * then the answer from the lab DNS server on 127.0.0.1.
 */
function threadPoolLookup(dns: LabDnsServer): LookupFunction {
  const cares = new CaresResolver({ timeout: 1000, tries: 1 });
  cares.setServers([`127.0.0.1:${dns.port}`]);
  return (hostname, _options, callback) => {
    stat(process.execPath, () => {
      cares.resolve4(hostname, (err, addresses) => {
        if (err) callback(err, []);
        else callback(null, addresses.map((address) => ({ address, family: 4 })));
      });
    });
  };
}

function statusOf(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}

function get(url: string, auth: string): string {
  return `GET ${url} HTTP/1.1\r\nhost: ${new URL(url).host}\r\nproxy-authorization: ${auth}\r\nconnection: close\r\n\r\n`;
}

async function timed(port: number, request: string, timeoutMs: number): Promise<{ status: number; ms: number; text: string }> {
  const t0 = performance.now();
  const text = await rawExchange(port, request, timeoutMs);
  return { status: statusOf(text), ms: performance.now() - t0, text };
}

/** As timed(), from another loopback address: the flood is one source, the users another. */
async function timedFrom(localAddress: string, port: number, request: string, timeoutMs: number): Promise<{ status: number; ms: number; text: string }> {
  const t0 = performance.now();
  const s = connect({ port, host: '127.0.0.1', localAddress });
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(request);
  const text = (await readUntil(s, (b) => completeResponse(b.toString('latin1')), timeoutMs)).toString('latin1');
  s.destroy();
  return { status: statusOf(text), ms: performance.now() - t0, text };
}

const FLOOD = 200;
/**
 * Under the proxy's DNS timeout (2 s in startTestProxy), far under the seconds of the bug.
 * Measured on a loaded 2-core machine: 200-850 ms for the first request during the flood
 * (the event loop answering the flood), under 20 ms for the next ones; a first login
 * 0.4-1.1 s (before the fix: dns_timeout, and about 6 s).
 */
const BOUND_MS = 1500;
const FIRST_LOGIN_BOUND_MS = 2000;

describe('a wrong-password flood does not starve DNS or logins', () => {
  let dns: LabDnsServer;
  let origin: Origin;
  let proxy: TestProxy;
  before(async () => {
    origin = await startOrigin();
    const records: Record<string, string[]> = { 'flood.test': ['127.0.0.1'] };
    for (let i = 0; i < 10; i++) records[`n${i}.origin.test`] = ['127.0.0.1'];
    dns = await startLabDnsServer({ records });
    // The lockout of wrong passwords per address (auth.lockout, test/forward/auth-lockout.test.ts)
    // would refuse this flood after its first 10 wrong passwords; off here: this is about the
    // bounds on checks at once, which hold without it.
    proxy = await startTestProxy({ auth: { maxConcurrentChecks: 16, maxConcurrentChecksPerSource: 4, lockout: { maxFailures: 0 } } }, { resolver: threadPoolLookup(dns) });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
    await dns.close();
  });

  it('serves a logged-in user by name and a first login quickly, and refuses the flood by name past the bound', { timeout: 60_000 }, async (t) => {
    // alice logs in; her password is remembered.
    const login = await timed(proxy.port, get(`http://n9.origin.test:${origin.port}/login`, basic()), 10_000);
    assert.equal(login.status, 200, login.text);

    // The flood: distinct wrong passwords (nothing to share or remember), for a known and
    // an unknown name, each on its own connection from 127.0.0.2 (the users come from
    // 127.0.0.1). Bounded: FLOOD requests, 20 s each at most.
    const flood = Array.from({ length: FLOOD }, (_, i) => timedFrom('127.0.0.2', proxy.port, get(`http://flood.test:${origin.port}/flood`, basic(i % 2 ? USER : 'mallory', `wrong-${i}`)), 20_000));
    // The first answer to the flood: by then the proxy has the rest of it in hand.
    await Promise.race(flood);

    const firstLogin = timed(proxy.port, get(`http://n8.origin.test:${origin.port}/first-login`, basic(USER2, PASSWORD2)), 20_000);
    const aliceMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      // A new name each time, so every request resolves (pooled upstream connections would not).
      const r = await timed(proxy.port, get(`http://n${i}.origin.test:${origin.port}/alice-${i}`, basic(USER, PASSWORD)), 20_000);
      assert.equal(r.status, 200, `alice's request ${i}: ${r.text.split('\r\n\r\n')[0]}`);
      aliceMs.push(Math.round(r.ms));
    }
    const bob = await firstLogin;
    const answers = await Promise.all(flood);
    const counts: Record<number, number> = {};
    for (const a of answers) counts[a.status] = (counts[a.status] ?? 0) + 1;
    const info = `alice ${aliceMs.join(', ')} ms; bob's first login ${Math.round(bob.ms)} ms; flood answers ${JSON.stringify(counts)}`;
    t.diagnostic(info);

    // Every one of alice's requests resolved its name (200, not dns_timeout: the proxy's DNS
    // timeout is 2 s). The first also waits while the event loop takes in the flood's
    // connections, which on a stalling machine is seconds of CPU, not a starved thread pool:
    // the bound is on the ones after it, and bob's login is judged against that first wait.
    assert.ok(Math.max(...aliceMs.slice(1)) < BOUND_MS, `a logged-in user's name-based requests are answered within ${BOUND_MS} ms: ${info}`);
    assert.equal(bob.status, 200, bob.text.split('\r\n\r\n')[0]);
    assert.ok(bob.ms < aliceMs[0]! + FIRST_LOGIN_BOUND_MS, `a first login is not delayed by seconds beyond the flood's intake: ${info}`);

    for (const a of answers) assert.ok([407, 429, 503].includes(a.status), `flood answer: ${a.text.split('\r\n\r\n')[0]}`);
    const refused = answers.filter((a) => a.status === 429 || a.status === 503);
    assert.ok(refused.length >= FLOOD / 4, `most of the flood is refused without a password check: ${info}`);
    for (const r of refused) {
      const head = r.text.split('\r\n\r\n')[0]!;
      assert.match(head, /\r\nproxy-status: gatewise;error=http_request_denied;details="too many password checks [^"]*; retry later"/);
      assert.match(head, /\r\nretry-after: [1-9]\d*\r\n/);
    }
    assert.ok(answers.every((a) => a.ms < 20_000), 'the flood is answered in bounded time');
  });
});

describe('authenticate() with the client as source', () => {
  it('answers a named refusal past the per-source bound; without a source the claimed name is the source', async () => {
    const users = new UserDirectory([{ name: USER, password: await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 }) }], { cacheTtlMs: 60_000, maxConcurrentChecksPerSource: 1 });
    // Only what authenticate() reads of the context.
    const ctx = { users, grammar: DEFAULT_GRAMMAR, settings: { authRequired: true } } as unknown as ForwardContext;
    try {
      const socket = { remoteAddress: '127.0.0.7' };
      const first = authenticate(ctx, { user: USER, password: 'wrong-1' }, false, socket);
      assert.ok(first instanceof Promise);
      const second = authenticate(ctx, { user: `${USER}-session-x`, password: 'wrong-2' }, false, socket);
      assert.ok(!(second instanceof Promise) && !second.ok, 'refused at once, without a check');
      assert.equal(second.failure.status, 429);
      assert.equal(second.failure.type, 'http_request_denied');
      assert.equal(second.failure.detail, 'too many password checks from 127.0.0.7; retry later');
      assert.ok(isCustomerFacing(second.failure), 'the detail is shown to the client');
      const other = authenticate(ctx, { user: USER, password: PASSWORD }, false, { remoteAddress: '127.0.0.8' });
      assert.ok(other instanceof Promise, 'another source is not held back');
      const named = authenticateNameFrom(ctx, USER, 'wrong-3', socket);
      assert.ok(named instanceof Failure && named.status === 429);
      // Without a source the claimed (base) name is the source.
      const byName = authenticateNameFrom(ctx, USER, 'wrong-4');
      assert.ok(byName instanceof Promise);
      const refusedByName = authenticateNameFrom(ctx, `${USER}-session-y`, 'wrong-5');
      assert.ok(refusedByName instanceof Failure && refusedByName.status === 429, 'the same base name is the same source');
      assert.equal(await byName, undefined);
      const a = await first;
      assert.ok(!a.ok && a.failure.status === 407);
      const b = await other;
      assert.ok(b.ok && b.user === USER);
    } finally {
      await users.close();
    }
  });
});
