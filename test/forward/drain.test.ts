import assert from 'node:assert/strict';
import { once } from 'node:events';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import type { AuthProvider } from '../../src/tenants/index.js';
import type { ForwardHooks } from '../../src/forward/index.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';
import { certDir, hasOpenssl, type CertDir, type IssuedCert, type TestCa } from '../helpers/tls-certs.js';
import { between, seededRun } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { closed, echoServer, forwardRecords, holdingOrigin, readAll, socks5Hello } from './drain-rig.js';
import { PASSWORD, USER, basic, dial, readUntil, startTestProxy, udpEcho } from './helpers.js';

/**
 * The forward proxy's graceful drain (ForwardProxy.close, the path SIGTERM takes): it stops
 * accepting, closes idle keep-alive connections at once, lets a request or tunnel in flight
 * finish within the drain timeout, then cuts what is left and records each cut one once, ended
 * by the gateway with the drain timeout's failure (proxy_internal_error), as the reverse
 * gateway does. A seeded family over what is in flight at close (an absolute-form GET whose
 * origin holds its answer, a CONNECT tunnel, a SOCKS5 tunnel, an idle keep-alive connection),
 * whether it finishes before the drain timeout, and the timeout itself; and a tunnel whose client
 * half-closed (FIN) before close(), cut at the timeout, which stays the client's. A second
 * family: what is held past its handshake and before its dial at close() (a SOCKS5 CONNECT in
 * its password check, a CONNECT or a GET in an `authorize` hook) and a SOCKS5 UDP association.
 * A third: the first family's GET, CONNECT and idle cases, and a connection that sent nothing,
 * on an HTTPS proxy listener (`tls`), cut through their TLS sockets.
 */

/** `silent`: a connection that sent no request (over TLS: its handshake done, nothing after). */
type Kind = 'get' | 'connect' | 'socks5' | 'idle' | 'silent';
const KINDS: readonly Kind[] = ['get', 'connect', 'socks5', 'idle'];
/** A tunnel case: the client has sent its FIN (half-closed, the destination still open) before close(). */
type Fin = boolean;

/** An HTTPS proxy listener's certificate, and the CA its clients trust. */
interface ProxyTls {
  cert: IssuedCert;
  ca: TestCa;
}

/** A client connection to the proxy: TCP, or TLS to an HTTPS proxy listener (its handshake done). */
async function dialProxy(port: number, tls: ProxyTls | undefined): Promise<Socket> {
  if (tls === undefined) return dial(port);
  const s = tlsConnect({ host: '127.0.0.1', port, ca: tls.ca.cert, servername: 'proxy.test' });
  s.on('error', () => {});
  await Promise.race([
    once(s, 'secureConnect'),
    new Promise((_, reject) => setTimeout(() => reject(new Error('no TLS handshake with the proxy')), GUARD_MS).unref()),
  ]);
  return s;
}

