import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { ForwardRecord } from '../../src/record/index.js';
import { between, everyCase, seededRun, shuffle } from '../helpers/seeded.js';
import { accessLines, startTestProxy, type TestProxy } from './helpers.js';
import { bounded, frontBytes, holdingSocks5, leaveWhileHopHeld, type Front, type HoldStep, type Leave } from './front-clients.js';

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
 * (front-clients.ts), shared with the UDP ASSOCIATE case (client-left-during-socks5-udp-exit.test.ts). The
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
  const exit = await holdingSocks5(phase);
  const records: ForwardRecord[] = [];
  let recorded: (() => void) | undefined;
  let proxyPort = 0;
  let proxySide: Socket | undefined;
  const onAccept = (m: unknown): void => {
    const s = (m as { socket: Socket }).socket;
    if (s.localPort === proxyPort) proxySide = s;
  };
  diagnostics_channel.subscribe('net.server.socket', onAccept);
  let client: Socket | undefined;
  let p: TestProxy | undefined;
  try {
    p = await startTestProxy(
      {
        timeouts: { connect: '60s', handshake: '60s' },
        egress: { pools: { hold: { proxies: [`socks5://up:pass@127.0.0.1:${exit.port}`] } }, defaultPool: 'hold' },
      },
      { hooks: [{ onFinish: (r) => (records.push(r), recorded?.()) }] },
    );
    proxyPort = p.port;
    client = connect(p.port, '127.0.0.1');
    client.on('error', () => {});
    await bounded(once(client, 'connect'), 5000, `${what}: connect to the proxy`);
    client.write(frontBytes(front, 'dest.test', 80));
    const exitSide = await bounded(exit.held, 10_000, `${what}: the upstream reading the held step`);
    const { all } = await leaveWhileHopHeld({ client, exitSide, proxySide, records, onRecord: (wake) => (recorded = wake), leave, what, hop: 'upstream (the hop stopped)' });
    const rec = records[0]!;
    // A SOCKS5 record has no HTTP status (its reply code, none here: the client was never answered).
    if (front === 'socks5') assert.ok(rec.status === undefined && rec.reply === undefined, `${what}: no status, no reply: ${all}`);
    else assert.equal(rec.status, 499, `${what}: 499: ${all}`);
    assert.equal(rec.endedBy, 'client', `${what}: ended by the client: ${all}`);
    assert.ok(rec.error === undefined || rec.error === null, `${what}: no failure type: ${all}`);
    const lines = accessLines(p.lines);
    assert.equal(lines.length, 1, `${what}: one access line: ${JSON.stringify(lines)}`);
    assert.equal(exit.sockets.length, 1, `${what}: one connection to the upstream`);
  } finally {
    diagnostics_channel.unsubscribe('net.server.socket', onAccept);
    client?.destroy();
    await p?.close();
    for (const s of exit.sockets) s.destroy();
    exit.server.close();
  }
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
