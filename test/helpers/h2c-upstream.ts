import { once } from 'node:events';
import { createServer, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';

/**
 * A real node:http2 server speaking h2c on loopback: the HTTP/2 upstream of the tests that look
 * at what an upstream's streams, resets and GOAWAYs do (before, each test wrote its own copy).
 * Its sessions are kept so that `close` ends them (a server's `close` waits for them); a session's
 * or a stream's error (the client cut it, the test reset it) is not the test's failure and is
 * swallowed. `onStream` answers each stream; without it the test listens on `server` itself.
 */
export interface H2cUpstream {
  readonly server: Http2Server;
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The sessions open now. */
  readonly sessions: ReadonlySet<Http2Session>;
  /** Destroy the open sessions and close the server. */
  close(): Promise<void>;
}

export async function startH2cUpstream(onStream?: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void): Promise<H2cUpstream> {
  const server = createServer();
  const sessions = new Set<Http2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream?.(stream, headers);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sessions,
    async close() {
      for (const s of sessions) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
