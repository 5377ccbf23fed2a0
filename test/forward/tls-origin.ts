import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './helpers.js';

export interface TlsOrigin {
  server: Server;
  port: number;
  cert: string;
  close(): Promise<void>;
}

/** An HTTPS origin on loopback with a self-signed certificate made by the openssl CLI. */
export async function startTlsOrigin(): Promise<TlsOrigin> {
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-tls-'));
  try {
    const r = await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ]);
    if (r.code !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    const key = readFileSync(join(dir, 'key.pem'));
    const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const server = createServer({ key, cert }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`tls ok ${req.url}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
      server,
      port: (server.address() as AddressInfo).port,
      cert,
      close: async () => {
        server.closeAllConnections();
        await new Promise<void>((res) => server.close(() => res()));
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
