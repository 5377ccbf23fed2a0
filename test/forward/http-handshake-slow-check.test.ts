import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { startForwardProxy, type ForwardProxy } from '../../src/forward/index.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';
import { assertFiredOnTime, LATE_MS } from '../helpers/time-bounds.js';
import { memoryLogger, USER } from './helpers.js';
import { bounded, checkedProxyConfig, connectBytes, countingServer, endFrontCase, getBytes, heldCheck, recordWatch } from './front-clients.js';

/**
 * The HTTP front's handshake time (the first request head's, counted from the connection's
 * accept; a later head's `clientKeepAlive + handshake` from the previous response) covers the
 * proxy's own password check of that request, as on the SOCKS fronts
 * (socks-handshake-slow-check.test.ts): a check that outlasts it (an auth provider that takes
 * long) does not hold the client. At the deadline, while the check is still under way, the
 * client is answered 408 (`request_timeout`, the client is waiting on its request) and the
 * connection is closed; the check's later answer does nothing: no dial (the destination sees
 * no connection), no 200, no 407, one record (http_request_error, request_timeout, ended by
 * the proxy: its own check outlasted the time). Before, the head timer stopped once the head
 * was read and nothing timed the check: the connection stayed open until the check answered,
 * and a right answer then dialled and answered 200 (a tunnel, or the destination's response),
 * past the deadline.
 *
 * The auth provider holds every check until the test answers it, after the client has seen
 * the proxy's answer and close (or the failure guard has passed). The family (seeded): the
 * client (a CONNECT sent whole, read by the front's fast path; a CONNECT outside the fast
 * path's subset, a repeated field, read by Node's parser; an absolute-form GET sent whole; a
 * GET whose request line goes first and the rest after), the handshake time (200–600 ms), the
 * check's answer (the user, or wrong credentials).
 */

type Client = 'connect-fast' | 'connect-parsed' | 'get-whole' | 'get-split';
const CLIENTS: readonly Client[] = ['connect-fast', 'connect-parsed', 'get-whole', 'get-split'];

function requestParts(client: Client, port: number): string[] {
  if (client === 'connect-fast') return [connectBytes('127.0.0.1', port)];
  if (client === 'connect-parsed') return [connectBytes('127.0.0.1', port).replace('\r\n\r\n', '\r\nAccept: */*\r\nAccept: text/plain\r\n\r\n')];
  const get = getBytes('127.0.0.1', port);
  if (client === 'get-whole') return [get];
  const line = get.indexOf('\r\n') + 2;
  return [get.slice(0, line), get.slice(line)];
}

async function oneCase(client: Client, handshakeMs: number, answerOk: boolean): Promise<void> {
  const what = `${client}, handshake ${handshakeMs} ms, the check answering ${answerOk ? 'the user' : 'wrong credentials'}`;
  const dest = await countingServer();
  const watch = recordWatch();
  const records = watch.records;
  const { provider, checking, answered, answer } = heldCheck();
  const { logger } = memoryLogger();
  let proxy: ForwardProxy | undefined;
  let c: Socket | undefined;
  try {
    proxy = await startForwardProxy(
      checkedProxyConfig(['http'], handshakeMs),
      { logger, authProvider: provider, hooks: [{ onFinish: watch.onFinish }] },
    );
    const port = proxy.addresses()[0]!.port;
    // Measured from before the connection exists: the deadline is armed at its accept.
    const t0 = performance.now();
    c = connect(port, '127.0.0.1');
    c.setNoDelay(true);
    c.on('error', () => {});
    let got = '';
    let firstAt: number | undefined;
    c.on('data', (d: Buffer) => {
      firstAt ??= performance.now();
      got += d.toString('latin1');
    });
    const ended = new Promise<number>((r) => {
      const done = (): void => r(performance.now());
      c!.once('end', done);
      c!.once('close', done);
    });
    await bounded(once(c, 'connect'), 5000, `${what}: connect to the proxy`);
    const parts = requestParts(client, dest.port);
    for (const [i, part] of parts.entries()) {
      if (i > 0) await new Promise<void>((r) => setImmediate(r));
      c.write(part);
    }
    await bounded(checking, 5000, `${what}: the password check starting`);
    let endedAt: number | undefined;
    try {
      endedAt = await bounded(ended, handshakeMs + LATE_MS, `${what}: the proxy answered and closed while the check is held (got ${JSON.stringify(got.slice(0, 60))})`);
    } finally {
      // The check answers only now: after the close (or the guard).
      answer(answerOk ? USER : undefined);
    }
    assert.match(got, /^HTTP\/1\.1 408 /, `${what}: a 408 answer: ${JSON.stringify(got.slice(0, 200))}`);
    assert.match(got, /proxy-status: [^\r\n]*error=http_request_error/i, `${what}: Proxy-Status names the failure: ${JSON.stringify(got.slice(0, 400))}`);
    assert.equal((got.match(/HTTP\/1\.1 /g) ?? []).length, 1, `${what}: one answer only: ${JSON.stringify(got)}`);
    assertFiredOnTime(firstAt! - t0, handshakeMs, `${what}: the 408`);
    assertFiredOnTime(endedAt - t0, handshakeMs, `${what}: the close`);
    const recordedOnce = watch.first();
    await bounded(recordedOnce, 5000, `${what}: the record`);
    // Every later step of the front would follow the answer within this turn and the next.
    await answered;
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    await proxy.close();
    proxy = undefined;
    const all = JSON.stringify(records);
    assert.equal(records.length, 1, `${what}: one record: ${all}`);
    const rec = records[0]!;
    assert.equal(rec.status, 408, `${what}: the 408: ${all}`);
    assert.equal(rec.error, 'http_request_error', `${what}: the head's failure: ${all}`);
    assert.equal(rec.reason, 'request_timeout', `${what}: its timeout: ${all}`);
    assert.equal(rec.endedBy, 'gateway', `${what}: ended by the proxy (its own check outlasted the handshake time): ${all}`);
    assert.equal(dest.accepted, 0, `${what}: the destination saw no connection: ${all}`);
  } finally {
    await endFrontCase(c, proxy, dest);
  }
}

