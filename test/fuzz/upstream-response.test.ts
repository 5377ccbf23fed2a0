import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ForwardRecord, ReverseRecord } from '../../src/record/index.js';
import { startForwardProxy, type ForwardProxy } from '../../src/forward/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { readResponses, responseHeader } from '../helpers/http1-check.js';
import { memoryLogger, tableResolver } from '../forward/helpers.js';
import { announce, caseAddress, FuzzFailure, fuzzPlan, mutate, runCases, type FuzzPlan, type Rng } from './mutate.js';
import { RecordsByAddress, sendCase, type CaseResult } from './net-case.js';

/**
 * The upstream response path under mutated responses: a scripted raw upstream answers each
 * case's request with mutated bytes (status lines, header fields, chunked framing,
 * Content-Length mismatches, 1xx, early close or none), through the reverse gateway and
 * through the forward HTTP proxy (absolute-form).
 *
 * Invariants per case: the client connection ends within the deadline; what the client
 * receives is HTTP/1.1 responses whose framing is unambiguous (one Content-Length, never
 * with Transfer-Encoding, only `chunked`, no bare CR/LF or NUL in the head); a response
 * the proxy makes itself (502/504) carries Proxy-Status; a response cut short is never
 * made to look complete (the connection closes); exactly one record per request.
 */

const DEADLINE_MS = 8000;

const RESPONSE_SEEDS = [
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n',
  'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort',
  'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES',
  'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  'HTTP/1.0 200 OK\r\nServer: old\r\n\r\nclose-delimited body',
  'HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nbody',
  'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
  'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n',
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
  'HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=1\r\nSet-Cookie: a=b\r\nSet-Cookie: c=d\r\nContent-Length: 3\r\n\r\nabc',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
  'HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found',
].map((s) => Buffer.from(s, 'latin1'));

interface Scripted {
  bytes: Buffer;
  close: boolean;
}

/** A raw upstream (test/helpers): the request path /r/<key> picks the scripted answer; an unknown key gets a 404 and a close. */
function startScriptUpstream(script: Map<string, Scripted>): Promise<ScriptedUpstream> {
  return startRawUpstream((head) => {
    const m = /^[A-Z]+ (?:http:\/\/[^/]+)?\/r\/([^/ ]+)/.exec(head);
    return (m ? script.get(m[1]!) : undefined) ?? { bytes: 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', close: true };
  });
}

/** Cases whose upstream status outside 100–599 reached the client (finding F7). */
const badStatus = { count: 0 };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Framing problems in the response heads a client received (empty: unambiguous). */
function framingProblems(data: Buffer): string[] {
  const problems: string[] = [];
  const text = data.toString('latin1');
  let pos = 0;
  for (let k = 0; k < 10 && pos < text.length; k++) {
    const end = text.indexOf('\r\n\r\n', pos);
    if (end < 0) break;
    const lines = text.slice(pos, end).split('\r\n');
    if (!/^HTTP\/1\.1 [1-5]\d\d [^\r\n\x00]*$/.test(lines[0]!)) problems.push(`status line ${JSON.stringify(lines[0])}`);
    let cl = 0;
    let te: string | undefined;
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      const name = l.slice(0, c);
      const value = l.slice(c + 1);
      if (c <= 0 || !TOKEN.test(name)) problems.push(`field line ${JSON.stringify(l)}`);
      if (/[\x00\r\n]/.test(value)) problems.push(`control byte in ${name}`);
      if (name.toLowerCase() === 'content-length') cl++;
      if (name.toLowerCase() === 'transfer-encoding') te = (te === undefined ? '' : te + ',') + value.trim().toLowerCase();
    }
    if (cl > 1) problems.push(`${cl} Content-Length fields`);
    if (cl && te !== undefined) problems.push('Content-Length with Transfer-Encoding');
    if (te !== undefined && te !== 'chunked') problems.push(`Transfer-Encoding ${te}`);
    const status = Number(lines[0]!.slice(9, 12));
    // Skip the body to the next head (when framed), else stop.
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(pos, end + 2));
    if (status >= 100 && status < 200) pos = end + 4;
    else if (m) pos = end + 4 + Number(m[1]);
    else break;
  }
  return problems;
}

function request(i: number, forwardTo?: number): Buffer {
  const target = forwardTo ? `http://127.0.0.1:${forwardTo}/r/${i}` : `/r/${i}`;
  return Buffer.from(`GET ${target} HTTP/1.1\r\nHost: app.test\r\nUser-Agent: fuzz\r\nConnection: close\r\n\r\n`, 'latin1');
}

function makeAnswer(rng: Rng): Scripted {
  const seed = rng.pick(RESPONSE_SEEDS);
  return { bytes: rng.chance(0.1) ? seed : mutate(rng, seed, RESPONSE_SEEDS, 3, 4096), close: rng.chance(0.6) };
}

