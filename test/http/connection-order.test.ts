import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { describe, test } from 'node:test';
import { finished, offer, type Ordered } from '../../src/http/connection-order.js';
import { MAX_PIPELINED_RUNNING } from '../../src/http/pipelining.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * The order's own bookkeeping, on a socket that never connects: a request that is over
 * inside its own `begin` (the forward proxy's, when its client already left) calls `finished`
 * from within the loop that started it. Finding (adversarial review, session 29): each such
 * call started the next waiting request itself, a stack frame deeper each time, and ~8,000
 * waiting requests overflowed the stack.
 */
describe('connection order', () => {
  test('thousands of waiting requests that are over as they begin start in order, without recursion (seeded)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      for (let round = 0; round < 4; round++) {
        const socket = new Socket();
        const n = 20_000 + rand.int(30_000);
        const begun: number[] = [];
        // The first MAX_PIPELINED_RUNNING run; every later one is over as soon as it begins.
        const running: Ordered[] = [];
        for (let i = 0; i < n; i++) {
          const id = i;
          const r: Ordered = {
            unsafe: rand.next() < 0.1,
            begin() {
              begun.push(id);
              if (id >= MAX_PIPELINED_RUNNING) finished(socket, r);
              else running.push(r);
            },
            abandon() {},
          };
          offer(socket, r);
        }
        // The running ones finish, in turn: all the rest start and end.
        while (running.length > 0) finished(socket, running.shift()!);
        assert.equal(begun.length, n, `round ${round}: ${begun.length} of ${n} began`);
        assert.ok(begun.every((id, i) => id === i), `round ${round}: out of order`);
        socket.destroy();
      }
    });
  });
});