type Leave = 'rst' | 'fin';

/**
 * A client that leaves while its check is held (a reset, or a FIN with nothing answered yet,
 * which the proxy takes as leaving, client-fin.ts) is recorded at the deadline as the client's
 * (499, ended by the client), not answered 408, and the check's later answer does nothing.
 * Before, nothing was recorded until the check answered (never, for a check that never does).
 */
async function leaveCase(client: 'connect-fast' | 'get-whole', leave: Leave, handshakeMs: number, answerOk: boolean): Promise<void> {
  const what = `${client} left by ${leave}, handshake ${handshakeMs} ms, the check answering ${answerOk ? 'the user' : 'wrong credentials'}`;
  const dest = await countingServer();
  const watch = recordWatch();
  const records = watch.records;
  const { provider, checking, answered, answer } = heldCheck();
  const { logger } = memoryLogger();
  let proxy: ForwardProxy | undefined;
  let c: Socket | undefined;
  try {
    proxy = await startForwardProxy(
      checkedProxyConfig(['http'], handshakeMs),
      { logger, authProvider: provider, hooks: [{ onFinish: watch.onFinish }] },
    );
    const port = proxy.addresses()[0]!.port;
    const t0 = performance.now();
    c = connect(port, '127.0.0.1');
    c.on('error', () => {});
    c.resume();
    await bounded(once(c, 'connect'), 5000, `${what}: connect to the proxy`);
    c.write(requestParts(client, dest.port)[0]!);
    await bounded(checking, 5000, `${what}: the password check starting`);
    if (leave === 'rst') c.resetAndDestroy();
    else c.end();
    const recordedOnce = watch.first();
    try {
      await bounded(recordedOnce, handshakeMs + LATE_MS, `${what}: the record while the check is held`);
    } finally {
      answer(answerOk ? USER : undefined);
    }
    assert.ok(performance.now() - t0 >= handshakeMs - 5, `${what}: recorded at the deadline, not before`);
    await answered;
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    await proxy.close();
    proxy = undefined;
    const all = JSON.stringify(records);
    assert.equal(records.length, 1, `${what}: one record: ${all}`);
    const rec = records[0]!;
    assert.equal(rec.status, 499, `${what}: the client's leaving: ${all}`);
    assert.equal(rec.endedBy, 'client', `${what}: ended by the client: ${all}`);
    assert.equal(rec.error ?? null, null, `${what}: no failure of the proxy's: ${all}`);
    assert.equal(dest.accepted, 0, `${what}: the destination saw no connection: ${all}`);
  } finally {
    await endFrontCase(c, proxy, dest);
  }
}

describe('an HTTP proxy request whose password check outlasts the handshake time', () => {
  it('is answered 408 and closed at the deadline, and the check’s later answer makes no dial and no second record (seeded family)', { timeout: 300_000 }, async () => {
    await seededRun('http-handshake-slow-check', async (rand) => {
      await everyCase(CLIENTS, async (client) => oneCase(client, between(rand, 200, 600), rand() < 0.5));
    });
  });
  it('whose client left during the check is recorded at the deadline as the client’s (seeded family)', { timeout: 300_000 }, async () => {
    await seededRun('http-handshake-slow-check-left', async (rand) => {
      const cases: Array<['connect-fast' | 'get-whole', Leave]> = [['connect-fast', 'rst'], ['connect-fast', 'fin'], ['get-whole', 'rst'], ['get-whole', 'fin']];
      await everyCase(cases, async ([client, leave]) => leaveCase(client, leave, between(rand, 200, 600), rand() < 0.5));
    });
  });
});
