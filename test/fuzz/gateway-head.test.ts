import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { ReverseRecord } from '../../src/record/index.js';
import { corpusPath } from '../helpers/corpora.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { readResponses, responseHeader } from '../helpers/http1-check.js';
import { announce, caseAddress, FuzzFailure, fuzzPlan, mutate, runCases, type FuzzPlan } from './mutate.js';
import { awaitsMoreBody, RecordsByAddress, sendCase, type CaseResult } from './net-case.js';
import { startCountingOrigin, type CountingOrigin } from './origin.js';

/**
 * The reverse gateway's request head checks (request line, request-target, Host, fields,
 * framing) under mutated requests, against a real gateway and a loopback origin. Each case
 * connects from its own 127.11.x.y address; the gateway names the client in
 * X-Forwarded-For, so every request the origin receives is attributed to its case.
 *
 * Invariants per case: the gateway answers with parseable HTTP/1.1 responses and closes,
 * or goes quiet after complete responses, within the deadline; every response it makes
 * itself (not the origin's) at 4xx/5xx carries Proxy-Status; the origin received no more
 * complete requests from the case than the case got origin responses (a refused request
 * never reaches the upstream complete); one access record per final response, every
 * request id once.
 */

const DEADLINE_MS = 4000;

const SEEDS = [
  'GET / HTTP/1.1\r\nHost: app.test\r\nUser-Agent: f\r\nAccept: */*\r\n\r\n',
  'GET /a/b?c=d&e=%20 HTTP/1.1\r\nHost: app.test:8080\r\nCookie: a=b; c=d\r\n\r\n',
  'GET http://app.test/abs HTTP/1.1\r\nHost: app.test\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n',
  'HEAD /h HTTP/1.0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello',
  'POST /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n',
  'GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  'PUT /e HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc',
  'GET / HTTP/1.1\r\nHost: [::1]:80\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\nVia: 1.1 gatewise\r\nX-Request-Id: abc\r\n\r\n',
  'CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n',
].map((s) => Buffer.from(s, 'latin1'));

function corpusInputs(): Buffer[] {
  const out: Buffer[] = [];
  const llhttp = JSON.parse(readFileSync(corpusPath('llhttp-requests.json'), 'utf8')) as Array<{ raw: string }>;
  for (const c of llhttp) out.push(Buffer.from(c.raw, 'base64'));
  const smuggler = JSON.parse(readFileSync(corpusPath('smuggler-mutations.json'), 'utf8')) as Array<{ header: string }>;
  for (let i = 0; i < smuggler.length; i += 5) {
    const h = smuggler[i]!.header.replaceAll('__METHOD__', 'POST').replaceAll('__ENDPOINT__', '/s').replaceAll('__HOST__', 'app.test').replaceAll('__RANDOM__', 'r').replaceAll('__REPLACE_CL__', '4');
    out.push(Buffer.from(h + '\r\n1\r\nZ\r\n0\r\n\r\n', 'utf8'));
  }
  return out;
}

