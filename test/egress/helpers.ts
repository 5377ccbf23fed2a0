import { once } from 'node:events';
import { createServer, request as httpRequest, type Server, type IncomingHttpHeaders } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { SocksClient } from 'socks';
import { startForwardProxy, type ForwardProxy } from '../../src/forward/index.js';
import type { ForwardConfigInput } from '../../src/config/forward.js';
import type { Resolver } from '../../src/egress/index.js';
import { memoryLogger, userHashes, USER, PASSWORD, USER2, PASSWORD2, readUntil } from '../forward/helpers.js';

export { USER, PASSWORD, USER2, PASSWORD2 };

/** An HTTP origin that answers with the address it saw the request come from. */
export interface WhoAmI {
  port: number;
  seen: string[];
  close(): Promise<void>;
}

export async function whoAmI(host = '127.0.0.1'): Promise<WhoAmI> {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    const from = req.socket.remoteAddress ?? '';
    seen.push(from);
    if (req.url?.startsWith('/bytes/')) {
      const n = Number(req.url.slice(7));
      res.writeHead(200, { 'content-length': String(n) });
      res.end(Buffer.alloc(n, 0x62));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(from)), connection: 'close' });
    res.end(from);
  });
  server.listen(0, host);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export function basicOf(user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
}

/** A plain HTTP request through the proxy (absolute-form), on a fresh connection. */
export function proxyGet(proxyPort: number, url: string, user = USER, password = PASSWORD): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxyPort, path: url, agent: false, headers: { 'proxy-authorization': basicOf(user, password), host: new URL(url).host } }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(8000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** CONNECT through the proxy, then GET / over the tunnel. */
export async function connectGet(proxyPort: number, host: string, port: number, user = USER, password = PASSWORD, path = '/'): Promise<{ connect: string; body: string }> {
  const s = connect(proxyPort, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nhost: ${host}:${port}\r\nproxy-authorization: ${basicOf(user, password)}\r\n\r\n`);
  const head = (await readUntil(s, (b) => b.includes('\r\n\r\n'), 8000)).toString('latin1');
  if (!head.startsWith('HTTP/1.1 200')) {
    s.destroy();
    return { connect: head, body: '' };
  }
  s.write(`GET ${path} HTTP/1.1\r\nhost: ${host}:${port}\r\nconnection: close\r\n\r\n`);
  const rest = (await readUntil(s, () => false, 8000)).toString('latin1');
  s.destroy();
  return { connect: head, body: rest.slice(rest.indexOf('\r\n\r\n') + 4) };
}

/** SOCKS5 CONNECT through the proxy, then GET / over it; throws with the SOCKS error. */
export async function socksGet(proxyPort: number, host: string, port: number, user = USER, password = PASSWORD): Promise<string> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: proxyPort, type: 5, userId: user, password },
    command: 'connect',
    destination: { host, port },
    timeout: 8000,
  });
  socket.write(`GET / HTTP/1.1\r\nhost: ${host}:${port}\r\nconnection: close\r\n\r\n`);
  const rest = (await readUntil(socket as Socket, () => false, 8000)).toString('latin1');
  socket.destroy();
  return rest.slice(rest.indexOf('\r\n\r\n') + 4);
}

/** SOCKS4 CONNECT (USERID name:password) and the reply code. */
export async function socks4Reply(proxyPort: number, port: number, userId: string): Promise<number> {
  const s = connect(proxyPort, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  const head = Buffer.from([4, 1, (port >> 8) & 0xff, port & 0xff, 127, 0, 0, 1]);
  s.write(Buffer.concat([head, Buffer.from(userId), Buffer.from([0])]));
  const r = await readUntil(s, (b) => b.length >= 8, 5000);
  s.destroy();
  return r[1] ?? -1;
}

export interface PoolProxy {
  proxy: ForwardProxy;
  port: number;
  lines: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** A forward proxy on loopback with alice/secret and bob/hunter2 (loopback destinations allowed). */
export async function startPoolProxy(cfg: Partial<ForwardConfigInput>, userExtra: { alice?: object; bob?: object } = {}, deps: { now?: () => number; resolver?: Resolver } = {}): Promise<PoolProxy> {
  const [h1, h2] = await userHashes();
  const { logger, lines } = memoryLogger();
  const proxy = await startForwardProxy(
    {
      listeners: [{ address: '127.0.0.1', port: 0 }],
      revealDetails: true,
      timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
      ...cfg,
      auth: { required: true, users: [{ name: USER, password: h1, ...userExtra.alice }, { name: USER2, password: h2, ...userExtra.bob }], ...cfg.auth },
      rules: { allowPrivate: true, connectPorts: ['1-65535'], ...cfg.rules },
    },
    { logger, now: deps.now, resolver: deps.resolver },
  );
  return { proxy, port: proxy.addresses()[0]!.port, lines, close: () => proxy.close() };
}

/** A plain Gatewise forward proxy to use as an upstream (HTTP and SOCKS5 on one port). */
export async function startUpstreamGatewise(name: string, resolver?: Resolver): Promise<PoolProxy> {
  return startPoolProxy({ name, revealDetails: true }, {}, { resolver });
}
