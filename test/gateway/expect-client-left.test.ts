import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { validateConfig } from '../../src/config/load.js';
import { Gateway } from '../../src/gateway/server.js';
import type { ReverseRecord } from '../../src/gateway/events.js';
import { withTestUpstreamClient } from '../helpers/upstream-client.js';
import { within } from '../helpers/ended-records.js';
import { between, seededRun } from '../helpers/seeded.js';
import { certDir, type IssuedCert } from '../helpers/tls-certs.js';

/**
 * A request with `Expect: 100-continue` and a body whose client leaves before all of its body
 * came is recorded once, 499 ended by the client, on both fronts, and nothing is answered to it.
 * Before, the node:http front read the client's FIN as a malformed request: Node's parser,
 * finishing the message at EOF with the body cut short, reported HPE_INVALID_EOF_STATE through
 * 'clientError', and the gateway refused the request in flight with a 400
 * `http_request_error` (phase accept), written to a client that had left; the net front
 * recorded the same departure as 499.
 *
 * The family: the front; the moment the client leaves (held before the dial by a request hook,
 * with the upstream holding the head and no 100 sent, right after the relayed 100, after part
 * of the body; and a POST without Expect after part of its body, which Node's parser reported
 * the same way); how (a FIN, or a RST by resetAndDestroy); the framing (Content-Length or
 * chunked); seeded body lengths and parts; the node:http front over TLS too (a TLS listener:
 * the same parser on the TLS socket, its FIN a close_notify and a TCP FIN). Every wait is an event: the hook called, the
 * upstream's head, the 100 at the client, the body bytes at the upstream, the record (the
 * onFinish hook), the client's connection closing. One record per request is counted once
 * the gateway is closed (anything still held would be recorded by then).
 */

/** The listener: node:http, the net front, or node:http over TLS (the same parser, on the TLS socket). */
type Front = 'node' | 'net' | 'node-tls';
/** When the client leaves; `plain-mid-body`: a POST without Expect, during its body (the same parser report). */
type Moment = 'held-before-dial' | 'before-100' | 'after-100' | 'mid-body' | 'plain-mid-body';
type How = 'fin' | 'rst';
type Framing = 'length' | 'chunked';
const MOMENTS: readonly Moment[] = ['held-before-dial', 'before-100', 'after-100', 'mid-body', 'plain-mid-body'];
const HOWS: readonly How[] = ['fin', 'rst'];
const FRAMINGS: readonly Framing[] = ['length', 'chunked'];

interface Case {
  moment: Moment;
  how: How;
  framing: Framing;
  /** The announced Content-Length (or, chunked, the size of the whole body the client meant to send). */
  length: number;
  /** Body bytes sent before leaving (mid-body moments only, 1 ≤ sent < length). */
  sent: number;
}

interface Upstream {
  server: http.Server;
  port: number;
  /** Resolves when the upstream has the head of `path` (and, with `bytes`, that many body bytes). */
  seen(path: string, bytes?: number): Promise<void>;
  /** The upstream's side of the request closed (the gateway gave up its connection). */
  closed(path: string): Promise<void>;
  heads: Set<string>;
  close(): Promise<void>;
}

