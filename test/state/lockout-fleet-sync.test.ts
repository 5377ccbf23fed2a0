import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startLab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { GatewiseProcess } from '../helpers/gatewise-process.js';
import { NO_REDIS, TestRedis, freePorts } from '../helpers/redis.js';
import { MALLORY_PASSWORD } from '../helpers/loopback-forward-runtime.js';
import { between, seededRun } from '../helpers/seeded.js';
import { statusFrom } from '../helpers/raw-http.js';

// A fleet node learns the lockouts in force that it could not hear on the channel
// (net/auth-lockout-fleet.ts), and a lockout a node decided alone while Redis was away reaches
// the fleet when Redis is back. Before: a node started during a lockout, or whose subscription
// was reconnecting when it was published, learnt it only at the address's next wrong
// credential, so a guesser whose next try there was the right one got in during the lockout;
// and a lockout decided while Redis was away stayed on its node. Real processes and a real
// redis-server on loopback; each case its own key prefix, ports and 127.0.x.y sources.

const redis = await TestRedis.start();
after(() => redis?.stop());
const TOKEN = 'admin-token-0123456789abcdef';
const basic = (password: string): string => `Basic ${Buffer.from(`mallory:${password}`).toString('base64')}`;

interface Node {
  proc: GatewiseProcess;
  fwd: number;
  admin: number;
}

interface Face {
  name: 'forward' | 'admin';
  wrongStatus: number;
  ask(n: Node, from: string, credential: string | undefined): Promise<number>;
}

interface Lab {
  faces: Face[];
  start(file: string, prefix: string, maxFailures: number): Promise<Node>;
}

async function fleetLab(): Promise<Lab & { close(): Promise<void> }> {
  const lab = await startLab();
  const hash = await hashPassword(MALLORY_PASSWORD, { N: 1024, r: 8, p: 1 });
  const target = new URL(lab.url).host;
  const faces: Face[] = [
    {
      name: 'forward',
      wrongStatus: 407,
      ask: (n, from, pw) => statusFrom(n.fwd, from, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic(pw ?? MALLORY_PASSWORD)}\r\n\r\n`),
    },
    {
      name: 'admin',
      wrongStatus: 401,
      ask: (n, from, token) => statusFrom(n.admin, from, `GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token ?? TOKEN}\r\nConnection: close\r\n\r\n`),
    },
  ];
  return {
    faces,
    async start(file, prefix, maxFailures) {
      const [fwd, admin] = (await freePorts(2)) as [number, number];
      const lockout = { maxFailures, window: '10m', lockout: '10m' };
      const proc = await GatewiseProcess.start(file, {
        admin: { address: '127.0.0.1', port: admin, token: TOKEN, lockout },
        forward: {
          listeners: [{ address: '127.0.0.1', port: fwd }],
          auth: { required: true, users: [{ name: 'mallory', password: hash }], lockout },
          rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }], connectPorts: ['1-65535'] },
          // A budget far above a CI stall: no node turns degraded unless the test stops Redis.
          state: { redis: { url: redis!.url, keyPrefix: prefix }, timeout: '3s' },
        },
      });
      return { proc, fwd, admin };
    },
    close: () => lab.close(),
  };
}

/** `n`'s answer to the right credential from `from`, until it is 429 (bounded: 200 tries, 50 ms apart). */
async function refusedOn(face: Face, n: Node, from: string): Promise<number> {
  let st = 0;
  for (let t = 0; t < 200 && st !== 429; t++) {
    st = await face.ask(n, from, undefined);
    if (st !== 429) await new Promise((r) => setTimeout(r, 50));
  }
  return st;
}

/** `from` locked out by `maxFailures` wrong credentials on `n`, its lockout line logged there. */
async function lockOut(face: Face, n: Node, from: string, maxFailures: number, what: string): Promise<void> {
  for (let i = 0; i < maxFailures; i++) assert.equal(await face.ask(n, from, `wrong-${i}`), face.wrongStatus, `${what}: wrong credential ${i}`);
  await n.proc.waitFor(() => n.proc.lines.some((l) => l.type === 'auth-lockout' && l.face === face.name && l.address === from), 10_000, `${what}: the lockout line`);
  assert.equal(await face.ask(n, from, undefined), 429, `${what}: the node that counted refuses the right credential`);
}

test('a node started during a fleet lockout refuses the address at once, and one whose subscription was down when the lockout was published learns it when it subscribes again (seeded maxFailures, both faces)', { skip: redis ? false : NO_REDIS, timeout: 300_000 }, async () => {
  const lab = await fleetLab();
  const raw = new Redis(redis!.url);
  try {
    await seededRun('lockout-fleet-sync', async (rand) => {
      const maxFailures = between(rand, 2, 6);
      const prefix = `lfsync-${maxFailures}:`;
      const dir = mkdtempSync(join(tmpdir(), 'gatewise-lockout-fleet-sync-'));
      const nodes: Node[] = [];
      try {
        const a = await lab.start(join(dir, 'a.json'), prefix, maxFailures);
        nodes.push(a);
        for (const [f, face] of lab.faces.entries()) {
          const from = `127.0.${90 + f}.${maxFailures}`;
          await lockOut(face, a, from, maxFailures, `${face.name}, maxFailures ${maxFailures}`);
        }
        // Node B starts after both lockouts: its first answer to the right credential is 429.
        const b = await lab.start(join(dir, 'b.json'), prefix, maxFailures);
        nodes.push(b);
        for (const [f, face] of lab.faces.entries()) {
          const from = `127.0.${90 + f}.${maxFailures}`;
          assert.equal(await face.ask(b, from, undefined), 429, `${face.name}, maxFailures ${maxFailures}: a node started during the lockout refuses the right credential at once`);
          assert.equal(await face.ask(b, `127.0.${90 + f}.200`, undefined), 200, `${face.name}: another address passes on the new node`);
        }

        // Every subscription dropped, and no new connection taken (maxclients at the connections
        // open now): the lockouts A decides next are published while B cannot hear them.
        const [, open] = (await raw.config('GET', 'maxclients')) as [string, string];
        const lines = async (type?: string): Promise<number> => String(await (type === undefined ? raw.call('CLIENT', 'LIST') : raw.call('CLIENT', 'LIST', 'TYPE', type))).trim().split('\n').filter((l) => l !== '').length;
        await raw.config('SET', 'maxclients', String((await lines()) - (await lines('pubsub'))));
        try {
          const killed = Number(await raw.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
          assert.ok(killed >= 2, `the nodes' subscriptions dropped (${killed})`);
          for (const [f, face] of lab.faces.entries()) {
            const from = `127.0.${92 + f}.${maxFailures}`;
            await lockOut(face, a, from, maxFailures, `${face.name}, maxFailures ${maxFailures}, subscriptions down`);
            // Published while B could not hear it: B still lets the right credential in (it has not subscribed again).
            assert.equal(Number(await raw.pubsub('NUMSUB', `${prefix}lockout`).then((r) => (r as [string, number])[1])), 0, 'no node is subscribed');
          }
        } finally {
          await raw.config('SET', 'maxclients', open);
        }
        for (const [f, face] of lab.faces.entries()) {
          const from = `127.0.${92 + f}.${maxFailures}`;
          assert.equal(await refusedOn(face, b, from), 429, `${face.name}, maxFailures ${maxFailures}: node B learns the lockout published while its subscription was down once it subscribes again`);
        }
      } finally {
        await Promise.all(nodes.map((n) => n.proc.stop()));
        rmSync(dir, { recursive: true, force: true });
      }
    });
  } finally {
    raw.disconnect();
    await lab.close();
  }
});

