import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { echoServer } from '../helpers/echo-server.js';
import { Redis } from 'ioredis';
import { NO_REDIS, TestRedis } from '../helpers/redis.js';
import { between, seededRun } from '../helpers/seeded.js';
import { USER, basic, readUntil, startTestProxy, userHashes, waitFor, type TestProxy } from '../forward/helpers.js';
import { periodOf, usageKey } from '../../src/tenants/index.js';
import type { ForwardConfigInput } from '../../src/config/forward.js';

/**
 * The Redis-backed admission of a request or tunnel is one round trip: the byte quotas (when
 * their totals must be read), the rate cell and the concurrency leases in one Lua script,
 * nothing taken when it refuses; the finish path writes only in batches. Counted with Redis
 * MONITOR against a real redis-server and real proxies.
 */
const redis = await TestRedis.start();


/** A CONNECT through `port`: the open socket when 200, else the status line. */
async function tunnel(port: number, target: number): Promise<Socket | string> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(`CONNECT 127.0.0.1:${target} HTTP/1.1\r\nhost: 127.0.0.1:${target}\r\nproxy-authorization: ${basic()}\r\n\r\n`);
  const head = (await readUntil(s, (b) => b.includes('\r\n\r\n'), 5000)).toString('latin1');
  if (head.startsWith('HTTP/1.1 200')) return s;
  s.destroy();
  return head.split('\r\n')[0]!;
}

/** One tunnel that carries a few bytes each way and ends. */
async function shortTunnel(port: number, target: number): Promise<void> {
  const s = await tunnel(port, target);
  assert.ok(typeof s !== 'string', `CONNECT refused: ${String(s)}`);
  s.write('ping');
  await readUntil(s, (b) => b.toString().includes('ping'), 3000);
  s.destroy();
}

let prefixN = 0;
type StateExtra = { credit?: { max: number; share?: number }; leaseTtl?: string };

function redisConfig(plan: Record<string, unknown>, prefix: string, extra: StateExtra = {}): Partial<ForwardConfigInput> {
  return {
    plans: { p: plan },
    state: { redis: { url: redis!.url, keyPrefix: prefix }, timeout: '5s', ...extra },
  } as Partial<ForwardConfigInput>;
}

/** A test proxy in Redis state (keys under `prefix`) whose alice is on plan `p`. */
async function startWithPlan(plan: Record<string, unknown>, prefix: string, extra?: StateExtra): Promise<TestProxy> {
  const [h1] = await userHashes();
  return startTestProxy({ ...redisConfig(plan, prefix, extra), auth: { required: true, users: [{ name: USER, password: h1, plan: 'p' }] } } as Partial<ForwardConfigInput>);
}

