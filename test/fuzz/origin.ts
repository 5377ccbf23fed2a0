import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A loopback HTTP origin that counts connections and requests and answers 200 with an empty body. */
export interface CountingOrigin {
  port: number;
  connections: number;
  requests: number;
  /** Complete requests (body included) by the last X-Forwarded-For entry (the gateway's view of the client). */
  byClient: Map<string, number>;
  close(): Promise<void>;
}

export async function startCountingOrigin(): Promise<CountingOrigin> {
  const server: Server = createServer((req, res) => {
    o.requests++;
    req.on('error', () => {});
    res.on('error', () => {});
    req.resume();
    req.on('end', () => {
      // Counted when complete: a proxy streams a request head on before its body has been
      // checked, and aborts the request when the body turns out malformed (never complete).
      const xff = req.headers['x-forwarded-for'];
      if (typeof xff === 'string') {
        const client = xff.split(',').pop()!.trim();
        o.byClient.set(client, (o.byClient.get(client) ?? 0) + 1);
      }
      res.writeHead(200, { 'content-length': '0', 'x-origin': '1' }).end();
    });
  });
  const o: CountingOrigin = {
    port: 0,
    connections: 0,
    requests: 0,
    byClient: new Map(),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  server.on('connection', (s) => {
    o.connections++;
    s.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  o.port = (server.address() as AddressInfo).port;
  return o;
}