async function oneCase(kind: Kind, inTime: boolean, drainMs: number, fin: Fin = false, tls?: ProxyTls): Promise<void> {
  const records = forwardRecords();
  const origin = await holdingOrigin();
  const echo = await echoServer();
  // The in-time cases finish on the test's word, long before a drain timeout that never decides them.
  const drainTimeout = inTime ? `${GUARD_MS}ms` : `${drainMs}ms`;
  const listeners = tls === undefined ? undefined : [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: tls.cert.certFile, key: tls.cert.keyFile }] } }];
  const p = await startTestProxy({ shutdown: { drainTimeout }, timeouts: { clientKeepAlive: '60s', handshake: '60s' }, ...(listeners ? { listeners } : {}) });
  const client = await dialProxy(p.port, tls);
  client.on('error', () => {});
  let closing: Promise<void> | undefined;
  try {
    const all = readAll(client);
    if (kind === 'silent') {
      // Nothing sent (a TLS client has finished its handshake with the proxy).
    } else if (kind === 'get' || kind === 'idle') {
      const path = kind === 'idle' ? '/now' : '/held';
      client.write(`GET http://127.0.0.1:${origin.port}${path} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      if (kind === 'idle') {
        await readUntil(client, (b) => b.toString('latin1').endsWith('now'), GUARD_MS);
        await records.wait((r) => r.endedBy === 'complete', 'the idle connection\'s request');
      } else await origin.arrived();
    } else if (kind === 'connect') {
      client.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      await readUntil(client, (b) => b.includes('\r\n\r\n'), GUARD_MS);
      client.write('ping');
      await readUntil(client, (b) => b.toString('latin1').endsWith('ping'), GUARD_MS);
    } else {
      client.write(socks5Hello(echo.port));
      await readUntil(client, (b) => b.length >= 2 + 2 + 10, GUARD_MS);
      client.write('ping');
      await readUntil(client, (b) => b.toString('latin1').endsWith('ping'), GUARD_MS);
    }
    if (fin) {
      // The client's FIN reaches the destination through the tunnel (its echo of 'ping' was read
      // above); the tunnel stays open the other way.
      client.end();
      await new Promise((r) => setImmediate(r));
    }
    const before = records.seen.length;
    const t0 = performance.now();
    closing = p.proxy.close(); // the config's drain timeout (the helper's close() drains 1 s)
    if (kind === 'idle' || kind === 'silent') {
      // Closed at once, not at the drain timeout (GUARD_MS here): no request was in flight.
      await closed(client);
      await closing;
      assert.ok(performance.now() - t0 < GUARD_MS, 'the idle connection was closed at once');
      assert.equal(records.seen.length, before, `no record for an idle connection: ${JSON.stringify(records.seen.slice(before))}`);
      return;
    }
    if (inTime) {
      if (kind === 'get') origin.release('the full answer');
      else echo.end();
      const got = (await all).toString('latin1');
      if (kind === 'get') assert.match(got, /^HTTP\/1\.1 200 [^]*\r\n\r\nthe full answer$/, 'the request in flight got its full answer');
      await closing;
      const rec = await records.wait((r) => r.protocol === (kind === 'get' ? 'http' : kind), 'the finished one');
      assert.equal(rec.error, undefined, JSON.stringify(rec));
      assert.notEqual(rec.endedBy, 'gateway', JSON.stringify(rec));
      if (kind === 'get') {
        assert.equal(rec.endedBy, 'complete');
        assert.equal(rec.status, 200);
      }
    } else {
      await closed(client);
      await closing;
      const took = performance.now() - t0;
      assert.ok(took >= drainMs - 5, `cut after ${Math.round(took)} ms, before the ${drainMs} ms drain timeout`);
      const rec = await records.wait((r) => r.protocol === (kind === 'get' ? 'http' : kind), 'the cut one');
      if (fin) {
        // Its client had left first (its FIN read): the client's, not the drain's.
        assert.equal(rec.endedBy, 'client', JSON.stringify(rec));
        assert.equal(rec.error, undefined, JSON.stringify(rec));
        const mine = records.seen.slice(before);
        assert.equal(mine.length, 1, `one record: ${JSON.stringify(mine)}`);
        return;
      }
      assert.equal(rec.endedBy, 'gateway', JSON.stringify(rec));
      assert.equal(rec.error, 'proxy_internal_error', JSON.stringify(rec));
      assert.match(rec.detail ?? '', /drain timeout/, JSON.stringify(rec));
    }
    const mine = records.seen.slice(before);
    assert.equal(mine.length, 1, `one record for the request or tunnel in flight: ${JSON.stringify(mine)}`);
  } finally {
    client.destroy();
    await (closing ?? p.proxy.close(0));
    records.close();
    await origin.close();
    await echo.close();
  }
}

describe('forward proxy: graceful drain at close', () => {
  it('finishes what is in flight within the drain timeout, closes idle connections, cuts the rest as its own doing (seeded)', async () => {
    await seededRun('forward drain', async (rand) => {
      const cases: Array<[Kind, boolean, Fin]> = [];
      for (const k of KINDS) for (const t of k === 'idle' ? [true] : [true, false]) cases.push([k, t, false]);
      // A tunnel whose client half-closed before close(), cut at the drain timeout: CONNECT or SOCKS5.
      cases.push([rand() < 0.5 ? 'connect' : 'socks5', false, true]);
      // Every combination once, in a seeded order, each with a seeded drain timeout.
      for (let i = cases.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [cases[i], cases[j]] = [cases[j]!, cases[i]!];
      }
      for (const [kind, inTime, fin] of cases) {
        const drainMs = between(rand, 150, 900);
        try {
          await oneCase(kind, inTime, drainMs, fin);
        } catch (err) {
          (err as Error).message = `${kind}${fin ? ' (client FIN first)' : ''}, ${inTime ? 'finishes in time' : `cut at ${drainMs} ms`}: ${(err as Error).message}`;
          throw err;
        }
      }
    });
  });
});

/**
 * Where a request is held past its handshake and before its dial when close() is called: a
 * SOCKS5 CONNECT in its password check (an auth provider that takes long), a CONNECT or an
 * absolute-form GET in an `authorize` hook that waits.
 */
type Held = 'socks5-auth' | 'connect-hook' | 'get-hook';
const HELDS: readonly Held[] = ['socks5-auth', 'connect-hook', 'get-hook'];

/**
 * A request held past its handshake at close(): it may finish like any request in flight (the
 * hold answered during the drain: it dials and runs, recorded as it ends); held past the drain
 * timeout, its connection is cut there and the later answer of the hold makes no dial, and its
 * one record is the proxy's (ended by the gateway, the drain timeout's failure), not a client
 * that left.
 */
async function heldCase(held: Held, inTime: boolean, drainMs: number): Promise<void> {
  const records = forwardRecords();
  const origin = await holdingOrigin();
  const echo = await echoServer();
  let holding!: () => void;
  const arrived = new Promise<void>((r) => (holding = r));
  let answer!: () => void;
  const answered = new Promise<void>((r) => (answer = r));
  const provider: AuthProvider = {
    has: (name) => name === USER,
    authenticate: async (name, password) => {
      holding();
      await answered;
      return name === USER && password === PASSWORD ? USER : undefined;
    },
  };
  const hooks: ForwardHooks[] = [
    {
      authorize: async () => {
        holding();
        await answered;
        return undefined;
      },
    },
  ];
  const drainTimeout = inTime ? `${GUARD_MS}ms` : `${drainMs}ms`;
  const p =
    held === 'socks5-auth'
      ? await startTestProxy({ shutdown: { drainTimeout }, auth: { required: true, users: [] }, timeouts: { handshake: '60s' } }, { authProvider: provider })
      : await startTestProxy({ shutdown: { drainTimeout }, timeouts: { clientKeepAlive: '60s', handshake: '60s' } }, { hooks });
  const client = await dial(p.port);
  client.on('error', () => {});
  let closing: Promise<void> | undefined;
  const guard = setTimeout(() => answer(), GUARD_MS);
  try {
    const all = readAll(client);
    if (held === 'socks5-auth') client.write(socks5Hello(echo.port));
    else if (held === 'connect-hook') client.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    else client.write(`GET http://127.0.0.1:${origin.port}/held HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    await Promise.race([arrived, new Promise((_, reject) => setTimeout(() => reject(new Error('the request never reached its hold')), GUARD_MS).unref())]);
    const before = records.seen.length;
    const t0 = performance.now();
    closing = p.proxy.close();
    const protocol = held === 'socks5-auth' ? 'socks5' : held === 'connect-hook' ? 'connect' : 'http';
    if (inTime) {
      // The hold answers during the drain: the request dials and runs, and ends on the test's word.
      answer();
      if (held === 'get-hook') {
        await origin.arrived();
        origin.release('the full answer');
      } else {
        await readUntil(client, (b) => (held === 'socks5-auth' ? b.length >= 2 + 2 + 10 : b.includes('\r\n\r\n')), GUARD_MS);
        client.write('ping');
        await readUntil(client, (b) => b.toString('latin1').endsWith('ping'), GUARD_MS);
        echo.end();
      }
      const got = (await all).toString('latin1');
      if (held === 'get-hook') assert.match(got, /^HTTP\/1\.1 200 [^]*\r\n\r\nthe full answer$/, 'the held request got its full answer');
      await closing;
      const rec = await records.wait((r) => r.protocol === protocol, 'the finished one');
      assert.equal(rec.error, undefined, JSON.stringify(rec));
      assert.notEqual(rec.endedBy, 'gateway', JSON.stringify(rec));
    } else {
      // Cut at the drain timeout while still held; the hold answers only after the cut.
      await closed(client);
      const took = performance.now() - t0;
      answer();
      await closing;
      assert.ok(took >= drainMs - 5, `cut after ${Math.round(took)} ms, before the ${drainMs} ms drain timeout`);
      const rec = await records.wait((r) => r.protocol === protocol, 'the cut one');
      assert.equal(rec.endedBy, 'gateway', JSON.stringify(rec));
      assert.equal(rec.error, 'proxy_internal_error', JSON.stringify(rec));
      assert.match(rec.detail ?? '', /drain timeout/, JSON.stringify(rec));
      assert.equal(echo.accepted, 0, 'no dial after the cut (a tunnel)');
      assert.equal(origin.heldCount(), 0, 'no dial after the cut (a request)');
    }
    const mine = records.seen.slice(before);
    assert.equal(mine.length, 1, `one record for the held request: ${JSON.stringify(mine)}`);
  } finally {
    clearTimeout(guard);
    answer();
    client.destroy();
    await (closing ?? p.proxy.close(0));
    records.close();
    await origin.close();
    await echo.close();
  }
}

/**
 * A SOCKS5 UDP association at close(): long-lived like a tunnel, it may run until the drain
 * timeout; its client closing the control connection first ends it as the client's (recorded
 * as it ends); at the drain timeout it is cut (control connection closed, relay closed) and
 * recorded once as the proxy's doing.
 */
async function udpCase(inTime: boolean, drainMs: number): Promise<void> {
  const records = forwardRecords();
  const echo = await udpEcho();
  const drainTimeout = inTime ? `${GUARD_MS}ms` : `${drainMs}ms`;
  const p = await startTestProxy({ shutdown: { drainTimeout } });
  const u = await udpClient();
  let closing: Promise<void> | undefined;
  let control: Socket | undefined;
  try {
    const assoc = await associate(p.port, { user: USER, password: PASSWORD }, u.port);
    control = assoc.socket;
    control.on('error', () => {});
    // A datagram there and back: the association is live.
    const relayPort = assoc.remoteHost!.port;
    const back = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no datagram back through the association')), GUARD_MS);
      u.sock.once('message', () => {
        clearTimeout(t);
        resolve();
      });
    });
    u.sock.send(udpFrame('127.0.0.1', echo.port, 'ping'), relayPort, '127.0.0.1');
    await back;
    const before = records.seen.length;
    const t0 = performance.now();
    closing = p.proxy.close();
    if (inTime) {
      // Its client closes the control connection during the drain: the association ends as its.
      control.end();
      await closed(control);
      await closing;
      const rec = await records.wait((r) => r.protocol === 'socks5-udp', 'the ended association');
      assert.equal(rec.error, undefined, JSON.stringify(rec));
      assert.equal(rec.endedBy, 'client', JSON.stringify(rec));
    } else {
      await closed(control);
      const took = performance.now() - t0;
      await closing;
      assert.ok(took >= drainMs - 5, `cut after ${Math.round(took)} ms, before the ${drainMs} ms drain timeout`);
      const rec = await records.wait((r) => r.protocol === 'socks5-udp', 'the cut association');
      assert.equal(rec.endedBy, 'gateway', JSON.stringify(rec));
      assert.equal(rec.error, 'proxy_internal_error', JSON.stringify(rec));
      assert.match(rec.detail ?? '', /drain timeout/, JSON.stringify(rec));
    }
    const mine = records.seen.slice(before);
    assert.equal(mine.length, 1, `one record for the association: ${JSON.stringify(mine)}`);
  } finally {
    control?.destroy();
    await (closing ?? p.proxy.close(0));
    records.close();
    u.sock.close();
    echo.close();
  }
}

