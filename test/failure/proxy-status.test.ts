import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Failure, appendMember, classify, failureMember, negotiate, receivedMember, renderFailure, sfString } from '../../src/failure/index.js';

test('sf-string escapes quotes and backslashes and replaces non-printable bytes', () => {
  assert.equal(sfString('a "b" \\ c\n\u00e9'), '"a \\"b\\" \\\\ c??"');
});

test('a failure member carries error, next-hop and details only when topology may be revealed', () => {
  const f = new Failure({ type: 'connection_refused', phase: 'connect', nextHop: '10.0.0.1:80', detail: 'refused' });
  assert.equal(failureMember(f, { name: 'gw', revealTopology: true }), 'gw;error=connection_refused;next-hop="10.0.0.1:80";details="refused"');
  assert.equal(failureMember(f, { name: 'gw', revealTopology: false }), 'gw;error=connection_refused');
});

test('dns_error carries the rcode parameter', () => {
  const f = classify(Object.assign(new Error('x'), { code: 'ENOTFOUND', syscall: 'queryA' }), { connected: false, responseStarted: false, headersReceived: false, nextHop: 'api.test:80' });
  assert.equal(f.type, 'dns_error');
  assert.equal(failureMember(f, { name: 'gw', revealTopology: true }).includes('rcode="NXDOMAIN"'), true);
});

test('received-status member for a passed-through 5xx has no error, and earlier members are kept first', () => {
  const m = receivedMember(503, 'a:1', { name: 'gw', revealTopology: true });
  assert.equal(m, 'gw;received-status=503;next-hop="a:1"');
  assert.equal(appendMember('origin-cache;error=http_request_error', m), `origin-cache;error=http_request_error, ${m}`);
});

test('content negotiation: programs get problem+json, browsers html, the rest text', () => {
  assert.equal(negotiate('application/json'), 'problem');
  assert.equal(negotiate('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'), 'html');
  assert.equal(negotiate('*/*'), 'text');
  assert.equal(negotiate(undefined), 'text');
  assert.equal(negotiate('text/html;q=0.5, application/problem+json'), 'problem');
});

test('classifier maps codes, never messages, and knows the phase', () => {
  const p = { connected: true, responseStarted: false, headersReceived: false };
  const code = (c: string, extra: Partial<typeof p> = {}) => classify(Object.assign(new Error('irrelevant'), { code: c }), { ...p, ...extra }).type;
  assert.equal(code('ECONNREFUSED', { connected: false }), 'connection_refused');
  assert.equal(code('UND_ERR_CONNECT_TIMEOUT', { connected: false }), 'connection_timeout');
  assert.equal(code('DEPTH_ZERO_SELF_SIGNED_CERT', { connected: false }), 'tls_certificate_error');
  assert.equal(code('ERR_SSL_WRONG_VERSION_NUMBER', { connected: false }), 'tls_protocol_error');
  assert.equal(code('UND_ERR_SOCKET'), 'connection_terminated');
  assert.equal(code('UND_ERR_SOCKET', { responseStarted: true }), 'http_response_incomplete');
  assert.equal(code('UND_ERR_SOCKET', { responseStarted: true, headersReceived: true }), 'http_response_incomplete');
  assert.equal(code('UND_ERR_HEADERS_TIMEOUT'), 'http_response_timeout');
  assert.equal(code('UND_ERR_BODY_TIMEOUT', { headersReceived: true }), 'connection_read_timeout');
  assert.equal(code('UND_ERR_HEADERS_OVERFLOW'), 'http_response_header_section_size');
  assert.equal(code('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'), 'http_protocol_error');
  assert.equal(code('HPE_INVALID_CHUNK_SIZE', { headersReceived: true }), 'http_response_transfer_coding');
  assert.equal(code('HPE_INVALID_CONSTANT'), 'http_protocol_error');
  assert.equal(code('SOMETHING_NEW'), 'proxy_internal_error');
  assert.equal(classify(new Error('x'), p).status, 500);
  assert.equal(classify(Object.assign(new Error(), { code: 'ECONNREFUSED' }), { ...p, connected: false }).retrySafe, true);
});

test('rendered bodies name the cause, the side, the request id and attempts', () => {
  const f = new Failure({ type: 'http_response_timeout', phase: 'headers', nextHop: 'a:1', detail: 'slow' });
  const common = { failure: f, requestId: 'rid-1', proxyStatus: { name: 'gw', revealTopology: true }, attempts: [{ endpoint: 'a:1', phase: 'headers', error: 'http_response_timeout', durationMs: 5 }] };
  const j = renderFailure({ ...common, accept: 'application/json' });
  assert.equal(j.status, 504);
  assert.equal(j.headers['content-type'], 'application/problem+json');
  const body = JSON.parse(j.body.toString());
  assert.equal(body.errorType, 'http_response_timeout');
  assert.equal(body.requestId, 'rid-1');
  assert.equal(body.attempts.length, 1);
  const h = renderFailure({ ...common, accept: 'text/html' }).body.toString();
  assert.match(h, /rid-1/);
  assert.match(h, /upstream server/);
  assert.match(h, /Retrying later may help/);
  const t = renderFailure({ ...common, accept: undefined });
  assert.match(t.headers['content-type']!, /text\/plain/);
  assert.equal(renderFailure({ ...common, accept: undefined, head: true }).body.length, 0);
});
