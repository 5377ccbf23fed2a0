import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';

/** A minimal SOCKS5 upstream: no authentication, UDP ASSOCIATE only, relay on 127.0.0.1. */
export async function fakeUpstream(): Promise<{ server: Server; port: number; relay: UdpSocket; relayPort: number; controls: Socket[]; clientPort: Promise<number> }> {
  const relay = createSocket('udp4');
  relay.bind(0, '127.0.0.1');
  await once(relay, 'listening');
  const relayPort = relay.address().port;
  // The egress's local port, learnt from its first frame.
  const clientPort = new Promise<number>((resolve) => relay.once('message', (_m, r) => resolve(r.port)));
  const controls: Socket[] = [];
  const server = createServer((c) => {
    controls.push(c);
    c.on('error', () => {});
    let stage = 0;
    let buf = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (stage === 0 && buf.length >= 2 && buf.length >= 2 + buf[1]!) {
        buf = buf.subarray(2 + buf[1]!);
        stage = 1;
        c.write(Buffer.from([5, 0]));
      }
      if (stage === 1 && buf.length >= 10) {
        stage = 2;
        const pb = Buffer.alloc(2);
        pb.writeUInt16BE(relayPort);
        c.write(Buffer.concat([Buffer.from([5, 0, 0, 1, 127, 0, 0, 1]), pb]));
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port, relay, relayPort, controls, clientPort };
}
