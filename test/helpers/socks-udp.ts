import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { SocksClient } from 'socks';

/** An established SOCKS5 UDP association: its control `socket`, and in `remoteHost` the relay to send frames to. */
export type UdpAssociation = Awaited<ReturnType<typeof SocksClient.createConnection>>;

/** A UDP socket on a free loopback port (IPv4), every datagram it receives kept in `inbox`. */
export async function udpClient(): Promise<{ sock: UdpSocket; port: number; inbox: Buffer[] }> {
  const sock = createSocket('udp4');
  const inbox: Buffer[] = [];
  sock.on('message', (m) => inbox.push(m));
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { sock, port: sock.address().port, inbox };
}

/**
 * SOCKS5 UDP ASSOCIATE (with the `socks` package) through the proxy on 127.0.0.1:`proxyPort`
 * as `user`, announcing `announcedHost`:`announcedPort` (0.0.0.0 and 0: not known) as the
 * client's UDP source (RFC 1928 §7's DST.ADDR and DST.PORT; nothing is sent to it); 3 s bound.
 */
export function associate(proxyPort: number, user: { user: string; password: string }, announcedPort = 0, announcedHost = '0.0.0.0'): Promise<UdpAssociation> {
  const client = new SocksClient({
    proxy: { host: '127.0.0.1', port: proxyPort, type: 5, userId: user.user, password: user.password },
    command: 'associate',
    destination: { host: announcedHost, port: announcedPort },
    timeout: 3000,
  });
  return new Promise((resolve, reject) => {
    client.once('established', resolve);
    client.once('error', reject);
    client.connect();
  });
}

/** A SOCKS5 UDP frame for `host:port` carrying `data`; `frameNumber` 0 is a whole datagram, others are fragments. */
export function udpFrame(host: string, port: number, data: Buffer | string, frameNumber = 0): Buffer {
  const f = SocksClient.createUDPFrame({ remoteHost: { host, port }, data: Buffer.from(data) });
  f[2] = frameNumber;
  return f;
}
