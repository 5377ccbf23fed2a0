import type { Socket } from 'node:net';
import { Failure, classify } from '../failure/index.js';
import { withScope } from './exit-failure.js';
import { openTcp } from './open-tcp.js';
import type { ProxyEndpoint } from './proxy-url.js';
import type { CancelSignal } from '../timing/cancel.js';
import { Timeout } from '../timing/deadlines.js';

/** TCP to an upstream proxy (operator-configured: destination rules do not apply to it). */
export function openTransport(p: ProxyEndpoint, timeoutMs: number, signal?: CancelSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const nextHop = p.label;
    if (signal?.aborted) {
      reject(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop, detail: 'aborted: the client went away' }));
      return;
    }
    const sock = openTcp({ host: p.host, port: p.port });
    const done = (): void => {
      timer.cancel();
      sock.off('connect', onConnect);
      sock.off('error', onError);
      signal?.removeEventListener('abort', onAbort);
    };
    const onConnect = (): void => {
      done();
      resolve(sock);
    };
    const onError = (err: Error): void => {
      done();
      sock.destroy();
      const f = classify(err, { connected: false, responseStarted: false, headersReceived: false, nextHop });
      reject(withScope(new Failure({ type: f.type, phase: 'connect', nextHop, detail: `cannot reach upstream proxy ${p.label}: ${f.detail}`, retrySafe: true, cause: err }), 'exit'));
    };
    const onAbort = (): void => {
      done();
      sock.destroy();
      reject(new Failure({ type: 'proxy_internal_error', phase: 'connect', nextHop, detail: 'aborted: the client went away' }));
    };
    const timer = new Timeout(() => {
      done();
      sock.destroy();
      reject(withScope(new Failure({ type: 'connection_timeout', phase: 'connect', nextHop, detail: `upstream proxy ${p.label} did not accept the connection in ${timeoutMs} ms`, retrySafe: true }), 'exit'));
    }, timeoutMs);
    sock.once('connect', onConnect);
    sock.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
