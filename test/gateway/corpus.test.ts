import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { METHODS } from 'node:http';
import { checkRequestStream, headerValue, responseHeader, type CheckedRequest } from '../helpers/http1-check.js';
import { destroySocketsOnPort, mapLimit, replayRaw, type RawReplay } from '../helpers/raw-http.js';
import { startStrictUpstream, type StrictUpstream } from '../helpers/strict-upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { corpusPath } from '../helpers/corpora.js';

/**
 * Hostile-request corpora replayed through the reverse gateway to a strict recording upstream.
 * For every case: the upstream never receives an ambiguous request; a request a strict parser
 * rejects is answered 4xx and never forwarded; a fresh request afterwards gets its own answer;
 * the listener keeps accepting.
 *
 * Cases run with modest concurrency. Each case connects from its own loopback address
 * (127.2.x.y), and the gateway writes the client address into X-Forwarded-For, so every
 * request the upstream receives is attributed to the case that caused it, however the
 * gateway's upstream pool shares connections.
 */

const CONCURRENCY = 48;
const CASE_DEADLINE_MS = 2000;
const BIND_CHECK_ADDRESS = '127.3.0.1';

interface LlhttpEntry {
  id: string;
  title: string;
  expectError: boolean;
  raw: string;
}
interface SmugglerEntry {
  id: string;
  header: string;
}

interface Case {
  index: number;
  id: string;
  bytes: Buffer;
  /** llhttp says a strict parser errors somewhere in these bytes. */
  expectError: boolean;
  localAddress: string;
}

interface Outcome {
  c: Case;
  replay: RawReplay;
  probePath: string;
  probe: RawReplay;
}

/**
 * llhttp entries whose `expectError` is not about a malformed first request, so forwarding the
 * first (valid) request is correct; what must hold is that nothing after the point where the
 * strict parser stops is forwarded. The value is how many requests may legitimately reach
 * the upstream.
 */
const ERROR_AFTER_VALID_PREFIX: Record<string, { forwarded: number; why: string }> = {
  'llhttp/connection/2': { forwarded: 1, why: 'HTTP/1.0 without keep-alive: the first request is valid; the bytes after it must not be' },
  'llhttp/connection/7': { forwarded: 1, why: 'Connection: close: the POST is valid; the bytes after it must not be' },
  'llhttp/connection/8': { forwarded: 1, why: 'Connection: close (HTAB after the token): the POST is valid; the bytes after it must not be' },
  // llhttp pauses at an Upgrade (HPE_PAUSED_UPGRADE) and its fixture counts that as an error;
  // these requests are valid (with Host) and may be forwarded; the bytes after the head belong
  // to the new protocol and go nowhere unless the upstream switches. (connection/10, 12 and 13
  // lack Host, so they must be refused like any HTTP/1.1 request without one.)
  'llhttp/connection/14': { forwarded: 1, why: 'an Upgrade request with Host (llhttp pauses there)' },
  'llhttp/connection/15': { forwarded: 1, why: 'an Upgrade request with Host (llhttp pauses there)' },
};

/** The methods of `http.METHODS` minus CONNECT (a tunnel, not forwarded). */
const STANDARD_METHODS = new Set(METHODS.filter((m) => m !== 'CONNECT'));

interface Problem {
  id: string;
  text: string;
}
const problems: Problem[] = [];

function loadJson<T>(name: string): T {
  return JSON.parse(readFileSync(corpusPath(name), 'utf8')) as T;
}

function caseAddress(index: number): string {
  return `127.2.${Math.floor(index / 250)}.${(index % 250) + 1}`;
}

/** Smuggler's probes (defparam/smuggler `_check_clte` / `_check_tecl`, attack variants), UTF-8 as it sends them. */
function smugglerProbes(e: SmugglerEntry, hostPort: string, rnd: () => string): Array<{ id: string; bytes: Buffer }> {
  const build = (body: string, cl: number): Buffer => {
    const text = (e.header + '\r\n' + body)
      .replaceAll('__RANDOM__', rnd())
      .replaceAll('__REPLACE_CL__', String(cl))
      .replaceAll('__METHOD__', 'POST')
      .replaceAll('__ENDPOINT__', '/')
      .replaceAll('__HOST__', hostPort);
    return Buffer.from(text, 'utf8');
  };
  return [
    // CL.TE: Content-Length 4 covers "1\r\nZ"; a TE-reading hop would wait for the rest.
    { id: `${e.id} CL.TE`, bytes: build('1\r\nZ\r\n0\r\n\r\n', 4) },
    // TE.CL: the chunked body ends after "0\r\n\r\n"; Content-Length 6 also takes the "X".
    { id: `${e.id} TE.CL`, bytes: build('0\r\n\r\nX', 6) },
  ];
}

