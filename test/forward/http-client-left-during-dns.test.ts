import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { ResolvedAddress, Resolver } from '../../src/egress/index.js';
import type { ForwardRecord } from '../../src/record/index.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';
import { accessLines, startTestProxy, type TestProxy } from './helpers.js';
import { bounded, countingServer, readAtLeast } from './front-clients.js';

/**
 * An absolute-form request whose client leaves while its destination's name resolves gets
 * no upstream connection: the resolution may finish, but no dial starts for a client already
 * gone, and the request is recorded as ended by the client (499, `endedBy: "client"`), never
 * as an upstream or gateway failure. Before, the pooled connection the request had asked
 * for was still dialled once the name resolved (the pool's undici Client went on connecting
 * for a request already cancelled), and the destination saw a connection for no one.
 *
 * The family: how many such requests run at once (1–4, each on its own client connection),
 * how each client leaves (a reset; a full close, FIN with the socket closed; a half-close,
 * FIN while still reading), what it sends (a GET, a POST with its body, a POST that expects
 * 100-continue and holds its body back, which takes a connection of its own outside the
 * pool), and when the held resolutions finish once the proxy has seen every client leave
 * (in the same tick, or a seeded few ms later). Every moment is an event: the resolver's
 * calls, the proxy's side of each client connection ending or closing (Node's
 * net.server.socket channel gives the test those sockets), the records. The seeded delays
 * only vary the order, they synchronise nothing.
 *
 * The destination counts its accepted connections. A follow-up request to the same name
 * (the same pool) is carried after the round: the pool still works, and since its dial
 * starts after every held resolution finished, the destination (which accepts in order)
 * has by then accepted any connection dialled for a client that left.
 *
 * The second family holds the resolutions until the dials are abandoned: once the relay has
 * heard its client's close, the pooled connection's dial stops with the resolution still
 * pending (undici's `undici:client:connectError` channel says so, an event), rather than
 * waiting for the name (up to the DNS timeout) and being refused then. An `Expect` request's
 * own connection (no relay listens yet) stops the same way, told through the response's order
 * listener (OrderedRequest.watch): its record comes with the resolution still held.
 *
 * One record per request, and nothing else: a client that sends an `Expect: 100-continue`
 * head and leaves without its body is not recorded a second time for Node's parser finding
 * the body cut short at its EOF (http-front.ts; test/forward/http-client-left-mid-body.test.ts).
 */

type Leave = 'rst' | 'close' | 'half';
type Send = 'get' | 'post' | 'expect';
const LEAVES: readonly Leave[] = ['rst', 'close', 'half'];
const SENDS: readonly Send[] = ['get', 'post', 'expect'];
const ADDRESS: ResolvedAddress[] = [{ address: '127.0.0.1', family: 4 }];

function requestBytes(send: Send, port: number): string {
  const target = `http://dest.test:${port}/`;
  const host = `Host: dest.test:${port}\r\n`;
  if (send === 'get') return `GET ${target} HTTP/1.1\r\n${host}\r\n`;
  if (send === 'post') return `POST ${target} HTTP/1.1\r\n${host}Content-Length: 5\r\n\r\nhello`;
  return `POST ${target} HTTP/1.1\r\n${host}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n`;
}

/** Resolves once the proxy's side `s` has seen its client leave (end of its input, or closed). */
function proxySaw(s: Socket): Promise<void> {
  if (s.readableEnded || s.destroyed) return Promise.resolve();
  return new Promise<void>((r) => {
    s.once('end', r);
    s.once('close', r);
  });
}

interface Round {
  leaves: Leave[];
  sends: Send[];
  /** Per held resolution: -1 finishes it in the tick the last leave is seen, else after that many ms. */
  delays: number[];
}

function describeRound(r: Round): string {
  return r.leaves.map((l, i) => `${r.sends[i]}/${l}/${r.delays[i]! < 0 ? 'same tick' : `+${r.delays[i]} ms`}`).join(', ');
}

/**
 * `abandoned`: the resolutions are held until every pooled dial has been given up (the
 * connect errors undici publishes), and only then finish.
 */
