import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildConnector, type Dispatcher } from 'undici';
import { ConnectionPool, PoolSet } from '../../src/pool/index.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * PoolSet: the forward proxy's pools by scope and origin must not grow with the number of
 * origins visited. Properties over seeded bounds and visit sequences: never more pools than
 * the bound; the least recently used goes first; a pool empty for longer than its time is
 * dropped when a new one is made, one with a connection is kept; a pool dropped while a
 * request runs on it lets that request finish, and `close` destroys it all the same.
 */

let server: Server;
let slowEnds: Array<() => void> = [];
const ready = (async () => {
  server = createServer((req, res) => {
    if (req.url === '/slow') {
      slowEnds.push(() => res.end('slow'));
      return;
    }
    res.end('ok');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
})();
after(async () => {
  for (const e of slowEnds) e();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

function poolFor(origin: string): ConnectionPool {
  return new ConnectionPool({ origin, maxConnections: Infinity, keepAliveMs: 10_000, clientOptions: {}, connector: buildConnector({}) });
}

/** One GET on a connection of `pool`; resolves with the body once complete. */
function get(pool: ConnectionPool, path: string): Promise<string> {
  const c = pool.acquire(Date.now(), true, false);
  return new Promise((resolve, reject) => {
    let body = '';
    const handler: Dispatcher.DispatchHandler = {
      onConnect() {},
      onHeaders: () => true,
      onData: (b: Buffer) => ((body += b.toString()), true),
      onComplete: () => {
        pool.release(c, Date.now(), true);
        resolve(body);
      },
      onError: (err: Error) => {
        pool.release(c, Date.now(), false);
        reject(err);
      },
    };
    c.dispatch({ path, method: 'GET' }, handler);
  });
}

describe('PoolSet', () => {
  test('never holds more pools than its bound, and drops the least recently used first', () =>
    seededRun('pool set bound', async (rand) => {
      const max = between(rand, 1, 20);
      const made: string[] = [];
      const set = new PoolSet({ maxPools: max, emptyTtlMs: 60_000, create: (k) => (made.push(k), poolFor('http://127.0.0.1:1')) });
      const hot = 'hot';
      const visits = between(rand, max + 1, 200);
      for (let i = 0; i < visits; i++) {
        // The hot key between every other visit: it is always recently used, so it is never dropped.
        set.get(hot, 1000 + i);
        set.get(`origin-${between(rand, 0, 3 * max)}`, 1000 + i);
        assert.ok(set.size <= max, `${set.size} pools held with a bound of ${max} (visit ${i})`);
      }
      if (max > 1) assert.equal(made.filter((k) => k === hot).length, 1, 'the recently used pool was never dropped');
      await set.close();
    }));

  test('a pool empty for longer than emptyTtlMs is dropped when a new one is made; one with a connection is kept', async () => {
    const port = await ready;
    const made = new Map<string, number>();
    const set = new PoolSet({
      maxPools: 100,
      emptyTtlMs: 50,
      create: (k) => {
        made.set(k, (made.get(k) ?? 0) + 1);
        return poolFor(`http://127.0.0.1:${port}`);
      },
    });
    const busy = set.get('busy', 0);
    assert.equal(await get(busy, '/'), 'ok');
    assert.equal(busy.size, 1, 'its connection is kept alive');
    set.get('empty', 0);
    set.get('new', 100); // both are 100 ms old, over the 50 ms
    assert.equal(set.size, 2, 'the empty pool was dropped, the one with a connection kept');
    set.get('busy', 100);
    set.get('empty', 100);
    assert.equal(made.get('busy'), 1);
    assert.equal(made.get('empty'), 2, 'the dropped pool was made anew');
    await set.close();
  });

  test('a pool dropped over the bound lets its running request finish; close destroys what is left', async () => {
    const port = await ready;
    const set = new PoolSet({ maxPools: 1, emptyTtlMs: 60_000, create: () => poolFor(`http://127.0.0.1:${port}`) });
    const first = set.get('a', 0);
    const slow = get(first, '/slow');
    while (slowEnds.length === 0) await new Promise((r) => setImmediate(r));
    set.get('b', 1); // over the bound: 'a' is closed gracefully
    assert.equal(set.size, 1);
    const end = slowEnds.shift()!;
    end();
    assert.equal(await slow, 'slow', 'the request on the dropped pool finished');
    // A second slow request on a pool dropped by reset: close() destroys it rather than waiting.
    const second = set.get('c', 2);
    const hanging = get(second, '/slow');
    while (slowEnds.length === 0) await new Promise((r) => setImmediate(r));
    set.reset();
    await set.close();
    await assert.rejects(hanging, 'the request left on a dropped pool was destroyed by close');
    slowEnds = [];
  });
});
