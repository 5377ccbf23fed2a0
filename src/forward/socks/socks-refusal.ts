import { Failure } from '../../failure/index.js';
import { HandshakeEnded } from './byte-reader.js';

/** The failure value for a malformed or abandoned SOCKS handshake. */
export function handshakeFailure(err: unknown, what: string): Failure {
  if (err instanceof HandshakeEnded) {
    const detail = err.reason === 'timeout' ? `${what} handshake not completed in time` : err.reason === 'overflow' ? `${what} handshake too large` : `client closed during the ${what} handshake`;
    return new Failure({ type: 'http_request_error', phase: 'accept', status: err.reason === 'timeout' ? 408 : 400, detail, cause: err });
  }
  if (err instanceof Failure) return err;
  return new Failure({ type: 'http_request_error', phase: 'accept', status: 400, detail: `malformed ${what} request`, cause: err });
}

export function protocolError(detail: string, status = 400): Failure {
  return new Failure({ type: 'http_request_error', phase: 'accept', status, detail });
}
