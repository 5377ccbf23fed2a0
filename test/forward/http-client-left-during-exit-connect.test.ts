import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { everyCase, seededRun, shuffle } from '../helpers/seeded.js';
import { accessLines } from './helpers.js';
import { bounded, withExitHop, type Leave } from './front-clients.js';

/**
 * An absolute-form request through an egress pool whose client leaves while the exit's
 * connection is being made: the dial stops (the proxy closes its connection to the exit at
 * once, not when the connect time runs out) and the request is recorded once, 499 ended by
 * the client, never as the exit's failure.
 *
 * The exit is an HTTP upstream proxy on loopback that reads the CONNECT the proxy sends it
 * for an https:// destination and never answers: the exit's connection is in its handshake
 * (egress/http-connector.ts) when the client leaves. The family: how the client leaves (a
 * reset, a full close, a half-close), what it sends (a GET, a POST with its body, a POST that
 * expects 100-continue and holds its body back). Every wait is an event: the exit reading the
 * CONNECT, the proxy's side of the client closing (net.server.socket), the exit's connection
 * ending, the record. The connect time (60 s) is far past every wait: nothing ends by timing out.
 */

type Send = 'get' | 'post' | 'expect';
const LEAVES: readonly Leave[] = ['rst', 'close', 'half'];
const SENDS: readonly Send[] = ['get', 'post', 'expect'];

/** An HTTP upstream proxy that reads a CONNECT head and never answers. */
async function holdingExit(): Promise<{ server: Server; port: number; sockets: Socket[]; connectRead: Promise<Socket> }> {
  const sockets: Socket[] = [];
  let read!: (s: Socket) => void;
  const connectRead = new Promise<Socket>((r) => (read = r));
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (got.includes('\r\n\r\n')) read(s);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, sockets, connectRead };
}

function requestBytes(send: Send): string {
  const target = 'https://dest.test:9443/';
  const host = 'Host: dest.test:9443\r\n';
  if (send === 'get') return `GET ${target} HTTP/1.1\r\n${host}\r\n`;
  if (send === 'post') return `POST ${target} HTTP/1.1\r\n${host}Content-Length: 5\r\n\r\nhello`;
  return `POST ${target} HTTP/1.1\r\n${host}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`;
}

async function oneCase(leave: Leave, send: Send): Promise<void> {
  const what = `${send}, then ${leave}, during the exit's CONNECT`;
  const exit = await holdingExit();
  const config = {
    auth: { required: false },
    timeouts: { connect: '60s' },
    egress: { pools: { hold: { proxies: [`http://127.0.0.1:${exit.port}`] } }, defaultPool: 'hold' },
  };
  await withExitHop(exit, config, what, async ({ client, proxy, records, leave: leaveNow }) => {
    client.write(requestBytes(send));
    // The exit's connection is in its handshake: the exit has read the CONNECT.
    const exitSide = await bounded(exit.connectRead, 5000, `${what}: the exit reading the proxy's CONNECT`);
    const { all } = await leaveNow(exitSide, leave, 'exit (the dial stopped)');
    const rec = records[0]!;
    assert.equal(rec.status, 499, `${what}: 499: ${all}`);
    assert.equal(rec.endedBy, 'client', `${what}: ended by the client: ${all}`);
    assert.ok(rec.error === undefined || rec.error === null, `${what}: no failure type: ${all}`);
    const lines = accessLines(proxy.lines);
    assert.equal(lines.length, 1, `${what}: one access line: ${JSON.stringify(lines)}`);
    assert.equal(lines[0]!.status, 499, `${what}: ${JSON.stringify(lines)}`);
    assert.equal(exit.sockets.length, 1, `${what}: one connection to the exit`);
  });
}

describe('an absolute-form request through an egress pool whose client leaves while the exit connection is made', () => {
  it('stops the dial and is recorded once, 499 ended by the client (seeded family: how the client leaves, what it sends)', { timeout: 120_000 }, async () => {
    await seededRun('http-client-left-during-exit-connect', async (rand) => {
      const cases: Array<[Leave, Send]> = [];
      for (const l of LEAVES) for (const s of SENDS) cases.push([l, s]);
      // A seeded order: each case starts its own proxy and exit, the order only varies what ran before.
      shuffle(rand, cases);
      await everyCase(cases, async ([l, s]) => oneCase(l, s));
    });
  });
});
