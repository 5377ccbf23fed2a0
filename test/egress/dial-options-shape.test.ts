import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import v8 from 'node:v8';
import { EgressRouter } from '../../src/egress/egress-router.js';
import type { DialOptions, DialTarget, Dialer, UdpDialer } from '../../src/egress/index.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * The dial options a tunnel hands on (with its cancel signal) keep one V8 map from tunnel to
 * tunnel. `{ ...opts, signal }` gave every copy new maps in Node 20's V8 (a spread copy's map
 * keeps no transitions), so each read of them in the dialers missed to V8's runtime, once per
 * tunnel to a name or through a pool (docs/benchmarks.md §35). Failed first.
 *
 * A seeded family of targets, timeouts and guards through the router's callback dial, to a
 * direct dialer without `dialTo` (the router's own copy) that records what it is given.
 */

const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);

v8.setFlagsFromString('--allow-natives-syntax');
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

describe(`dial options keep one map (seed ${SEED}, replay: GATEWISE_SEED=${SEED})`, () => {
  it('from tunnel to tunnel, with the values and the signal they were given', async () => {
    const r = seededRandom(SEED);
    const seen: DialOptions[] = [];
    const direct: Dialer = {
      dial(_target: DialTarget, opts: DialOptions): Promise<Socket> {
        seen.push(opts);
        return Promise.reject(new Error('not dialled in this test'));
      },
    };
    const router = new EgressRouter({ pools: new Map(), direct, directUdp: {} as UdpDialer });
    const given: DialOptions[] = [];
    const n = 20 + r.int(40);
    for (let i = 0; i < n; i++) {
      const opts: DialOptions = { guard: () => undefined, connectTimeoutMs: 1 + r.int(30_000), dnsTimeoutMs: r.int(10_000) };
      given.push(opts);
      const host = r.pick(['example.test', 'a.b.test', `h${r.int(1000)}.test`, '127.0.0.1', '::1']);
      router.dialTo({ host, port: 1 + r.int(65_535) }, opts, { user: null }, { dialed: () => {}, dialedThrough: () => {}, dialFailed: () => {} });
    }
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(seen.length, n);
    for (let i = 0; i < n; i++) {
      const o = seen[i]!;
      assert.ok(o.signal !== undefined, `seed ${SEED}: dial ${i} has no signal`);
      assert.equal(o.connectTimeoutMs, given[i]!.connectTimeoutMs);
      assert.equal(o.dnsTimeoutMs, given[i]!.dnsTimeoutMs);
      assert.equal(o.guard, given[i]!.guard);
      if (i > 0) assert.ok(haveSameMap(o, seen[i - 1]!), `seed ${SEED}: the options of dial ${i} are in another map than those of dial ${i - 1}`);
    }
  });
});
