import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList, isIP } from 'node:net';
import { Worker } from 'node:worker_threads';
import { allowlistOverlaps } from '../../src/config/forward.js';
import { between, seededRun } from '../helpers/seeded.js';

// Finding (admin review, session 32): the allowFrom overlap check compared every entry with every
// other (O(n²)): 20,000 CIDRs took minutes. It now sorts by range start; the answers (pairs,
// their order and their messages) are the same.

type Users = Array<{ name: string; allowFrom?: unknown[] }>;

/** The check as it was: every pair, the wider range holding the narrower one's address. The reference for the seeded family. */
function reference(users: Users): ReturnType<typeof allowlistOverlaps> {
  const entries: Array<{ user: number; index: number; name: string; cidr: string; address: string; prefix: number; family: 'ipv4' | 'ipv6' }> = [];
  users.forEach((u, ui) =>
    (u.allowFrom ?? []).forEach((e, index) => {
      const cidr = typeof e === 'string' ? e : e !== null && typeof e === 'object' && typeof (e as { cidr?: unknown }).cidr === 'string' ? (e as { cidr: string }).cidr : undefined;
      if (cidr === undefined) return;
      const [address, p, extra] = cidr.split('/');
      const fam = isIP(address ?? '');
      if (extra !== undefined || fam === 0 || (p !== undefined && (!/^\d{1,3}$/.test(p) || Number(p) > (fam === 4 ? 32 : 128)))) return;
      entries.push({ user: ui, index, name: u.name, cidr, address: address!, prefix: p === undefined ? (fam === 4 ? 32 : 128) : Number(p), family: fam === 4 ? 'ipv4' : 'ipv6' });
    }),
  );
  const out: ReturnType<typeof allowlistOverlaps> = [];
  for (let i = 0; i < entries.length; i++) {
    for (let j = i + 1; j < entries.length; j++) {
      const x = entries[i]!;
      const y = entries[j]!;
      if (x.user === y.user || x.family !== y.family) continue;
      const [wide, narrow] = x.prefix <= y.prefix ? [x, y] : [y, x];
      const list = new BlockList();
      list.addSubnet(wide.address, wide.prefix, wide.family);
      if (!list.check(narrow.address, narrow.family)) continue;
      out.push({ a: { user: x.user, index: x.index }, b: { user: y.user, index: y.index }, message: `allowFrom ${y.cidr} of user ${y.name} overlaps allowFrom ${x.cidr} of user ${x.name}: one client address would be two users` });
    }
  }
  return out;
}

function randomEntry(rand: () => number): unknown {
  const r = rand();
  if (r < 0.05) return ['not-an-ip', '10.0.0.0/33', '::1/129', 42, null, { cidr: 7 }][between(rand, 0, 5)];
  let cidr: string;
  if (r < 0.6) {
    // A small IPv4 space, so that ranges nest and meet often; addresses need not be the network's.
    const prefix = [0, 8, 16, 24, 30, 32, 32][between(rand, 0, 6)]!;
    cidr = `10.${between(rand, 0, 3)}.${between(rand, 0, 3)}.${between(rand, 0, 7)}${rand() < 0.2 && prefix === 32 ? '' : `/${prefix}`}`;
  } else {
    const prefix = [0, 16, 32, 64, 120, 127, 128][between(rand, 0, 6)]!;
    const forms = [`2001:db8::${between(rand, 0, 7).toString(16)}`, `2001:db8:${between(rand, 0, 2)}::${between(rand, 0, 3)}`, `::ffff:10.0.0.${between(rand, 0, 3)}`, `fe80::${between(rand, 0, 3)}`, '::', `2001:db8:0:0:0:0:0:${between(rand, 0, 3)}`];
    cidr = `${forms[between(rand, 0, forms.length - 1)]!}${rand() < 0.2 ? '' : `/${prefix}`}`;
  }
  return rand() < 0.3 ? { cidr } : cidr;
}

test('allowFrom overlaps: the same pairs, in the same order, with the same messages as every pair compared (seeded family of users and ranges)', async () => {
  await seededRun('allowlist overlaps', (rand) => {
    for (let round = 0; round < 300; round++) {
      const users: Users = Array.from({ length: between(rand, 1, 6) }, (_, u) => ({ name: `u${u}`, ...(rand() < 0.1 ? {} : { allowFrom: Array.from({ length: between(rand, 0, 5) }, () => randomEntry(rand)) }) }));
      assert.deepEqual(allowlistOverlaps(users), reference(users), JSON.stringify(users));
    }
  });
});

test('allowFrom overlaps: 20,000 ranges over 2,000 users are checked in seconds, not minutes, and the planted overlaps are found', async () => {
  const users: Users = [];
  for (let u = 0; u < 2000; u++) {
    const allowFrom: string[] = [];
    for (let k = 0; k < 10; k++) {
      const n = u * 10 + k;
      allowFrom.push(k % 2 === 0 ? `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}` : `2001:db8::${n.toString(16)}/128`);
    }
    users.push({ name: `u${u}`, allowFrom });
  }
  // Two overlaps: a /30 of the last user over the first user's first address, and the same IPv6 address twice.
  users[1999]!.allowFrom![9] = '10.0.0.0/30';
  users[1000]!.allowFrom![9] = '2001:db8::1/128';
  // Bounded: the check runs in a worker that is ended after 20 s whatever it does.
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     import(workerData.module).then(({ allowlistOverlaps }) => {
       const t0 = performance.now();
       const found = allowlistOverlaps(workerData.users);
       parentPort.postMessage({ ms: performance.now() - t0, found });
     });`,
    { eval: true, workerData: { module: new URL('../../src/config/forward.js', import.meta.url).href, users } },
  );
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      new Promise<{ ms: number; found: ReturnType<typeof allowlistOverlaps> }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the overlap check of 20,000 ranges took over 20 s')), 20_000))),
    ]);
    assert.deepEqual(result.found.map((o) => o.message).sort(), [
      'allowFrom 10.0.0.0/30 of user u1999 overlaps allowFrom 10.0.0.0 of user u0: one client address would be two users',
      'allowFrom 10.0.0.0/30 of user u1999 overlaps allowFrom 10.0.0.2 of user u0: one client address would be two users',
      'allowFrom 2001:db8::1/128 of user u1000 overlaps allowFrom 2001:db8::1/128 of user u0: one client address would be two users',
    ]);
    // About 0.5 s here; every pair compared took over 20 s. The slack is for a slow machine.
    assert.ok(result.ms < 5000, `took ${result.ms.toFixed(0)} ms`);
  } finally {
    clearTimeout(timer);
    await worker.terminate();
  }
});
