import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { parseProxyUrl } from '../../src/egress/proxy-url.js';
import { Socks5UdpDialer } from '../../src/egress/socks5-udp-dialer.js';
import type { UdpSource } from '../../src/egress/index.js';
import { between, seededRun } from '../helpers/seeded.js';
import { fakeUpstream } from '../helpers/socks5-udp-upstream.js';

/**
 * UDP through an upstream SOCKS5 proxy takes frames only from that proxy's relay: its
 * address and its port. Review finding: the local socket listened on the wildcard address
 * and checked the port alone, so anyone who sent from the relay's port number on another
 * address could inject answers. Here a fake upstream (loopback: a TCP control server whose
 * UDP ASSOCIATE names a relay on 127.0.0.1:P) and impostors on other 127/8 addresses bound
 * to the same port P (seeded) send frames that claim to come from the destination.
 */

function frameFrom(host: string, port: number, data: string): Buffer {
  return SocksClient.createUDPFrame({ remoteHost: { host, port }, data: Buffer.from(data) });
}

function send(sock: UdpSocket, msg: Buffer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => sock.send(msg, port, host, (err) => (err ? reject(err) : resolve())));
}

type FakeUpstream = Awaited<ReturnType<typeof fakeUpstream>>;

/** An egress through a fake upstream, with the frames it took and the datagrams it said it dropped. */
interface Through {
  readonly egress: Awaited<ReturnType<Socks5UdpDialer['open']>>;
  /** Each frame the egress took, in order. */
  readonly got: Array<{ data: string; from: UdpSource }>;
  /** How many datagrams the egress said it dropped (UdpOpenOptions.onDropped). */
  dropped(): number;
  /** The egress's local port, learnt by the relay from its first frame. */
  readonly clientPort: number;
  /** Send a frame saying `data` from the relay and wait (3 s at most) for the egress to take it: once it is in, every frame sent before it was read. */
  last(data: string, late: string): Promise<void>;
}

/**
 * Open an egress through `up` and send its first datagram, which tells the relay the egress's
 * port, to 127.0.0.1:9 (the destination the answers claim to come from, never contacted: the
 * relay is fake). Closes the egress when that fails.
 */
async function openThrough(up: FakeUpstream): Promise<Through> {
  const dialer = new Socks5UdpDialer(parseProxyUrl(`socks5://127.0.0.1:${up.port}`), { timeoutMs: 3000 });
  // Review of session 37: the fragments dropped were not counted in the association's
  // datagramsDropped, while oversized answers were; the egress now says each one.
  let dropped = 0;
  const egress = await dialer.open({ guard: () => undefined, dnsTimeoutMs: 1000, onDropped: () => void dropped++ });
  const got: Array<{ data: string; from: UdpSource }> = [];
  let awaited: { data: string; wake: () => void } | undefined;
  egress.onMessage((payload, from) => {
    got.push({ data: payload.toString(), from });
    if (payload.toString() === awaited?.data) awaited.wake();
  });
  try {
    await egress.send({ host: '127.0.0.1', port: 9 }, Buffer.from('hello'));
    const clientPort = await up.clientPort;
    const last = async (data: string, late: string): Promise<void> => {
      const arrived = new Promise<void>((wake) => (awaited = { data, wake }));
      await send(up.relay, frameFrom('127.0.0.1', 9, data), clientPort, '127.0.0.1');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([arrived, new Promise((_r, reject) => (timer = setTimeout(() => reject(new Error(late)), 3000)))]).finally(() => clearTimeout(timer));
    };
    return { egress, got, dropped: () => dropped, clientPort, last };
  } catch (err) {
    egress.close();
    throw err;
  }
}

describe('UDP through an upstream SOCKS5 proxy', () => {
  it('drops the relay\'s fragments (FRAG != 0, RFC 1928 §7: no reassembly, so they must be dropped) and says each one dropped, then takes its whole frames', { timeout: 30_000 }, async () => {
    // Adversarial probe: frames from the upstream's relay were parsed without reading FRAG,
    // so a fragment reached the client as if it were a whole datagram.
    await seededRun('socks5-udp-fragments', async (rand) => {
      const up = await fakeUpstream();
      let through: Through | undefined;
      try {
        through = await openThrough(up);
        const n = 1 + between(rand, 0, 3);
        for (let i = 0; i < n; i++) {
          const frame = frameFrom('127.0.0.1', 9, `fragment ${i}`);
          frame[2] = between(rand, 1, 255); // FRAG: a fragment's position (high bit: the last one)
          await send(up.relay, frame, through.clientPort, '127.0.0.1');
        }
        // Sent last from the same socket: once it is in, every fragment was read before it.
        await through.last('whole', 'the whole frame did not arrive within 3 s');
        assert.deepEqual(through.got.map((g) => g.data), ['whole']);
        assert.equal(through.dropped(), n, 'every fragment dropped is counted');
      } finally {
        through?.egress.close();
        for (const c of up.controls) c.destroy();
        up.relay.close();
        up.server.close();
      }
    });
  });

  it('takes frames from the relay\'s address and port only, not from another address on the same port (seeded impostors)', { timeout: 30_000 }, async () => {
    await seededRun('socks5-udp-source', async (rand) => {
      const up = await fakeUpstream();
      const impostors: UdpSocket[] = [];
      let through: Through | undefined;
      try {
        through = await openThrough(up);
        const n = 3 + between(rand, 0, 3);
        for (let i = 0; i < n; i++) {
          const addr = `127.${between(rand, 0, 255)}.${between(rand, 0, 255)}.${between(rand, 2, 254)}`;
          if (addr === '127.0.0.1') continue;
          const s = createSocket('udp4');
          impostors.push(s);
          s.bind(up.relayPort, addr);
          await once(s, 'listening');
          await send(s, frameFrom('127.0.0.1', 9, `forged from ${addr}`), through.clientPort, '127.0.0.1');
        }
        // The relay's own frame, sent last: once it is in, every impostor's frame was read before it.
        await through.last('genuine', 'the relay\'s frame did not arrive within 3 s');
        const got = through.got;
        assert.deepEqual(got.map((g) => g.data), ['genuine'], `frames taken: ${JSON.stringify(got)}`);
        assert.equal(got[0]!.from.address, '127.0.0.1');
        assert.equal(got[0]!.from.port, 9);
      } finally {
        through?.egress.close();
        for (const s of impostors) s.close();
        for (const c of up.controls) c.destroy();
        up.relay.close();
        up.server.close();
      }
    });
  });
});
