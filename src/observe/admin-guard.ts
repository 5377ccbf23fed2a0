import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { AdminProblem } from './admin-problem.js';

/**
 * The admin listener's guards against what a web page could make a browser send (the listener
 * is on loopback, and a browser on the same machine reaches loopback too). `browserRefusal`:
 * foreign Origin, Sec-Fetch-Site cross-site, a rebound Host. `shapeRefusal`: a state-changing
 * request must carry what a cross-site "simple" request cannot (a JSON body type, or for a
 * request without a body Gatewise-Admin, Authorization: Bearer or a JSON type), so that a
 * browser that sends no Origin is refused too.
 */

/** Where a shape refusal's fault is, for its problem's `errors`. */
const SHAPE_FIELD = { 'unsupported-media-type': '(content-type)', 'simple-request': '(headers)' } as const;

/** The request header that marks a bodiless state-changing request as a program's (curl, scripts): a page cannot send it cross-site without a CORS preflight, which the listener refuses. */
export const ADMIN_REQUEST_HEADER = 'gatewise-admin';

/** Whether a request may change state: any method but GET, HEAD and OPTIONS. */
function changesState(req: IncomingMessage): boolean {
  const method = req.method ?? 'GET';
  return method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';
}

/** Whether a request carries a body (a length above zero, or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len.trim() !== '0');
}

/** `application/json` or an `application/…+json` type, parameters allowed: what a web page cannot send cross-site without a CORS preflight. */
export function isJsonType(type: string | undefined): boolean {
  const media = (type ?? '').split(';')[0]!.trim().toLowerCase();
  return media === 'application/json' || /^application\/[a-z0-9!#$&^_.-]+\+json$/.test(media);
}

/**
 * Why a state-changing request is refused for its shape, or undefined: a body that is not JSON
 * (a page can send text, a form or multipart cross-site without asking, but not JSON); a
 * request without a body (drain, purge, reload by query) that carries none of
 * `Gatewise-Admin`, `Authorization: Bearer …` or a JSON `Content-Type`, which a browser sends
 * only after a CORS preflight. The second guard besides Origin: it holds when the browser sends
 * no Origin (finding, session 32).
 */
export function shapeRefusal(req: IncomingMessage): AdminProblem | undefined {
  if (!changesState(req)) return undefined;
  const type = req.headers['content-type'];
  if (hasBody(req)) {
    if (isJsonType(type)) return undefined;
    return shape('unsupported-media-type', `a request body must be JSON: send Content-Type: application/json (got ${type === undefined ? 'none' : JSON.stringify(type)})`);
  }
  if (isJsonType(type) || req.headers[ADMIN_REQUEST_HEADER] !== undefined || /^Bearer\s/i.test(req.headers.authorization ?? '')) return undefined;
  return shape('simple-request', `a ${req.method} that changes the gateway must carry Gatewise-Admin: 1 (or Authorization: Bearer TOKEN, or Content-Type: application/json): a web page cannot make a browser send any of them cross-site without asking first`);
}

function shape(code: keyof typeof SHAPE_FIELD, detail: string): AdminProblem {
  return new AdminProblem(code, detail, [{ field: SHAPE_FIELD[code], message: detail }]);
}

/**
 * Why a request that a browser was made to send is refused, or undefined. The admin listener
 * is bound to loopback, and a browser on the same machine reaches loopback too (finding,
 * session 29: a page elsewhere could POST a drain cross-site, and a DNS-rebound name could
 * read `/config`):
 * - a request that changes state (not GET, HEAD or OPTIONS) whose `Origin` is not the
 *   listener's own, or that the browser marks `Sec-Fetch-Site: cross-site`;
 * - without `admin.token`, a `Host` that is not an IP address or `localhost` (with the token
 *   a rebound page cannot send it, so names are allowed: an operator's own front may use one).
 */
export function browserRefusal(req: IncomingMessage, token: boolean): AdminProblem | undefined {
  const host = req.headers.host;
  if (!token && host !== undefined) {
    const name = hostName(host);
    if (isIP(name) === 0 && name.toLowerCase() !== 'localhost') return new AdminProblem('rebound-host', `Host ${JSON.stringify(host)} is not an address of this listener: without admin.token the admin API answers only to an IP address or localhost (a guard against DNS rebinding)`);
  }
  if (!changesState(req)) return undefined;
  if (req.headers['sec-fetch-site'] === 'cross-site') return new AdminProblem('cross-site', 'a cross-site request from a browser may not change the gateway (Sec-Fetch-Site: cross-site)');
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  let from: string | undefined;
  try {
    from = new URL(origin).host;
  } catch {
    from = undefined;
  }
  if (from === undefined || from !== host) return new AdminProblem('cross-site', `a request from ${JSON.stringify(origin)} may not change the gateway: only the admin listener's own pages (Origin http://${host ?? ''})`);
  return undefined;
}

/** The host part of a Host value (brackets of an IPv6 literal taken off, the port dropped). */
function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']') < 0 ? undefined : host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

