import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { startForwardProxy, type ForwardProxy } from '../../src/forward/index.js';
import type { ForwardRecord } from '../../src/record/index.js';
import { hashPassword } from '../../src/tenants/index.js';
import { readResponses, responseHeader } from '../helpers/http1-check.js';
import { memoryLogger, tableResolver, udpEcho } from '../forward/helpers.js';
import { startCountingOrigin, type CountingOrigin } from './origin.js';
import { announce, caseAddress, FuzzFailure, fuzzPlan, mutate, runCases, type FuzzPlan } from './mutate.js';
import { awaitsMoreBody, RecordsByAddress, sendCase, type CaseResult } from './net-case.js';

/**
 * The forward proxy's listener under mutated handshakes: SOCKS5 (greeting, RFC 1929,
 * CONNECT and UDP ASSOCIATE), SOCKS4/4a, HTTP CONNECT (fast path and llhttp) and
 * absolute-form HTTP, each case on its own connection from its own 127.10.x.y address.
 *
 * Safety: the rules allow only 127.0.0.1 on the origin's port (default deny, private
 * ranges refused), and names resolve through a table that knows only `origin.test`
 * (→ 127.0.0.1): a mutated destination is refused before any dial, so no packet leaves
 * loopback.
 *
 * Invariants per case: the proxy answers in the protocol (SOCKS reply bytes in order;
 * HTTP responses, a refusal with Proxy-Status) and closes, or grants a tunnel, within the
 * deadline; exactly one finished record per SOCKS connection that sent anything, at least
 * one per HTTP connection, every request id once; and, over the run, the origin never sees
 * more connections than the proxy granted.
 */

const USER = 'alice';
const PASSWORD = 'secret';
const HANDSHAKE_MS = 400;
const DEADLINE_MS = 4000;

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

function seeds(port: number): Buffer[] {
  const auth = [0x01, USER.length, ...Buffer.from(USER), PASSWORD.length, ...Buffer.from(PASSWORD)];
  const basic = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
  const name = Buffer.from('origin.test');
  return [
    Buffer.from([0x05, 0x01, 0x02, ...auth, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, ...u16(port)]),
    Buffer.from([0x05, 0x02, 0x00, 0x02, ...auth, 0x05, 0x01, 0x00, 0x03, name.length, ...name, ...u16(port)]),
    Buffer.from([0x05, 0x01, 0x02, ...auth, 0x05, 0x01, 0x00, 0x04, ...Buffer.alloc(15), 1, ...u16(port)]),
    Buffer.from([0x05, 0x01, 0x02, ...auth, 0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0]),
    Buffer.from([0x05, 0x01, 0x02, ...auth, 0x05, 0x02, 0x00, 0x01, 127, 0, 0, 1, ...u16(port)]),
    Buffer.from([0x04, 0x01, ...u16(port), 127, 0, 0, 1, ...Buffer.from(`${USER}:${PASSWORD}`), 0x00]),
    Buffer.from([0x04, 0x01, ...u16(port), 0, 0, 0, 1, ...Buffer.from(`${USER}:${PASSWORD}`), 0x00, ...name, 0x00]),
    Buffer.from(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic}\r\n\r\n`, 'latin1'),
    Buffer.from(`CONNECT origin.test:${port} HTTP/1.1\r\nProxy-Authorization: ${basic}\r\nUser-Agent: f\r\n\r\nGET / HTTP/1.1\r\n\r\n`, 'latin1'),
    Buffer.from(`GET http://127.0.0.1:${port}/x HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic}\r\n\r\n`, 'latin1'),
    Buffer.from(`POST http://origin.test:${port}/p HTTP/1.1\r\nHost: origin.test\r\nProxy-Authorization: ${basic}\r\nContent-Length: 3\r\n\r\nabcGET http://127.0.0.1:${port}/y HTTP/1.1\r\nHost: y\r\n\r\n`, 'latin1'),
  ];
}

type Protocol = 'socks5' | 'socks4' | 'http';

function protocolOf(b: Buffer): Protocol {
  return b[0] === 0x05 ? 'socks5' : b[0] === 0x04 ? 'socks4' : 'http';
}

