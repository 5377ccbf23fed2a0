import type { Server } from 'node:net';

/**
 * Start `server` (an `http` or `net` server) on a free port of `host` (a loopback address);
 * its port, and the http:// URL that reaches it (an IPv6 host in brackets).
 */
export async function listenOnFreePort(server: Server, host: string): Promise<{ port: number; url: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return { port, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}` };
}
