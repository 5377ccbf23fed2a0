import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { GatewiseProcess } from '../helpers/gatewise-process.js';
import { NO_REDIS, TestRedis, freePorts } from '../helpers/redis.js';
import { MALLORY_PASSWORD } from '../helpers/loopback-forward-runtime.js';
import { between, seededRun, shuffle } from '../helpers/seeded.js';
import { statusFrom } from '../helpers/raw-http.js';
import { Redis } from 'ioredis';

// A fleet sharing one Redis counts wrong credentials fleet-wide (net/auth-lockout-fleet.ts):
// before, each node counted on its own, so a guesser spread over K nodes behind a balancer had
// K × maxFailures guesses, and a lockout on one node did not refuse the address on another.
// Real processes (one per node) and a real redis-server on loopback; each case has its own key
// prefix, ports and 127.0.x.y sources.

const redis = await TestRedis.start();
after(() => redis?.stop());
const TOKEN = 'admin-token-0123456789abcdef';
const basic = (password: string): string => `Basic ${Buffer.from(`mallory:${password}`).toString('base64')}`;

/** The status line's code of the first answer on a fresh connection from `from`. */
const statusOf = statusFrom;

interface Node {
  proc: GatewiseProcess;
  fwd: number;
  admin: number;
}

/** One face's credential check: a request on node `n` from `from` with a right or wrong credential. */
interface Face {
  name: 'forward' | 'admin';
  wrongStatus: number;
  ask(n: Node, from: string, credential: string | undefined): Promise<number>;
}

