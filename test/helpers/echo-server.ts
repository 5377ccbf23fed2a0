import { once } from 'node:events';
import { createServer, type AddressInfo, type Server } from 'node:net';

/** A TCP echo server on loopback, for tunnels that stay open. */
export async function echoServer(): Promise<Server & { port: number }> {
  const s = createServer((c) => {
    c.on('error', () => {});
    c.pipe(c);
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return Object.assign(s, { port: (s.address() as AddressInfo).port });
}
