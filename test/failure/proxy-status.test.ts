import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Failure, appendMember, classify, failureMember, negotiate, parseProxyStatus, receivedMember, renderFailure, sfString } from '../../src/failure/index.js';
import { seededRandom } from '../helpers/seeded.js';

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

test('the type\'s own RFC 9209 parameters (rcode, alert-message) are sent whether or not topology is revealed; next-hop and details only when it is (seeded)', () => {
  // Finding (error-story probe): under revealTopology false (the forward proxy's revealDetails
  // false, an untrusted reverse client) rcode="NXDOMAIN" was dropped with details. RFC 9209
  // §2.3.2 defines rcode as dns_error's own parameter: the class of the DNS answer, which the
  // client could learn by asking DNS itself; it names no host, address or internal state
  // (those are next-hop and details, which §6 lets a proxy omit).
  const rand = seededRandom();
  const rcodes: Array<[string, string]> = [['ENOTFOUND', 'NXDOMAIN'], ['ESERVFAIL', 'SERVFAIL'], ['EREFUSED', 'REFUSED'], ['ENODATA', 'NOERROR'], ['EFORMERR', 'FORMERR'], ['ENOTIMP', 'NOTIMP']];
  for (let i = 0; i < 30; i++) {
    const [code, rcode] = rand.pick(rcodes);
    const hop = `h${rand.int(1000)}.internal.test:${1 + rand.int(65535)}`;
    const f = classify(Object.assign(new Error('x'), { code, syscall: rand.pick(['queryA', 'queryAaaa', 'getaddrinfo']) }), { connected: false, responseStarted: false, headersReceived: false, nextHop: hop });
    const where = `seed ${rand.seed}, ${code}`;
    assert.equal(f.type, 'dns_error', where);
    const hidden = parseProxyStatus(failureMember(f, { name: 'gw', revealTopology: false }))[0]!;
    assert.deepEqual(hidden.params, { error: 'dns_error', rcode }, where);
    const shown = parseProxyStatus(failureMember(f, { name: 'gw', revealTopology: true }))[0]!;
    assert.deepEqual(shown.params, { error: 'dns_error', 'next-hop': hop, rcode, details: f.detail }, where);
  }
  const alert = classify(Object.assign(new Error('x'), { code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' }), { connected: false, responseStarted: false, headersReceived: false, nextHop: 'a:1' });
  assert.equal(failureMember(alert, { name: 'gw', revealTopology: false }), 'gw;error=tls_alert_received;alert-id=48;alert-message="unknown_ca"');
});

test('received-status member for a passed-through 5xx has no error, and earlier members are kept first', () => {
  const m = receivedMember(503, 'a:1', { name: 'gw', revealTopology: true });
  assert.equal(m, 'gw;received-status=503;next-hop="a:1"');
  assert.equal(appendMember('origin-cache;error=http_request_error', m), `origin-cache;error=http_request_error, ${m}`);
});

test('a received Proxy-Status that does not parse is dropped, so the list with ours appended parses (seeded damage)', () => {
  // Finding (adversarial review, session 29): `inner;details="unterminated` swallowed the gateway's member.
  const rand = seededRandom();
  const m = receivedMember(502, 'a:1', { name: 'gw', revealTopology: true });
  const good = ['inner;error=http_response_timeout', 'a, b;received-status=503', '"name with space";error=dns_error;rcode="SERVFAIL"'];
  const damage = [(v: string) => `${v};details="unterminated`, (v: string) => `${v},,`, (v: string) => `${v} junk`, (v: string) => `${v};=1`, (v: string) => `(${v}`];
  for (let i = 0; i < 60; i++) {
    const base = rand.pick(good);
    const broken = rand.next() < 0.6;
    const prior = broken ? rand.pick(damage)(base) : base;
    const out = appendMember(prior, m);
    const where = `seed ${rand.seed}, case ${i}: ${JSON.stringify(prior)} -> ${JSON.stringify(out)}`;
    const members = parseProxyStatus(out);
    assert.equal(members[members.length - 1]!.name, 'gw', where);
    let priorParses = true;
    try {
      parseProxyStatus(prior);
    } catch {
      priorParses = false;
    }
    assert.equal(out, priorParses ? `${prior}, ${m}` : m, where);
  }
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

test('parseProxyStatus reads back every member the serialiser writes, in order, over a seeded family of chains', async () => {
  const { parseProxyStatus, ERROR_TYPE_NAMES } = await import('../../src/failure/index.js');
  const { seededRandom } = await import('../helpers/seeded.js');
  const rand = seededRandom();
  const printable = (n: number): string => Array.from({ length: n }, () => String.fromCharCode(0x20 + rand.int(0x5f))).join('');
  try {
    for (let round = 0; round < 300; round++) {
      let field: string | undefined;
      const expected: Array<{ name: string; error?: string; received?: number; nextHop?: string; details?: string }> = [];
      const members = 1 + rand.int(4);
      for (let i = 0; i < members; i++) {
        const name = rand.next() < 0.5 ? rand.pick(['gw', 'edge-1', 'cdn.example', 'lb:8080', 'a*b']) : printable(1 + rand.int(12));
        const opts = { name, revealTopology: rand.next() < 0.7 };
        if (rand.next() < 0.5) {
          const type = rand.pick(ERROR_TYPE_NAMES.filter((t) => t !== 'http_request_error'));
          const nextHop = rand.next() < 0.5 ? `${printable(1 + rand.int(10))}:${1 + rand.int(65535)}` : undefined;
          const detail = printable(rand.int(30));
          field = appendMember(field, failureMember(new Failure({ type, phase: 'connect', nextHop, detail }), opts));
          expected.push({ name, error: type, ...(opts.revealTopology ? { ...(nextHop ? { nextHop } : {}), details: detail } : {}) });
        } else {
          const status = 500 + rand.int(100);
          const nextHop = rand.next() < 0.5 ? `10.0.0.${rand.int(255)}:80` : undefined;
          field = appendMember(field, receivedMember(status, nextHop, opts));
          expected.push({ name, received: status, ...(opts.revealTopology && nextHop ? { nextHop } : {}) });
        }
      }
      // Sometimes the members arrive as separate field lines.
      const value = rand.next() < 0.3 ? field!.split(', ') : field!;
      const parsed = parseProxyStatus(value);
      assert.deepEqual(
        parsed.map((m) => ({ name: m.name, ...(m.params.error !== undefined ? { error: m.params.error } : {}), ...(m.params['received-status'] !== undefined ? { received: m.params['received-status'] } : {}), ...(m.params['next-hop'] !== undefined ? { nextHop: m.params['next-hop'] } : {}), ...(m.params.details !== undefined ? { details: m.params.details } : {}) })),
        expected,
        `field: ${field}`,
      );
    }
  } catch (err) {
    throw new Error(`seed ${rand.seed}: ${(err as Error).message}`);
  }
});

test('parseProxyStatus refuses malformed fields instead of guessing', async () => {
  const { parseProxyStatus, ProxyStatusSyntaxError } = await import('../../src/failure/index.js');
  for (const bad of ['gw;error=', 'gw, ', '"unterminated', 'gw;error=x y', ';error=x', 'gw;ERROR=x', '"a\\q"']) {
    assert.throws(() => parseProxyStatus(bad), ProxyStatusSyntaxError, bad);
  }
  assert.deepEqual(parseProxyStatus('  a;x=?1;n=-12;d=1.5, b  '), [
    { name: 'a', params: { x: true, n: -12, d: 1.5 } },
    { name: 'b', params: {} },
  ]);
  assert.deepEqual(parseProxyStatus(''), []);
});
