import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { checkRequestTarget, hostProblem } from '../../src/gateway/request-target.js';
import { Failure } from '../../src/failure/index.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';

/**
 * checkRequestTarget keeps the Host values it found valid (with their routing host), so a
 * keep-alive client's repeated Host is checked once. What it answers must not depend on
 * whether a value was seen before, in which order, or whether the kept set was emptied
 * (it holds 512): a seeded family of Host values and absolute-form authorities, valid and
 * not, each checked several times in a shuffled order, with enough distinct valid ones to
 * empty the set more than once. (The gateway tests send such heads over sockets; this one
 * runs thousands of cases against the parsed request the front hands over.)
 */

/** The parsed request as node:http's front hands it over: what checkRequestTarget reads. */
function parsed(url: string, host: string | undefined): IncomingMessage {
  return { httpVersion: '1.1', url, rawHeaders: host === undefined ? [] : ['Host', host] } as unknown as IncomingMessage;
}

/** The routing host of a valid value, computed the plain way (lower case, port and a trailing dot removed). */
function expectedRoute(v: string): string {
  let h = v.startsWith('[') ? v.slice(0, v.indexOf(']') + 1) : v.split(':')[0]!;
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h.toLowerCase();
}

function anyHost(rand: Rand, n: number): string {
  const label = (): string => {
    const chars = 'abcXYZ09-_~.%';
    let s = '';
    for (let i = 1 + rand.int(8); i > 0; i--) s += rand.pick([...chars]);
    return s;
  };
  const port = (): string => rand.pick(['', ':', ':0', ':80', ':65535', ':65536', ':8o', `:${rand.int(70000)}`]);
  switch (rand.int(6)) {
    case 0:
      return `[${rand.pick(['::1', '2001:db8::7', 'fe80::1%25', 'nothex', 'v1.x'])}]${port()}`;
    case 1:
      // A bad byte spliced in.
      return `h${n}.test`.replace(/t/, rand.pick([' ', '@', '/', '"', '\\', '{', 't']));
    case 2:
      return `${rand.next() < 0.5 ? 'H' : 'h'}${n}.${label()}${port()}`;
    default:
      // Many distinct valid names: the kept set fills and is emptied.
      return `${rand.next() < 0.5 ? 'Host' : 'host'}-${n}.example${rand.next() < 0.2 ? '.' : ''}${rand.pick(['', ':443', ':8080'])}`;
  }
}

function outcome(url: string, host: string | undefined): string {
  try {
    const t = checkRequestTarget(parsed(url, host));
    return `ok ${t.routeHost} ${t.hostValue ?? '-'} ${t.path}`;
  } catch (err) {
    assert.ok(err instanceof Failure, String(err));
    return `refused ${err.detail ?? ''}`;
  }
}

describe('checkRequestTarget: Host values kept once found valid', () => {
  test('the same answer for a value every time it comes, in any order, across emptyings of the kept set (seeded family)', () => {
    const rand = seededRandom();
    return withSeed(rand, async () => {
      const values = Array.from({ length: 1500 }, (_, n) => anyHost(rand, n));
      // Each value 1-3 times, shuffled: a later check may find it kept, or emptied out.
      const order: number[] = [];
      values.forEach((_, i) => {
        for (let k = 1 + rand.int(3); k > 0; k--) order.push(i);
      });
      for (let i = order.length - 1; i > 0; i--) {
        const j = rand.int(i + 1);
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      const first = new Map<number, string>();
      let valid = 0;
      for (const i of order) {
        const v = values[i]!;
        const absolute = i % 3 === 0 && !/[/?]/.test(v);
        // Absolute-form: the authority is checked and routes; the Host header beside it is a valid constant.
        const got = absolute ? outcome(`http://${v}/p`, 'other.test') : outcome('/p', v);
        const problem = v.includes('@') && absolute ? 'userinfo' : v === '' ? 'empty' : hostProblem(v);
        if (problem === undefined) {
          valid++;
          assert.equal(got, `ok ${expectedRoute(v)} ${v} /p`, `${absolute ? 'authority' : 'Host'} ${JSON.stringify(v)}`);
        } else {
          assert.match(got, /^refused /, `${absolute ? 'authority' : 'Host'} ${JSON.stringify(v)} (${problem})`);
        }
        const seen = first.get(i);
        if (seen === undefined) first.set(i, got);
        else assert.equal(got, seen, `${JSON.stringify(v)} answered differently the second time`);
      }
      assert.ok(valid > 1100, `the family must empty the kept set (512) more than once: ${valid} valid checks`);
    });
  });
});
