// node-http-proxy as a reverse proxy: one process, keep-alive agent to the origin.
// Usage: node dist/bench/peers/http-proxy.js PORT ORIGIN_PORT
import http from 'node:http';
import { createRequire } from 'node:module';

// http-proxy ships no types; only the two calls used here are described.
interface HttpProxy {
  web(req: http.IncomingMessage, res: http.ServerResponse, opts: object, cb: (err: Error) => void): void;
}
const require = createRequire(import.meta.url);
const httpProxy = require('http-proxy') as { createProxyServer(opts: object): HttpProxy };

const port = Number(process.argv[2]);
const origin = Number(process.argv[3]);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${origin}`, agent, xfwd: false });

const server = http.createServer((req, res) => {
  proxy.web(req, res, {}, () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1');