let upstream: StrictUpstream;
let gw: TestGateway;
let cases: Case[] = [];
const outcomes: Outcome[] = [];
let seq = 0;

before(async () => {
  const llhttp = loadJson<LlhttpEntry[]>('llhttp-requests.json');
  const smuggler = loadJson<SmugglerEntry[]>('smuggler-mutations.json');
  assert.ok(llhttp.length > 0 && smuggler.length > 0, 'corpora are empty');
  upstream = await startStrictUpstream();
  gw = await startTestGateway({
    clusters: { strict: { endpoints: [upstream.url], timeouts: { connect: '1s', response: '3s', idle: '3s' } } },
    routes: [{ cluster: 'strict' }],
  });
  // Each case connects from its own 127.2.x.y: that needs all of 127.0.0.0/8 on loopback (Linux).
  // (The check comes from an address outside the cases' range; its request is attributed to none.)
  const bound = await replayRaw('GET /__bind-check HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n', { port: gw.port, localAddress: BIND_CHECK_ADDRESS, deadlineMs: 3000 });
  if (bound.end === 'error') throw new Error(`cannot connect from ${BIND_CHECK_ADDRESS} (${bound.errorCode}): this test needs the whole 127.0.0.0/8 routed to loopback, as on Linux`);
  const hostPort = `127.0.0.1:${gw.port}`;
  let r = 0;
  const rnd = (): string => String(1_000_000 + ++r);
  for (const e of llhttp) {
    cases.push({ index: cases.length, id: e.id, bytes: Buffer.from(e.raw, 'base64'), expectError: e.expectError, localAddress: '' });
  }
  for (const e of smuggler) {
    for (const p of smugglerProbes(e, hostPort, rnd)) cases.push({ index: cases.length, id: p.id, bytes: p.bytes, expectError: false, localAddress: '' });
  }
  cases = cases.map((c, i) => ({ ...c, index: i, localAddress: caseAddress(i) }));
});

