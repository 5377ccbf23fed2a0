import type { Socket } from 'node:net';

/**
 * A client that sends a request, reads nothing for `waitMs` (its socket paused, so the
 * proxy meets backpressure), then reads to the end: the response head, and how many body
 * bytes came after it. The request is expected to ask for `Connection: close`.
 */
export async function readLate(sock: Socket, request: string, waitMs: number): Promise<{ head: string; bodyBytes: number }> {
  sock.pause();
  sock.write(request);
  await new Promise((r) => setTimeout(r, waitMs));
  let head = '';
  let bodyBytes = 0;
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.on('data', (d: Buffer) => {
    if (!head.includes('\r\n\r\n')) {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end >= 0) bodyBytes += Buffer.byteLength(head, 'latin1') - end - 4;
      return;
    }
    bodyBytes += d.length;
  });
  sock.resume();
  await closed;
  return { head, bodyBytes };
}
