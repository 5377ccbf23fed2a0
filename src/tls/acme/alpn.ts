import type { Socket } from 'node:net';
import { createServer as createTlsServer, type SecureContext, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { Timeout } from '../../timing/deadlines.js';

/** The ALPN protocol of TLS-ALPN-01 validations (RFC 8737 §6.2). */
export const ACME_TLS_ALPN = 'acme-tls/1';

/** What a ClientHello says that decides where a connection goes. */
export interface ClientHelloInfo {
  /** The server name (SNI host_name), lower-case; undefined when none was sent. */
  servername: string | undefined;
  /** The ALPN protocols offered, in the client's order ([] when none). */
  alpn: string[];
}

/** A TLS record header and a handshake header: the least a ClientHello can be. */
const RECORD_HEADER = 5;
/** A ClientHello in one record is at most 2^14 bytes of payload (RFC 8446 §5.1). */
const MAX_RECORD = 16_384 + RECORD_HEADER;

/**
 * The server name and ALPN list of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301
 * §3.1) from the first bytes of a connection. `'more'`: the first record is not complete yet;
 * undefined: not a ClientHello in one record (anything else, or malformed). Written here:
 * OpenSSL (through Node) tells the ALPN list only after the certificate has been chosen in
 * TLS 1.2 (the SNI callback runs first), and TLS-ALPN-01 must choose the certificate by ALPN;
 * no package we depend on parses a ClientHello. Only the first record is read (a ClientHello
 * split over records is not a validation: those fit in one).
 */
export function parseClientHello(buf: Buffer): ClientHelloInfo | 'more' | undefined {
  if (buf.length === 0) return 'more';
  if (buf[0] !== 0x16) return undefined;
  if (buf.length < RECORD_HEADER) return 'more';
  const recordLen = buf.readUInt16BE(3);
  if (recordLen + RECORD_HEADER > MAX_RECORD) return undefined;
  if (buf.length < RECORD_HEADER + recordLen) return 'more';
  const end = RECORD_HEADER + recordLen;
  let p = RECORD_HEADER;
  // Handshake: type 1 (client_hello), 3-byte length, which must fit in this record.
  if (end - p < 4 || buf[p] !== 0x01) return undefined;
  const helloEnd = p + 4 + buf.readUIntBE(p + 1, 3);
  if (helloEnd > end) return undefined;
  p += 4 + 2 + 32; // legacy_version, random
  if (p + 1 > helloEnd) return undefined;
  p += 1 + buf[p]!; // legacy_session_id
  if (p + 2 > helloEnd) return undefined;
  p += 2 + buf.readUInt16BE(p); // cipher_suites
  if (p + 1 > helloEnd) return undefined;
  p += 1 + buf[p]!; // legacy_compression_methods
  const out: ClientHelloInfo = { servername: undefined, alpn: [] };
  if (p === helloEnd) return out; // no extensions
  if (p + 2 > helloEnd) return undefined;
  const extEnd = p + 2 + buf.readUInt16BE(p);
  if (extEnd > helloEnd) return undefined;
  p += 2;
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    const body = p + 4;
    if (body + len > extEnd) return undefined;
    if (type === 0 && len >= 2) {
      // server_name: a list of (type 1 byte, length 2 bytes, name); host_name is type 0.
      let q = body + 2;
      const listEnd = Math.min(body + 2 + buf.readUInt16BE(body), body + len);
      while (q + 3 <= listEnd) {
        const nameLen = buf.readUInt16BE(q + 1);
        if (q + 3 + nameLen > listEnd) return undefined;
        if (buf[q] === 0) out.servername = buf.toString('latin1', q + 3, q + 3 + nameLen).toLowerCase();
        q += 3 + nameLen;
      }
    } else if (type === 16 && len >= 2) {
      // application_layer_protocol_negotiation: a list of (length 1 byte, protocol).
      let q = body + 2;
      const listEnd = Math.min(body + 2 + buf.readUInt16BE(body), body + len);
      while (q + 1 <= listEnd) {
        const n = buf[q]!;
        if (n === 0 || q + 1 + n > listEnd) return undefined;
        out.alpn.push(buf.toString('latin1', q + 1, q + 1 + n));
        q += 1 + n;
      }
    }
    p = body + len;
  }
  return out;
}

