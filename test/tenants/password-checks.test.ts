import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Failure } from '../../src/failure/index.js';
import { UserDirectory, hashPassword } from '../../src/tenants/index.js';
import { prng as random } from '../helpers/seeded.js';

/** Cheap parameters (about 1 MiB, a few ms): the bounds are under test, not scrypt. */
const CHEAP = { N: 1024, r: 8, p: 1 };


interface Case {
  sources: number;
  attackers: number;
  perSource: number;
  total: number;
  threads: number;
  picks: Array<{ source: number; password: number }>;
}

function caseOf(seed: number): Case {
  const rnd = random(seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const sources = int(1, 6);
  const attackers = int(1, 60);
  const c: Case = { sources, attackers, perSource: int(1, 5), total: int(1, 24), threads: int(1, 2), picks: [] };
  // Some passwords repeat: the same name and password at once share one check.
  for (let i = 0; i < attackers; i++) c.picks.push({ source: int(0, sources - 1), password: int(0, Math.ceil(attackers * 0.8)) });
  return c;
}

async function checkCase(seed: number, hash: string): Promise<void> {
  const c = caseOf(seed);
  const dir = new UserDirectory([{ name: 'alice', password: hash }], {
    cacheTtlMs: 60_000,
    maxConcurrentChecks: c.total,
    maxConcurrentChecksPerSource: c.perSource,
    checkThreads: c.threads,
  });
  const pending: Array<Promise<unknown>> = [];
  try {
    // The model: admitted while the source and everyone are under their bounds; a password
    // already being checked shares that check and counts nothing.
    const inFlight = new Set<number>();
    const perSource = new Map<number, number>();
    const completed: string[] = [];
    let maxRunning = 0;
    for (const [i, pick] of c.picks.entries()) {
      const address = `127.0.0.${pick.source + 1}`;
      const r = dir.authenticate('alice', `wrong-${pick.password}`, { remoteAddress: address });
      const mine = perSource.get(pick.source) ?? 0;
      const shared = inFlight.has(pick.password);
      if (shared) {
        assert.ok(r instanceof Promise, `attacker ${i} shares a check already running`);
      } else if (mine >= c.perSource) {
        assert.ok(r instanceof Failure && r.status === 429, `attacker ${i} from ${address} is past the per-source bound`);
        assert.equal(r.type, 'http_request_denied');
        assert.equal(r.detail, `too many password checks from ${address}; retry later`);
        assert.ok(r.retryAfter !== undefined && r.retryAfter >= 1);
      } else if (inFlight.size >= c.total) {
        assert.ok(r instanceof Failure && r.status === 503, `attacker ${i} is past the overall bound`);
        assert.equal(r.type, 'http_request_denied');
        assert.equal(r.detail, 'too many password checks in progress; retry later');
      } else {
        assert.ok(r instanceof Promise, `attacker ${i} is admitted`);
        inFlight.add(pick.password);
        perSource.set(pick.source, mine + 1);
      }
      if (r instanceof Promise) {
        const own = !shared; // one entry per scrypt run
        pending.push(
          r.then((v) => {
            assert.equal(v, undefined, 'a wrong password never passes');
            maxRunning = Math.max(maxRunning, dir.hashing.running);
            if (own) completed.push('attacker');
          }),
        );
      }
    }
    assert.equal(dir.hashing.pending, inFlight.size, 'checks waiting or running: as the model says');
    assert.ok(dir.hashing.pending <= c.total);

    // A new client's first login, from a source of its own.
    const login = dir.authenticate('alice', 'right', { remoteAddress: '127.0.1.1' });
    if (inFlight.size >= c.total) {
      assert.ok(login instanceof Failure && login.status === 503, 'refused only when everyone together is at the bound');
    } else {
      assert.ok(login instanceof Promise);
      pending.push(login.then((v) => (assert.equal(v, 'alice'), completed.push('login'))));
    }
    await Promise.all(pending);
    assert.ok(maxRunning <= c.threads, `at most ${c.threads} scrypt runs at once (saw ${maxRunning})`);
    assert.equal(dir.hashing.pending, 0);
    if (login instanceof Promise) {
      // Sources take turns: the login waits for the checks already running and one from
      // each source ahead of it, not for the attackers' whole queue (runs on the other
      // threads may finish while it runs).
      const activeSources = perSource.size;
      const position = completed.indexOf('login');
      assert.ok(position <= 2 * c.threads + activeSources, `the login finished ${position + 1}. of ${completed.length} scrypt runs, with ${activeSources} busy sources`);
    }
  } finally {
    // After a failed assertion, checks still running fail as the threads end: seen here,
    // so the report names the seed rather than an unhandled rejection.
    const settled = Promise.allSettled(pending);
    await dir.close();
    await settled;
  }
}

describe('password checks: bounded, fair, on their own threads', () => {
  it('property: per-source and overall bounds hold for random attackers and sources', { timeout: 120_000 }, async () => {
    const hash = await hashPassword('right', CHEAP);
    const first = process.env.GATEWISE_SEED !== undefined ? Number(process.env.GATEWISE_SEED) : (Date.now() ^ 0x5eed) >>> 0;
    const runs = process.env.GATEWISE_SEED !== undefined ? 1 : 25;
    for (let k = 0; k < runs; k++) {
      const seed = (first + k) >>> 0;
      try {
        await checkCase(seed, hash);
      } catch (err) {
        (err as Error).message = `seed ${seed} (replay: GATEWISE_SEED=${seed}) ${JSON.stringify({ ...caseOf(seed), picks: undefined })}: ${(err as Error).message}`;
        throw err;
      }
    }
  });

  it('a failed name and password are remembered: the same wrong password again costs no check', async () => {
    const dir = new UserDirectory([{ name: 'alice', password: await hashPassword('right', CHEAP) }], { cacheTtlMs: 60_000 });
    try {
      assert.equal(await dir.authenticate('alice', 'wrong'), undefined);
      const again = dir.authenticate('alice', 'wrong');
      assert.equal(again, undefined, 'answered at once, without a promise');
      assert.equal(dir.checking, 0);
      assert.ok(dir.authenticate('alice', 'wrong2') instanceof Promise, 'another wrong password is checked');
      assert.equal(await dir.authenticate('mallory', 'x'), undefined);
      assert.equal(dir.authenticate('mallory', 'x'), undefined, 'unknown names too');
      // A reload forgets failures: the same password may be right for the new list.
      dir.replace([{ name: 'alice', password: await hashPassword('wrong', CHEAP) }]);
      assert.equal(await dir.authenticate('alice', 'wrong'), 'alice');
      assert.equal(dir.authenticate('alice', 'wrong'), 'alice', 'and then remembered as right, without a promise');
    } finally {
      await dir.close();
    }
  });

  it('the same wrong password at once from many clients is one check, counted once', async () => {
    const dir = new UserDirectory([{ name: 'alice', password: await hashPassword('right', CHEAP) }], { cacheTtlMs: 60_000, maxConcurrentChecksPerSource: 1 });
    try {
      const all = Array.from({ length: 50 }, () => dir.authenticate('alice', 'same', { remoteAddress: '127.0.0.9' }));
      assert.ok(all.every((r) => r instanceof Promise));
      assert.equal(dir.hashing.pending, 1);
      assert.deepEqual(await Promise.all(all), Array(50).fill(undefined));
    } finally {
      await dir.close();
    }
  });

  it('threads end on close, and a check after close fails with a code', async () => {
    const dir = new UserDirectory([{ name: 'alice', password: await hashPassword('right', CHEAP) }], { cacheTtlMs: 60_000, checkThreads: 2 });
    const both = [dir.authenticate('alice', 'a'), dir.authenticate('alice', 'b')];
    assert.equal(dir.hashing.running, 2);
    await Promise.all(both);
    assert.equal(dir.hashing.threads, 2);
    await dir.close();
    assert.equal(dir.hashing.threads, 0);
    await assert.rejects(Promise.resolve(dir.authenticate('alice', 'c')), { code: 'ERR_SCRYPT_THREADS_CLOSED' });
  });

  it('an idle password-check thread does not keep the process alive', { timeout: 30_000 }, async () => {
    const tenants = fileURLToPath(new URL('../../src/tenants/index.js', import.meta.url));
    const script = `
      const { UserDirectory, hashPassword } = await import(${JSON.stringify(tenants)});
      const dir = new UserDirectory([{ name: 'a', password: await hashPassword('p', { N: 1024, r: 8, p: 1 }) }], { cacheTtlMs: 1000 });
      console.log(await dir.authenticate('a', 'p'), dir.hashing.threads);
      // no close(): the process must end by itself
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(timer);
    assert.equal(signal, null, 'exited by itself, not killed');
    assert.equal(code, 0);
    assert.equal(out.trim(), 'a 1');
  });
});