test('a fleet sharing Redis counts wrong credentials fleet-wide; a lockout refuses the address on every node, one that saw none of the failures too; with Redis gone each node counts alone (seeded over maxFailures and node count, forward and admin faces)', { skip: redis ? false : NO_REDIS, timeout: 560_000 }, async () => {
  const lab = await startLab();
  const hash = await hashPassword(MALLORY_PASSWORD, { N: 1024, r: 8, p: 1 });
  const target = new URL(lab.url).host;
  const faces: Face[] = [
    {
      name: 'forward',
      wrongStatus: 407,
      ask: (n, from, pw) => statusOf(n.fwd, from, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic(pw ?? MALLORY_PASSWORD)}\r\n\r\n`),
    },
    {
      name: 'admin',
      wrongStatus: 401,
      ask: (n, from, token) => statusOf(n.admin, from, `GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token ?? TOKEN}\r\nConnection: close\r\n\r\n`),
    },
  ];
  try {
    await seededRun('lockout-fleet', async (rand) => {
      for (const [c, count] of shuffle(rand, [2, 3]).entries()) {
        const maxFailures = between(rand, 2, 6);
        const dir = mkdtempSync(join(tmpdir(), 'gatewise-lockout-fleet-'));
        const nodes: Node[] = [];
        const what = `${count} nodes, maxFailures ${maxFailures}`;
        try {
          if (c > 0) await redis!.restart();
          const ports = await freePorts(2 * count);
          const lockout = { maxFailures, window: '10m', lockout: '10m' };
          const started = await Promise.all(
            Array.from({ length: count }, (_, i) =>
              GatewiseProcess.start(join(dir, `node${i}.json`), {
                admin: { address: '127.0.0.1', port: ports[2 * i + 1], token: TOKEN, lockout },
                forward: {
                  listeners: [{ address: '127.0.0.1', port: ports[2 * i] }],
                  auth: { required: true, users: [{ name: 'mallory', password: hash }], lockout },
                  rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }], connectPorts: ['1-65535'] },
                  // A budget far above a CI stall: no node turns degraded until the test stops Redis.
                  state: { redis: { url: redis!.url, keyPrefix: `lockfleet-${c}:` }, timeout: '3s' },
                },
              }),
            ),
          );
          started.forEach((proc, i) => nodes.push({ proc, fwd: ports[2 * i]!, admin: ports[2 * i + 1]! }));
          const net = `127.${60 + c}`;

          for (const [f, face] of faces.entries()) {
            const base = `${net}.${10 + 20 * f}`;
            /** Polls `n` with the right credential from `from` until 429 (bounded: 100 tries, 50 ms apart). */
            const lockedOn = async (n: Node, from: string): Promise<number> => {
              let st = 0;
              for (let t = 0; t < 100 && st !== 429; t++) {
                st = await face.ask(n, from, undefined);
                if (st !== 429) await new Promise((r) => setTimeout(r, 50));
              }
              return st;
            };
            // Source `spread`: its wrong credentials go round the whole fleet; source `away`: only
            // to the nodes before the last (all to node 0 with 2 nodes), so the last sees none.
            const spread = `${base}.1`;
            const away = `${base}.2`;
            for (const [from, over] of [
              [spread, nodes],
              [away, nodes.slice(0, Math.max(1, count - 1))],
            ] as const) {
              const start = between(rand, 0, over.length - 1);
              const on = (i: number): Node => over[(start + i) % over.length]!;
              for (let i = 0; i < maxFailures - 1; i++) assert.equal(await face.ask(on(i), from, `wrong-${i}`), face.wrongStatus, `${what}, ${face.name}: wrong credential ${i} from ${from}`);
              for (const [i, n] of nodes.entries()) assert.equal(await face.ask(n, from, undefined), 200, `${what}, ${face.name}: ${maxFailures - 1} wrong credentials from ${from} lock nothing (node ${i})`);
              assert.equal(await face.ask(on(maxFailures - 1), from, 'wrong-last'), face.wrongStatus);
              // The last node first: for `away` it saw none of the failures.
              const last = nodes[count - 1]!;
              assert.equal(await lockedOn(last, from), 429, `${what}, ${face.name}: after ${maxFailures} wrong credentials from ${from} over ${over.length} node(s), the last node refuses the right one`);
              for (const [i, n] of nodes.entries()) assert.equal(await face.ask(n, from, undefined), 429, `${what}, ${face.name}: ${from} refused on node ${i}`);
              // One lockout in the fleet: logged once, by the node whose wrong credential tripped it.
              const logged = (): number => nodes.reduce((sum, n) => sum + n.proc.lines.filter((l) => l.type === 'auth-lockout' && l.face === face.name && l.address === from).length, 0);
              await nodes[0]!.proc.waitFor(() => logged() >= 1, 10_000, `the lockout line of ${from}`);
              assert.equal(logged(), 1, `${what}, ${face.name}: one lockout line in the fleet for ${from}`);
            }
            // Right credentials from other addresses still work on every node.
            for (const [i, n] of nodes.entries()) assert.equal(await face.ask(n, `${base}.3`, undefined), 200, `${what}, ${face.name}: another address on node ${i}`);
          }

          // Redis gone mid-way: each node counts on its own, and still locks out.
          await redis!.kill();
          for (const [f, face] of faces.entries()) {
            const base = `${net}.${100 + 20 * f}`;
            const alone = `${base}.1`;
            for (let i = 0; i < maxFailures; i++) assert.equal(await face.ask(nodes[0]!, alone, `down-${i}`), face.wrongStatus, `${what}, ${face.name}: wrong credential ${i} with Redis down`);
            let st = 0;
            for (let t = 0; t < 100 && st !== 429; t++) {
              st = await face.ask(nodes[0]!, alone, undefined);
              if (st !== 429) await new Promise((r) => setTimeout(r, 50));
            }
            assert.equal(st, 429, `${what}, ${face.name}: with Redis down, ${maxFailures} wrong credentials on node 0 lock the address out there`);
            // Not everyone refused: the other nodes (they saw none of these) and other addresses pass.
            assert.equal(await face.ask(nodes[1]!, alone, undefined), 200, `${what}, ${face.name}: with Redis down, node 1 counts its own`);
            for (const [i, n] of nodes.entries()) assert.equal(await face.ask(n, `${base}.2`, undefined), 200, `${what}, ${face.name}: with Redis down, another address on node ${i}`);
          }
          // Said once in node 0's log: the lockouts are counted by the node alone.
          const degradedLines = (): Array<Record<string, unknown>> => nodes[0]!.proc.lines.filter((l) => l.event === 'state-degraded');
          await nodes[0]!.proc.waitFor(() => degradedLines().length >= 1, 10_000, 'the state-degraded line');
          const degraded = degradedLines();
          assert.equal(degraded.length, 1, `${what}: one state-degraded line`);
          assert.match(String(degraded[0]!.msg), /wrong-credential/, 'the degraded line says lockouts count per node');
        } finally {
          await Promise.all(nodes.map((n) => n.proc.stop()));
          rmSync(dir, { recursive: true, force: true });
        }
      }
    });
  } finally {
    await lab.close();
  }
});

test('a --workers 2 node in a fleet: each wrong password is one Redis script, sent by the worker that checked it (the primary sends none); the lockout reaches both workers and the other node; with Redis gone the workers count as one group (seeded maxFailures)', { skip: redis ? false : NO_REDIS, timeout: 300_000 }, async () => {
  const lab = await startLab();
  const hash = await hashPassword(MALLORY_PASSWORD, { N: 1024, r: 8, p: 1 });
  const target = new URL(lab.url).host;
  const ask = (port: number, from: string, pw: string): Promise<number> =>
    statusOf(port, from, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic(pw)}\r\n\r\n`);
  // Started anew (the first test stops it on its way).
  await redis!.kill();
  await redis!.restart();
  const client = new Redis(redis!.url);
  const monitor = await client.monitor();
  client.disconnect();
  monitor.on('error', () => {});
  /** Lockout scripts run, by their key (each runs one HMGET of it). */
  const scripts = new Map<string, number>();
  monitor.on('monitor', (_t: string, args: string[]) => {
    if (String(args[0]).toLowerCase() === 'hmget' && String(args[1]).startsWith('lockfleet-w:lockout:')) scripts.set(args[1]!, (scripts.get(args[1]!) ?? 0) + 1);
  });
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-lockout-fleet-w-'));
  const procs: GatewiseProcess[] = [];
  try {
    await seededRun('lockout-fleet-workers', async (rand) => {
      const maxFailures = between(rand, 2, 6);
      const ports = await freePorts(2);
      const cfg = (port: number): unknown => ({
        forward: {
          listeners: [{ address: '127.0.0.1', port }],
          auth: { required: true, users: [{ name: 'mallory', password: hash }], lockout: { maxFailures, window: '10m', lockout: '10m' } },
          rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }], connectPorts: ['1-65535'] },
          state: { redis: { url: redis!.url, keyPrefix: 'lockfleet-w:' }, timeout: '3s' },
        },
      });
      const [a, b] = await Promise.all([GatewiseProcess.start(join(dir, 'a.json'), cfg(ports[0]!), { workers: 2 }), GatewiseProcess.start(join(dir, 'b.json'), cfg(ports[1]!))]);
      procs.push(a, b);
      const [pa, pb] = ports as [number, number];
      const from = '127.0.70.1';
      // Wrong passwords in concurrent pairs on fresh connections to node A (its workers share them), one in each pair to B.
      let sent = 0;
      while (sent < maxFailures) {
        const batch = [ask(pa, from, `wrong-${sent}`)];
        if (sent + 1 < maxFailures) batch.push(ask(sent % 4 === 0 ? pb : pa, from, `wrong-${sent + 1}`));
        for (const st of await Promise.all(batch)) assert.equal(st, 407);
        sent += batch.length;
      }
      let st = 0;
      for (let t = 0; t < 100 && st !== 429; t++) {
        st = await ask(pb, from, MALLORY_PASSWORD);
        if (st !== 429) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(st, 429, `maxFailures ${maxFailures}: node B refuses after the wrong passwords, most of them on node A`);
      const onA: number[] = await Promise.all(Array.from({ length: 8 }, () => ask(pa, from, MALLORY_PASSWORD)));
      assert.deepEqual(onA, Array.from({ length: 8 }, () => 429), 'refused by both workers of node A');
      const key = `lockfleet-w:lockout:forward:${from}`;
      await a.waitFor(() => (scripts.get(key) ?? 0) >= maxFailures, 10_000, 'the lockout scripts in MONITOR');
      assert.equal(scripts.get(key), maxFailures, `one Redis script per wrong password (${maxFailures}), none from the primary`);
      monitor.disconnect();
      assert.equal(await ask(pa, '127.0.70.2', MALLORY_PASSWORD), 200, 'another address passes');

      // Redis gone: node A's workers count as one group (the primary's count), still locking out.
      await redis!.kill();
      const down = '127.0.70.3';
      for (let i = 0; i < maxFailures; i += 2) {
        const sts = await Promise.all(Array.from({ length: Math.min(2, maxFailures - i) }, (_, j) => ask(pa, down, `down-${i + j}`)));
        for (const x of sts) assert.equal(x, 407);
      }
      st = 0;
      for (let t = 0; t < 100 && st !== 429; t++) {
        st = await ask(pa, down, MALLORY_PASSWORD);
        if (st !== 429) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(st, 429, `with Redis down, ${maxFailures} wrong passwords over node A's workers lock the address out there`);
      const after: number[] = await Promise.all(Array.from({ length: 8 }, () => ask(pa, down, MALLORY_PASSWORD)));
      assert.deepEqual(after, Array.from({ length: 8 }, () => 429), 'refused by both workers of node A (the group counted them)');
      assert.equal(await ask(pb, down, MALLORY_PASSWORD), 200, 'node B counts its own while Redis is away');
    });
  } finally {
    monitor.disconnect();
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
    await lab.close();
  }
});
