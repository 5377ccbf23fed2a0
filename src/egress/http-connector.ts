import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Failure, isProxyErrorType, type ProxyErrorType } from '../failure/index.js';
import { withScope } from './exit-failure.js';
import type { DialTarget } from './dialer.js';
import type { ProxyEndpoint } from './proxy-url.js';
import type { CancelSignal } from '../timing/cancel.js';
import { Timeout } from '../timing/deadlines.js';

const MAX_HEAD = 16 * 1024;

function authority(t: DialTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

export function basicAuth(p: ProxyEndpoint): string | undefined {
  if (p.username === undefined) return undefined;
  return `Basic ${Buffer.from(`${p.username}:${p.password ?? ''}`).toString('base64')}`;
}

/** The `error=` of the last member of an upstream Proxy-Status header, when it is an RFC 9209 type. */
function upstreamErrorType(head: string): ProxyErrorType | undefined {
  const m = /^proxy-status:(.*)$/im.exec(head);
  if (!m) return undefined;
  const members = m[1]!.split(',');
  const e = /;\s*error=([a-z_]+)/.exec(members[members.length - 1] ?? '');
  return e && isProxyErrorType(e[1]!) ? e[1] : undefined;
}

/**
 * The HTTP CONNECT Connector: over a transport to an upstream HTTP proxy, ask for a
 * tunnel to `target`. Resolves with the same socket once the proxy answers 2xx.
 * A 407 is the exit's fault (scope exit); a 403 or 5xx is reported as the upstream proxy's
 * answer about the destination (scope domain), with the proxy as next hop and its status
 * as `received-status`.
 */
export function httpConnect(sock: Socket | Duplex, proxy: ProxyEndpoint, target: DialTarget, timeoutMs: number, signal?: CancelSignal): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const auth = basicAuth(proxy);
    const hp = authority(target);
    let buf = Buffer.alloc(0);
    const fail = (f: Failure): void => {
      cleanup();
      sock.destroy();
      reject(f);
    };
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_HEAD) fail(withScope(new Failure({ type: 'http_protocol_error', phase: 'connect', nextHop: proxy.label, detail: `upstream proxy ${proxy.label} sent an oversized CONNECT response head` }), 'exit'));
        return;
      }
      const head = buf.subarray(0, end).toString('latin1');
      const rest = buf.subarray(end + 4);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!m) {
        fail(withScope(new Failure({ type: 'http_protocol_error', phase: 'connect', nextHop: proxy.label, detail: `upstream proxy ${proxy.label} did not answer CONNECT with HTTP` }), 'exit'));
        return;
      }
      const status = Number(m[1]);
      if (status >= 200 && status < 300) {
        cleanup();
        if (rest.length) sock.unshift(rest);
        resolve(sock as Socket);
        return;
      }
      if (status === 407) {
        fail(withScope(new Failure({ type: 'proxy_configuration_error', phase: 'connect', nextHop: proxy.label, detail: `upstream proxy ${proxy.label} refused our credentials (407)`, retrySafe: true }), 'exit'));
        return;
      }
      const theirs = upstreamErrorType(head);
      const type: ProxyErrorType = theirs ?? (status === 504 ? 'connection_timeout' : status === 403 ? 'http_request_denied' : 'destination_unavailable');
      const f = new Failure({
        type,
        phase: 'connect',
        nextHop: proxy.label,
        detail: `upstream proxy ${proxy.label} answered ${status} to CONNECT ${hp}${theirs ? ` (its Proxy-Status: error=${theirs})` : ''}`,
        retrySafe: true,
        params: { 'received-status': status },
      });
      // Every refusal of the hop is this exit's failure for this destination: another exit may
      // take it (nothing was sent to the destination yet), and this one cools down for it. A
      // 403 is the hop's policy for this destination (a provider blocking a site), not a broken
      // exit: marking the whole exit would let one blocked site cool every exit of a pool.
      fail(withScope(f, 'domain'));
    };
    const onError = (err: Error): void => fail(withScope(new Failure({ type: 'connection_terminated', phase: 'connect', nextHop: proxy.label, detail: `upstream proxy ${proxy.label} failed during CONNECT`, cause: err, retrySafe: true }), 'exit'));
    const onClose = (): void => fail(withScope(new Failure({ type: 'connection_terminated', phase: 'connect', nextHop: proxy.label, detail: `upstream proxy ${proxy.label} closed the connection during CONNECT`, retrySafe: true }), 'exit'));
    const onAbort = (): void => fail(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop: proxy.label, detail: 'aborted: the client went away' }));
    const timer = new Timeout(() => fail(withScope(new Failure({ type: 'connection_timeout', phase: 'connect', nextHop: proxy.label, detail: `upstream proxy ${proxy.label} did not answer CONNECT ${hp} in ${timeoutMs} ms`, retrySafe: true }), 'domain')), timeoutMs);
    function cleanup(): void {
      timer.cancel();
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    }
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    let req = `CONNECT ${hp} HTTP/1.1\r\nhost: ${hp}\r\n`;
    if (auth) req += `proxy-authorization: ${auth}\r\n`;
    sock.write(`${req}\r\n`);
  });
}
