import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { AuthProvider } from '../../src/tenants/index.js';
import type { ForwardHooks } from '../../src/forward/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { closed, echoServer, forwardRecords, holdingOrigin, socks5Hello } from './drain-rig.js';
import { PASSWORD, USER, basic, dial, startTestProxy } from './helpers.js';

/**
 * A request held past its handshake by work the proxy waits on and does not own, a password
 * check (an auth provider) or an `authorize` hook, that never answers, when close() cuts its
 * client connection at the drain timeout. Its one record is written at the cut (ended by the
 * gateway, the drain's failure), so close() resolves with every request recorded and nothing
 * open; the hold's answer, if it ever comes, writes no second record and goes no further (no
 * plan step, no dial). Before, the record came only with the hold's answer: after the hook's
 * timeout, or never (the session stayed open, `meter.live` never fell to 0, and close()
 * returned after its 1 s wait for the cut's records with the request unrecorded).
 *
 * Over an absolute-form GET, a CONNECT and a SOCKS5 CONNECT, each held in its password check
 * or in an `authorize` hook; seeded: the drain timeout and how many clients are held at once.
 */

type Proto = 'get' | 'connect' | 'socks5';
type Hold = 'auth' | 'hook';

async function foreverCase(proto: Proto, hold: Hold, drainMs: number, clients: number): Promise<void> {
  const records = forwardRecords();
  const origin = await holdingOrigin();
  const echo = await echoServer();
  let arrivals = 0;
  let arrivedAll!: () => void;
  const allArrived = new Promise<void>((r) => (arrivedAll = r));
  let answer!: () => void;
  const answered = new Promise<void>((r) => (answer = r));
  const holding = async (): Promise<void> => {
    if (++arrivals === clients) arrivedAll();
    await answered; // answered by the test only after close() resolved
  };
  let planned = 0;
  const probe: ForwardHooks = {
    // Called in the plan step, right after authorization: a request that goes on after its hold answers reaches it.
    chooseEgress: () => {
      planned++;
      return undefined;
    },
  };
  const provider: AuthProvider = {
    has: (name) => name === USER,
    authenticate: async (name, password) => {
      await holding();
      return name === USER && password === PASSWORD ? USER : undefined;
    },
  };
  const hooks: ForwardHooks[] = hold === 'hook' ? [{ authorize: async () => (await holding(), undefined) }, probe] : [probe];
  const base = { shutdown: { drainTimeout: `${drainMs}ms` }, timeouts: { clientKeepAlive: '60s', handshake: '60s' } };
  const p = hold === 'auth' ? await startTestProxy({ ...base, auth: { required: true, users: [] } }, { authProvider: provider, hooks, hookTimeoutMs: 120_000 }) : await startTestProxy(base, { hooks, hookTimeoutMs: 120_000 });
  const sockets: Socket[] = [];
  let closing: Promise<void> | undefined;
  const guard = setTimeout(() => answer(), GUARD_MS);
  try {
    const before = records.seen.length;
    for (let i = 0; i < clients; i++) {
      const c = await dial(p.port);
      c.on('error', () => {});
      c.resume(); // read: its close is seen
      sockets.push(c);
      if (proto === 'socks5') c.write(socks5Hello(echo.port));
      else if (proto === 'connect') c.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      else c.write(`GET http://127.0.0.1:${origin.port}/held HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    }
    await Promise.race([allArrived, new Promise((_, reject) => setTimeout(() => reject(new Error(`${arrivals} of ${clients} requests reached their hold`)), GUARD_MS).unref())]);
    closing = p.proxy.close();
    await Promise.all(sockets.map(closed));
    await closing;
    const protocol = proto === 'get' ? 'http' : proto;
    const mine = records.seen.slice(before);
    assert.equal(mine.length, clients, `one record for each held request when close() resolved: ${JSON.stringify(mine)}`);
    for (const rec of mine) {
      assert.equal(rec.protocol, protocol, JSON.stringify(rec));
      assert.equal(rec.endedBy, 'gateway', JSON.stringify(rec));
      assert.equal(rec.error, 'proxy_internal_error', JSON.stringify(rec));
      assert.match(rec.detail ?? '', /drain timeout/, JSON.stringify(rec));
    }
    assert.equal(p.proxy.meter.live, 0, 'nothing left open');
    // The hold answers now: what follows it runs in the promise jobs of that answer, all done
    // before the next turn of the event loop.
    answer();
    await new Promise((r) => setImmediate(r));
    assert.equal(planned, 0, 'nothing went on past its hold after the cut');
    assert.equal(records.seen.length - before, clients, `no second record: ${JSON.stringify(records.seen.slice(before))}`);
    assert.equal(echo.accepted, 0, 'no dial (a tunnel)');
    assert.equal(origin.heldCount(), 0, 'no dial (a request)');
  } finally {
    clearTimeout(guard);
    answer();
    for (const s of sockets) s.destroy();
    await (closing ?? p.proxy.close(0));
    records.close();
    await origin.close();
    await echo.close();
  }
}

describe('forward proxy: graceful drain of a request held by a check or hook that never answers', () => {
  it('records each at the cut as the proxy\'s, once, and its hold\'s later answer goes nowhere (seeded: drain timeout, clients)', { timeout: 300_000 }, async () => {
    await seededRun('forward drain held forever', async (rand) => {
      const failed: string[] = [];
      for (const proto of ['get', 'connect', 'socks5'] as const) {
        for (const hold of ['auth', 'hook'] as const) {
          const drainMs = between(rand, 100, 400);
          const clients = between(rand, 1, 3);
          try {
            await foreverCase(proto, hold, drainMs, clients);
          } catch (err) {
            failed.push(`${proto} held in its ${hold === 'auth' ? 'password check' : 'authorize hook'}, ${clients} client(s), cut at ${drainMs} ms: ${(err as Error).message.split('\n')[0]}`);
          }
        }
      }
      assert.deepEqual(failed, [], `${failed.length} of 6 cases failed:\n${failed.join('\n')}`);
    });
  });
});
