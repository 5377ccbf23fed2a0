// The connect floor (connect-floor.ts) with Gatewise's costs added one at a time, to bisect
// the CPU per tunnel between the two (issue 17, docs/benchmarks.md "CONNECT per tunnel: bisecting").
// Usage: FLOOR_STEPS=STEP,STEP node dist/bench/peers/connect-floor-steps.js PORT
//   BIG     Gatewise's modules loaded and a Gatewise forward proxy started (idle) in this process
//   MALLOC  the malloc trim threshold raised as Gatewise does (src/cli/malloc-tuning.ts)
//   IMPORT  Gatewise's modules loaded, nothing started
//   SYM     the symbol properties Gatewise puts on the client and upstream sockets, in its order
//   PEER    the client's address read (getpeername), as the connection gate's per-address cap did
//   PAUSE   the client paused from the CONNECT until the upstream is connected
//   STABLE  with SYM: every symbol property given at once when the socket is accepted or made (one map for its life)
//   UPNEW   the upstream made as `new Socket()` + `connect()` instead of `net.connect(options)`
import net from 'node:net';
import { connectHead, relay } from './floor-relay.js';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const port = Number(process.argv[2]);
const steps = new Set((process.env.FLOOR_STEPS ?? '').split(',').filter(Boolean));
const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const mod = (p: string): string => pathToFileURL(path.join(dist, p)).href;

if (steps.has('MALLOC')) ((await import(mod('src/cli/malloc-tuning.js'))) as { raiseMallocTrimThreshold(): void }).raiseMallocTrimThreshold();
if (steps.has('IMPORT') || steps.has('BIG')) {
  const { main } = (await import(mod('src/cli/main.js'))) as { main(argv: string[]): Promise<unknown> };
  await import(mod('src/index.js'));
  const spare = port > 64000 ? port - 1000 : port + 1000;
  if (steps.has('BIG')) void main(['forward', '--listen', `127.0.0.1:${spare}`, '--no-auth', '--allow-private', '--connect-ports', '1-65535', '--no-access-log']);
}

const SYM = steps.has('SYM');
const STABLE = steps.has('STABLE');
const PEER = steps.has('PEER');
const PAUSE = steps.has('PAUSE');
const UPNEW = steps.has('UPNEW');
const kSource = Symbol('gatewise.source');
const kCounted = Symbol('gatewise.counted');
const kHandshakeEnd = Symbol('gatewise.handshakeEnd');
const kWait = Symbol('gatewise.handshakeWait');
const kTunnel = Symbol('gatewise.tunnel');
const kAttempt = Symbol('gatewise.connectAttempt');
type Marked = net.Socket & Record<symbol, unknown>;

net
  .createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    const c = client as Marked;
    if (SYM && STABLE) {
      c[kSource] = undefined;
      c[kCounted] = undefined;
      c[kHandshakeEnd] = undefined;
      c[kWait] = undefined;
      c[kTunnel] = undefined;
    }
    if (SYM) {
      c[kSource] = '127.0.0.1';
      c[kCounted] = 'open';
      c[kHandshakeEnd] = performance.now() + 10_000;
      c[kWait] = {};
    }
    if (PEER) void client.remoteAddress;
    client.on('error', () => client.destroy());
    client.once('data', (first: Buffer) => {
      const h = connectHead(client, first);
      if (h === null) return;
      const end = h.end;
      if (PAUSE) client.pause();
      if (SYM) {
        c[kWait] = undefined;
        c[kTunnel] = {};
      }
      const host = h.host;
      const tport = h.port;
      let upstream: net.Socket;
      const opened = (): void => {
        if (SYM) {
          (upstream as Marked)[kAttempt] = undefined;
          (upstream as Marked)[kTunnel] = {};
        }
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (end + 4 < first.length) upstream.write(first.subarray(end + 4));
        relay(client, upstream);
        relay(upstream, client);
        if (PAUSE) client.resume();
      };
      if (UPNEW) {
        upstream = new net.Socket();
        upstream.allowHalfOpen = true;
        upstream.setNoDelay(true);
        upstream.connect({ host, port: tport }, opened);
      } else {
        upstream = net.connect({ host, port: tport, allowHalfOpen: true, noDelay: true }, opened);
      }
      if (SYM && STABLE) (upstream as Marked)[kTunnel] = undefined;
      if (SYM) (upstream as Marked)[kAttempt] = {};
      upstream.on('error', () => client.destroy());
    });
  })
  .listen(port, '127.0.0.1');
