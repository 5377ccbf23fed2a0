import type net from 'node:net';

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
