import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basic, rawExchange, startOrigin, startTestProxy, USER } from './helpers.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * A username's `-ttl-` is capped (`usernameGrammar.maxTtl`, default 24h): a session pinned for
 * years held one exit for as long as the client kept it busy, past any rotation the operator
 * sells. A longer ttl is refused as a parameter that cannot be used (407, the parameter and
 * the cap named); up to the cap it pins as asked. Before session 31 any ttl up to 999,999,999
 * days was taken.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * One request, its whole answer. rawExchange gives what came within its bound, '' for nothing:
 * the first request's password check (its scrypt thread starting) took 8 s on a loaded machine
 * (session 32), past the default 3 s, and read as an empty answer.
 */
function get(port: number, target: string, auth: string): Promise<string> {
  return rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: ${new URL(target).host}\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`, 30_000);
}

for (const [label, cap, capMs] of [['the default cap (24h)', undefined, 86_400_000], ['a configured cap (90m)', '90m', 5_400_000]] as const) {
  test(`seeded family: ttl values around ${label}`, { timeout: 120_000 }, async () => {
    const p = await startTestProxy(cap === undefined ? {} : ({ usernameGrammar: { maxTtl: cap } } as never));
    const origin = await startOrigin();
    try {
      const target = `http://127.0.0.1:${origin.port}/`;
      const rand = seededRandom();
      for (let i = 0; i < 24; i++) {
        const unit = rand.pick(Object.keys(UNIT_MS));
        const atCap = Math.floor(capMs / UNIT_MS[unit]!);
        // Just below, at, just above the cap in this unit; far above; small.
        const n = rand.pick([atCap - 1, atCap, atCap + 1, atCap * 1000 + 7, 1 + rand.int(5)].filter((v) => v > 0 && v < 1e9));
        const ms = n * UNIT_MS[unit]!;
        const res = await get(p.port, target, basic(`${USER}-session-s${i}-ttl-${n}${unit}`));
        const where = `seed ${rand.seed}: ttl ${n}${unit} (${ms} ms) against ${capMs} ms`;
        if (ms <= capMs) assert.match(res, /^HTTP\/1\.1 200 /, where);
        else {
          assert.match(res, /^HTTP\/1\.1 407 /, where);
          assert.match(res, /\r\n\r\n407 Proxy User Name Not Understood\n/, where);
          assert.match(/\r\nproxy-status: ([^\r]*)/i.exec(res)?.[1] ?? '', /username parameter \\"ttl\\".*at most/, where);
        }
      }
    } finally {
      await p.close();
      await origin.close();
    }
  });
}
