import type { ProxyErrorType } from '../failure/types.js';

/** Which lab listener a catalogue entry is aimed at. */
export type LabListener = 'http' | 'tls-self-signed' | 'tls-ca' | 'refused';

/** One entry of the lab's catalogue: what it does and what a gateway should make of it. */
export interface LabFault {
  /** Path and query on the lab. */
  readonly path: string;
  readonly description: string;
  /** The RFC 9209 type a gateway should report, or undefined when the upstream's answer is passed on. */
  readonly expectType: ProxyErrorType | undefined;
  /** Other types that are also a fair report of this fault (FAILURES.md allows either). */
  readonly alsoAccept?: readonly ProxyErrorType[];
  /** The status the client should see from a gateway in front of the lab. */
  readonly expectStatus: number;
  /** Default 'http'. 'tls-ca' assumes the gateway trusts the lab CA (`lab.caPem`). */
  readonly listener?: LabListener;
  /**
   * The upstream's status and headers were already passed on when the fault happens: the
   * client sees `expectStatus` and then an aborted connection, never a complete-looking body.
   */
  readonly midBody?: boolean;
  /** Needs a gateway whose response-headers / body timeout is shorter than the fault's delay. */
  readonly needsTimeout?: boolean;
}

/** Every lab behaviour worth showing, in the order `gatewise demo` prints them. */
export const LAB_FAULTS: readonly LabFault[] = [
  { path: '/ok', description: 'a small 200 response', expectType: undefined, expectStatus: 200 },
  { path: '/echo', description: 'the request as received, as JSON', expectType: undefined, expectStatus: 200 },
  { path: '/bytes?n=1048576', description: '1 MiB streamed with Content-Length', expectType: undefined, expectStatus: 200 },
  { path: '/bytes?n=1048576&chunked=1', description: '1 MiB streamed chunked', expectType: undefined, expectStatus: 200 },
  { path: '/upload', description: 'counts the streamed request body', expectType: undefined, expectStatus: 200 },
  { path: '/chunked', description: 'a chunked body written in several pieces', expectType: undefined, expectStatus: 200 },
  { path: '/trailers', description: 'a chunked body with a trailer (x-checksum)', expectType: undefined, expectStatus: 200 },
  { path: '/early-hints', description: '103 Early Hints, then 200', expectType: undefined, expectStatus: 200 },
  { path: '/slow?ms=500', description: 'answers after 500 ms', expectType: undefined, expectStatus: 200 },
  { path: '/work?ms=100', description: 'a job holding one of the upstream\'s worker slots for 100 ms (503 + Retry-After beyond capacity and queue)', expectType: undefined, expectStatus: 200 },
  { path: '/ws', description: 'WebSocket echo (upgrade)', expectType: undefined, expectStatus: 101 },
  { path: '/status/500', description: 'the application answers 500', expectType: undefined, expectStatus: 500 },
  { path: '/status/502', description: 'the application answers 502 (passed on, not the gateway\'s own)', expectType: undefined, expectStatus: 502 },
  { path: '/5xx', description: 'the upstream server software answers 503 with its own HTML page', expectType: undefined, expectStatus: 503 },
  { path: '/ok', listener: 'refused', description: 'nothing listens on the port', expectType: 'connection_refused', expectStatus: 502 },
  { path: '/close', description: 'closes the connection before any response byte', expectType: 'connection_terminated', expectStatus: 502 },
  { path: '/reset', description: 'resets the connection (RST) before any response byte', expectType: 'connection_terminated', expectStatus: 502 },
  { path: '/garbage', description: 'answers bytes that are not HTTP', expectType: 'http_protocol_error', expectStatus: 502 },
  { path: '/http09', description: 'answers a body without a status line (HTTP/0.9 style)', expectType: 'http_protocol_error', expectStatus: 502 },
  { path: '/invalid-header', description: 'a header value holding a NUL byte', expectType: 'http_protocol_error', expectStatus: 502 },
  { path: '/invalid-header?byte=cr', description: 'a header value holding a bare CR', expectType: 'http_protocol_error', expectStatus: 502 },
  { path: '/two-content-length', description: 'two different Content-Length values', expectType: 'http_protocol_error', expectStatus: 502 },
  { path: '/oversized-headers', description: 'about 100 KiB of response headers', expectType: 'http_response_header_section_size', expectStatus: 502 },
  { path: '/cut-headers', description: 'half a header section, then close', expectType: 'http_response_incomplete', expectStatus: 502 },
  { path: '/cut-body', description: 'Content-Length 1000, 100 bytes, then close', expectType: 'http_response_incomplete', expectStatus: 200, midBody: true },
  { path: '/cut-body?close=1', description: 'the same after announcing Connection: close', expectType: 'http_response_incomplete', expectStatus: 200, midBody: true },
  {
    path: '/bad-chunk',
    description: 'an invalid chunk size after a valid first chunk',
    expectType: 'http_response_transfer_coding',
    // undici's HTTPParserError carries no llhttp code here (only the message says "chunk size").
    alsoAccept: ['http_protocol_error'],
    expectStatus: 200,
    midBody: true,
  },
  { path: '/hang', description: 'never answers (the connection stays open)', expectType: 'http_response_timeout', expectStatus: 504, needsTimeout: true },
  { path: '/slow-headers?ms=10000', description: 'the status line, then 10 s before the rest of the head', expectType: 'http_response_timeout', expectStatus: 504, needsTimeout: true },
  { path: '/stall-body', description: 'headers and part of the body, then silence', expectType: 'connection_read_timeout', expectStatus: 200, midBody: true, needsTimeout: true },
  { path: '/ok', listener: 'tls-self-signed', description: 'TLS with a self-signed certificate', expectType: 'tls_certificate_error', expectStatus: 502 },
  { path: '/ok', listener: 'tls-ca', description: 'TLS with a certificate from the lab CA (trusted when the gateway is given lab.caPem)', expectType: undefined, expectStatus: 200 },
];

/** What `faultUrl` needs of a lab. */
export interface LabAddresses {
  readonly url: string;
  readonly refusedPort: number;
  readonly tlsSelfSignedUrl?: string;
  readonly tlsCaUrl?: string;
}

/** The absolute URL of a catalogue entry on a running lab; undefined when that listener is not running (no TLS). */
export function faultUrl(lab: LabAddresses, fault: LabFault): string | undefined {
  switch (fault.listener ?? 'http') {
    case 'http':
      return lab.url + fault.path;
    case 'refused': {
      const base = new URL(lab.url);
      base.port = String(lab.refusedPort);
      return base.origin + fault.path;
    }
    case 'tls-self-signed':
      return lab.tlsSelfSignedUrl === undefined ? undefined : lab.tlsSelfSignedUrl + fault.path;
    case 'tls-ca':
      return lab.tlsCaUrl === undefined ? undefined : lab.tlsCaUrl + fault.path;
  }
}
