/**
 * The failure taxonomy: every RFC 9209 error type, declared once with the status
 * the gateway answers for it and a plain-words explanation. `docs/errors.md` is
 * checked against this table by a test.
 */

/** Where in a hop's life a failure happened. */
export type Phase =
  | 'accept' // reading the client's request
  | 'route' // choosing where the request goes
  | 'admit' // cluster limits and queues
  | 'pick' // choosing an endpoint
  | 'dns'
  | 'connect'
  | 'tls'
  | 'send' // writing the request head and body upstream
  | 'headers' // waiting for / parsing the response head
  | 'body' // streaming the response body
  | 'internal';

/** Whose side a failure is on. */
export type Source = 'client' | 'upstream' | 'gateway';

/**
 * Who ended a request, tunnel or association, in the same words on both faces (HAProxy's
 * termination side): `complete` (it ran to its end), the side a failure is on (a
 * Failure's `source`: `client`, `upstream`, `gateway`), `idle` (nothing moved for the idle
 * time) or `quota` (a byte quota of the user's plan cut it).
 */
export type EndedBy = 'complete' | Source | 'idle' | 'quota';

export interface ErrorTypeInfo {
  /** HTTP status the gateway answers when this is the final failure. 0 = depends (passes a received status). */
  readonly status: number;
  readonly title: string;
  /** One sentence for a person reading the error page. */
  readonly explain: string;
  readonly source: Source;
  /** RFC 9209 says this type may be sent as a trailer on a partial response. */
  readonly trailer: boolean;
}

function t(status: number, source: Source, trailer: boolean, title: string, explain: string): ErrorTypeInfo {
  return { status, source, trailer, title, explain };
}