function checkCase(plan: FuzzPlan, i: number, answer: Scripted, r: CaseResult): void {
  const fail = (what: string): never => {
    throw new FuzzFailure(plan, i, answer.bytes, `${what} (upstream ${answer.close ? 'closed' : 'kept the connection'}; client ended ${r.end} after ${r.ms} ms, received ${JSON.stringify(r.data.toString('latin1').slice(0, 400))})`);
  };
  if (r.end === 'connect-error') fail('could not connect');
  if (r.end === 'deadline') fail(`the client connection was not ended within ${DEADLINE_MS} ms`);
  // Finding F7 (docs/fuzzing.md): a status outside 100–599 from the upstream is passed on
  // (both faces). Counted, checked by the todo test in findings.test.ts.
  const all = framingProblems(r.data);
  const problems = all.filter((p) => !/^status line "HTTP\/1\.1 (0\d\d|[6-9]\d\d) /.test(p));
  if (problems.length < all.length) badStatus.count++;
  if (problems.length) fail(`the client received an ambiguous response: ${problems.join('; ')}`);
  const responses = readResponses(r.data, { closed: true });
  if (r.data.length > 0 && responses.length === 0) fail('bytes that are not an HTTP response');
  for (const res of responses) {
    // A 502/503/504 the upstream's bytes do not contain is the proxy's own.
    const made = res.status >= 502 && res.status <= 504 && !answer.bytes.includes(` ${res.status}`, 0, 'latin1');
    if (made && !responseHeader(res, 'proxy-status')) fail(`a proxy-made ${res.status} without Proxy-Status`);
  }
}

describe('fuzz: upstream responses through the reverse gateway and the forward HTTP proxy', () => {
  const script = new Map<string, Scripted>();
  let upstream: ScriptedUpstream;
  let gw: TestGateway;
  let fwd: ForwardProxy;
  let fwdPort: number;
  let gwRecords: RecordsByAddress<ReverseRecord>;
  let fwdRecords: RecordsByAddress<ForwardRecord>;

  before(async () => {
    upstream = await startScriptUpstream(script);
    gw = await startTestGateway({
      clusters: {
        raw: {
          endpoints: [`http://127.0.0.1:${upstream.port}`],
          timeouts: { connect: '1s', response: '1s', idle: '1s' },
          outlierDetection: { enabled: false },
        },
      },
      routes: [{ cluster: 'raw', retry: { tries: 2, backoff: { base: '5ms', max: '10ms' } } }],
    });
    const { logger } = memoryLogger();
    fwd = await startForwardProxy(
      {
        listeners: [{ address: '127.0.0.1', port: 0 }],
        auth: { required: false },
        rules: { allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.1/32'], ports: [upstream.port] }] },
        timeouts: { connect: '1s', dns: '1s', handshake: '1s', responseHeaders: '1s', responseBodyIdle: '1s', clientKeepAlive: '300ms' },
      },
      { logger, resolver: tableResolver({}) },
    );
    fwdPort = fwd.addresses()[0]!.port;
    gwRecords = new RecordsByAddress<ReverseRecord>('reverse');
    fwdRecords = new RecordsByAddress<ForwardRecord>('forward');
  });
  after(async () => {
    gwRecords.close();
    fwdRecords.close();
    await Promise.race([gw.close(), new Promise((r) => setTimeout(r, 3000))]);
    await fwd.close();
    await upstream.close();
  });

  it('reverse gateway: every mutated response ends the client exchange within bounds, unambiguously, recorded once', { timeout: 900_000 }, async () => {
    const plan = fuzzPlan('upstream-response-gateway', 300);
    const ran = await runCases(plan, 16, async (i, rng) => {
      const answer = makeAnswer(rng);
      script.set(`g${i}`, answer);
      const address = caseAddress(12, i);
      gwRecords.reset(address);
      const r = await sendCase(Buffer.from(request(i).toString('latin1').replace(`/r/${i}`, `/r/g${i}`), 'latin1'), rng, { port: gw.port, localAddress: address, deadlineMs: DEADLINE_MS, maxWrites: 1 });
      checkCase(plan, i, answer, r);
      const recs = await gwRecords.wait(address, 1, 2000);
      if (recs.length !== 1) throw new FuzzFailure(plan, i, answer.bytes, `${recs.length} access records for one request`);
      script.delete(`g${i}`);
    });
    announce(plan, ran);
  });

  it('forward HTTP proxy: every mutated response ends the client exchange within bounds, unambiguously, recorded once', { timeout: 900_000 }, async () => {
    const plan = fuzzPlan('upstream-response-forward', 300);
    const ran = await runCases(plan, 16, async (i, rng) => {
      const answer = makeAnswer(rng);
      script.set(`f${i}`, answer);
      const address = caseAddress(13, i);
      fwdRecords.reset(address);
      const bytes = Buffer.from(request(i, upstream.port).toString('latin1').replace(`/r/${i}`, `/r/f${i}`), 'latin1');
      const r = await sendCase(bytes, rng, { port: fwdPort, localAddress: address, deadlineMs: DEADLINE_MS, maxWrites: 1 });
      checkCase(plan, i, answer, r);
      const recs = await fwdRecords.wait(address, 1, 2000);
      if (recs.length !== 1) throw new FuzzFailure(plan, i, answer.bytes, `${recs.length} records for one request`);
      script.delete(`f${i}`);
    });
    announce(plan, ran);
    assert.ok(ran > 0);
    if (badStatus.count) process.stdout.write(`fuzz upstream-response: ${badStatus.count} statuses outside 100–599 passed on (finding F7)\n`);
  });
});