/** An upstream that sends 100 Continue to Expect requests under /continue/, never to others, reads the body and never answers. */
async function upstream(): Promise<Upstream> {
  const heads = new Set<string>();
  const got = new Map<string, number>();
  const closedPaths = new Set<string>();
  const waiters: Array<() => void> = [];
  const check = (): void => {
    for (const w of [...waiters]) w();
  };
  const responses: ServerResponse[] = [];
  const server = http.createServer();
  const onHead = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '';
    heads.add(path);
    got.set(path, 0);
    responses.push(res);
    req.on('data', (c: Buffer) => {
      got.set(path, got.get(path)! + c.length);
      check();
    });
    req.on('error', () => {});
    req.socket.once('close', () => {
      closedPaths.add(path);
      check();
    });
    if (path.startsWith('/continue/')) res.writeContinue();
    check();
  };
  server.on('checkContinue', onHead);
  server.on('request', onHead);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const wait = (ok: () => boolean): Promise<void> =>
    new Promise<void>((resolve) => {
      const w = (): void => {
        if (!ok()) return;
        waiters.splice(waiters.indexOf(w), 1);
        resolve();
      };
      waiters.push(w);
      w();
    });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    heads,
    seen: (path, bytes = 0) => wait(() => (got.get(path) ?? -1) >= bytes),
    closed: (path) => wait(() => closedPaths.has(path)),
    async close() {
      for (const r of responses) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function pathOf(front: Front, i: number, c: Case): string {
  const base = `${front}-${i}-${c.moment}-${c.how}-${c.framing}`;
  if (c.moment === 'plain-mid-body') return `/plain/${base}`;
  return c.moment === 'after-100' || c.moment === 'mid-body' ? `/continue/${base}` : c.moment === 'held-before-dial' ? `/held/${base}` : `/silent/${base}`;
}

function headOf(path: string, c: Case): string {
  const framing = c.framing === 'length' ? `Content-Length: ${c.length}\r\n` : 'Transfer-Encoding: chunked\r\n';
  const expect = c.moment === 'plain-mid-body' ? '' : 'Expect: 100-continue\r\n';
  return `POST ${path} HTTP/1.1\r\nHost: expect.test\r\n${framing}${expect}\r\n`;
}

/** The first `sent` bytes of the body as the client frames them (chunked: whole chunks of seeded sizes). */
function bodyPart(c: Case, rand: () => number): Buffer {
  const data = Buffer.alloc(c.sent, 0x62);
  if (c.framing === 'length') return data;
  const parts: Buffer[] = [];
  for (let at = 0; at < c.sent; ) {
    const n = Math.min(c.sent - at, between(rand, 1, 4096));
    parts.push(Buffer.from(`${n.toString(16)}\r\n`, 'latin1'), data.subarray(at, at + n), Buffer.from('\r\n', 'latin1'));
    at += n;
  }
  return Buffer.concat(parts);
}

async function runFront(front: Front, cases: readonly Case[], rand: () => number, cert?: IssuedCert): Promise<Map<string, ReverseRecord>> {
  const up = await upstream();
  const records: ReverseRecord[] = [];
  const answered: string[] = [];
  let recorded: () => void = () => {};
  let hookCalled: (path: string) => void = () => {};
  let releaseHeld: () => void = () => {};
  const hooks = {
    onRequest(req: { path: string }): Promise<void> | void {
      if (!req.path.startsWith('/held/')) return;
      hookCalled(req.path);
      return new Promise<void>((r) => (releaseHeld = r));
    },
    onFailure(req: { path: string }, f: { type: string }): void {
      answered.push(`${req.path}: ${f.type}`);
    },
    onFinish(r: ReverseRecord): void {
      records.push(r);
      recorded();
    },
  };
  const config = validateConfig(
    withTestUpstreamClient({
      listeners: [front === 'node-tls' ? { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: cert!.certFile, key: cert!.keyFile }] } } : { address: '127.0.0.1', port: 0, front }],
      clusters: { up: { endpoints: [`http://127.0.0.1:${up.port}`], outlierDetection: { enabled: false } } },
      routes: [{ cluster: 'up', retry: { tries: 1 } }],
    }),
  );
  const gw = new Gateway(config, { hooks: [hooks as never] });
  const clients: Array<net.Socket | tls.TLSSocket> = [];
  const out = new Map<string, ReverseRecord>();
  let closed = false;
  try {
    const [addr] = await gw.listen();
    const problems: string[] = [];
    for (let i = 0; i < cases.length; i++) {
      const c = cases[i]!;
      const path = pathOf(front, i, c);
      const where = `front ${front}, case ${i} (${c.moment}, ${c.how}, ${c.framing}, ${c.sent} of ${c.length} body bytes)`;
      try {
        const hookSeen = new Promise<void>((r) => (hookCalled = (p) => p === path && r()));
        // Over TLS the reset is the TCP connection's (a TLS socket has no RST of its own).
        const raw = net.connect(addr!.port, '127.0.0.1');
        raw.on('error', () => {});
        const s = front === 'node-tls' ? tls.connect({ socket: raw, servername: 'expect.test', rejectUnauthorized: false }) : raw;
        clients.push(s, raw);
        s.on('error', () => {});
        let text = '';
        s.on('data', (b: Buffer) => (text += b.toString('latin1')));
        const clientClosed = new Promise<void>((r) => s.once('close', () => r()));
        const got100 = new Promise<void>((r) => {
          const on = (): void => {
            if (!text.includes('\r\n\r\n')) return;
            s.off('data', on);
            r();
          };
          s.on('data', on);
        });
        if (c.moment === 'plain-mid-body') s.write(Buffer.concat([Buffer.from(headOf(path, c), 'latin1'), bodyPart(c, rand)]));
        else s.write(headOf(path, c));
        if (c.moment === 'plain-mid-body') await within(up.seen(path, c.sent), 10_000, `${where}: the head and ${c.sent} body bytes at the upstream`);
        else if (c.moment === 'held-before-dial') await within(hookSeen, 10_000, `${where}: the request at its hook`);
        else await within(up.seen(path), 10_000, `${where}: the head at the upstream`);
        if (c.moment === 'after-100' || c.moment === 'mid-body') {
          await within(got100, 10_000, `${where}: the relayed 100 at the client`);
          assert.equal(text, 'HTTP/1.1 100 Continue\r\n\r\n', `${where}: the client got the 100 only`);
        }
        if (c.moment === 'mid-body') {
          s.write(bodyPart(c, rand));
          await within(up.seen(path, c.sent), 10_000, `${where}: ${c.sent} body bytes at the upstream`);
        }
        const record = new Promise<ReverseRecord>((r) => {
          recorded = () => {
            const x = records.find((y) => y.path === path);
            if (x !== undefined) r(x);
          };
          recorded();
        });
        if (c.how === 'rst') raw.resetAndDestroy();
        else s.end();
        const rec = await within(record, 10_000, `${where}: the record (have ${JSON.stringify(records.map((x) => [x.path, x.status, x.endedBy]))})`);
        // The gateway lets go of the client's connection, and of the upstream's once it had dialled.
        await within(clientClosed, 10_000, `${where}: the client's connection closed by the gateway`);
        if (c.moment !== 'held-before-dial') await within(up.closed(path), 10_000, `${where}: the upstream's connection given up`);
        releaseHeld();
        const sent = c.moment === 'after-100' || c.moment === 'mid-body' ? 'HTTP/1.1 100 Continue\r\n\r\n' : '';
        assert.equal(text, sent, `${where}: nothing answered to a client that left (got ${JSON.stringify(text.slice(0, 200))}; record ${JSON.stringify(rec)})`);
        out.set(`${i}`, rec);
      } catch (err) {
        problems.push((err as Error).message.split('\n')[0]!);
      } finally {
        releaseHeld();
      }
    }
    await gw.close(1000);
    closed = true;
    // Everything the gateway still held is recorded by its close: one record per request, each the client's.
    for (let i = 0; i < cases.length; i++) {
      const path = pathOf(front, i, cases[i]!);
      const mine = records.filter((r) => r.path === path);
      if (mine.length !== 1) problems.push(`${path}: ${mine.length} records ${JSON.stringify(mine.map((r) => [r.status, r.error, r.phase, r.endedBy]))}`);
      for (const r of mine) {
        if (r.status !== 499 || r.endedBy !== 'client') problems.push(`${path}: status ${r.status}, endedBy ${r.endedBy}, error ${r.error}, phase ${r.phase}, detail ${r.detail}`);
      }
      if (cases[i]!.moment === 'held-before-dial' && up.heads.has(path)) problems.push(`${path}: dialled after its client left`);
    }
    if (answered.length > 0) problems.push(`answers attempted: ${answered.join('; ')}`);
    assert.deepEqual(problems, [], `front ${front}:\n${problems.join('\n')}`);
    return out;
  } finally {
    releaseHeld();
    for (const s of clients) s.destroy();
    if (!closed) await gw.close(1000);
    await up.close();
  }
}

