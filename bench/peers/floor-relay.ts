import type net from 'node:net';

/** A CONNECT head in the first read: its target and where the head ends; null (answered 400 and ended) when it is not one. */
export function connectHead(client: net.Socket, first: Buffer): { host: string; port: number; end: number } | null {
  const head = first.toString('latin1');
  const end = head.indexOf('\r\n\r\n');
  const target = head.slice(0, head.indexOf('\r\n')).split(' ')[1] ?? '';
  const colon = target.lastIndexOf(':');
  if (end < 0 || !head.startsWith('CONNECT ') || colon < 0) {
    client.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    return null;
  }
  return { host: target.slice(0, colon), port: Number(target.slice(colon + 1)), end };
}

/** The floor's relay (connect-floor.ts, connect-floor-steps.ts): 'data' → write() with backpressure, end and errors passed on. */
export function relay(from: net.Socket, to: net.Socket): void {
  from.on('data', (d: Buffer) => {
    if (!to.write(d)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
  from.on('end', () => to.end());
  from.on('error', () => to.destroy());
  from.on('close', () => to.destroy());
}
