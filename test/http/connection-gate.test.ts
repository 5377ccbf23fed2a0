import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, Socket, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ConnectionGate, type GateDecision } from '../../src/http/connection-gate.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * The connection gate's per-address cap, decided without reading a connection's address
 * while fewer connections than the per-address cap are open in all (issue 17: the
 * getpeername per CONNECT tunnel). The decisions must stay exactly those of counting every
 * connection by address from its accept: a seeded family of caps and open/close sequences
 * from four loopback addresses against a model that does.
 */

const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
const remoteAddressOf = Object.getOwnPropertyDescriptor(Socket.prototype, 'remoteAddress')!.get!;

let server: Server;
let port = 0;
/** Accepted sockets not handed out yet, per client address. */
const accepted = new Map<string, Socket[]>();
const clients: Socket[] = [];
let waiting: (() => void) | undefined;

before(async () => {
  server = createServer((s) => {
    s.on('error', () => {});
    const from = remoteAddressOf.call(s) as string;
    const list = accepted.get(from) ?? [];
    list.push(s);
    accepted.set(from, list);
    waiting?.();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
});

after(async () => {
  for (const c of clients) c.destroy();
  for (const list of accepted.values()) for (const s of list) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** `n` accepted server-side sockets from `from`, each counting the reads of its address into `reads`. */
async function acceptFrom(from: string, n: number, reads: { n: number }): Promise<Socket[]> {
  for (let i = 0; i < n; i++) {
    const c = connect({ port, host: '127.0.0.1', localAddress: from });
    c.on('error', () => {});
    clients.push(c);
  }
  const deadline = Date.now() + 10_000;
  while ((accepted.get(from)?.length ?? 0) < n) {
    if (Date.now() > deadline) throw new Error(`only ${accepted.get(from)?.length ?? 0} of ${n} connections from ${from} accepted`);
    await new Promise<void>((resolve) => {
      waiting = resolve;
      setTimeout(resolve, 50);
    });
  }
  const got = accepted.get(from)!.splice(0, n);
  // Every way of reading the address ends in the handle's getpeername (remoteAddress, or the gate's
  // read through the handle, http/peer.ts): counted there.
  for (const s of got) {
    const h = (s as Socket & { _handle: { getpeername(out: object): number } })._handle;
    const getpeername = h.getpeername.bind(h);
    h.getpeername = (out: object): number => {
      reads.n++;
      return getpeername(out);
    };
  }
  return got;
}

describe('connection gate', () => {
  it('reads no address while fewer connections than the per-address cap are open, then counts them all', async () => {
    const reads = { n: 0 };
    const gate = new ConnectionGate({ maxConnections: 100, maxPerSource: 5, handshakeMs: 1000, handshakeFloorMs: 100 });
    const socks = await acceptFrom(SOURCES[0]!, 6, reads);
    for (let i = 0; i < 5; i++) assert.equal(gate.admit(socks[i]!, 0), 'admitted');
    assert.equal(reads.n, 0, 'no getpeername below the per-address cap');
    assert.equal(gate.unsourced, 5);
    // The sixth: five open in all, all from this address: the cap is reached.
    assert.equal(gate.admit(socks[5]!, 0), 'refused');
    assert.equal(reads.n, 6);
    assert.equal(gate.unsourced, 0);
    assert.match(gate.refusal(socks[5]!).detail ?? '', /too many connections from 127\.0\.0\.2 \(limit 5\)/);
    gate.release(socks[0]!);
    gate.release(socks[5]!);
    assert.deepEqual({ open: gate.stats.open, waiting: gate.stats.waiting }, { open: 4, waiting: 0 });
  });

  it('a seeded family of caps and open/close sequences decides as counting every address from the accept', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    const reads = { n: 0 };
    try {
      for (let c = 0; c < 12; c++) {
        const maxConnections = 2 + rand.int(10);
        const maxPerSource = rand.int(7);
        const gate = new ConnectionGate({ maxConnections, maxPerSource, handshakeMs: 1000, handshakeFloorMs: 100 });
        const pool = new Map<string, Socket[]>();
        for (const from of SOURCES) pool.set(from, await acceptFrom(from, 25, reads));
        // The model: every connection counted by address from its accept (the gate before issue 17's change).
        const model = { open: 0, waiting: 0, bySource: new Map<string, { open: number; waiting: number }>() };
        const live: { s: Socket; from: string; as: 'open' | 'waiting' }[] = [];
        for (let step = 0; step < 80; step++) {
          const close = live.length > 0 && rand.next() < 0.4;
          if (close) {
            const [gone] = live.splice(rand.int(live.length), 1);
            gate.release(gone!.s);
            model[gone!.as]--;
            model.bySource.get(gone!.from)![gone!.as]--;
          } else {
            const from = rand.pick(SOURCES);
            const s = pool.get(from)!.pop();
            if (s === undefined) continue;
            const count = model.bySource.get(from) ?? { open: 0, waiting: 0 };
            model.bySource.set(from, count);
            const over = maxPerSource > 0 && count.open >= maxPerSource;
            let want: GateDecision;
            if (over || model.open >= maxConnections) {
              want = model.waiting >= maxConnections || (maxPerSource > 0 && count.waiting >= maxPerSource) ? 'shed' : 'refused';
            } else {
              want = 'admitted';
            }
            const got = gate.admit(s, 0);
            assert.equal(got, want, `case ${c} step ${step}: caps ${maxConnections}/${maxPerSource}, from ${from} (open ${model.open}, waiting ${model.waiting}, this address ${count.open}/${count.waiting})`);
            if (got === 'admitted') {
              model.open++;
              count.open++;
              live.push({ s, from, as: 'open' });
            } else if (got === 'refused') {
              model.waiting++;
              count.waiting++;
              live.push({ s, from, as: 'waiting' });
            }
          }
          assert.equal(gate.stats.open, model.open, `case ${c} step ${step}: open`);
          assert.equal(gate.stats.waiting, model.waiting, `case ${c} step ${step}: waiting`);
        }
        for (const list of pool.values()) for (const s of list) s.destroy();
        for (const l of live) l.s.destroy();
      }
    } catch (err) {
      process.stderr.write(`connection gate family failed: GATEWISE_SEED=${rand.seed}\n`);
      throw err;
    }
  });
});
