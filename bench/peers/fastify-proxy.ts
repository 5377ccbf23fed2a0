// @fastify/http-proxy as a reverse proxy: one process, logger off, undici pool to the origin.
// Usage: node dist/bench/peers/fastify-proxy.js PORT ORIGIN_PORT
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';

const port = Number(process.argv[2]);
const origin = Number(process.argv[3]);

const app = Fastify({ logger: false, keepAliveTimeout: 60_000, bodyLimit: 2 * 1024 * 1024 });
await app.register(proxy, {
  upstream: `http://127.0.0.1:${origin}`,
  undici: { connections: 256, pipelining: 1, keepAliveTimeout: 60_000 },
});
await app.listen({ port, host: '127.0.0.1' });