describe('Redis admission: one round trip per request or tunnel', { skip: redis ? false : NO_REDIS, timeout: 120_000 }, () => {
  let echo: Server & { port: number };
  let monitorConn: Redis;
  const seen: string[][] = [];
  const proxies: TestProxy[] = [];

  before(async () => {
    echo = await echoServer();
    monitorConn = new Redis(redis!.url);
    const m = await monitorConn.monitor();
    m.on('monitor', (_time: string, args: string[]) => seen.push(args));
    (monitorConn as unknown as { monitorClient: Redis }).monitorClient = m;
  });
  after(async () => {
    for (const p of proxies) await p.close();
    (monitorConn as unknown as { monitorClient?: Redis }).monitorClient?.disconnect();
    monitorConn?.disconnect();
    echo?.close();
    await redis?.stop();
  });

  const start = async (plan: Record<string, unknown>, extra?: StateExtra): Promise<{ proxies: TestProxy[]; prefix: string }> => {
    const prefix = `adm${prefixN++}:`;
    const a = await startWithPlan(plan, prefix, extra);
    const b = await startWithPlan(plan, prefix, extra);
    proxies.push(a, b);
    return { proxies: [a, b], prefix };
  };

  it('credit blocks off: 30 tunnels (6 waves of 5 at once): 30 admission scripts, each with the quota, rate cell and lease together; releases batched', async () => {
    const { proxies: [p], prefix } = await start({ maxConnections: 50, requestsPerSecond: 1000, bytesPerDay: { up: 1e12, down: 1e12 }, bytesPerMonth: { up: 1e13, down: 1e13 } }, { credit: { max: 0 } });
    const from = seen.length;
    for (let wave = 0; wave < 6; wave++) await Promise.all(Array.from({ length: 5 }, () => shortTunnel(p!.port, echo.port)));
    // Let the release batch and the usage ledger write.
    const leaseKey = `${prefix}lease:conn:alice`;
    assert.ok(await waitFor(() => seen.slice(from).some((c) => c[0] === 'hdel' && c[1] === leaseKey), 3000), 'the leases were given back');
    const cmds = seen.slice(from).filter((c) => c.some((a) => a.startsWith(prefix)));
    const mentions = (c: string[], key: string): boolean => c.includes(`${prefix}${key}`);
    const admissions = cmds.filter((c) => (c[0] === 'evalsha' || c[0] === 'eval') && mentions(c, 'rate:alice'));
    assert.equal(admissions.length, 30, `one admission command per tunnel: ${admissions.length}`);
    for (const c of admissions) assert.ok(mentions(c, 'lease:conn:alice'), `the rate cell and the lease in one command: ${c.join(' ')}`);
    // The first admission reads the day's and month's usage in the same script (nothing known yet).
    const day = usageKey('alice', 'day', periodOf('day', Date.now()).id);
    assert.ok(mentions(admissions[0]!, day), `the first admission reads the usage too: ${admissions[0]!.join(' ')}`);
    // No other command per tunnel: lease scripts, rate scripts or usage reads apart from the admission.
    const others = cmds.filter((c) => !admissions.includes(c));
    const perTunnel = others.filter((c) => c[0] === 'hgetall' || ((c[0] === 'evalsha' || c[0] === 'eval') && mentions(c, 'lease:conn:alice')));
    assert.deepEqual(perTunnel, [], 'no separate lease or usage read');
    const releases = others.filter((c) => (c[0] === 'hset' || c[0] === 'hdel') && c[1] === leaseKey);
    assert.ok(releases.length < 30, `releases are batched: ${releases.length} writes for 30 tunnels`);
  });

  it('credit blocks (the defaults): 40 tunnels of a busy plan (8 waves of 5 at once) take a few scripts, and the spare slots go back once idle', async () => {
    // leaseTtl 1.5 s: heartbeats every 500 ms, at which idle spare credit goes back.
    const { proxies: [p], prefix } = await start({ maxConnections: 5000, requestsPerSecond: 100_000 }, { leaseTtl: '1500ms' });
    const from = seen.length;
    for (let wave = 0; wave < 8; wave++) await Promise.all(Array.from({ length: 5 }, () => shortTunnel(p!.port, echo.port)));
    const leaseKey = `${prefix}lease:conn:alice`;
    // Idle: within a few heartbeats the node's spare slots (up to a block of 64) go back.
    assert.ok(await waitFor(() => seen.slice(from).some((c) => c[0] === 'hdel' && c[1] === leaseKey), 30_000), 'the spare slots were given back');
    const admissions = seen.slice(from).filter((c) => (c[0] === 'evalsha' || c[0] === 'eval') && c.includes(`${prefix}rate:alice`));
    // Blocks of 64: the first admission takes one for both limits; later ones only to read the usage totals (once a second) or when a wave outruns it.
    assert.ok(admissions.length >= 1 && admissions.length <= 10, `${admissions.length} admission scripts for 40 tunnels`);
  });

  it('maxConnections across two nodes through the one script: exactly max granted, refused ones take nothing (seeded, max 1-5)', async () => {
    await seededRun('combined lease', async (rand) => {
      for (let round = 0; round < 3; round++) {
        const max = between(rand, 1, 5);
        const extra = between(rand, 1, 3);
        const { proxies: nodes, prefix } = await start({ maxConnections: max, requestsPerSecond: 1000 });
        const open: Socket[] = [];
        const refused: string[] = [];
        for (let i = 0; i < max + extra; i++) {
          const r = await tunnel(nodes[i % 2]!.port, echo.port);
          if (typeof r === 'string') refused.push(r);
          else open.push(r);
        }
        assert.equal(open.length, max, `max ${max}: ${open.length} open, refused: ${refused.join('; ')}`);
        assert.ok(refused.every((l) => l.startsWith('HTTP/1.1 429')), refused.join('; '));
        for (const s of open) s.destroy();
        // Every lease comes back (batched), then max again fit: the refused ones held nothing.
        const check = new Redis(redis!.url);
        try {
          const end = Date.now() + 3000;
          let held = -1;
          while (Date.now() < end) {
            const h = await check.hgetall(`${prefix}lease:conn:alice`);
            held = Object.values(h).reduce((a, v) => a + Number(v), 0);
            if (held === 0) break;
            await new Promise((r) => setTimeout(r, 20));
          }
          assert.equal(held, 0, 'every lease given back');
        } finally {
          check.disconnect();
        }
        const again: Socket[] = [];
        for (let i = 0; i < max; i++) {
          const r = await tunnel(nodes[(i + 1) % 2]!.port, echo.port);
          assert.ok(typeof r !== 'string', `after release, tunnel ${i + 1} of ${max}: ${String(r)}`);
          again.push(r);
        }
        for (const s of again) s.destroy();
        for (const n of nodes) await n.close();
        proxies.splice(proxies.indexOf(nodes[0]!), 2);
      }
    });
  });

  it('over a byte quota in Redis (another node used it): refused by the script, the rate cell and the lease untouched', async () => {
    const { proxies: [p], prefix } = await start({ maxConnections: 5, requestsPerSecond: 100, bytesPerDay: { down: 1000 } });
    const check = new Redis(redis!.url);
    try {
      await check.hincrby(`${prefix}${usageKey('alice', 'day', periodOf('day', Date.now()).id)}`, 'down', 5000);
      const r = await tunnel(p!.port, echo.port);
      assert.equal(typeof r, 'string');
      assert.match(r as string, /^HTTP\/1.1 429/);
      assert.equal(await check.get(`${prefix}rate:alice`), null, 'no rate cell counted');
      assert.deepEqual(await check.hgetall(`${prefix}lease:conn:alice`), {}, 'no lease taken');
    } finally {
      check.disconnect();
    }
  });
});

