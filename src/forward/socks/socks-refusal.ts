import { Failure } from '../../failure/index.js';
import { checkOutlastedHead } from '../head-deadline.js';
import { HandshakeEnded } from './byte-reader.js';

/** The failure value for a malformed or abandoned SOCKS handshake. */
export function handshakeFailure(err: unknown, what: string): Failure {
  if (err instanceof HandshakeEnded) {
    // The deadline passed during the proxy's own check: the same failure as on the HTTP fronts.
    if (err.duringProxyWork) return checkOutlastedHead(what);
    const detail = err.reason === 'timeout' ? `${what} handshake not completed in time` : err.reason === 'overflow' ? `${what} handshake too large` : `client closed during the ${what} handshake`;
    return new Failure({ type: 'http_request_error', phase: 'accept', reason: err.reason === 'timeout' ? 'request_timeout' : 'bad_request', detail, cause: err });
  }
  if (err instanceof Failure) return err;
  return new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request', detail: `malformed ${what} request`, cause: err });
}

export function protocolError(detail: string, reason: 'bad_request' | 'not_implemented' = 'bad_request'): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', reason, detail });
}