describe('forward proxy: graceful drain of what is held before its dial, and of UDP associations', () => {
  it('a request held in its password check or a hook finishes within the drain timeout or is cut as the proxy\'s; an association likewise (seeded)', { timeout: 300_000 }, async () => {
    await seededRun('forward drain held', async (rand) => {
      const cases: Array<[Held | 'udp', boolean]> = [];
      for (const h of [...HELDS, 'udp' as const]) for (const t of [true, false]) cases.push([h, t]);
      for (let i = cases.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [cases[i], cases[j]] = [cases[j]!, cases[i]!];
      }
      // Every case runs; the failures are reported together.
      const failed: string[] = [];
      for (const [what, inTime] of cases) {
        const drainMs = between(rand, 150, 900);
        try {
          if (what === 'udp') await udpCase(inTime, drainMs);
          else await heldCase(what, inTime, drainMs);
        } catch (err) {
          failed.push(`${what}, ${inTime ? 'finishes in time' : `cut at ${drainMs} ms`}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      assert.deepEqual(failed, [], `${failed.length} of ${cases.length} cases failed:\n${failed.join('\n')}`);
    });
  });
});

describe('forward proxy: graceful drain on an HTTPS proxy listener (tls)', { skip: hasOpenssl() ? false : 'no openssl' }, () => {
  let dir: CertDir;
  let tls: ProxyTls;
  before(() => {
    dir = certDir();
    const ca = dir.ca('Proxy CA');
    tls = { ca, cert: ca.issue('proxy.test', { dns: ['proxy.test', 'localhost'], ip: ['127.0.0.1'] }) };
  });
  after(() => dir.remove());

  it('finishes what is in flight through TLS, closes idle TLS connections, cuts the rest through their TLS socket as its own doing (seeded)', { timeout: 300_000 }, async () => {
    await seededRun('forward drain tls', async (rand) => {
      const cases: Array<[Kind, boolean]> = [['idle', true], ['silent', true]];
      for (const k of ['get', 'connect'] as const) for (const t of [true, false]) cases.push([k, t]);
      for (let i = cases.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [cases[i], cases[j]] = [cases[j]!, cases[i]!];
      }
      for (const [kind, inTime] of cases) {
        const drainMs = between(rand, 150, 900);
        try {
          await oneCase(kind, inTime, drainMs, false, tls);
        } catch (err) {
          (err as Error).message = `tls ${kind}, ${inTime ? 'finishes in time' : `cut at ${drainMs} ms`}: ${(err as Error).message}`;
          throw err;
        }
      }
    });
  });
});

/**
 * A request pipelined behind one the drain cuts, still waiting its turn: recorded as the
 * proxy's cut too, not as a client that left (review finding: 499 ended by the client, "the
 * client closed its connection before this pipelined request had its turn").
 *
 * An idempotent one (GET) behind it runs at once, and its whole answer comes back while the
 * first is still held: node:http keeps that answer queued until the first's is written, and the
 * cut destroys the connection first. Its client never got it, and its record says so: the
 * drain's cut, with the failure's status, not 200 `complete` (finding: it was recorded 200
 * complete when the destination's answer ended). The test waits for that answer's end on undici's
 * `undici:request:trailers` channel (published just before its handler's onComplete) and a turn
 * of the event loop, so the answer is complete and queued before close(). Neither record counts
 * a byte down: the queued answer's head and body, counted as they came, are taken back when it
 * turns out never written (finding, session 49: its record said `bytesDown` of the whole answer).
 */
async function pipelinedCase(second: 'POST' | 'PATCH' | 'GET', drainMs: number): Promise<void> {
  const records = forwardRecords();
  const origin = await holdingOrigin();
  const p = await startTestProxy({ shutdown: { drainTimeout: `${drainMs}ms` }, timeouts: { clientKeepAlive: '60s', handshake: '60s' } });
  const client = await dial(p.port);
  client.on('error', () => {});
  const before = records.seen.length;
  let closing: Promise<void> | undefined;
  let completed!: () => void;
  const secondCompleted = new Promise<void>((r) => (completed = r));
  const onTrailers = (m: unknown): void => {
    if ((m as { request: { path: string } }).request.path === '/now') completed();
  };
  subscribe('undici:request:trailers', onTrailers);
  try {
    const all = readAll(client);
    const target = `http://127.0.0.1:${origin.port}`;
    const auth = `Host: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n`;
    // Not idempotent: it waits for the one ahead to finish. Idempotent (GET): it runs at once.
    const next = second === 'GET' ? `GET ${target}/now HTTP/1.1\r\n${auth}\r\n` : `${second} ${target}/now HTTP/1.1\r\n${auth}Content-Length: 2\r\n\r\nhi`;
    client.write(`GET ${target}/held HTTP/1.1\r\n${auth}\r\n${next}`);
    await origin.arrived();
    if (second === 'GET') {
      await Promise.race([secondCompleted, new Promise((_, reject) => setTimeout(() => reject(new Error('the second answer never completed')), GUARD_MS).unref())]);
      await new Promise((r) => setImmediate(r));
    }
    closing = p.proxy.close();
    await closed(client);
    await closing;
    const mine = await (async () => {
      const until = performance.now() + GUARD_MS;
      while (records.seen.length - before < 2 && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
      return records.seen.slice(before);
    })();
    assert.equal(mine.length, 2, `two records: ${JSON.stringify(mine)}`);
    for (const rec of mine) {
      assert.equal(rec.endedBy, 'gateway', `ended by the proxy's cut: ${JSON.stringify(rec)}`);
      assert.equal(rec.error, 'proxy_internal_error', JSON.stringify(rec));
      assert.match(rec.detail ?? '', /drain timeout/, JSON.stringify(rec));
    }
    // Nothing was answered on the connection: neither record says an answer's status went out.
    assert.equal((await all).length, 0, 'the client got no answer');
    assert.equal(mine[0]!.status, mine[1]!.status, `both unanswered, the same status: ${JSON.stringify(mine)}`);
    for (const rec of mine) assert.notEqual(rec.status, 200, JSON.stringify(rec));
    if (second === 'GET') assert.equal(mine.filter((r) => /never written to the client/.test(r.detail ?? '')).length, 1, `the queued answer's record says it was never written: ${JSON.stringify(mine)}`);
    // Nothing of either answer left: neither counts a byte down (the queued one counted its
    // head and body as they came, before it was known they would never be written: finding).
    for (const rec of mine) assert.equal(rec.bytesDown, 0, `no byte down for an answer never written: ${JSON.stringify(rec)}`);
  } finally {
    unsubscribe('undici:request:trailers', onTrailers);
    client.destroy();
    await (closing ?? p.proxy.close(0));
    records.close();
    await origin.close();
  }
}

describe('forward proxy: graceful drain of a pipelined request waiting its turn, or whose answer waits its turn', () => {
  it('is recorded as the proxy\'s cut, as the request ahead of it is, never as answered (seeded: the drain timeout)', { timeout: 120_000 }, async () => {
    await seededRun('forward drain pipelined', async (rand) => {
      for (const second of ['POST', 'PATCH', 'GET'] as const) await pipelinedCase(second, between(rand, 150, 600));
    });
  });
});