after(async () => {
  if (gw) {
    const closed = await Promise.race([gw.close().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
    // See the shutdown todo test: leaked client sockets keep close() from completing. Cut them
    // here (sockets of this process on the gateway's port) so the file can finish.
    if (!closed) destroySocketsOnPort(gw.port);
    await Promise.race([gw.close(), new Promise((r) => setTimeout(r, 3000))]);
  }
  await upstream?.close();
});

async function runCase(c: Case): Promise<Outcome> {
  const replay = await replayRaw(c.bytes, { port: gw.port, localAddress: c.localAddress, deadlineMs: CASE_DEADLINE_MS });
  const probePath = `/__probe/${c.index}-${++seq}-${Math.random().toString(36).slice(2, 10)}`;
  const probe = await replayRaw(`GET ${probePath} HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n`, { port: gw.port, deadlineMs: 3000 });
  return { c, replay, probePath, probe };
}

function firstStatus(o: Outcome): number | undefined {
  return o.replay.responses.find((r) => r.status >= 200)?.status;
}

describe('hostile request corpora through the gateway', () => {
  test('the conservative checker flags what it must (self-test)', () => {
    const ok = (s: string): void => assert.deepEqual(checkRequestStream(Buffer.from(s, 'latin1')).violations, [], s);
    const bad = (s: string, re: RegExp): void => {
      const v = checkRequestStream(Buffer.from(s, 'latin1')).violations;
      assert.ok(v.some((x) => re.test(x)), `${JSON.stringify(s)} → ${JSON.stringify(v)}`);
    };
    ok('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n');
    ok('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n');
    bad('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', /2 Content-Length/);
    bad('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n', /together/);
    bad('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n', /not exactly chunked/);
    bad('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n', /bad chunk size/);
    bad('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n', /bad chunk size/);
    bad('GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n', /control byte 0x00/);
    bad('GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n', /bare CR/);
    bad('GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n', /bare LF/);
    bad('GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n', /obs-fold/);
    bad('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', /2 Host/);
  });

  test('every case: refused or forwarded unambiguously, and a fresh request gets its own answer', { timeout: 120_000 }, async (t) => {
    const t0 = Date.now();
    outcomes.push(...(await mapLimit(cases, CONCURRENCY, runCase)));
    // Anything still in flight towards the upstream lands before the verdict.
    await new Promise((r) => setTimeout(r, 300));

    // --- (a) the upstream never received anything ambiguous ------------------------------------
    const checks = upstream.check();
    const violations = checks.filter((c) => c.violations.length > 0);
    assert.deepEqual(
      violations.map((v) => ({ conn: v.conn, violations: v.violations })),
      [],
      'the upstream received an ambiguous request stream',
    );
    for (const c of checks) assert.equal(c.incompleteHeadBytes, 0, `connection ${c.conn} ends inside a request head`);

    // Attribute every request the upstream framed to the case whose address sent it.
    const byAddress = new Map<string, CheckedRequest[]>();
    let probesSeen = 0;
    for (const c of checks) {
      for (const r of c.requests) {
        const xff = headerValue(r, 'x-forwarded-for');
        assert.ok(xff !== undefined && !xff.includes(','), `request without a single X-Forwarded-For: ${r.method} ${r.target}`);
        if (xff === '127.0.0.1') {
          assert.match(r.target, /^\/__probe\//, `a request from the probe address that is not a probe: ${r.method} ${r.target}`);
          probesSeen++;
          continue;
        }
        const list = byAddress.get(xff) ?? [];
        list.push(r);
        byAddress.set(xff, list);
      }
    }
    const caseByAddress = new Map(cases.map((c) => [c.localAddress, c]));
    byAddress.delete(BIND_CHECK_ADDRESS);
    for (const a of byAddress.keys()) assert.ok(caseByAddress.has(a), `upstream request from an unknown client address ${a}`);

    // What Node's strict parser on the upstream refused: the first request on that connection it did not answer.
    for (const e of upstream.parserErrors) {
      const conn = checks.find((c) => c.conn === e.conn);
      const answered = upstream.seen.filter((s) => s.conn === e.conn).length;
      const culprit = conn?.requests[answered];
      const c = culprit && caseByAddress.get(headerValue(culprit, 'x-forwarded-for') ?? '');
      const text = `the upstream's strict parser refused (${e.code}) the forwarded ${culprit ? `${culprit.method} ${culprit.target} ${culprit.version}` : 'request'}`;
      const why = culprit && !STANDARD_METHODS.has(culprit.method) ? ' (not an HTTP method: an RTSP request forwarded as HTTP/1.1)' : '';
      problems.push({ id: c?.id ?? `upstream connection ${e.conn}`, text: text + why });
    }

    let refused = 0;
    let forwarded = 0;
    let cut = 0;
    for (const o of outcomes) {
      const { c, replay, probe, probePath } = o;
      const reached = byAddress.get(c.localAddress) ?? [];
      const finals = replay.responses.filter((r) => r.status >= 200);
      const status = finals[0]?.status;
      if (reached.length === 0 && status !== undefined && status >= 400) refused++;
      else if (reached.length > 0) forwarded++;
      else cut++;
      const add = (text: string): void => {
        problems.push({ id: c.id, text });
      };

      // --- (b) strict-parser errors are refused and not forwarded -----------------------------
      if (c.expectError) {
        const allowance = ERROR_AFTER_VALID_PREFIX[c.id];
        if (allowance) {
          if (reached.length > allowance.forwarded) add(`${reached.length} requests forwarded, at most ${allowance.forwarded} allowed (${allowance.why})`);
        } else {
          if (reached.length > 0) add(`a request a strict parser rejects reached the upstream: ${reached.map((r) => `${r.method} ${r.target}`).join(' | ')}`);
          const refusal = finals.find((r) => r.status >= 400);
          if (!refusal || !(refusal.status < 500 || refusal.status === 501)) {
            add(`expected a 4xx/501 refusal, got ${finals.map((r) => r.status).join(',') || 'no response'} (${replay.end})`);
          }
        }
      }
      for (const r of reached) {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400, upgrade or not.
        if (headerValue(r, 'host') === '' && headerValue(r, 'upgrade') !== undefined) add(`an HTTP/1.1 Upgrade request without Host was forwarded (host: "") instead of refused with 400`);
      }

      // --- (c) no response goes to the wrong request --------------------------------------------
      // The i-th final response on the connection answers the i-th request: for a forwarded
      // request that is the upstream's answer naming it (or a gateway error about the upstream),
      // never an answer naming another request, never a refusal that says it was not forwarded.
      finals.forEach((resp, i) => {
        const xs = responseHeader(resp, 'x-seen');
        const ps = responseHeader(resp, 'proxy-status') ?? '';
        if (/error=proxy_internal_error/.test(ps)) add(`the gateway answered ${resp.status} proxy_internal_error: ${ps}`);
        if (i < reached.length) {
          const want = `${reached[i]!.method} ${reached[i]!.target}`;
          if (xs !== undefined && xs !== want) add(`response #${i + 1} answers "${xs}" but request #${i + 1} forwarded was "${want}"`);
          if (xs === undefined && /error=http_request_error/.test(ps)) {
            add(`response #${i + 1} is a ${resp.status} refusal saying the request was not forwarded, but request #${i + 1} ("${want}") was forwarded and answered upstream; the client never sees that answer`);
          }
        } else if (xs !== undefined) {
          add(`response #${i + 1} carries the upstream's answer to "${xs}", but only ${reached.length} request(s) of this connection were forwarded`);
        }
      });
      const pr = probe.responses[0];
      if (!pr || pr.status !== 200 || responseHeader(pr, 'x-seen') !== `GET ${probePath}` || !pr.body.toString('latin1').includes(probePath)) {
        add(
          `the follow-up GET ${probePath} got ${pr ? `${pr.status} x-seen=${responseHeader(pr, 'x-seen')} body=${JSON.stringify(pr.body.toString('latin1').slice(0, 80))}` : `no response (${probe.end} ${probe.errorCode ?? ''})`}`,
        );
      }
    }
    const nLl = cases.filter((c) => c.id.startsWith('llhttp/')).length;
    t.diagnostic(
      `${cases.length} cases (${nLl} llhttp, ${cases.length - nLl} smuggler probes): ${refused} refused, ${forwarded} forwarded, ` +
        `${cut} neither (connection left waiting and cut at ${CASE_DEADLINE_MS} ms, or closed); ${probesSeen} follow-up GETs; ${Date.now() - t0} ms`,
    );
    // Not ambiguous for a conforming upstream, but worth knowing: framing look-alikes that went through as plain fields.
    const lookalikes = new Set<string>();
    for (const list of byAddress.values()) {
      for (const r of list) {
        for (const [k] of r.headers) {
          const norm = k.toLowerCase().replace(/[^a-z]/g, '');
          if ((norm === 'transferencoding' || norm === 'contentlength') && !/^(transfer-encoding|content-length)$/i.test(k)) lookalikes.add(k);
        }
      }
    }
    const fwdSmuggler = outcomes.filter((o) => o.c.id.startsWith('smuggler/') && (byAddress.get(o.c.localAddress)?.length ?? 0) > 0).map((o) => o.c.id);
    t.diagnostic(`smuggler probes forwarded (their mutated field was not framing to the gateway): ${fwdSmuggler.join(', ') || 'none'}`);
    t.diagnostic(`framing look-alike field names forwarded as ordinary fields: ${[...lookalikes].map((k) => JSON.stringify(k)).join(', ') || 'none'}`);
    assert.equal(probesSeen, outcomes.length, 'every follow-up GET reached the upstream once');
    const list = problems.map((p) => `${p.id}: ${p.text}`);
    assert.deepEqual(list.slice(0, 40), [], `${list.length} problems`);
  });

  test('the listener still accepts and answers', async () => {
    const r = await replayRaw('GET /__final HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n', { port: gw.port, deadlineMs: 3000 });
    assert.equal(r.responses[0]?.status, 200);
    assert.equal(responseHeader(r.responses[0]!, 'x-seen'), 'GET /__final');
  });

  // Upgrade requests answered without a switch once left their client sockets open forever
  // (unread bytes after the head), so close() never completed: the replay checks it does.
  test('the gateway shuts down promptly after the corpus', async () => {
    const closed = await Promise.race([gw.close().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    assert.ok(closed, 'gateway.close() did not complete within 5 s');
  });

});
