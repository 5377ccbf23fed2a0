import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** What the admin API may read and change in the running gateway. */
export interface AdminControl {
  /** Clusters and their endpoints' status, as JSON-ready data. */
  status(): unknown;
  /** Start or stop draining an endpoint (by URL or host:port). False when unknown. */
  drain(cluster: string, endpoint: string, draining: boolean): boolean;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json' });
  res.end(text);
}

/**
 * The admin listener: Prometheus `/metrics`, `/healthz` (liveness: 200 while the process
 * runs), `/ready` (readiness: 503 while draining),
 * `GET /clusters` (endpoint status) and `POST /clusters/NAME/drain?endpoint=HOST:PORT`
 * (`/undrain` to let traffic back) for rolling restarts. Bind it to loopback.
 */
export async function startAdmin(
  address: string,
  port: number,
  registry: Registry,
  health: () => boolean,
  control?: AdminControl,
): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const parts = url.pathname.split('/').filter(Boolean);
    if (req.method === 'GET' && url.pathname === '/metrics') {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(body);
        },
        () => send(res, 500, 'metrics unavailable\n'),
      );
    } else if (req.method === 'GET' && url.pathname === '/healthz') {
      // Liveness only: a process that answers here is alive, whatever its upstreams do.
      send(res, 200, 'alive: the process runs; this says nothing about upstreams (readiness: /ready)\n');
    } else if (req.method === 'GET' && url.pathname === '/ready') {
      const ok = health();
      send(res, ok ? 200 : 503, ok ? 'ready: accepting traffic\n' : 'not ready: draining after a stop signal\n');
    } else if (control && req.method === 'GET' && url.pathname === '/clusters') {
      send(res, 200, control.status());
    } else if (control && req.method === 'POST' && parts[0] === 'clusters' && parts.length === 3 && (parts[2] === 'drain' || parts[2] === 'undrain')) {
      const endpoint = url.searchParams.get('endpoint');
      if (!endpoint) return send(res, 400, { error: 'endpoint query parameter required (host:port or URL)' });
      const ok = control.drain(decodeURIComponent(parts[1]!), endpoint, parts[2] === 'drain');
      send(res, ok ? 200 : 404, ok ? { cluster: parts[1], endpoint, draining: parts[2] === 'drain' } : { error: `no endpoint ${endpoint} in cluster ${parts[1]}` });
    } else {
      send(res, 404, 'not found: try /metrics, /healthz, /ready, /clusters, POST /clusters/NAME/drain?endpoint=HOST:PORT\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    server,
    url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