test('a lockout a node decided alone while Redis was away reaches the fleet when Redis is back; counts below maxFailures stay with the node (seeded maxFailures, both faces)', { skip: redis ? false : NO_REDIS, timeout: 300_000 }, async () => {
  const lab = await fleetLab();
  try {
    await seededRun('lockout-fleet-rejoin', async (rand) => {
      const maxFailures = between(rand, 2, 6);
      const prefix = `lfrejoin-${maxFailures}:`;
      const dir = mkdtempSync(join(tmpdir(), 'gatewise-lockout-fleet-rejoin-'));
      const nodes: Node[] = [];
      let raw: Redis | undefined;
      try {
        nodes.push(await lab.start(join(dir, 'a.json'), prefix, maxFailures), await lab.start(join(dir, 'b.json'), prefix, maxFailures));
        const [a, b] = nodes as [Node, Node];
        await redis!.kill();
        for (const [f, face] of lab.faces.entries()) {
          const locked = `127.0.${94 + f}.${maxFailures}`;
          const below = `127.0.${94 + f}.${100 + maxFailures}`;
          await lockOut(face, a, locked, maxFailures, `${face.name}, maxFailures ${maxFailures}, Redis away`);
          for (let i = 0; i < maxFailures - 1; i++) assert.equal(await face.ask(a, below, `below-${i}`), face.wrongStatus);
          assert.equal(await face.ask(b, locked, undefined), 200, `${face.name}: while Redis is away, node B counts its own`);
        }
        // Redis back, empty (no persistence): A's lockouts in force reach Redis and node B.
        await redis!.restart();
        raw = new Redis(redis!.url);
        for (const [f, face] of lab.faces.entries()) {
          const locked = `127.0.${94 + f}.${maxFailures}`;
          const below = `127.0.${94 + f}.${100 + maxFailures}`;
          assert.equal(await refusedOn(face, b, locked), 429, `${face.name}, maxFailures ${maxFailures}: the lockout node A decided while Redis was away refuses the address on node B once Redis is back`);
          const until = Number(await raw.hget(`${prefix}lockout:${face.name}:${locked}`, 'until'));
          const [s, us] = await raw.time();
          assert.ok(until > Number(s) * 1000 + Number(us) / 1000 + 60_000, `${face.name}: Redis holds the lockout with what is left of it`);
          // Below the limit: not carried into the fleet's count (docs/fleet.md).
          assert.equal(await raw.exists(`${prefix}lockout:${face.name}:${below}`), 0, `${face.name}: a count below maxFailures is not carried`);
          for (const n of nodes) assert.equal(await face.ask(n, below, undefined), 200);
        }
      } finally {
        raw?.disconnect();
        await Promise.all(nodes.map((n) => n.proc.stop()));
        rmSync(dir, { recursive: true, force: true });
        // Killed above: started again for the next seed.
        if (redis !== undefined) await redis.kill().then(() => redis.restart());
      }
    });
  } finally {
    await lab.close();
  }
});
