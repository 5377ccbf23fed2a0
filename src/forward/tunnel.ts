import type { Socket } from 'node:net';

export type TunnelEnd = 'client' | 'server' | 'idle' | 'proxy';

export interface TunnelOptions {
  idleMs: number;
  onUp(bytes: number): void;
  onDown(bytes: number): void;
}

/**
 * Move bytes both ways between the client and the destination with backpressure
 * (pipe), half-close passed on, and an idle timer that any byte in either direction
 * resets. Resolves once both sockets are done, telling who ended it.
 */
export function runTunnel(client: Socket, server: Socket, opts: TunnelOptions): Promise<TunnelEnd> {
  return new Promise<TunnelEnd>((resolve) => {
    let endedBy: TunnelEnd | undefined;
    let settled = false;
    const mark = (who: TunnelEnd): void => {
      endedBy ??= who;
    };
    const idle = setTimeout(() => {
      mark('idle');
      client.destroy();
      server.destroy();
    }, opts.idleMs);
    const touch = (): void => {
      idle.refresh();
    };
    client.on('data', (c: Buffer) => {
      opts.onUp(c.length);
      touch();
    });
    server.on('data', (c: Buffer) => {
      opts.onDown(c.length);
      touch();
    });
    client.pipe(server);
    server.pipe(client);
    client.on('end', () => mark('client'));
    server.on('end', () => mark('server'));
    client.on('error', () => {
      mark('client');
      server.destroy();
    });
    server.on('error', () => {
      mark('server');
      client.destroy();
    });
    let closed = 0;
    const onClose = (who: TunnelEnd) => (): void => {
      mark(who);
      closed++;
      // One side gone for good: give the other a moment to flush, then end it.
      if (closed === 1) {
        const other = who === 'client' ? server : client;
        if (!other.destroyed) {
          other.end();
          setTimeout(() => other.destroy(), 1000).unref();
        }
      }
      if (closed === 2 && !settled) {
        settled = true;
        clearTimeout(idle);
        resolve(endedBy ?? 'proxy');
      }
    };
    client.once('close', onClose('client'));
    server.once('close', onClose('server'));
    client.resume();
    server.resume();
  });
}
