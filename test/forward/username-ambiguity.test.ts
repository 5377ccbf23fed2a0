import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { ForwardRecord } from '../../src/record/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { bounded, readAtLeast, socks5Bytes } from './front-clients.js';
import { basic, PASSWORD, rawExchange, startOrigin, startTestProxy, USER } from './helpers.js';

/**
 * Username parameters that do not say one thing are refused, naming the parameter, on the
 * HTTP front (407 with the problem in Proxy-Status) and the SOCKS5 front (the RFC 1929
 * failure status), with the user's right password as other bad parameters are. Review
 * finding: `alice-pool-dc-pool-dc` (a parameter given twice) parsed as the user
 * "alice-pool-dc" with pool dc, and was refused as a wrong password (nothing said of the
 * parameter). The seeded family covers the other shapes the grammar let through the same way:
 * an empty value (`alice-pool--session-x`) and a parameter name where a value belongs
 * (`alice-session-pool-dc`, the session's value forgotten).
 */

const KEYS = ['session', 'ttl', 'pool', 'debug'] as const;
type Key = (typeof KEYS)[number];
type Shape = 'twice' | 'empty' | 'key-as-value';

/** A well-formed value of `key` (the pool exists: a well-formed name must be carried). */
function valueOf(key: Key, rand: () => number): string {
  if (key === 'ttl') return `${between(rand, 1, 59)}m`;
  if (key === 'pool') return 'dc';
  if (key === 'debug') return String(between(rand, 0, 1));
  return `s${between(rand, 0, 99_999)}`;
}

/** A name for alice with one defect of `shape` at the parameter `bad`, among well-formed others. */
function badName(shape: Shape, rand: () => number): { name: string; bad: Key } {
  const order = [...KEYS].sort(() => rand() - 0.5);
  const bad = order[0]!;
  const others = order.slice(1, 1 + between(rand, 0, 2));
  const pairs = others.map((k) => [k, valueOf(k, rand)]);
  let defect: string[][];
  if (shape === 'twice') defect = [[bad, valueOf(bad, rand)], [bad, valueOf(bad, rand)]];
  else if (shape === 'empty') defect = [[bad, '']];
  else defect = [[bad, others[0] ?? KEYS.find((k) => k !== bad)!]];
  // The defect goes anywhere among the others (its own two pairs split for 'twice').
  const all = [...pairs];
  for (const d of defect) all.splice(between(rand, 0, all.length), 0, d);
  return { name: [USER, ...all.flat()].join('-'), bad };
}

describe('username parameters that do not say one thing', () => {
  it('are refused with 407 naming the parameter, over HTTP and SOCKS5 (seeded family: twice, empty, parameter name as value)', { timeout: 120_000 }, async () => {
    // The next SOCKS5 record, told by the onFinish hook.
    let waiter: ((r: ForwardRecord) => void) | undefined;
    const onFinish = (r: ForwardRecord): void => {
      if (r.protocol === 'socks5') waiter?.(r);
    };
    const p = await startTestProxy({ egress: { pools: { dc: { addresses: ['127.0.0.1'] } } } }, { hooks: [{ onFinish }] });
    const origin = await startOrigin();
    const sockets: Socket[] = [];
    try {
      await seededRun('username-ambiguity', async (rand) => {
        const target = `http://127.0.0.1:${origin.port}/`;
        const failed: string[] = [];
        const shapes: Shape[] = ['twice', 'empty', 'key-as-value'];
        const cases: Array<{ name: string; bad: Key }> = [{ name: `${USER}-pool-dc-pool-dc`, bad: 'pool' }];
        for (let i = 0; i < 18; i++) cases.push(badName(shapes[i % 3]!, rand));
        for (const { name, bad } of cases) {
          // HTTP: 407 whose Proxy-Status names the parameter.
          const res = await rawExchange(p.port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic(name)}\r\nConnection: close\r\n\r\n`);
          const status = /^HTTP\/1\.1 (\d+)/.exec(res)?.[1];
          const ps = /\r\nproxy-status: ([^\r]*)/i.exec(res)?.[1] ?? '';
          if (status !== '407' || !ps.includes(`username parameter \\"${bad}\\"`)) failed.push(`http ${name}: ${status}, proxy-status ${ps || '(none)'}`);
          // SOCKS5: the RFC 1929 failure status, and a record with the reason and the parameter.
          const recorded = new Promise<ForwardRecord>((resolve) => (waiter = resolve));
          const c = connect(p.port, '127.0.0.1');
          sockets.push(c);
          c.on('error', () => {});
          await bounded(once(c, 'connect'), 5000, `${name}: connect`);
          const answer = readAtLeast(c, 4);
          c.write(socks5Bytes('127.0.0.1', origin.port, name, PASSWORD));
          const got = await bounded(answer, 5000, `${name}: the SOCKS5 answer`);
          if (got.subarray(0, 4).toString('hex') !== '05020101') failed.push(`socks5 ${name}: ${got.toString('hex')}`);
          c.destroy();
          const rec = await bounded(recorded, 5000, `${name}: the SOCKS5 record`);
          if (rec.reason !== 'bad_username_parameter' || rec.user !== USER || !String(rec.detail).includes(`"${bad}"`)) failed.push(`socks5 ${name}: record ${JSON.stringify(rec)}`);
        }
        assert.deepEqual(failed, [], `${failed.length} of ${2 * cases.length} answers wrong`);
      });
      // Well-formed names are still carried (a pool, a session, both).
      for (const name of [`${USER}-pool-dc`, `${USER}-session-a1-pool-dc`, `${USER}-ttl-5m-session-b2`]) {
        const ok = await rawExchange(p.port, `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic(name)}\r\nConnection: close\r\n\r\n`);
        assert.match(ok, /^HTTP\/1\.1 200 /, `${name}: ${ok.slice(0, 200)}`);
      }
    } finally {
      for (const s of sockets) s.destroy();
      await p.close();
      await origin.close();
    }
  });
});