async function oneRound(round: Round, abandoned = false): Promise<void> {
  const k = round.leaves.length;
  const what = `${k} at once (${describeRound(round)})${abandoned ? ', held until abandoned' : ''}`;
  const dest = await countingServer();
  // The resolver holds 'dest.test' while `holding`; the test is told of every call.
  let holding = true;
  const held: Array<() => void> = [];
  let called: (() => void) | undefined;
  const resolver: Resolver = (host) => {
    if (host !== 'dest.test' || !holding) return Promise.resolve(ADDRESS);
    return new Promise<ResolvedAddress[]>((resolve) => {
      held.push(() => resolve(ADDRESS));
      called?.();
    });
  };
  const records: ForwardRecord[] = [];
  let recorded: (() => void) | undefined;
  const proxySides: Socket[] = [];
  let proxyPort = 0;
  const onAccept = (m: unknown): void => {
    const s = (m as { socket: Socket }).socket;
    if (s.localPort === proxyPort) proxySides.push(s);
  };
  diagnostics_channel.subscribe('net.server.socket', onAccept);
  // The pooled dials given up (undici publishes each connect error of its clients).
  let connectErrors = 0;
  let onConnectError: (() => void) | undefined;
  const onUndiciError = (m: unknown): void => {
    if ((m as { connectParams?: { hostname?: string } }).connectParams?.hostname !== 'dest.test') return;
    connectErrors++;
    onConnectError?.();
  };
  diagnostics_channel.subscribe('undici:client:connectError', onUndiciError);
  const clients: Socket[] = [];
  let p: TestProxy | undefined;
  try {
    p = await startTestProxy(
      // A DNS time far past every wait of the test: a held resolution never ends by timing out.
      { auth: { required: false }, timeouts: { dns: '60s' } },
      {
        resolver,
        hooks: [
          {
            onFinish: (r) => {
              records.push(r);
              recorded?.();
            },
          },
        ],
      },
    );
    proxyPort = p.port;
    const allCalled = new Promise<void>((r) => (called = () => held.length === k && r()));
    for (let i = 0; i < k; i++) {
      const c = connect(p.port, '127.0.0.1');
      c.on('error', () => {});
      clients.push(c);
      await bounded(once(c, 'connect'), 5000, `${what}: connect to the proxy`);
      c.write(requestBytes(round.sends[i]!, dest.port));
    }
    await bounded(allCalled, 5000, `${what}: every request's resolution asked for (${held.length} of ${k})`);
    assert.equal(proxySides.length, k, `${what}: the proxy's sides of the clients`);
    const allRecorded = new Promise<void>((r) => (recorded = () => records.length >= k && r()));
    // Every client leaves; the resolutions finish once the proxy has seen all of them leave.
    for (let i = 0; i < k; i++) {
      const c = clients[i]!;
      const leave = round.leaves[i]!;
      if (leave === 'rst') c.resetAndDestroy();
      else if (leave === 'close') c.destroy();
      else c.end();
    }
    await bounded(Promise.all(proxySides.map(proxySaw)), 5000, `${what}: the proxy seeing its clients leave`);
    if (abandoned) {
      const pooledCount = round.sends.filter((s) => s !== 'expect').length;
      const given = new Promise<void>((r) => (onConnectError = () => connectErrors >= pooledCount && r()));
      onConnectError!();
      await bounded(given, 5000, `${what}: every pooled dial given up while its resolution was still held (${connectErrors} of ${pooledCount})`);
      // An Expect request's own dial (no relay listens yet) stops too, heard through the
      // response's order listener: every request is recorded with its resolution still held.
      await bounded(allRecorded, 5000, `${what}: every request recorded while its resolution was still held (${records.length} of ${k})`);
    }
    const finished = held.map(
      (release, i) =>
        new Promise<void>((r) => {
          const d = round.delays[i]!;
          if (d < 0) {
            release();
            r();
          } else {
            setTimeout(() => (release(), r()), d);
          }
        }),
    );
    await Promise.all(finished);
    await bounded(allRecorded, 5000, `${what}: the records (${records.length} of ${k})`);
    // A second record for a request would come by its connection's close, which the proxy had seen.
    await new Promise<void>((r) => setImmediate(r));
    assert.equal(records.length, k, `${what}: one record per request: ${JSON.stringify(records)}`);
    for (const rec of records) {
      const line = JSON.stringify(rec);
      assert.equal(rec.status, 499, `${what}: recorded 499: ${line}`);
      assert.equal(rec.endedBy, 'client', `${what}: ended by the client: ${line}`);
      assert.ok(rec.error === undefined || rec.error === null, `${what}: no failure type, the client left: ${line}`);
    }
    // The access log says the same (it writes its lines once the current I/O is done).
    await new Promise<void>((r) => setImmediate(r));
    const lines = accessLines(p.lines);
    assert.equal(lines.length, k, `${what}: an access line per request: ${JSON.stringify(lines)}`);
    for (const l of lines) {
      assert.equal(l.status, 499, `${what}: ${JSON.stringify(l)}`);
      assert.equal(l.endedBy, 'client', `${what}: ${JSON.stringify(l)}`);
    }
    // A follow-up to the same name, through the same pool, is carried; its dial comes after
    // every held resolution finished, so the destination has accepted whatever was dialled before.
    holding = false;
    const d = connect(p.port, '127.0.0.1');
    d.on('error', () => {});
    clients.push(d);
    await bounded(once(d, 'connect'), 5000, `${what}: connect to the proxy`);
    const answer = readAtLeast(d, 12);
    d.write(requestBytes('get', dest.port));
    const got = await bounded(answer, 5000, `${what}: the follow-up's answer`);
    assert.match(got.toString('latin1'), /^HTTP\/1\.1 200/, `${what}: the follow-up`);
    assert.equal(dest.accepted, 1, `${what}: the destination accepted ${dest.accepted} connections; 1 (the follow-up's) expected, none for the clients that left: ${JSON.stringify(records)}`);
  } finally {
    diagnostics_channel.unsubscribe('net.server.socket', onAccept);
    diagnostics_channel.unsubscribe('undici:client:connectError', onUndiciError);
    for (const release of held) release();
    for (const c of clients) c.destroy();
    await p?.close();
    for (const s of dest.sockets) s.destroy();
    dest.server.close();
  }
}