describe('an Expect: 100-continue request whose client leaves before its body is whole', () => {
  test('is recorded once, 499 ended by the client, with nothing answered, on both fronts and over TLS (seeded: moment × FIN/RST × framing × sizes; a plain POST mid-body too)', { timeout: 120_000 }, async () => {
    await seededRun('expect-client-left', async (rand) => {
      const cases: Case[] = [];
      for (const moment of MOMENTS) {
        for (const how of HOWS) {
          for (const framing of FRAMINGS) {
            const length = between(rand, 2, 256 * 1024);
            cases.push({ moment, how, framing, length, sent: moment === 'mid-body' || moment === 'plain-mid-body' ? between(rand, 1, length - 1) : 0 });
          }
        }
      }
      // A seeded order, so no case always follows the same one.
      for (let i = cases.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [cases[i], cases[j]] = [cases[j]!, cases[i]!];
      }
      const byFront: Partial<Record<Front, Map<string, ReverseRecord>>> = {};
      const failures: string[] = [];
      const dir = certDir();
      try {
        const cert = dir.ca('Expect Test CA').issue('expect.test', { dns: ['expect.test'] });
        for (const front of ['node', 'net', 'node-tls'] as const) {
          try {
            byFront[front] = await runFront(front, cases, rand, cert);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      } finally {
        dir.remove();
      }
      assert.deepEqual(failures, [], failures.join('\n\n'));
      // The same case gives the same record on every front.
      for (let i = 0; i < cases.length; i++) {
        const a = byFront.node!.get(`${i}`)!;
        const c = cases[i]!;
        for (const other of ['net', 'node-tls'] as const) {
          const b = byFront[other]!.get(`${i}`)!;
          assert.deepEqual([a.status, a.endedBy, a.error, a.phase], [b.status, b.endedBy, b.error, b.phase], `case ${i} (${c.moment}, ${c.how}, ${c.framing}): node ${JSON.stringify(a)} ${other} ${JSON.stringify(b)}`);
        }
      }
    });
  });
});
