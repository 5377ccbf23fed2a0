// The floor of a Node CONNECT proxy: net.createServer, the request line cut out of the
// first read, net.connect, "200", then 'data' → write() both ways with backpressure.
// No authentication, rules, metering, logging, timeouts or error answers: what Node's
// sockets cost per tunnel before a proxy does anything. Gatewise's CONNECT path is
// measured against it (and Squid against both).
// Usage: node dist/bench/peers/connect-floor.js PORT
import net from 'node:net';
import { connectHead, relay } from './floor-relay.js';

const port = Number(process.argv[2]);

net
  .createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    client.on('error', () => client.destroy());
    client.once('data', (first: Buffer) => {
      const h = connectHead(client, first);
      if (h === null) return;
      const end = h.end;
      const upstream = net.connect({ host: h.host, port: h.port, allowHalfOpen: true, noDelay: true }, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (end + 4 < first.length) upstream.write(first.subarray(end + 4));
        relay(client, upstream);
        relay(upstream, client);
      });
      upstream.on('error', () => client.destroy());
    });
  })
  .listen(port, '127.0.0.1');
