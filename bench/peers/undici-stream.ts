// The floor of a Node reverse proxy: `http.createServer` + undici `Pool.stream()`
// writing straight into the response. No routing, no header rules, no Via, no
// retries, no error pages: what any Node proxy built on undici costs before it
// does anything. Gatewise is measured against it to show what its features cost.
// Usage: node dist/bench/peers/undici-stream.js PORT ORIGIN_PORT
import http from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2]);
const origin = Number(process.argv[3]);
const pool = new Pool(`http://127.0.0.1:${origin}`, { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 });

// The least a proxy must do to stay correct with this origin: not forward the
// client's connection-level fields (undici refuses `connection: close` anyway).
function forwardable(h: http.IncomingHttpHeaders): http.IncomingHttpHeaders {
  if (h.connection === undefined && h['keep-alive'] === undefined) return h;
  const out = { ...h };
  delete out.connection;
  delete out['keep-alive'];
  return out;
}

const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  pool
    .stream(
      { path: req.url ?? '/', method: req.method as 'GET', headers: forwardable(req.headers), body: hasBody ? req : null },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, headers as http.OutgoingHttpHeaders);
        return res;
      },
    )
    .catch(() => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
});
server.listen(port, '127.0.0.1');