describe('fuzz: reverse gateway request heads', () => {
  let origin: CountingOrigin;
  let gw: TestGateway;
  let records: RecordsByAddress<ReverseRecord>;
  let corpus: Buffer[];

  before(async () => {
    origin = await startCountingOrigin();
    gw = await startTestGateway({
      listeners: [{ address: '127.0.0.1', port: 0, requestHeaderTimeout: '500ms', keepAliveTimeout: '300ms' }],
      clusters: { app: { endpoints: [`http://127.0.0.1:${origin.port}`], timeouts: { connect: '1s', response: '2s', idle: '2s' } } },
      routes: [{ cluster: 'app' }],
    });
    records = new RecordsByAddress<ReverseRecord>('reverse');
    corpus = corpusInputs();
  });
  after(async () => {
    records.close();
    await Promise.race([gw.close(), new Promise((r) => setTimeout(r, 3000))]);
    await origin.close();
  });

  async function check(plan: FuzzPlan, i: number, bytes: Buffer, r: CaseResult, address: string, counters: { stalledBody: number; noRecord: number; nodeHost400: number; node417: number; phantom: number }): Promise<void> {
    const fail = (what: string): never => {
      throw new FuzzFailure(plan, i, bytes, `${what} (ended ${r.end} after ${r.ms} ms, received ${JSON.stringify(r.data.toString('latin1').slice(0, 400))})`);
    };
    if (r.end === 'connect-error') fail('could not connect');
    const responses = readResponses(r.data, { closed: r.end === 'closed' });
    const finals = responses.filter((x) => x.status >= 200);
    if (r.end === 'deadline') {
      if (awaitsMoreBody(bytes)) {
        counters.stalledBody++;
        return;
      }
      fail(`not closed within ${DEADLINE_MS} ms`);
    }
    if (r.data.length > 0 && responses.length === 0) fail('bytes that are not an HTTP response');
    // Findings F3 and F6 (docs/fuzzing.md): Node's http server answers some requests itself,
    // bypassing the gateway's responder: 400 for an HTTP/1.1 request without Host
    // (requireHostHeader; a request pipelined behind it is still forwarded) and 417 for an
    // Expect other than 100-continue. No Proxy-Status, no request id, no record. Counted,
    // checked by the todo tests in findings.test.ts.
    const nodeMade = responses.find((x) => !responseHeader(x, 'proxy-status') && !responseHeader(x, 'x-request-id') && !responseHeader(x, 'x-origin'));
    if (nodeMade && (nodeMade.status === 400 || nodeMade.status === 417)) {
      if (nodeMade.status === 400) counters.nodeHost400++;
      else counters.node417++;
      return;
    }
    let fromOrigin = 0;
    for (const res of responses) {
      if (responseHeader(res, 'x-origin')) {
        fromOrigin++;
        continue;
      }
      if (res.status >= 400 && !responseHeader(res, 'proxy-status')) fail(`a gateway-made ${res.status} without Proxy-Status`);
    }
    if (bytes.length === 0) return;
    // Give forwarded requests time to be counted: the origin counts on arrival, before answering.
    const forwarded = origin.byClient.get(address) ?? 0;
    if (forwarded > fromOrigin) fail(`the origin received ${forwarded} requests from this case, the client got ${fromOrigin} origin responses`);
    const recs = await records.wait(address, Math.max(finals.length, 1), 1500);
    if (recs.length < finals.length) fail(`${finals.length} final responses but ${recs.length} access records`);
    // Finding F8 (docs/fuzzing.md): bytes after a request that ends the connection (HTTP/1.0,
    // Connection: close) are recorded as a 400 that is never sent. Counted, checked by the todo test.
    if (recs.length > finals.length && finals.length > 0) counters.phantom++;
    else if (recs.length > finals.length + 1) fail(`${recs.length} access records for ${finals.length} final responses`);
    if (finals.length === 0 && recs.length === 0) counters.noRecord++;
  }

  it('every mutated request is answered or closed within bounds; refusals carry Proxy-Status and are never forwarded', { timeout: 900_000 }, async () => {
    const plan = fuzzPlan('gateway-head', 400);
    const counters = { stalledBody: 0, noRecord: 0, nodeHost400: 0, node417: 0, phantom: 0 };
    const splices = [...SEEDS, ...corpus];
    const ran = await runCases(plan, 16, async (i, rng) => {
      const seed = rng.chance(0.8) ? rng.pick(SEEDS) : rng.pick(corpus);
      const bytes = rng.chance(0.1) ? seed : mutate(rng, seed, splices, 3, 4096);
      const address = caseAddress(11, i);
      records.reset(address);
      origin.byClient.delete(address);
      const r = await sendCase(bytes, rng, { port: gw.port, localAddress: address, deadlineMs: DEADLINE_MS });
      await check(plan, i, bytes, r, address, counters);
    });
    announce(plan, ran);
    process.stdout.write(`fuzz gateway-head: ${counters.stalledBody} stalled bodies held past the deadline (finding F2); ${counters.noRecord} connections closed with neither a response nor a record; ${counters.nodeHost400} answered by Node's own 400 for a missing Host (finding F3); ${counters.node417} answered by Node's own 417 (finding F6); ${counters.phantom} with records of 400s never sent (finding F8)\n`);
    const ids = new Set<string>();
    for (const rec of records.all) {
      assert.ok(!ids.has(rec.requestId), `request id ${rec.requestId} recorded twice`);
      ids.add(rec.requestId);
    }
    const probe = await sendCase(Buffer.from('GET /after HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n'), new (await import('./mutate.js')).Rng(1), { port: gw.port, localAddress: '127.11.255.1', deadlineMs: 3000, maxWrites: 1 });
    assert.match(probe.data.toString('latin1'), /^HTTP\/1\.1 200 /, 'the gateway still serves');
  });
});
