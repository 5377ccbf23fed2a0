import assert from 'node:assert/strict';
import test from 'node:test';
import { UserDirectory, hashPassword } from '../../src/tenants/index.js';

const cheap = { N: 1024, r: 8, p: 1 };

/** A directory whose password checks are counted, with `afterCheck` run as each check's scrypt ends (before its verdict). */
function counted(users: Array<{ name: string; password: string }>, afterCheck: (d: UserDirectory) => void): { d: UserDirectory; runs: () => number } {
  const d = new UserDirectory(users, { cacheTtlMs: 60_000, failureCacheTtlMs: 0 });
  let runs = 0;
  const original = d.hashing.check.bind(d.hashing);
  d.hashing.check = ((...args: Parameters<typeof original>) => {
    runs++;
    const r = original(...args);
    if (r instanceof Promise) void r.then(() => afterCheck(d));
    return r;
  }) as typeof d.hashing.check;
  return { d, runs: () => runs };
}

test('a reload during a password check keeps the check when the user\'s hash did not change (reloads faster than scrypt no longer starve first logins)', async () => {
  const h1 = await hashPassword('pw-one', cheap);
  const users = [{ name: 'a', password: h1 }];
  let reloads = 0;
  const { d, runs } = counted(users, (dir) => {
    // A reload lands as every check ends: before the fix, each verdict was thrown away and the check run again.
    if (reloads++ < 20) dir.replace([...users, { name: `other${reloads}`, password: h1 }]);
  });
  try {
    assert.equal(await d.authenticate('a', 'pw-one'), 'a');
    assert.equal(runs(), 1, 'one scrypt run');
    assert.equal(d.authenticate('a', 'pw-one'), 'a', 'remembered across the reloads');
  } finally {
    await d.close();
  }
});

test('a reload that changes the user\'s hash during a check: the verdict is taken against the new hash', async () => {
  const h1 = await hashPassword('pw-one', cheap);
  const h2 = await hashPassword('pw-two', cheap);
  let changed = false;
  const { d, runs } = counted([{ name: 'a', password: h1 }], (dir) => {
    if (!changed) {
      changed = true;
      dir.replace([{ name: 'a', password: h2 }]);
    }
  });
  try {
    assert.equal(await d.authenticate('a', 'pw-one'), undefined, 'the old password no longer holds');
    assert.equal(runs(), 2, 'checked again against the new hash');
    assert.equal(await d.authenticate('a', 'pw-two'), 'a');
  } finally {
    await d.close();
  }
});
