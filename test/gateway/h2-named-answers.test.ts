import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { startLab, type Lab } from '../../src/lab/index.js';
import { accessRecord, startTestGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { E, RawH2, T, errorCode, frame } from '../helpers/h2-frames.js';
import { RawConn } from '../helpers/raw-conn.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { certDir } from '../helpers/tls-certs.js';

/**
 * The answers the gateway makes itself over HTTP/2 are named as over HTTP/1.1: CONNECT (405
 * `method_not_allowed`) and an Expect other than 100-continue (417 `expectation_failed`) get
 * the taxonomy's status, a Proxy-Status, the request id, a negotiated body and a record.
 * Finding (adversarial review of the h2 front): Node's Http2Server answered both itself,
 * bare (no Proxy-Status, no request id, no record), since H2Front listened for neither
 * 'connect' nor 'checkExpectation'.
 */

async function withGateway(fn: (gw: TestGateway, lab: Lab) => Promise<void>): Promise<void> {
  const lab = await startLab();
  let gw: TestGateway | undefined;
  try {
    gw = await startTestGateway({ listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }], clusters: { lab: { endpoints: [lab.url] } }, routes: [{ cluster: 'lab' }] });
    await fn(gw, lab);
  } finally {
    await gw?.close();
    await lab.close();
  }
}

function session(gw: TestGateway): ClientHttp2Session {
  const s = h2connect(gw.url);
  s.on('error', () => {});
  return s;
}