/** All 32 RFC 9209 error types (section 2.3), with the status Gatewise answers. */
export const ERROR_TYPES = {
  dns_timeout: t(504, 'upstream', false, 'DNS Timeout', 'The name of the upstream server could not be resolved in time.'),
  dns_error: t(502, 'upstream', false, 'DNS Error', 'The name of the upstream server could not be resolved.'),
  destination_not_found: t(404, 'gateway', false, 'Destination Not Found', 'The gateway has no route for this request.'),
  destination_unavailable: t(503, 'upstream', false, 'Destination Unavailable', 'Every upstream server for this request is considered down right now.'),
  destination_ip_prohibited: t(502, 'gateway', false, 'Destination IP Prohibited', 'The gateway is not allowed to connect to the address of the upstream server.'),
  destination_ip_unroutable: t(502, 'upstream', false, 'Destination IP Unroutable', 'There is no network route to the upstream server.'),
  connection_refused: t(502, 'upstream', false, 'Connection Refused', 'The upstream server refused the connection: nothing is listening there.'),
  connection_terminated: t(502, 'upstream', true, 'Connection Terminated', 'The upstream server closed the connection before sending a response.'),
  connection_timeout: t(504, 'upstream', false, 'Connection Timeout', 'The upstream server did not accept the connection in time.'),
  connection_read_timeout: t(504, 'upstream', true, 'Connection Read Timeout', 'The upstream server stopped sending data in the middle of its response.'),
  connection_write_timeout: t(504, 'upstream', true, 'Connection Write Timeout', 'The upstream server stopped reading the request.'),
  connection_limit_reached: t(503, 'gateway', false, 'Connection Limit Reached', 'The upstream servers are at their capacity; the gateway shed this request to protect them.'),
  tls_protocol_error: t(502, 'upstream', true, 'TLS Protocol Error', 'The secure connection to the upstream server could not be set up.'),
  tls_certificate_error: t(502, 'upstream', false, 'TLS Certificate Error', 'The upstream server presented a certificate the gateway does not trust.'),
  tls_alert_received: t(502, 'upstream', true, 'TLS Alert Received', 'The upstream server ended the secure connection with an alert.'),
  http_request_error: t(400, 'client', false, 'Bad Request', 'The request is not valid HTTP, so the gateway did not forward it.'),
  http_request_denied: t(403, 'gateway', false, 'Request Denied', 'The gateway\'s policy does not allow this request.'),
  http_response_incomplete: t(502, 'upstream', true, 'Incomplete Response', 'The upstream server stopped before its response was complete.'),
  http_response_header_section_size: t(502, 'upstream', true, 'Response Header Section Too Large', 'The upstream server sent more response headers than the gateway accepts.'),
  http_response_header_size: t(502, 'upstream', true, 'Response Header Too Large', 'The upstream server sent a response header larger than the gateway accepts.'),
  http_response_body_size: t(502, 'upstream', true, 'Response Body Too Large', 'The upstream server sent a larger response body than the gateway accepts.'),
  http_response_trailer_section_size: t(502, 'upstream', true, 'Response Trailer Section Too Large', 'The upstream server sent more trailers than the gateway accepts.'),
  http_response_trailer_size: t(502, 'upstream', true, 'Response Trailer Too Large', 'The upstream server sent a trailer larger than the gateway accepts.'),
  http_response_transfer_coding: t(502, 'upstream', true, 'Response Transfer-Coding Error', 'The upstream server sent a body with broken transfer coding (chunking), or applied a transfer coding that changes the bytes (gzip, deflate...), which the gateway does not decode and will not pass on still coded.'),
  http_response_content_coding: t(502, 'upstream', true, 'Response Content-Coding Error', 'The upstream server sent a body with broken content coding (compression).'),
  http_response_timeout: t(504, 'upstream', true, 'Response Timeout', 'The upstream server did not answer in time.'),
  http_upgrade_failed: t(502, 'upstream', false, 'Upgrade Failed', 'The upstream server did not accept the protocol upgrade (for example WebSocket).'),
  http_protocol_error: t(502, 'upstream', true, 'HTTP Protocol Error', 'The upstream server sent a response that is not valid HTTP.'),
  proxy_internal_response: t(0, 'gateway', false, 'Proxy Internal Response', 'The gateway answered this request itself.'),
  proxy_internal_error: t(500, 'gateway', false, 'Proxy Internal Error', 'The gateway itself failed while handling the request.'),
  proxy_configuration_error: t(500, 'gateway', false, 'Proxy Configuration Error', 'The gateway\'s configuration does not allow it to handle this request.'),
  proxy_loop_detected: t(502, 'gateway', false, 'Proxy Loop Detected', 'The request came back to this gateway: its configuration forwards in a loop.'),
} as const satisfies Record<string, ErrorTypeInfo>;

export type ProxyErrorType = keyof typeof ERROR_TYPES;

export const ERROR_TYPE_NAMES = Object.keys(ERROR_TYPES) as ProxyErrorType[];

export function isProxyErrorType(s: string): s is ProxyErrorType {
  return Object.prototype.hasOwnProperty.call(ERROR_TYPES, s);
}

export interface RefusalInfo {
  readonly type: ProxyErrorType;
  readonly status: number;
  /** Title for the error page and problem+json (the status's reason phrase). */
  readonly title: string;
  /** One sentence for a person, instead of the type's (which speaks of policy in general). */
  readonly explain: string;
  /**
   * A 405's `Allow` (RFC 9110 §15.5.6: it MUST say the methods the target takes): the value
   * itself, or `'computed'` when the target decides it and the `Failure` carries it (`allow`).
   */
  readonly allow?: string;
}

function r(type: ProxyErrorType, status: number, title: string, explain: string, allow?: string): RefusalInfo {
  return allow === undefined ? { type, status, title, explain } : { type, status, title, explain, allow };
}

/**
 * Refusals whose status is not their type's: each a stable reason code with its RFC 9209
 * type and status. With ERROR_TYPES above, the only place statuses are written: call sites
 * name a reason, never a status (test/failure/statuses.test.ts fails when one does).
 */
