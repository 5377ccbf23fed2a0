import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { everyCase, seededRun, shuffle } from '../helpers/seeded.js';
import { accessLines } from './helpers.js';
import { leaveDuringSocks5Exit, udpAssociateBytes, type HoldStep, type Leave } from './front-clients.js';

/**
 * A SOCKS5 UDP ASSOCIATE through an egress pool whose exit is a SOCKS5 upstream proxy (the
 * association's own UDP ASSOCIATE to it, egress/socks5-udp-dialer.ts), whose client closes its
 * control connection while the exit's handshake is under way: the hop stops at once (the
 * proxy closes its control connection to the upstream, not when the hop's own time runs out),
 * no association is made, and the association is recorded once, ended by the client, with no
 * failure and no reply (the client was never answered). Before, the UDP exit hop took no
 * cancel signal (the TCP hop did: client-left-during-socks5-exit.test.ts): the client's
 * leaving was seen only when the hop's handshake gave up, 10 s later, and recorded then.
 *
 * The upstream (`holdingSocks5`, behind `leaveDuringSocks5Exit` in front-clients.ts) answers each step until the held one, reads it and never
 * answers: the greeting, the RFC 1929 credentials or the UDP ASSOCIATE. The family: every held
 * step × every way the client leaves (a reset, a close, a half-close: RFC 1928 §7, the
 * association ends with its control connection, and before the reply a FIN is the client
 * leaving), in a seeded order. Every wait is an event: the upstream reading the held step, the
 * record, the upstream's connection ending, the proxy's side of the client closing.
 */

const STEPS: readonly HoldStep[] = ['greeting', 'auth', 'request'];
const LEAVES: readonly Leave[] = ['rst', 'close', 'half'];


async function oneCase(step: HoldStep, leave: Leave): Promise<void> {
  const what = `UDP ASSOCIATE, then ${leave}, during the SOCKS5 exit's ${step}`;
  let got = Buffer.alloc(0);
  await leaveDuringSocks5Exit({
    step,
    leave,
    what,
    send: udpAssociateBytes(),
    watch: (client) => client.on('data', (d: Buffer) => (got = Buffer.concat([got, d]))),
    check: ({ proxy, records, exit, all }) => {
      const rec = records[0]!;
      assert.equal(rec.protocol, 'socks5-udp', `${what}: the association's record: ${all}`);
      assert.equal(rec.endedBy, 'client', `${what}: ended by the client: ${all}`);
      assert.ok(rec.error === undefined || rec.error === null, `${what}: no failure type: ${all}`);
      assert.equal(rec.reply, undefined, `${what}: no reply (the client was never answered): ${all}`);
      // The method choice and the auth status only, never a reply to the ASSOCIATE.
      assert.equal(got.toString('hex'), '05020100', `${what}: what the client was sent`);
      const lines = accessLines(proxy.lines);
      assert.equal(lines.length, 1, `${what}: one access line: ${JSON.stringify(lines)}`);
      assert.equal(exit.sockets.length, 1, `${what}: one connection to the upstream (no other attempt)`);
    },
  });
}

describe('a SOCKS5 UDP ASSOCIATE through a SOCKS5 exit whose client leaves during the exit’s handshake', () => {
  it('stops the hop at once and is recorded once, ended by the client (every held step × every way of leaving, seeded order)', { timeout: 300_000 }, async () => {
    await seededRun('client-left-during-socks5-udp-exit', async (rand) => {
      const cases: Array<[HoldStep, Leave]> = [];
      for (const s of STEPS) for (const l of LEAVES) cases.push([s, l]);
      shuffle(rand, cases);
      await everyCase(cases, async ([s, l]) => oneCase(s, l));
    });
  });
});
