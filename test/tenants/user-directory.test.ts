import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserDirectory, hashPassword } from '../../src/tenants/index.js';

describe('user directory', () => {
  it('clients presenting the same credentials at once share one password check', async () => {
    const hash = await hashPassword('right');
    const dir = new UserDirectory([{ name: 'alice', password: hash }], { cacheTtlMs: 60_000 });
    const same = Array.from({ length: 20 }, () => dir.authenticate('alice', 'right'));
    const wrong = Array.from({ length: 5 }, () => dir.authenticate('alice', 'wrong'));
    assert.equal(dir.checking, 2, 'one check for the right password, one for the wrong one');
    assert.deepEqual(await Promise.all(same), Array(20).fill('alice'));
    assert.deepEqual(await Promise.all(wrong), Array(5).fill(undefined));
    assert.equal(dir.checking, 0);
    // Remembered: no check at all the next time, for the right password and (as a failure,
    // so a repeated wrong password costs no scrypt run) for the wrong one.
    assert.equal(dir.authenticate('alice', 'right'), 'alice');
    assert.equal(dir.authenticate('alice', 'wrong'), undefined);
    assert.equal(dir.checking, 0);
    await dir.close();
  });

  it('a reload during a check decides against the new list', async () => {
    const old = await hashPassword('old');
    const next = await hashPassword('new');
    const dir = new UserDirectory([{ name: 'bob', password: old }], { cacheTtlMs: 60_000 });
    const pending = dir.authenticate('bob', 'old');
    dir.replace([{ name: 'bob', password: next }]);
    assert.equal(await pending, undefined, 'the old password no longer opens the door');
    assert.equal(await dir.authenticate('bob', 'new'), 'bob');
    await dir.close();
  });
});