/**
 * Read a connection's first bytes until its ClientHello is known (at most one record, at most
 * `waitMs`), put them back (paused: Node's TLSSocket feeds what the socket has buffered to
 * OpenSSL first) and call `done` with what the hello said (undefined: not a ClientHello, or
 * it did not come in time, or the socket closed — `done` is then not called). `head`: bytes
 * the caller already read from the socket (they come first).
 * Used only while a TLS-ALPN-01 validation is pending on the listener.
 */
export function peekClientHello(socket: Socket, waitMs: number, done: (hello: ClientHelloInfo | undefined) => void, head?: Buffer): void {
  let buf: Buffer | undefined = head;
  const finish = (hello: ClientHelloInfo | undefined): void => {
    socket.removeListener('data', onData);
    socket.removeListener('close', onClose);
    deadline?.cancel();
    socket.pause();
    if (buf !== undefined) socket.unshift(buf);
    done(hello);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf === undefined ? chunk : Buffer.concat([buf, chunk]);
    const r = parseClientHello(buf);
    if (r === 'more') return;
    finish(r);
  };
  const onClose = (): void => {
    socket.removeListener('data', onData);
    deadline?.cancel();
  };
  // Bytes already read by the caller (the forward listener's first-byte sniff) may hold the whole hello.
  if (buf !== undefined && parseClientHello(buf) !== 'more') {
    const r = parseClientHello(buf);
    socket.pause();
    socket.unshift(buf);
    return done(r === 'more' ? undefined : r);
  }
  const deadline = waitMs > 0 ? new Timeout(() => finish(undefined), waitMs) : undefined;
  socket.on('data', onData);
  socket.once('close', onClose);
}

/**
 * The TLS side of TLS-ALPN-01 (RFC 8737): a TLS server that never listens, given the
 * connections whose ClientHello offered `acme-tls/1` for a name being validated. It answers
 * with that name's challenge certificate (self-signed, with the acmeIdentifier extension;
 * made by acme-client) and `acme-tls/1`, and closes the connection after the handshake
 * (the validator sends nothing more, §3). No HTTP is ever served on these connections.
 */
export class AlpnResponder {
  readonly #server: TlsServer;
  /** Validation handshakes completed. */
  answered = 0;

  constructor(contextFor: (servername: string) => SecureContext | undefined, handshakeTimeoutMs = 10_000) {
    this.#server = createTlsServer({
      ALPNProtocols: [ACME_TLS_ALPN],
      handshakeTimeout: handshakeTimeoutMs,
      SNICallback: (name, cb) => {
        const ctx = contextFor(name.toLowerCase());
        if (ctx === undefined) cb(new Error(`no TLS-ALPN-01 challenge is pending for ${name}`));
        else cb(null, ctx);
      },
    });
    this.#server.on('secureConnection', (t: TLSSocket) => {
      this.answered++;
      t.on('error', () => {});
      t.end();
    });
    this.#server.on('tlsClientError', (_err, t: TLSSocket) => t.destroy());
  }

  /** Run the handshake of a connection whose first bytes were put back (see `peekClientHello`). */
  take(socket: Socket): void {
    this.#server.emit('connection', socket);
  }
}

/** Whether a ClientHello is a TLS-ALPN-01 validation: it offers acme-tls/1 only (RFC 8737 §3), for a server name. */
export function isAlpnValidation(hello: ClientHelloInfo): hello is ClientHelloInfo & { servername: string } {
  return hello.servername !== undefined && hello.alpn.length === 1 && hello.alpn[0] === ACME_TLS_ALPN;
}
