// Gatewise's upstream socket layer alone behind node:http (issue 17 study): the server side is
// raw-client.ts's (node:http), the upstream side Gatewise's own ConnectionPool of NativeClients
// over its cleartext connector, driven by a handler of a few lines (hop-by-hop fields dropped,
// the answer written through ServerResponse). No Exchange, Attempt, route, checks, Via,
// X-Forwarded-*, request id, timers, retries or record. Duelled against raw-client it tells
// what Gatewise's socket layer costs; against gatewise-quiet, what its pipeline costs.
// Usage: node dist/bench/peers/native-layer.js PORT ORIGIN_PORT
import http from 'node:http';
import { ConnectionPool, type PoolConnection } from '../../src/pool/index.js';
import { upstreamConnector } from '../../src/pool/plain-connector.js';

const port = Number(process.argv[2]);
const origin = Number(process.argv[3]);
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);
const pool = new ConnectionPool<PoolConnection>({
  origin: `http://127.0.0.1:${origin}`,
  maxConnections: Infinity,
  keepAliveMs: 60_000,
  clientOptions: { keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000, keepAliveTimeoutThreshold: 1000, maxHeaderSize: 16 * 1024 },
  connector: upstreamConnector({ timeout: 10_000 }),
  native: true,
});

class Handler {
  constructor(
    readonly res: http.ServerResponse,
    readonly conn: PoolConnection,
  ) {}
  onConnect(): void {}
  onHeaders(status: number, raw: Array<Buffer | string>): boolean {
    const out: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const n = String(raw[i]);
      if (!HOP.has(n.toLowerCase())) out.push(n, String(raw[i + 1]));
    }
    this.res.writeHead(status, out);
    return true;
  }
  onData(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }
  onComplete(): void {
    pool.release(this.conn, Date.now(), true);
    this.res.end();
  }
  onError(): void {
    pool.release(this.conn, Date.now(), false);
    if (!this.res.headersSent) this.res.writeHead(502);
    this.res.end();
  }
}

const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const headers: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i]!.toLowerCase())) headers.push(raw[i]!, raw[i + 1]!);
  headers.push('host', `127.0.0.1:${origin}`);
  const c = pool.acquire(Date.now(), true, false);
  c.dispatch({ path: req.url ?? '/', method: req.method as 'GET', headers, body: null }, new Handler(res, c) as never);
});
server.listen(port, '127.0.0.1');
