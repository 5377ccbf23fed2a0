import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { PASSWORD, USER, basicOf } from '../egress/helpers.js';
import { readUntil } from './helpers.js';

/** A TCP source on loopback: a client that sends `GO N\n` is sent N bytes (in one write; the kernel and the proxy cut it in chunks). */
export async function byteSource(): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const conns = new Set<Socket>();
  const server = createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
    let text = '';
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      const m = /GO (\d+)\n/.exec(text);
      if (!m) return;
      text = '';
      s.write(Buffer.alloc(Number(m[1]), 0x63));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of conns) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A CONNECT tunnel through the proxy to `sourcePort`, once its head arrived (the status, and the socket when 200). */
export async function openTunnel(proxyPort: number, sourcePort: number, user = USER, password = PASSWORD): Promise<{ status: number; sock: Socket }> {
  const s = connect(proxyPort, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(`CONNECT 127.0.0.1:${sourcePort} HTTP/1.1\r\nhost: 127.0.0.1:${sourcePort}\r\nproxy-authorization: ${basicOf(user, password)}\r\n\r\n`);
  const head = await readUntil(s, (b) => b.includes('\r\n\r\n'), 10_000);
  // The source sends nothing before it is asked: the head is all there is.
  const status = Number(head.subarray(9, 12).toString('latin1'));
  if (status !== 200) s.destroy();
  return { status, sock: s };
}

/** Ask the source for `n` bytes through an open tunnel; the bytes received once the tunnel closed (or `n` arrived). Destroys the socket. */
export function pull(s: Socket, n: number, timeoutMs = 20_000): Promise<{ got: number; closed: boolean }> {
  return new Promise((resolve) => {
    let got = 0;
    const finish = (closed: boolean): void => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', onClose);
      s.destroy();
      resolve({ got, closed });
    };
    const onClose = (): void => finish(true);
    const onData = (c: Buffer): void => {
      got += c.length;
      if (got >= n) finish(false);
    };
    const t = setTimeout(() => finish(false), timeoutMs);
    s.on('data', onData);
    s.once('close', onClose);
    s.write(`GO ${n}\n`);
  });
}
