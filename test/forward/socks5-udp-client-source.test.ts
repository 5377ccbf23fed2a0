import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { isIP } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { between, seededRun } from '../helpers/seeded.js';
import { PASSWORD, USER, accessLine, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { associate, udpClient, udpFrame } from '../helpers/socks-udp.js';
import { canonicalAddress } from '../../src/forward/index.js';

/**
 * Which source a SOCKS5 UDP association takes datagrams from (RFC 1928 §7: DST.ADDR and DST.PORT
 * of UDP ASSOCIATE are the address and port the client expects to send from, all zeros when it
 * does not know them; the server MAY use them to limit access).
 *
 * Probe of session 38 (socks2):
 * 1. An ASSOCIATE announcing an address other than the control connection's (a client behind a
 *    NAT announces its own LAN address) was answered success, then every datagram of the client
 *    was dropped without a word: the relay took only the control connection's IP and the
 *    announced port. Now an announced address that is neither all zeros nor the control
 *    connection's IP is not known to be the source, and the announcement is set aside whole
 *    (address and port): datagrams are taken from the control connection's IP, from the port of
 *    the first well-formed one (as gost, which takes the control connection's IP and ignores the
 *    announcement; accepting from the announced address instead would let a client aim the
 *    relay's answers at another host).
 * 2. With no port known, the first datagram from the client's IP fixed the port even when it was
 *    malformed (a header cut short, FRAG ≠ 0, an unknown ATYP, an address cut short, port 0), so
 *    the client's real datagrams from another port were dropped. Only a well-formed one fixes it.
 *
 * Loopback only: the announced addresses are 127/8 ones or names (nothing is sent to them), the
 * destination an echo on 127.0.0.1; the rules allow 127.0.0.0/8 only.
 */

const ALICE = { user: USER, password: PASSWORD };
/** RSV(2) FRAG(1) ATYP(1) IPv4(4) PORT(2). */
const HEADER = 10;

async function echo(): Promise<{ sock: UdpSocket; port: number; seen: string[] }> {
  const sock = createSocket('udp4');
  const seen: string[] = [];
  sock.on('message', (m, r) => {
    seen.push(m.toString());
    sock.send(m, r.port, r.address);
  });
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { sock, port: sock.address().port, seen };
}

/** A malformed datagram of the seeded family, to the echo's port where it names one. */
function malformed(rand: () => number, port: number): { bytes: Buffer; kind: string } {
  const good = udpFrame('127.0.0.1', port, 'malformed');
  switch (between(rand, 0, 5)) {
    case 0: return { bytes: Buffer.from([0, 0, 0].slice(0, between(rand, 1, 3))), kind: 'header cut short' };
    case 1: {
      const b = Buffer.from(good);
      b[2] = between(rand, 1, 255);
      return { bytes: b, kind: `FRAG ${b[2]}` };
    }
    case 2: {
      const b = Buffer.from(good);
      b[3] = rand() < 0.5 ? 0 : between(rand, 5, 255);
      if (b[3] === 0) b[3] = 2;
      return { bytes: b, kind: `ATYP ${b[3]}` };
    }
    case 3: return { bytes: good.subarray(0, between(rand, 4, 9)), kind: 'IPv4 address cut short' };
    case 4: return { bytes: Buffer.from([0, 0, 0, 3, between(rand, 20, 255), 0x61, 0x62]), kind: 'domain longer than the datagram' };
    default: return { bytes: udpFrame('127.0.0.1', 0, 'port 0'), kind: 'DST.PORT 0' };
  }
}

describe('SOCKS5 UDP: the client source an association takes', () => {
  let p: TestProxy;
  let e: Awaited<ReturnType<typeof echo>>;

  before(async () => {
    e = await echo();
    p = await startTestProxy({ rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } });
  });
  after(async () => {
    await p.close();
    e.sock.close();
  });

  it('an announced address other than the control connection\'s sets the announcement aside: the client\'s datagrams are relayed (seeded addresses and ports)', { timeout: 90_000 }, async () => {
    await seededRun('socks5-udp-announced-address', async (rand) => {
      for (let round = 0; round < 6; round++) {
        const c = await udpClient();
        // Never sent to: still, only loopback spellings or a name.
        const other = rand() < 0.25 ? 'client.lan.test' : `127.${between(rand, 0, 255)}.${between(rand, 0, 255)}.${between(rand, 2, 254)}`;
        if (isIP(other)) assert.ok(canonicalAddress(other)!.address.startsWith('127.'), other);
        const port = rand() < 0.5 ? 0 : c.port === 65_535 ? 1024 : c.port + between(rand, 1, Math.min(500, 65_535 - c.port));
        const what = `round ${round}: announced ${other}:${port}, client 127.0.0.1:${c.port}`;
        const { socket, remoteHost } = await associate(p.port, ALICE, port, other);
        try {
          for (let i = 0; i < 3; i++) {
            const payload = `r${round}-${i}`;
            c.sock.send(udpFrame('127.0.0.1', e.port, payload), remoteHost!.port, remoteHost!.host);
            assert.ok(await waitFor(() => c.inbox.some((m) => m.subarray(HEADER).toString() === payload), 5000), `${what}: ${payload} not relayed`);
          }
        } finally {
          socket.destroy();
          c.sock.close();
        }
      }
    });
  });

  it('an announced port on the control connection\'s address (or all zeros) still limits the source', { timeout: 30_000 }, async () => {
    for (const host of ['127.0.0.1', '0.0.0.0', '::ffff:127.0.0.1']) {
      const c = await udpClient();
      const intruder = await udpClient();
      const { socket, remoteHost } = await associate(p.port, ALICE, c.port, host);
      try {
        intruder.sock.send(udpFrame('127.0.0.1', e.port, `intruder ${host}`), remoteHost!.port, remoteHost!.host);
        c.sock.send(udpFrame('127.0.0.1', e.port, `client ${host}`), remoteHost!.port, remoteHost!.host);
        assert.ok(await waitFor(() => c.inbox.length === 1, 5000), `${host}: the client's datagram not relayed`);
        assert.equal(intruder.inbox.length, 0, `${host}: a datagram from another port was relayed`);
        assert.ok(!e.seen.includes(`intruder ${host}`), host);
      } finally {
        socket.destroy();
        c.sock.close();
        intruder.sock.close();
      }
    }
  });

  it('with no port announced, malformed first datagrams do not fix the port; the first well-formed one does (seeded family)', { timeout: 90_000 }, async () => {
    await seededRun('socks5-udp-malformed-first', async (rand) => {
      for (let round = 0; round < 6; round++) {
        const bad = await udpClient();
        const c = await udpClient();
        const later = await udpClient();
        const n = between(rand, 1, 4);
        const sent = Array.from({ length: n }, () => malformed(rand, e.port));
        const what = `round ${round}: ${sent.map((s) => s.kind).join(', ')}`;
        const { socket, remoteHost } = await associate(p.port, ALICE, 0);
        const payload = `good-${round}`;
        try {
          // Each malformed one sent (its callback) before the good one: UDP on loopback keeps their order into the relay's socket.
          for (const s of sent) await new Promise<void>((r, j) => bad.sock.send(s.bytes, remoteHost!.port, remoteHost!.host, (err) => (err ? j(err) : r())));
          c.sock.send(udpFrame('127.0.0.1', e.port, payload), remoteHost!.port, remoteHost!.host);
          assert.ok(await waitFor(() => c.inbox.some((m) => m.subarray(HEADER).toString() === payload), 5000), `${what}: the well-formed datagram from another port was not relayed`);
          // Now fixed: a datagram from a third port is not taken.
          later.sock.send(udpFrame('127.0.0.1', e.port, `later-${round}`), remoteHost!.port, remoteHost!.host);
          c.sock.send(udpFrame('127.0.0.1', e.port, `${payload}-2`), remoteHost!.port, remoteHost!.host);
          assert.ok(await waitFor(() => c.inbox.length === 2, 5000), `${what}: the second datagram not relayed`);
          assert.equal(later.inbox.length, 0, what);
        } finally {
          socket.destroy();
          bad.sock.close();
          c.sock.close();
          later.sock.close();
        }
        const line = await accessLine(p.lines, (l) => l.protocol === 'socks5-udp' && l.datagramsDown === 2 && !(l as { seen?: boolean }).seen, what);
        (line as { seen?: boolean }).seen = true;
        assert.equal(line.datagramsDropped, n, `${what}: ${JSON.stringify(line)}`);
        assert.equal(line.datagramsUp, 2, what);
      }
    });
  });
});
