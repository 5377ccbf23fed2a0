import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { ForwardRecord } from '../../src/record/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { assertFiredOnTime, GUARD_MS } from '../helpers/time-bounds.js';
import { startTestProxy, type TestProxy } from './helpers.js';
import { bounded, holdingSocks5, udpAssociateBytes, type HoldStep } from './front-clients.js';

/**
 * A SOCKS5 UDP ASSOCIATE through an egress pool whose exit is a SOCKS5 upstream proxy that
 * never answers a step of the association's own handshake with it (egress/socks5-udp-dialer.ts):
 * the hop gives up at `forward.timeouts.connect`, as a tunnel's SOCKS5 hop does (the TCP
 * connect and the handshake within one deadline), and the client is answered a failure reply
 * and the association recorded with the timeout. Before, the UDP hop had a fixed 10 s of its
 * own, whatever the config said.
 *
 * The family: each held step (greeting, credentials, UDP ASSOCIATE) with a seeded connect
 * time between 12 and 15 s, so the old fixed 10 s fires before its time and fails the "not
 * early" bound (a shorter time could not be told from 10 s within the late bound, LATE_MS).
 * The three run at once. Every wait is an event: the client's reply, the record.
 */

const STEPS: readonly HoldStep[] = ['greeting', 'auth', 'request'];


async function oneCase(step: HoldStep, connectMs: number): Promise<void> {
  const what = `UDP ASSOCIATE through a SOCKS5 exit holding its ${step}, timeouts.connect ${connectMs} ms`;
  const exit = await holdingSocks5(step);
  let recorded!: (r: ForwardRecord) => void;
  const record = new Promise<ForwardRecord>((r) => (recorded = r));
  let client: Socket | undefined;
  let p: TestProxy | undefined;
  try {
    p = await startTestProxy(
      {
        timeouts: { connect: `${connectMs}ms`, handshake: '60s' },
        egress: { pools: { hold: { proxies: [`socks5://up:pass@127.0.0.1:${exit.port}`] } }, defaultPool: 'hold' },
      },
      { hooks: [{ onFinish: (r) => recorded(r) }] },
    );
    client = connect(p.port, '127.0.0.1');
    client.on('error', () => {});
    let got = Buffer.alloc(0);
    let replied!: () => void;
    const reply = new Promise<void>((r) => (replied = r));
    client.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 6) replied();
    });
    await bounded(once(client, 'connect'), 5000, `${what}: connect to the proxy`);
    // Before the write: the hop's timer cannot be armed earlier than this.
    const t0 = performance.now();
    client.write(udpAssociateBytes());
    const rec = await bounded(record, connectMs + GUARD_MS, `${what}: the association's record`);
    assertFiredOnTime(performance.now() - t0, connectMs, `${what}: the hop's time`);
    assert.equal(rec.protocol, 'socks5-udp', `${what}: ${JSON.stringify(rec)}`);
    assert.equal(rec.error, 'connection_timeout', `${what}: the hop timed out: ${JSON.stringify(rec)}`);
    // The method choice, the auth status, then a reply that is not "succeeded" (it may follow the record).
    await bounded(reply, GUARD_MS, `${what}: the reply (got ${got.toString('hex')})`);
    assert.equal(got.subarray(0, 4).toString('hex'), '05020100', `${what}: what the client was sent first`);
    assert.ok(got.length >= 6 && got[4] === 5 && got[5] !== 0, `${what}: a failure reply (got ${got.toString('hex')})`);
  } finally {
    client?.destroy();
    await p?.close();
    for (const s of exit.sockets) s.destroy();
    exit.server.close();
  }
}

describe('a SOCKS5 UDP ASSOCIATE through a SOCKS5 exit that never answers', () => {
  it('gives up at forward.timeouts.connect (every held step, seeded times over 12–15 s)', { timeout: 120_000 }, async () => {
    await seededRun('socks5-udp-exit-timeout', async (rand) => {
      const cases = STEPS.map((s) => [s, between(rand, 12_000, 15_000)] as const);
      const results = await Promise.allSettled(cases.map(([s, ms]) => oneCase(s, ms)));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message.split('\n')[0]!] : []));
      assert.deepEqual(failed, [], `${failed.length} of ${cases.length} cases failed:\n${failed.join('\n')}`);
    });
  });
});
