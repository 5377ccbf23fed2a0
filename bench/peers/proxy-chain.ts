// proxy-chain as a forward proxy (absolute-form HTTP and CONNECT), no authentication,
// keep-alive agent for plain HTTP to the origin.
// Usage: node dist/bench/peers/proxy-chain.js PORT
import http from 'node:http';
import { Server } from 'proxy-chain';

const port = Number(process.argv[2]);
const httpAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });

const server = new Server({
  port,
  host: '127.0.0.1',
  verbose: false,
  prepareRequestFunction: () => ({ httpAgent }),
});
await server.listen();