export const REFUSAL_REASONS = {
  /** Malformed request (the type's own 400, named for symmetry with the others). */
  bad_request: r('http_request_error', 400, 'Bad Request', 'The request is not valid HTTP, so the gateway did not forward it.'),
  /** The request head (or a SOCKS handshake) did not arrive in time. */
  request_timeout: r('http_request_error', 408, 'Request Timeout', 'The request did not arrive in time, so the gateway stopped waiting for it.'),
  /** The request body is larger than allowed. */
  content_too_large: r('http_request_error', 413, 'Content Too Large', 'The request body is larger than the gateway accepts.'),
  /** The request header section is larger than allowed. */
  header_fields_too_large: r('http_request_error', 431, 'Request Header Fields Too Large', 'The request headers are larger, or more numerous, than the gateway accepts.'),
  /**
   * The method is valid HTTP but not served here (CONNECT on the reverse gateway); Allow: what
   * the gateway as a whole serves, the `Allow` of its `OPTIONS *` too (gateway/router.ts
   * `serverAllow`, from the route table), which the failure carries.
   */
  method_not_allowed: r('http_request_error', 405, 'Method Not Allowed', 'This listener does not serve that method.', 'computed'),
  /**
   * Routes match the request's host, path and headers, but none takes its method (their
   * `match.methods`): RFC 9110 §15.5.6's 405, whose `Allow` (the methods those routes take,
   * gateway/router.ts `Router.allowed`) the failure carries. The type is no route's, as the 404's.
   */
  route_method_not_allowed: r('destination_not_found', 405, 'Method Not Allowed', 'The gateway routes this path, but not for this method; the Allow field lists the methods it takes.', 'computed'),
  /** An Expect the gateway cannot meet (anything but 100-continue, RFC 9110 §10.1.1). */
  expectation_failed: r('http_request_error', 417, 'Expectation Failed', 'The request expects something of the server that the gateway cannot meet.'),
  /** An HTTP version the gateway does not serve (an HTTP/0.9 request line). */
  version_not_supported: r('http_request_error', 505, 'HTTP Version Not Supported', 'The request uses a version of HTTP the gateway does not serve.'),
  /** A method, transfer coding or SOCKS command the gateway does not implement. */
  not_implemented: r('http_request_error', 501, 'Not Implemented', 'The gateway does not implement what the request asks for.'),
  /** No, malformed or wrong proxy credentials. */
  proxy_auth_required: r('http_request_denied', 407, 'Proxy Authentication Required', 'The proxy needs a valid user name and password for this request.'),
  /** Right password, but a username parameter (-session-, -ttl-, -pool-) the proxy does not know or a value it cannot use. */
  bad_username_parameter: r('http_request_denied', 407, 'Proxy User Name Not Understood', 'The password is right, but the proxy user name carries a parameter the proxy does not know or a value it cannot use (parameters: NAME-session-ID-ttl-10m-pool-NAME-debug-1).'),
  /** A rate, quota or connection limit of the user's plan, or one client's excess (password checks per source). */
  too_many_requests: r('http_request_denied', 429, 'Too Many Requests', 'A limit on how much or how fast this client may use the gateway was reached.'),
  /**
   * Too many wrong credentials from this client address: refused for a lockout without the
   * credential being checked, a right one too (net/auth-lockout.ts); Retry-After says when.
   */
  auth_locked_out: r('http_request_denied', 429, 'Too Many Requests', 'Too many wrong user names or passwords came from this address; it may try again after the time Retry-After gives.'),
  /** Work of this kind is at the gateway's overall bound (password checks in progress): refused before it is done. */
  overloaded: r('http_request_denied', 503, 'Service Unavailable', 'The gateway has too much of this work in progress right now.'),
  /**
   * `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7) and the cache holds no response it may
   * use: the gateway answers itself without trying the next hop (RFC 9209 §2.3.31), with the
   * 504 the RFC names.
   */
  only_if_cached: r('proxy_internal_response', 504, 'Gateway Timeout', 'The request asked for a stored response only (Cache-Control: only-if-cached), and the cache holds none it may use.'),
} as const satisfies Record<string, RefusalInfo>;

export type RefusalReason = keyof typeof REFUSAL_REASONS;