/** Walk the SOCKS5 server messages; 'granted', 'refused', 'partial', or a problem. */
function socks5Reply(d: Buffer): 'granted' | 'refused' | 'partial' | string {
  if (d.length === 0) return 'refused';
  if (d.length < 2) return 'partial';
  if (d[0] !== 0x05) return `method reply version ${d[0]}`;
  const method = d[1]!;
  let p = 2;
  if (method === 0xff) return d.length === 2 ? 'refused' : 'bytes after the no-acceptable-method reply';
  if (method !== 0x02 && method !== 0x00) return `method ${method} never offered by the proxy`;
  if (method === 0x02) {
    if (d.length < p + 2) return d.length === p ? 'refused' : 'partial';
    if (d[p] !== 0x01) return `auth status version ${d[p]}`;
    if (d[p + 1] !== 0x00) return d.length === p + 2 ? 'refused' : 'bytes after the auth failure';
    p += 2;
  }
  if (d.length === p) return 'refused';
  if (d.length < p + 4) return 'partial';
  if (d[p] !== 0x05 || d[p + 2] !== 0x00) return `reply head ${d.subarray(p, p + 4).toString('hex')}`;
  const atyp = d[p + 3]!;
  const alen = atyp === 0x01 ? 4 : atyp === 0x04 ? 16 : atyp === 0x03 ? 1 + (d[p + 4] ?? 0) : -1;
  if (alen < 0) return `reply address type ${atyp}`;
  const end = p + 4 + alen + 2;
  if (d.length < end) return 'partial';
  if (d[p + 1] === 0x00) return 'granted';
  return d.length === end ? 'refused' : 'bytes after the refusal';
}

function socks4Reply(d: Buffer): 'granted' | 'refused' | 'partial' | string {
  if (d.length === 0) return 'refused';
  if (d.length < 8) return 'partial';
  if (d[0] !== 0x00) return `reply version ${d[0]}`;
  if (d[1] === 0x5a) return 'granted';
  if (d[1] !== 0x5b) return `reply code ${d[1]}`;
  return d.length === 8 ? 'refused' : 'bytes after the refusal';
}

function httpGranted(d: Buffer): boolean {
  return /^HTTP\/1\.1 200 [^\r\n]*\r\n/.test(d.toString('latin1', 0, 64)) && d.indexOf('\r\n\r\n') > 0 && !/\r\ncontent-length:/i.test(d.toString('latin1', 0, d.indexOf('\r\n\r\n')));
}

