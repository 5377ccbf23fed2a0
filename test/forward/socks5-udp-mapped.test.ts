import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { PASSWORD, USER, accessLines, startTestProxy, tableResolver, waitFor } from './helpers.js';
import { associate, udpClient } from '../helpers/socks-udp.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * A datagram to an IPv4-mapped IPv6 destination (`::ffff:127.0.0.1`, as ATYP=4 bytes, as an
 * IPv6 literal in the name field in any spelling, or as what a name resolves to) goes to the
 * IPv4 address it maps: the destination rules judge the unmapped address, so it must also be
 * the one the datagram is sent to. Review finding: the direct UDP egress sent it on its
 * IPv6-only socket, where a mapped address is unreachable, and the datagram was dropped
 * (TCP CONNECT to the same address worked). With private destinations refused, every form
 * is still refused.
 */

type Form = 'atyp4' | 'dotted' | 'hex' | 'upper' | 'long' | 'resolved';
const FORMS: readonly Form[] = ['atyp4', 'dotted', 'hex', 'upper', 'long', 'resolved'];

interface Case {
  form: Form;
  /** The IPv4 loopback address the destination listens on. */
  v4: string;
}

function hex2(a: number, b: number): string {
  return ((a << 8) | b).toString(16);
}

/** The mapped spelling of `v4` for `form` (the text a client names; atyp4: the bytes). */
function spelled(c: Case): string {
  const q = c.v4.split('.').map(Number) as [number, number, number, number];
  switch (c.form) {
    case 'dotted':
      return `::ffff:${c.v4}`;
    case 'hex':
      return `::ffff:${hex2(q[0], q[1])}:${hex2(q[2], q[3])}`;
    case 'upper':
      return `::FFFF:${hex2(q[0], q[1]).toUpperCase().padStart(4, '0')}:${hex2(q[2], q[3]).toUpperCase().padStart(4, '0')}`;
    case 'long':
      return `0:0:0:0:0:ffff:${c.v4}`;
    case 'atyp4':
    case 'resolved':
      return `::ffff:${c.v4}`;
  }
}

/** A SOCKS5 UDP frame for the case's destination on `port`. */
function frame(c: Case, port: number, data: string): Buffer {
  const pb = Buffer.alloc(2);
  pb.writeUInt16BE(port);
  let addr: Buffer;
  if (c.form === 'atyp4') {
    const b = Buffer.alloc(16);
    b.writeUInt16BE(0xffff, 10);
    c.v4.split('.').forEach((x, i) => (b[12 + i] = Number(x)));
    addr = Buffer.concat([Buffer.from([4]), b]);
  } else {
    const name = c.form === 'resolved' ? `mapped-${c.v4.replaceAll('.', '-')}.test` : spelled(c);
    addr = Buffer.concat([Buffer.from([3, name.length]), Buffer.from(name, 'latin1')]);
  }
  return Buffer.concat([Buffer.from([0, 0, 0]), addr, pb, Buffer.from(data)]);
}

/** A UDP echo on `host` that counts what it receives. */
async function echoOn(host: string): Promise<{ sock: UdpSocket; port: number; received: number }> {
  const sock = createSocket('udp4');
  const st = { sock, port: 0, received: 0 };
  sock.on('message', (m, r) => {
    st.received++;
    sock.send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address);
  });
  sock.bind(0, host);
  await once(sock, 'listening');
  st.port = sock.address().port;
  return st;
}

function send(sock: UdpSocket, msg: Buffer, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => sock.send(msg, port, host, (err) => (err ? reject(err) : resolve())));
}

function casesOf(rand: () => number): Case[] {
  const out: Case[] = [];
  // Every form once at 127.0.0.1, then seeded forms at other 127/8 addresses.
  for (const form of FORMS) out.push({ form, v4: '127.0.0.1' });
  for (let i = 0; i < 8; i++) {
    out.push({ form: FORMS[between(rand, 0, FORMS.length - 1)]!, v4: `127.${between(rand, 0, 255)}.${between(rand, 0, 255)}.${between(rand, 1, 254)}` });
  }
  return out;
}

function tableOf(cases: readonly Case[]): Record<string, string[]> {
  const t: Record<string, string[]> = {};
  for (const c of cases) t[`mapped-${c.v4.replaceAll('.', '-')}.test`] = [`::ffff:${c.v4}`];
  return t;
}

describe('SOCKS5 UDP to IPv4-mapped IPv6 destinations', () => {
  it('each mapped form reaches the IPv4 destination and its answer comes back (seeded family)', { timeout: 60_000 }, async () => {
    await seededRun('udp-mapped-delivered', async (rand) => {
      const cases = casesOf(rand);
      const p = await startTestProxy({}, { resolver: tableResolver(tableOf(cases)) });
      const c = await udpClient();
      const echoes: Array<Awaited<ReturnType<typeof echoOn>>> = [];
      let control: { destroy(): void } | undefined;
      try {
        const { socket, remoteHost } = await associate(p.port, { user: USER, password: PASSWORD }, c.port);
        control = socket;
        for (const [i, k] of cases.entries()) {
          const echo = await echoOn(k.v4);
          echoes.push(echo);
          await send(c.sock, frame(k, echo.port, `d${i}`), remoteHost!.port, remoteHost!.host);
          const what = `${k.form} ${spelled(k)} (${k.v4})`;
          assert.ok(await waitFor(() => c.inbox.length > i, 3000), `${what}: no answer; the destination received ${echo.received}`);
          const back = SocksClient.parseUDPFrame(c.inbox[i]!);
          assert.equal(back.data.toString(), `echo:d${i}`, what);
          assert.equal(back.remoteHost.port, echo.port, what);
        }
      } finally {
        control?.destroy();
        c.sock.close();
        for (const e of echoes) e.sock.close();
        await p.close();
      }
    });
  });

  it('with private destinations refused, every mapped form is dropped and counted', { timeout: 60_000 }, async () => {
    await seededRun('udp-mapped-refused', async (rand) => {
      const cases = casesOf(rand);
      const p = await startTestProxy({ rules: { allowPrivate: false } }, { resolver: tableResolver(tableOf(cases)) });
      const c = await udpClient();
      const echoes: Array<Awaited<ReturnType<typeof echoOn>>> = [];
      try {
        const { socket, remoteHost } = await associate(p.port, { user: USER, password: PASSWORD }, c.port);
        try {
          for (const [i, k] of cases.entries()) {
            const echo = await echoOn(k.v4);
            echoes.push(echo);
            await send(c.sock, frame(k, echo.port, `d${i}`), remoteHost!.port, remoteHost!.host);
          }
        } finally {
          socket.destroy();
        }
        // The association's record counts every datagram it dropped.
        assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.protocol === 'socks5-udp'), 3000), 'the association is recorded');
        const rec = accessLines(p.lines).find((l) => l.protocol === 'socks5-udp')!;
        assert.equal(rec.datagramsDropped, cases.length, JSON.stringify(rec));
        assert.equal(rec.datagramsUp ?? 0, 0, JSON.stringify(rec));
        assert.deepEqual(echoes.map((e) => e.received), echoes.map(() => 0));
      } finally {
        c.sock.close();
        for (const e of echoes) e.sock.close();
        await p.close();
      }
    });
  });
});