describe('an absolute-form request whose client leaves while its name resolves', () => {
  it('opens no upstream connection and is recorded 499 ended by the client (seeded family: how many at once, how each client leaves, what it sends, when the resolution finishes)', { timeout: 180_000 }, async () => {
    await seededRun('http-client-left-during-dns', async (rand) => {
      const rounds: Round[] = [];
      // Every way of leaving with every kind of request, alone, then seeded concurrent rounds.
      for (const l of LEAVES) for (const s of SENDS) rounds.push({ leaves: [l], sends: [s], delays: [between(rand, -1, 5)] });
      for (let i = 0; i < 12; i++) {
        const k = between(rand, 1, 4);
        const r: Round = { leaves: [], sends: [], delays: [] };
        for (let j = 0; j < k; j++) {
          r.leaves.push(LEAVES[between(rand, 0, LEAVES.length - 1)]!);
          r.sends.push(SENDS[between(rand, 0, SENDS.length - 1)]!);
          r.delays.push(between(rand, -1, 5));
        }
        rounds.push(r);
      }
      // Every round runs (each closes what it opened), then all failures are told at once.
      await everyCase(rounds, async (r) => oneRound(r), 'rounds');
    });
  });

  it('a dial is given up once the client is heard leaving, with the resolution still pending (seeded family)', { timeout: 180_000 }, async () => {
    await seededRun('http-client-left-during-dns (abandoned)', async (rand) => {
      const pooled: readonly Send[] = ['get', 'post', 'expect'];
      const rounds: Round[] = [];
      for (const l of LEAVES) for (const s of pooled) rounds.push({ leaves: [l], sends: [s], delays: [between(rand, -1, 5)] });
      for (let i = 0; i < 6; i++) {
        const k = between(rand, 1, 4);
        const r: Round = { leaves: [], sends: [], delays: [] };
        for (let j = 0; j < k; j++) {
          r.leaves.push(LEAVES[between(rand, 0, LEAVES.length - 1)]!);
          r.sends.push(pooled[between(rand, 0, pooled.length - 1)]!);
          r.delays.push(between(rand, -1, 5));
        }
        rounds.push(r);
      }
      await everyCase(rounds, async (r) => oneRound(r, true), 'rounds');
    });
  });
});