/** One request over h2: head and body (bounded). */
function h2ask(s: ClientHttp2Session, headers: Record<string, string>, body?: string): Promise<{ head: IncomingHttpHeaders; body: string; continued: boolean }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within 10 s to ${JSON.stringify(headers)}`)), 10_000);
    const req = s.request(headers, body === undefined ? { endStream: true } : { endStream: false });
    let head: IncomingHttpHeaders = {};
    let text = '';
    let continued = false;
    req.setEncoding('utf8');
    req.on('continue', () => {
      continued = true;
      req.end(body);
    });
    req.on('response', (h) => (head = h));
    req.on('data', (c: string) => (text += c));
    req.on('end', () => {
      clearTimeout(timer);
      resolve({ head, body: text, continued });
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** One request over HTTP/1.1 on a new connection: the status line and head. */
async function h1ask(gw: TestGateway, head: string): Promise<string> {
  const c = new RawConn(gw.port);
  try {
    await c.write(head);
    return await c.waitFor((t, ended) => ended || /\r\n\r\n/.test(t), 10_000, 'an HTTP/1.1 answer');
  } finally {
    c.destroy();
  }
}

const NAMED = ['status', 'error', 'reason', 'phase', 'endedBy', 'detail', 'method'] as const;
function named(l: LogLine): Record<string, unknown> {
  return Object.fromEntries(NAMED.map((k) => [k, l[k]]));
}

/** The gateway's own answer over h2: its status, Proxy-Status naming `type`, the request id, the body by Accept, and its record. */
async function assertNamed(gw: TestGateway, a: { head: IncomingHttpHeaders; body: string }, status: number, type: string, accept: string, what: string): Promise<LogLine> {
  assert.equal(a.head[':status'], status, `${what}: status`);
  assert.match(String(a.head['proxy-status']), new RegExp(`;error=${type};status-code=${status}`), `${what}: Proxy-Status ${String(a.head['proxy-status'])}`);
  const id = a.head['x-request-id'];
  assert.ok(typeof id === 'string' && id.length > 0, `${what}: no request id`);
  const ct = String(a.head['content-type']);
  if (accept === 'application/json') assert.match(ct, /^application\/problem\+json/, `${what}: content-type ${ct}`);
  else if (accept === 'text/html') assert.match(ct, /^text\/html/, `${what}: content-type ${ct}`);
  if (accept === 'application/json') assert.equal((JSON.parse(a.body) as { status: number }).status, status, `${what}: problem status`);
  const line = await gw.logFor(id, 10_000);
  assert.equal(line.status, status, `${what}: recorded status`);
  assert.equal(line.error, type, `${what}: recorded error`);
  assert.equal(line.httpVersion, '2.0', `${what}: recorded version`);
  return line;
}

const ACCEPTS = ['application/json', 'text/html', '*/*'];

describe('HTTP/2: CONNECT and Expect get the gateway\'s named answer, as over HTTP/1.1', () => {
  test('CONNECT, any :authority form → 405 method_not_allowed, named and recorded like HTTP/1.1\'s', { timeout: 120_000 }, async () => {
    await withGateway(async (gw) => {
      const h1 = await h1ask(gw, 'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n');
      assert.match(h1, /^HTTP\/1\.1 405 /);
      // RFC 9110 §15.5.6: a 405 MUST say what the target takes (Allow): every method the gateway forwards, CONNECT not.
      const allow1 = /\r\nallow: ([^\r]*)\r\n/i.exec(h1)?.[1];
      assert.ok(allow1 !== undefined && /\bGET\b/.test(allow1) && /\bPOST\b/.test(allow1) && !/CONNECT/.test(allow1), `HTTP/1.1 CONNECT: Allow ${allow1}`);
      const h1line = await accessRecord(gw, (l) => l.method === 'CONNECT' && l.httpVersion === '1.1', 10_000);
      assert.ok(h1line, 'no record of the HTTP/1.1 CONNECT');
      assert.equal(h1line.path, 'a.test:443');
      const authorities = ['a.test:443', 'a.test', '127.0.0.1:8080', '[::1]:443', 'xn--bcher-kva.test:65535', 'A.Test:1', 'a.test:0'];
      const s = session(gw);
      try {
        for (const [i, authority] of authorities.entries()) {
          const accept = ACCEPTS[i % ACCEPTS.length]!;
          const a = await h2ask(s, { ':method': 'CONNECT', ':authority': authority, accept });
          const line = await assertNamed(gw, a, 405, 'http_request_error', accept, `CONNECT ${authority}`);
          assert.equal(a.head.allow, allow1, `CONNECT ${authority}: Allow as over HTTP/1.1`);
          assert.deepEqual(named(line), named(h1line), `CONNECT ${authority}: the record differs from HTTP/1.1's`);
          // The target of a CONNECT is its authority (RFC 9113 §8.5, RFC 9112 §3.2.3): the record's path, as over HTTP/1.1.
          assert.equal(line.path, authority, `CONNECT ${authority}: recorded path`);
          assert.equal(line.host, authority, `CONNECT ${authority}: recorded host`);
        }
      } finally {
        s.close();
        s.destroy();
      }
    });
  });

  test('over TLS (ALPN h2) too: CONNECT → 405 and Expect: foo → 417, named and recorded', { timeout: 60_000 }, async () => {
    const dir = certDir();
    const lab = await startLab();
    let gw: TestGateway | undefined;
    let s: ClientHttp2Session | undefined;
    try {
      const ca = dir.ca('H2 named CA');
      const leaf = ca.issue('localhost', { dns: ['localhost'], ip: ['127.0.0.1'] });
      gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] }, http2: {} }],
        clusters: { lab: { endpoints: [lab.url] } },
        routes: [{ cluster: 'lab' }],
      });
      s = h2connect(gw.url, { ca: ca.cert, servername: 'localhost' });
      s.on('error', () => {});
      const c = await h2ask(s, { ':method': 'CONNECT', ':authority': 'a.test:443', accept: 'application/json' });
      const cl = await assertNamed(gw, c, 405, 'http_request_error', 'application/json', 'TLS CONNECT');
      assert.equal(cl.reason, 'method_not_allowed');
      const before = lab.stats.requests;
      const e = await h2ask(s, { ':method': 'GET', ':path': '/echo', expect: 'foo', accept: 'text/html' });
      const el = await assertNamed(gw, e, 417, 'http_request_error', 'text/html', 'TLS Expect: foo');
      assert.equal(el.reason, 'expectation_failed');
      assert.equal(lab.stats.requests, before, 'the 417 went upstream');
    } finally {
      s?.destroy();
      await gw?.close();
      await lab.close();
      dir.remove();
    }
  });

  test('CONNECT that nghttp2 finds malformed, and extended CONNECT (RFC 8441, not enabled): RST_STREAM PROTOCOL_ERROR, the connection stays', { timeout: 60_000 }, async () => {
    await withGateway(async (gw) => {
      const lit = (n: string, v: string): Buffer => Buffer.concat([Buffer.from([0x00, n.length]), Buffer.from(n, 'latin1'), Buffer.from([v.length]), Buffer.from(v, 'latin1')]);
      const cases: Array<[string, Buffer]> = [
        ['no :authority', Buffer.concat([lit(':method', 'CONNECT')])],
        ['with :path and :scheme, no :protocol', Buffer.concat([lit(':method', 'CONNECT'), lit(':scheme', 'http'), lit(':path', '/'), lit(':authority', 'a.test:443')])],
        ['extended CONNECT :protocol websocket', Buffer.concat([lit(':method', 'CONNECT'), lit(':protocol', 'websocket'), lit(':scheme', 'http'), lit(':path', '/chat'), lit(':authority', 'a.test')])],
      ];
      for (const [what, block] of cases) {
        const c = new RawH2(gw.port);
        try {
          await c.write(frame(T.HEADERS, 0x5, 1, block));
          await c.until((fs) => fs.some((f) => f.stream === 1 && (f.type === T.RST_STREAM || f.type === T.HEADERS)), 10_000);
          const rst = c.rst(1);
          assert.ok(rst, `${what}: no RST_STREAM (frames ${c.frames.map((f) => `${f.type}@${f.stream}`).join(',')})`);
          assert.equal(errorCode(rst), E.PROTOCOL_ERROR, `${what}: code`);
          assert.equal(c.goaway(), undefined, `${what}: the connection got GOAWAY`);
        } finally {
          c.destroy();
        }
      }
    });
  });

  test('seeded family: Expect values → 100-continue (any case, in a list) gets 100 then the answer; any other 417 expectation_failed, named and recorded like HTTP/1.1\'s', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`expect seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    const expectValue = (r: Rand): string => {
      const cont = r.pick(['100-continue', '100-Continue', '100-CONTINUE']);
      const other = r.pick(['foo', 'bar=1', '200-ok', '100-continuex', 'x100-continue', '100', 'continue', 'a;b=c']);
      switch (r.int(4)) {
        case 0: return cont;
        case 1: return other;
        case 2: return `${other}, ${cont}`;
        default: return `${other}, ${r.pick(['baz', 'q=2'])}`;
      }
    };
    await withSeed(rand, async () => {
      await withGateway(async (gw, lab) => {
        const s = session(gw);
        try {
          for (let round = 0; round < 16; round++) {
            const value = expectValue(rand);
            const accept = rand.pick(ACCEPTS);
            const continues = /(?:^|\W)100-continue(?:$|\W)/i.test(value);
            const what = `Expect: ${value}`;
            const before = lab.stats.requests;
            const a = await h2ask(s, { ':method': 'POST', ':path': '/echo', expect: value, accept, 'content-length': '5' }, 'hello');
            if (continues) {
              assert.equal(a.continued, true, `${what}: no 100`);
              assert.equal(a.head[':status'], 200, `${what}: status`);
              assert.match(a.body, /"bodyBytes":5/, `${what}: the body did not go through`);
              continue;
            }
            assert.equal(a.continued, false, `${what}: a 100 before the 417`);
            const line = await assertNamed(gw, a, 417, 'http_request_error', accept, what);
            assert.equal(lab.stats.requests, before, `${what}: went upstream`);
            const h1 = await h1ask(gw, `GET /echo HTTP/1.1\r\nHost: a.test\r\nExpect: ${value}\r\nAccept: ${accept}\r\n\r\n`);
            const id = /\r\nx-request-id: ([^\r]+)/i.exec(h1)?.[1];
            assert.match(h1, /^HTTP\/1\.1 417 /, `${what} over HTTP/1.1`);
            assert.ok(id, `${what} over HTTP/1.1: no request id`);
            const h1line = await gw.logFor(id, 10_000);
            assert.deepEqual({ ...named(line), method: undefined }, { ...named(h1line), method: undefined }, `${what}: the record differs from HTTP/1.1's`);
          }
        } finally {
          s.close();
          s.destroy();
        }
      });
    });
  });
});
