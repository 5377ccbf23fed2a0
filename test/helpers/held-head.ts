import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MAX_PIPELINED_RUNNING, MAX_PIPELINED_WAITING } from '../../src/http/pipelining.js';
import { RawConn } from './raw-conn.js';
import { GUARD_MS } from './time-bounds.js';

/**
 * The "pipelining held head" tests' two sides, shared by the reverse gateway's and the
 * forward proxy's files (test/gateway and test/forward pipelining-held-head.test.ts): an
 * origin that holds what runs until the test lets it go, and the raw client that pipelines
 * past the front's read hold, ends its bytes inside one more head, and checks that head is
 * not timed out while the front does not read it.
 */

/** An origin that holds every request until `release()`, answering `x-n: <path>` then. */
export interface HoldingOrigin {
  readonly port: number;
  /** Starts a round: nothing held, and the promise is settled once MAX_PIPELINED_RUNNING are. */
  arm(): Promise<void>;
  /** Answers what is held, and every later request at once. */
  release(): void;
  /** Destroys the answers still held (a round that failed). */
  dropHeld(): void;
  close(): Promise<void>;
}

export async function startHoldingOrigin(): Promise<HoldingOrigin> {
  const held: Array<{ res: ServerResponse; n: string }> = [];
  let releasing = false;
  let waiter: (() => void) | undefined;
  const answer = (res: ServerResponse, n: string): void => {
    res.writeHead(200, { 'x-n': n, 'content-length': '2' });
    res.end('ok');
  };
  const server = createServer((req, res) => {
    req.resume();
    const n = req.url!.slice(1);
    if (releasing) return answer(res, n);
    held.push({ res, n });
    if (held.length >= MAX_PIPELINED_RUNNING) waiter?.();
  });
  const dropHeld = (): void => {
    for (const h of held.splice(0)) h.res.destroy();
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    arm() {
      held.length = 0;
      releasing = false;
      return new Promise<void>((resolve) => (waiter = resolve));
    },
    release() {
      releasing = true;
      for (const h of held.splice(0)) answer(h.res, h.n);
    },
    dropHeld,
    async close() {
      dropHeld();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface HeldHeadRound {
  /** The front's port. */
  port: number;
  origin: HoldingOrigin;
  /** A request head for `/<path>` without its blank line (the probe's is `head('probe')`). */
  head(path: string): string;
  /** Whether the held head is completed after the release (with `Connection: close`) or never. */
  completes: boolean;
  /** Said in every assertion, before the round's shape. */
  context?: string;
  rand: () => number;
  /** Where the round's connections go, for the caller to destroy. */
  conns: RawConn[];
}

/**
 * One round: enough complete requests to fill what runs and what waits, then the start of one
 * more head, on one connection; once the origin holds what runs, another client's head, begun
 * later, is timed out (408), so the held connection's head deadline has passed too, and the
 * held connection must be neither closed nor answered 408. Then the origin answers; a head
 * completed after the answers is served, one never completed is the caller's to check.
 * Returns what the held connection received, every answer checked in order.
 */
export async function heldHeadRound(r: HeldHeadRound): Promise<{ text: string; where: string }> {
  const k = MAX_PIPELINED_RUNNING + MAX_PIPELINED_WAITING + 1 + Math.floor(r.rand() * 16);
  let bytes = '';
  for (let i = 0; i < k; i++) bytes += `${r.head(String(i))}\r\n`;
  bytes += r.head(String(k));
  const where = `${k} pipelined and a head begun, ${r.context ? `${r.context}, ` : ''}${r.completes ? 'completed after the release' : 'never completed'}`;
  const reached = r.origin.arm();
  const conn = new RawConn(r.port);
  r.conns.push(conn);
  await conn.write(bytes);
  // Bounded: a front that answered or closed the held connection instead (a refusal of its first
  // request, say) never lets the origin fill, and the round fails saying so rather than hangs.
  let guard: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_r, reject) => {
    guard = setTimeout(() => reject(new Error(`${where}: the origin did not hold ${MAX_PIPELINED_RUNNING} requests within ${GUARD_MS} ms; the held connection received ${JSON.stringify(conn.text.slice(0, 600))}${conn.ended ? ' (closed)' : ''}`)), GUARD_MS);
  });
  await Promise.race([reached, late]).finally(() => clearTimeout(guard));
  // Another client's head, begun later than the held one, timed out: the held connection's head deadline has passed too.
  const probe = new RawConn(r.port);
  r.conns.push(probe);
  await probe.write(r.head('probe'));
  assert.match(await probe.closed(10_000), /^HTTP\/1\.1 408 /, `${where}: the probe's head timed out`);
  assert.equal(conn.ended, false, `${where}: the held connection was closed: ${JSON.stringify(conn.text.slice(-300))}`);
  assert.doesNotMatch(conn.text, / 408 /, `${where}: the held connection was answered 408`);
  r.origin.release();
  if (r.completes) {
    // Every answer before it out first: a refusal of the held head would go out now.
    await conn.waitFor((t) => [...t.matchAll(/x-n: \d+/gi)].length >= k || / 408 /.test(t), 20_000, `${where}: the answers before the held head`);
    assert.doesNotMatch(conn.text, / 408 /, `${where}: the held head was answered 408`);
    await conn.write('Connection: close\r\n\r\n');
  }
  const text = await conn.closed(20_000);
  const order = [...text.matchAll(/x-n: (\d+)/gi)].map((m) => Number(m[1]));
  assert.deepEqual(order, Array.from({ length: r.completes ? k + 1 : k }, (_, i) => i), `${where}: every answer, in order`);
  if (r.completes) assert.doesNotMatch(text, / 408 /, `${where}: no 408`);
  return { text, where };
}
