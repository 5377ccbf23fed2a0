import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { renderFailure, type Failure, type Rendered } from '../failure/index.js';
import { isCustomerFacing } from '../tenants/index.js';
import type { ForwardContext } from './context.js';
import { proxyAuthenticateValue } from './proxy-auth.js';
import { CLOSE_LINGER_MS, destroyAfter } from '../timing/deadlines.js';

/** The gateway-made response for a failure, with Proxy-Authenticate on 407. */
export function renderForwardFailure(ctx: ForwardContext, failure: Failure, requestId: string, accept: string | undefined, head = false): Rendered {
  const r = renderFailure({
    failure,
    requestId,
    accept,
    proxyStatus: { name: ctx.settings.name, revealTopology: ctx.settings.revealDetails || isCustomerFacing(failure), problemTypeBase: ctx.settings.problemTypeBase },
    head,
  });
  if (failure.status === 407) r.headers['proxy-authenticate'] = proxyAuthenticateValue(ctx.settings.realm);
  return r;
}

/**
 * Answer an ordinary request with the failure. A 408 (the proxy stopped waiting: a request
 * whose password check outlasted its head's time, a body too slow) ends the connection, as
 * RFC 9110 §15.5.9 has a server say, like every other close.
 */
export function sendFailure(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, failure: Failure, requestId: string, close = false, debug?: string): void {
  const r = renderForwardFailure(ctx, failure, requestId, req.headers.accept, req.method === 'HEAD');
  if (close || failure.status === 408) r.headers['connection'] = 'close';
  if (debug !== undefined) r.headers['gatewise-debug'] = debug;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  // A head Node refused before (the relay's catch) left its reason phrase here: the failure's status gets its own.
  res.statusMessage = '';
  res.writeHead(r.status, r.headers);
  res.end(r.body);
}

/** Answer on a raw socket (CONNECT before the tunnel, parse errors) and close it. */
export function writeRawFailure(ctx: ForwardContext, socket: Socket, failure: Failure, requestId: string, accept: string | undefined, debug?: string, isHead = false): void {
  const r = renderForwardFailure(ctx, failure, requestId, accept, isHead);
  if (debug !== undefined) r.headers['gatewise-debug'] = debug;
  let head = `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? 'Error'}\r\n`;
  for (const [k, v] of Object.entries(r.headers)) head += `${k}: ${v}\r\n`;
  head += 'connection: close\r\n\r\n';
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), r.body]));
  // Do not wait forever for a client that never reads.
  destroyAfter(socket, CLOSE_LINGER_MS);
}
