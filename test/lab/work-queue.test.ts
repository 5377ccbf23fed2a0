import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WorkQueue, type WorkJob } from '../../src/lab/work-queue.js';

class Job implements WorkJob {
  started = false;
  start(): void {
    this.started = true;
  }
}

test('capacity, FIFO queue, rejection, promotion, idempotent leave', () => {
  const q = new WorkQueue(2, 1);
  const [a, b, c, d] = [new Job(), new Job(), new Job(), new Job()];
  assert.ok(q.enter(a) && q.enter(b));
  assert.ok(a.started && b.started);
  assert.ok(q.enter(c));
  assert.equal(c.started, false);
  assert.equal(q.enter(d), false);
  assert.deepEqual([q.active, q.queued, q.peak, q.rejected], [2, 1, 2, 1]);
  q.leave(a);
  assert.ok(c.started);
  q.leave(a);
  assert.deepEqual([q.active, q.queued], [2, 0]);
  q.leave(b);
  q.leave(c);
  assert.deepEqual([q.active, q.queued, q.peak], [0, 0, 2]);
});

test('a waiting job that leaves is never started', () => {
  const q = new WorkQueue(1, 2);
  const [a, b, c] = [new Job(), new Job(), new Job()];
  q.enter(a);
  q.enter(b);
  q.enter(c);
  q.leave(b);
  q.leave(a);
  assert.equal(b.started, false);
  assert.ok(c.started);
});
