import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { between, everyCase, seededRun, shuffle } from '../helpers/seeded.js';
import { accessLines } from './helpers.js';
import { frontBytes, leaveDuringSocks5Exit, type Front, type HoldStep, type Leave } from './front-clients.js';

/**
 * A request through an egress pool whose exit is a SOCKS5 upstream proxy, whose client leaves
 * while the exit's SOCKS5 handshake is under way: the hop stops at once (the proxy closes its
 * connection to the upstream, not when the connect time runs out), no tunnel is made, and the
 * request is recorded once, 499 ended by the client. Before, the SOCKS5 hop took no cancel
 * signal (the HTTP CONNECT hop did): the client's leaving was seen only when the handshake
 * ended, here after the 60 s connect time.
 *
 * The upstream is a small SOCKS5 server on loopback that answers each step of the handshake
 * until the held one, reads that step's message and never answers it: the greeting (its
 * method choice), the RFC 1929 credentials (the auth status) or the CONNECT (the reply): `holdingSocks5`
 * behind `leaveDuringSocks5Exit` (front-clients.ts, the proxy, client and teardown too), shared with the UDP ASSOCIATE case (client-left-during-socks5-udp-exit.test.ts). The
 * family (seeded): the phase held, the front (a CONNECT tunnel, a SOCKS5 client, an
 * absolute-form GET), how the client leaves: for the absolute-form GET a reset, a close or a
 * half-close (node:http reads the FIN and ends the connection: the client has left); for a
 * tunnel a reset. A tunnel's client that closes sends a FIN, which from the dial on is its
 * half-close of the tunnel, passed on at the splice (forward/client-fin.ts; a request, its
 * early bytes and its FIN sent in one go are carried: stall-early-half-close.test.ts): the
 * proxy cannot tell it from a close until it writes. Every wait is an event: the upstream reading the held
 * step, the proxy's side of the client closing (net.server.socket), the upstream's connection
 * ending, the record.
 */

type Phase = HoldStep;
const PHASES: readonly Phase[] = ['greeting', 'auth', 'request'];
const FRONTS: readonly Front[] = ['connect', 'socks5', 'http'];

async function oneCase(phase: Phase, front: Front, leave: Leave): Promise<void> {
  const what = `${front}, then ${leave}, during the SOCKS5 exit's ${phase}`;
  await leaveDuringSocks5Exit({
    step: phase,
    leave,
    what,
    send: frontBytes(front, 'dest.test', 80),
    check: ({ proxy, records, exit, all }) => {
      const rec = records[0]!;
      // A SOCKS5 record has no HTTP status (its reply code, none here: the client was never answered).
      if (front === 'socks5') assert.ok(rec.status === undefined && rec.reply === undefined, `${what}: no status, no reply: ${all}`);
      else assert.equal(rec.status, 499, `${what}: 499: ${all}`);
      assert.equal(rec.endedBy, 'client', `${what}: ended by the client: ${all}`);
      assert.ok(rec.error === undefined || rec.error === null, `${what}: no failure type: ${all}`);
      const lines = accessLines(proxy.lines);
      assert.equal(lines.length, 1, `${what}: one access line: ${JSON.stringify(lines)}`);
      assert.equal(exit.sockets.length, 1, `${what}: one connection to the upstream`);
    },
  });
}

describe('a request through a SOCKS5 exit whose client leaves during the exit’s handshake', () => {
  it('stops the hop at once and is recorded once, 499 ended by the client (seeded family: phase, front, how the client leaves)', { timeout: 300_000 }, async () => {
    await seededRun('client-left-during-socks5-exit', async (rand) => {
      const cases: Array<[Phase, Front, Leave]> = [];
      for (const ph of PHASES) {
        for (const f of FRONTS) {
          const leaves: readonly Leave[] = f === 'http' ? ['rst', 'close', 'half'] : ['rst'];
          cases.push([ph, f, leaves[between(rand, 0, leaves.length - 1)]!]);
        }
      }
      shuffle(rand, cases);
      await everyCase(cases, async ([ph, f, l]) => oneCase(ph, f, l));
    });
  });
});