describe('fuzz: forward proxy listener (SOCKS5, SOCKS4/4a, CONNECT, HTTP proxy)', () => {
  let origin: CountingOrigin;
  let echo: Awaited<ReturnType<typeof udpEcho>>;
  let proxy: ForwardProxy;
  let port: number;
  let records: RecordsByAddress<ForwardRecord>;

  before(async () => {
    origin = await startCountingOrigin();
    echo = await udpEcho();
    // A cheap scrypt: mutated passwords each cost a check.
    const hash = await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 });
    const { logger } = memoryLogger();
    proxy = await startForwardProxy(
      {
        listeners: [{ address: '127.0.0.1', port: 0 }],
        auth: { required: true, users: [{ name: USER, password: hash }] },
        rules: { allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.1/32'], ports: [origin.port, echo.port] }], connectPorts: [origin.port] },
        timeouts: { handshake: `${HANDSHAKE_MS}ms`, connect: '1s', dns: '1s', clientKeepAlive: '300ms', responseHeaders: '2s', responseBodyIdle: '2s', tunnelIdle: '2s', udpIdle: '2s', clientBody: '1s', send: '2s' },
      },
      { logger, resolver: tableResolver({ 'origin.test': ['127.0.0.1'] }) },
    );
    port = proxy.addresses()[0]!.port;
    records = new RecordsByAddress<ForwardRecord>('forward');
  });
  after(async () => {
    records.close();
    await proxy.close();
    await origin.close();
    echo.close();
  });

  async function runCase(plan: FuzzPlan, i: number, bytes: Buffer, r: CaseResult, address: string, counters: { granted: number; silentHttp: number; stalledBody: number }): Promise<void> {
    const proto = protocolOf(bytes);
    const fail = (what: string): never => {
      throw new FuzzFailure(plan, i, bytes, `${proto}: ${what} (ended ${r.end} after ${r.ms} ms, received ${JSON.stringify(r.data.toString('latin1').slice(0, 300))})`);
    };
    if (r.end === 'connect-error') fail('could not connect to the proxy');
    if (r.end === 'deadline' && proto === 'http' && awaitsMoreBody(bytes)) {
      // Finding F2 (docs/fuzzing.md): a request body that stops arriving is waited for
      // without limit (no body timeout yet). Counted, checked by the todo test.
      counters.stalledBody++;
      return;
    }
    if (r.end === 'deadline') fail(`neither answered and closed nor granted within ${DEADLINE_MS} ms`);
    let granted = r.end === 'granted';
    if (proto === 'socks5' || proto === 'socks4') {
      const v = proto === 'socks5' ? socks5Reply(r.data) : socks4Reply(r.data);
      if (v === 'partial') fail('closed in the middle of a reply');
      if (v !== 'granted' && v !== 'refused') fail(v);
      granted = v === 'granted';
    } else {
      const responses = readResponses(r.data, { closed: true });
      for (const res of responses) {
        if (res.status >= 400 && !responseHeader(res, 'proxy-status')) fail(`a ${res.status} without Proxy-Status`);
        if (res.status >= 200 && res.status < 300) counters.granted++;
      }
      if (!granted && r.data.length > 0 && responses.length === 0) fail('bytes that are not an HTTP response');
    }
    if (granted && proto !== 'http') counters.granted++;
    if (bytes.length === 0) return;
    if (proto === 'http' && r.data.length === 0 && r.end === 'closed') {
      // Finding F1 (docs/fuzzing.md): an HTTP request head that never completes is closed by
      // the head timer without an answer and without a record. Counted, checked by the todo test.
      counters.silentHttp++;
      return;
    }
    // Records: one per SOCKS connection; at least one per HTTP connection (one per request).
    // The wait ends at the record; its bound is only for a record that never comes (10–15 s:
    // at 2–3 s a SOCKS case's record, its password check queued behind 16 cases' scrypt work,
    // came late at load ~8, FUZZ_SEED=24301, a different case each run).
    const recs = await records.wait(address, 1, granted ? 15_000 : 10_000);
    if (recs.length === 0) fail('no finished record for a connection that sent bytes');
    if (proto !== 'http' && recs.length !== 1) fail(`${recs.length} records for one SOCKS connection`);
  }

  it('every mutated handshake is answered in its protocol or closed, within bounds, and recorded once', { timeout: 900_000 }, async () => {
    const plan = fuzzPlan('forward-listener', 400);
    const all = seeds(origin.port);
    const counters = { granted: 0, silentHttp: 0, stalledBody: 0 };
    const ran = await runCases(plan, 16, async (i, rng) => {
      const seed = rng.pick(all);
      const bytes = rng.chance(0.1) ? seed : mutate(rng, seed, all, 3, 2048);
      const address = caseAddress(10, i);
      records.reset(address);
      const proto = protocolOf(bytes);
      const r = await sendCase(bytes, rng, {
        port,
        localAddress: address,
        deadlineMs: DEADLINE_MS,
        granted: (d) => (proto === 'socks5' ? socks5Reply(d) === 'granted' : proto === 'socks4' ? socks4Reply(d) === 'granted' : httpGranted(d)),
      });
      await runCase(plan, i, bytes, r, address, counters);
    });
    announce(plan, ran);
    if (counters.silentHttp) process.stdout.write(`fuzz forward-listener: ${counters.silentHttp} incomplete HTTP heads closed without answer or record (finding F1)\n`);
    if (counters.stalledBody) process.stdout.write(`fuzz forward-listener: ${counters.stalledBody} requests with an unfinished body held past the deadline (finding F2)\n`);
    const ids = new Set<string>();
    for (const rec of records.all) {
      assert.ok(!ids.has(rec.requestId), `request id ${rec.requestId} finished twice`);
      ids.add(rec.requestId);
      if (rec.address) assert.equal(rec.address, '127.0.0.1', `a connection to ${rec.address}`);
    }
    // The origin (an HTTP server) counts every TCP connection the proxy opened to it.
    assert.ok(origin.connections <= counters.granted, `the origin saw ${origin.connections} connections, the proxy granted ${counters.granted}`);
  });

  // Finding F1, fixed: the HTTP front answers 408 to a head that never completes, and records it.
  it('an HTTP request head that never completes is answered 408 with Proxy-Status and recorded (finding F1)', async () => {
    const address = caseAddress(10, 62_000);
    records.reset(address);
    const { Rng } = await import('./mutate.js');
    const r = await sendCase(Buffer.from('GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: a\r\n', 'latin1'), new Rng(1), { port, localAddress: address, deadlineMs: DEADLINE_MS, maxWrites: 1 });
    assert.equal(r.end, 'closed');
    assert.match(r.data.toString('latin1'), /^HTTP\/1\.1 408 [^]*proxy-status: /i);
    assert.equal((await records.wait(address, 1, 2000)).length, 1);
  });

  // Finding F2, fixed: the HTTP proxy ends a request whose body stops arriving (timeouts.clientBody).
  it('a request body that stops arriving ends within bounds (finding F2)', async () => {
    const address = caseAddress(10, 62_001);
    const { Rng } = await import('./mutate.js');
    const basic = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
    const r = await sendCase(Buffer.from(`POST http://127.0.0.1:${origin.port}/p HTTP/1.1\r\nHost: a\r\nProxy-Authorization: ${basic}\r\nContent-Length: 10\r\n\r\nabc`, 'latin1'), new Rng(1), { port, localAddress: address, deadlineMs: DEADLINE_MS, maxWrites: 1 });
    assert.notEqual(r.end, 'deadline', 'still waiting for the body after the deadline');
  });

  it('mutated SOCKS5 UDP datagrams on one association: only the allowed destination gets any, the proxy keeps serving', { timeout: 300_000 }, async () => {
    const plan = fuzzPlan('socks5-udp', 600);
    const { connect } = await import('node:net');
    const control = connect(port, '127.0.0.1');
    control.on('error', () => {});
    await once(control, 'connect');
    const client = createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    const auth = [0x01, USER.length, ...Buffer.from(USER), PASSWORD.length, ...Buffer.from(PASSWORD)];
    const cp = client.address().port;
    control.write(Buffer.from([0x05, 0x01, 0x02, ...auth, 0x05, 0x03, 0x00, 0x01, 127, 0, 0, 1, ...u16(cp)]));
    let got = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no UDP ASSOCIATE reply: ${got.toString('hex')}`)), 3000);
      control.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (socks5Reply(got) === 'granted') {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const reply = got.subarray(4);
    const relayPort = reply.readUInt16BE(reply.length - 2);
    const valid = Buffer.from([0x00, 0x00, 0x00, 0x01, 127, 0, 0, 1, ...u16(echo.port), ...Buffer.from('ping')]);
    const other = Buffer.from([0x00, 0x00, 0x00, 0x03, 11, ...Buffer.from('origin.test'), ...u16(echo.port), ...Buffer.from('pong')]);
    const before = echo.received.length;
    try {
      const ran = await runCases(plan, 1, async (_i, rng) => {
        const m = rng.chance(0.1) ? valid : mutate(rng, rng.pick([valid, other]), [valid, other], 3, 1400);
        await new Promise<void>((resolve) => client.send(m, relayPort, '127.0.0.1', () => resolve()));
        // The proxy runs in this process: give its sockets a turn, or a long run starves the relay of reads.
        await new Promise<void>((resolve) => setImmediate(resolve));
      });
      announce(plan, ran);
      // The association still relays: a last valid datagram comes back as an echo.
      const back = new Promise<Buffer>((resolve) => client.once('message', (m) => resolve(m)));
      const stop = setTimeout(() => client.emit('message', Buffer.from('timeout')), 3000);
      client.on('message', function drain() {});
      await new Promise<void>((resolve) => client.send(valid, relayPort, '127.0.0.1', () => resolve()));
      // Earlier echoes may arrive first: wait for one whose payload is the echo of ping (any will do).
      const first = await back;
      clearTimeout(stop);
      assert.notEqual(first.toString(), 'timeout', 'the association stopped relaying');
      // Every datagram the echo server received came through the relay from an allowed header.
      const received = echo.received.length - before;
      assert.ok(received >= 1, 'the echo server received nothing');
      assert.ok(received <= ran + 1, `${received} datagrams for ${ran + 1} sent`);
    } finally {
      control.destroy();
      client.close();
    }
  });
});