/** The status a record carries when the client left before an answer (nginx's 499; never sent). */
export const CLIENT_CLOSED_STATUS = 499;

/**
 * gRPC status codes (grpc/doc/statuscodes.md) the gateway answers a gRPC request with
 * (content-type application/grpc) instead of an HTTP error status: HTTP 200, `grpc-status`
 * and `grpc-message` in the trailers, `Proxy-Status` as always. Names as gRPC spells them.
 */
export const GRPC_CODES = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcCodeName = keyof typeof GRPC_CODES;

/**
 * The gRPC status of each error type: the one mapping (beside the status table above, and
 * like it complete: the compiler refuses a type without one). UNAVAILABLE where the call
 * never reached a server, or the server went away, so a gRPC client may retry it (gRPC
 * retries UNAVAILABLE; the connect timeouts count here: nothing was started);
 * DEADLINE_EXCEEDED where the upstream took the call and did not answer in time;
 * RESOURCE_EXHAUSTED for the gateway's limits; INTERNAL for answers that are not valid
 * HTTP/gRPC; UNIMPLEMENTED for no route (gRPC's own mapping of HTTP 404).
 */
export const GRPC_STATUS_OF_TYPE: Record<ProxyErrorType, GrpcCodeName> = {
  dns_timeout: 'UNAVAILABLE',
  dns_error: 'UNAVAILABLE',
  destination_not_found: 'UNIMPLEMENTED',
  destination_unavailable: 'UNAVAILABLE',
  destination_ip_prohibited: 'PERMISSION_DENIED',
  destination_ip_unroutable: 'UNAVAILABLE',
  connection_refused: 'UNAVAILABLE',
  connection_terminated: 'UNAVAILABLE',
  connection_timeout: 'UNAVAILABLE',
  connection_read_timeout: 'DEADLINE_EXCEEDED',
  connection_write_timeout: 'DEADLINE_EXCEEDED',
  connection_limit_reached: 'RESOURCE_EXHAUSTED',
  tls_protocol_error: 'UNAVAILABLE',
  tls_certificate_error: 'UNAVAILABLE',
  tls_alert_received: 'UNAVAILABLE',
  http_request_error: 'INTERNAL',
  http_request_denied: 'PERMISSION_DENIED',
  http_response_incomplete: 'INTERNAL',
  http_response_header_section_size: 'INTERNAL',
  http_response_header_size: 'INTERNAL',
  http_response_body_size: 'RESOURCE_EXHAUSTED',
  http_response_trailer_section_size: 'INTERNAL',
  http_response_trailer_size: 'INTERNAL',
  http_response_transfer_coding: 'INTERNAL',
  http_response_content_coding: 'INTERNAL',
  http_response_timeout: 'DEADLINE_EXCEEDED',
  http_upgrade_failed: 'INTERNAL',
  http_protocol_error: 'INTERNAL',
  proxy_internal_response: 'OK',
  proxy_internal_error: 'INTERNAL',
  proxy_configuration_error: 'INTERNAL',
  proxy_loop_detected: 'INTERNAL',
};

/** Refusals whose gRPC status is not their type's (as REFUSAL_REASONS' statuses are not). */
export const GRPC_STATUS_OF_REFUSAL: Partial<Record<RefusalReason, GrpcCodeName>> = {
  request_timeout: 'DEADLINE_EXCEEDED',
  content_too_large: 'RESOURCE_EXHAUSTED',
  header_fields_too_large: 'RESOURCE_EXHAUSTED',
  method_not_allowed: 'UNIMPLEMENTED',
  route_method_not_allowed: 'UNIMPLEMENTED',
  not_implemented: 'UNIMPLEMENTED',
  version_not_supported: 'UNIMPLEMENTED',
  proxy_auth_required: 'UNAUTHENTICATED',
  bad_username_parameter: 'UNAUTHENTICATED',
  too_many_requests: 'RESOURCE_EXHAUSTED',
  auth_locked_out: 'RESOURCE_EXHAUSTED',
  overloaded: 'RESOURCE_EXHAUSTED',
};
