import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { Pool } from 'undici';
import { freePort } from '../helpers/redis.js';
import { IcLoggedGatewise } from '../helpers/ic-log.js';
import { prng } from '../helpers/seeded.js';

/**
 * The reverse gateway's sockets meet Node's shared socket and stream code in few enough maps
 * (V8's hidden classes) for its inline caches to stay polymorphic, seen from Node's side in the
 * shipped process: V8's inline-cache log (`--log-ic`) of `gatewise proxy` in its default
 * configuration (access log on, node:http front) under a seeded load of keep-alive GETs, with
 * POSTs among them (each on a new upstream connection). No load of these properties may
 * become megamorphic (state N: a generic lookup per access, for the life of the process):
 * - `kHandle`, behind Node's `_handle` getter (every `socket._handle` in net.js, ~10 a request);
 * - `_bytesDispatched` and `writableBuffer`, read by `socket.bytesWritten` (the record's byte counts);
 * - `_readableState` / `_writableState` (`Readable.read`, `Readable.on`, the Duplex getters).
 * (Not watched: the options objects `ReadableState` reads, whose maps come from Node's own copy
 * in the `Socket` constructor, one before and one after that copy site has feedback, per
 * options shape; see §52.)
 * An accepted socket took node:http's own properties, then the listener's marks in an order
 * that depended on the connection gate (a head deadline under load, or none), then
 * `_httpMessage`, `_peername`, `timeout` at its first request; an upstream socket had
 * `_peername` and `timeout` after its slots, and the start-up connect probe's socket was not
 * shaped at all: up to seven socket maps at one site (docs/benchmarks.md §52). Failed first on
 * that build (`P,N` at the `_handle` getter, `Readable.read`, `bytesWritten`).
 */

const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);

/** Keys (as V8's IC log spells them) of the loads that must not go megamorphic. */
const WATCHED = ['symbol("kHandle"', '_bytesDispatched', 'writableBuffer', '_readableState', '_writableState'];

describe('the reverse gateway keeps Node socket sites polymorphic', () => {
  it(`no megamorphic load of a watched socket property after a seeded load (seed ${SEED})`, { timeout: 180_000 }, async () => {
    const rand = prng(SEED);
    const connections = 2 + Math.floor(rand() * 9);
    const gets = 100 + Math.floor(rand() * 200);
    const posts = Math.floor(rand() * 11);
    const label = `seed ${SEED}: ${connections} connections, ${gets} GETs, ${posts} POSTs`;
    const body = Buffer.alloc(1024, 'a');
    const origin = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
        res.end(body);
      });
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', () => resolve()));
    const originPort = (origin.address() as AddressInfo).port;
    const port = await freePort();
    const gw = new IcLoggedGatewise(['proxy', '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${originPort}`], 'gatewise-reverse-ic-');
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1 });
    try {
      await gw.ready('"event":"ready"', 'gatewise proxy');
      // The POSTs at seeded places among the GETs.
      const kinds: Array<'GET' | 'POST'> = Array.from({ length: gets + posts }, (_, i) => (i < posts ? 'POST' : 'GET'));
      for (let i = kinds.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
      }
      let next = 0;
      const statuses: number[] = [];
      await Promise.all(
        Array.from({ length: connections }, async () => {
          while (next < kinds.length) {
            const method = kinds[next++]!;
            const r = await pool.request({ method, path: '/1k', body: method === 'POST' ? 'x'.repeat(64) : undefined });
            statuses.push(r.statusCode);
            await r.body.dump();
          }
        }),
      );
      assert.deepEqual(
        statuses.filter((s) => s !== 200),
        [],
        `${label}: every request answered 200`,
      );
      await pool.close();
      // LoadIC,pc,time,line,column,old state,new state,map,key,...: N is megamorphic.
      const ics = (await gw.loads()).map((l) => l.split(','));
      for (const key of WATCHED) assert.ok(ics.some((f) => f[8]!.startsWith(key)), `${label}: no load of ${key} in the IC log (has Node renamed it?)`);
      const megamorphic = ics.filter((f) => f[6] === 'N' && WATCHED.some((key) => f[8]!.startsWith(key))).map((f) => `${f[0]} at ${f[3]}:${f[4]} ${f[5]}->${f[6]} ${f[8]}`);
      assert.deepEqual(megamorphic, [], label);
    } finally {
      await pool.destroy().catch(() => {});
      await gw.close();
      await new Promise<void>((resolve) => origin.close(() => resolve()));
    }
  });
});
