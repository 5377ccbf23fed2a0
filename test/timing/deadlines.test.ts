import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DeadlineEntry, Deadlines } from '../../src/timing/deadlines.js';

/** An entry that records when its deadline was reached. */
class Entry extends DeadlineEntry {
  readonly reached: number[] = [];
  onReached: ((now: number) => void) | undefined;
  constructor(readonly name: string) {
    super();
  }
  deadlineReached(now: number): void {
    this.reached.push(now);
    this.onReached?.(now);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Deadlines', () => {
  test('deadlines beyond Node\'s longest timer (~24.8 days) do not spin: no sweep until due, no overflow warning (seeded lengths)', async () => {
    // Finding (session 29): Node turns a delay above 2^31 - 1 ms into 1 ms, and each sweep re-armed it.
    const seed = Number(process.env.GATEWISE_SEED ?? Date.now() % 2 ** 31);
    let x = seed;
    const next = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      if (w.name === 'TimeoutOverflowWarning') warnings.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 5; i++) {
        const d = new Deadlines(10);
        const ms = 2 ** 31 + Math.floor(next() * 1e12); // 24.9 days to ~32 years
        d.add(new Entry(`far${i}`), performance.now(), ms);
        // Under the fault the timer ran every millisecond: ~30 sweeps in this window.
        await sleep(30);
        assert.equal(d.sweeps, 0, `a deadline ${ms} ms away swept ${d.sweeps} times in 30 ms (seed ${seed})`);
      }
      assert.deepEqual(warnings, [], `seed ${seed}`);
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('each deadline fires once, not before it is due and within the resolution after', async () => {
    const d = new Deadlines(10);
    const t0 = performance.now();
    const entries = [120, 40, 80, 200].map((ms) => {
      const e = new Entry(`e${ms}`);
      d.add(e, t0, ms);
      return [e, ms] as const;
    });
    assert.equal(d.size, 4);
    await sleep(320);
    for (const [e, ms] of entries) {
      assert.equal(e.reached.length, 1, `${e.name} fired once`);
      const late = e.reached[0]! - t0 - ms;
      // performance.now() and libuv's cached loop clock differ by up to a millisecond
      assert.ok(late >= -1, `${e.name} fired ${late.toFixed(1)} ms early`);
      assert.ok(late < 60, `${e.name} fired ${late.toFixed(1)} ms late`);
      assert.ok(Number.isNaN(e.deadlineAt), 'out of the list once reached');
    }
    assert.equal(d.size, 0);
  });

  test('a removed entry never fires, and removing twice or an entry never added is harmless', async () => {
    const d = new Deadlines(10);
    const now = performance.now();
    const [a, b, c] = [new Entry('a'), new Entry('b'), new Entry('c')];
    d.add(a, now, 30);
    d.add(b, now, 30);
    d.add(c, now, 30);
    d.remove(b); // from the middle
    d.remove(b);
    d.remove(new Entry('stranger'));
    d.remove(c); // the tail
    d.remove(a); // the head
    assert.equal(d.size, 0);
    await sleep(80);
    assert.deepEqual([a.reached, b.reached, c.reached], [[], [], []]);
  });

  test('adding again moves the deadline; a shorter deadline than the armed wake moves the wake forward', async () => {
    const d = new Deadlines(10);
    const t0 = performance.now();
    const long = new Entry('long');
    d.add(long, t0, 10_000); // the timer now wakes in 10 s
    const short = new Entry('short');
    d.add(short, t0, 50);
    const moved = new Entry('moved');
    d.add(moved, t0, 10_000);
    d.add(moved, t0, 70); // re-added: still one entry
    assert.equal(d.size, 3);
    await sleep(150);
    assert.equal(short.reached.length, 1);
    assert.equal(moved.reached.length, 1);
    assert.ok(short.reached[0]! - t0 < 110, 'the short deadline did not wait for the long one');
    assert.equal(long.reached.length, 0);
    d.remove(long);
  });

  test('a callback may add itself again, and remove or add other entries', async () => {
    const d = new Deadlines(5);
    const now = performance.now();
    const ticker = new Entry('ticker');
    let ticks = 0;
    ticker.onReached = (t) => {
      if (++ticks < 3) d.add(ticker, t, 20);
    };
    const victim = new Entry('victim');
    const killer = new Entry('killer');
    killer.onReached = (t) => {
      d.remove(victim);
      d.add(new Entry('late'), t, 1);
    };
    d.add(killer, now, 10);
    d.add(victim, now, 40);
    d.add(ticker, now, 20);
    await sleep(150);
    assert.equal(ticks, 3);
    assert.equal(victim.reached.length, 0);
    assert.equal(killer.reached.length, 1);
    assert.equal(d.size, 0);
  });

  test('sweeps are coalesced to the resolution', async () => {
    const d = new Deadlines(50);
    const now = performance.now();
    const es = Array.from({ length: 20 }, (_, i) => new Entry(`e${i}`));
    es.forEach((e, i) => d.add(e, now, 5 + i * 5)); // due every 5 ms over 100 ms
    await sleep(250);
    assert.ok(es.every((e) => e.reached.length === 1));
    assert.ok(d.sweeps <= 4, `${d.sweeps} sweeps for deadlines spread over 100 ms at a 50 ms resolution`);
  });
});
