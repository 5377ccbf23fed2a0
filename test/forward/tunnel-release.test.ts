import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { kSocketUser, type SlottedSocket } from '../../src/net/index.js';
import { Tunnel, type TunnelEnd } from '../../src/tunnel/tunnel.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * A closed tunnel's sockets let go of it. Node keeps a closed socket alive past a scavenge or
 * two, and what the socket still points to survives with it: through the socket's Gatewise
 * slot, the whole tunnel (its request, meter session, responder, CONNECT head), promoted to
 * the old generation on every tunnel (docs/benchmarks.md §31). Real sockets on loopback, a
 * seeded family of the ways a tunnel ends: either side ends first (with or without bytes
 * still moving), either side is destroyed (an error), the client leaves before the splice.
 */

class ProbeTunnel extends Tunnel {
  readonly idleMs = 0;
  readonly sendMs = 0;
  ended: TunnelEnd | 'early' | undefined;
  readonly done: Promise<void>;
  #resolve!: () => void;

  constructor(client: Socket) {
    super(client);
    this.done = new Promise((r) => (this.#resolve = r));
  }
  onUp(): void {}
  onDown(): void {}
  onNotReading(): void {}
  tunnelEnded(end: TunnelEnd): void {
    this.ended = end;
    this.#resolve();
  }
  clientLeftEarly(): void {
    this.ended = 'early';
    this.#resolve();
  }
}


/** A server whose accepted sockets come out of `next()`, paired with the client side that made them. */
class Pairs {
  readonly server: Server;
  #waiting: Array<(s: Socket) => void> = [];
  #ready: Socket[] = [];
  readonly all: Socket[] = [];

  constructor() {
    this.server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      this.all.push(s);
      const w = this.#waiting.shift();
      if (w) w(s);
      else this.#ready.push(s);
    });
  }

  async pair(): Promise<{ near: Socket; far: Socket }> {
    const far = connect({ port: (this.server.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    far.on('error', () => {});
    this.all.push(far);
    const connected = once(far, 'connect');
    const accepted = this.#ready.shift() ?? (await new Promise<Socket>((r) => this.#waiting.push(r)));
    await connected;
    return { near: accepted, far };
  }
}

const ENDS = ['client-ends', 'server-ends', 'client-error', 'server-error', 'client-leaves-early'] as const;

describe('a closed tunnel is not held by its sockets', () => {
  const pairs = new Pairs();
  before(async () => {
    pairs.server.listen(0, '127.0.0.1');
    await once(pairs.server, 'listening');
  });
  after(() => {
    for (const s of pairs.all) s.destroy();
    pairs.server.close();
  });

  it('after every way a tunnel ends, neither socket points to it (seeded family)', { timeout: 60_000 }, async () => {
    const rand = seededRandom();
    for (let i = 0; i < 40; i++) {
      const how = ENDS[i % ENDS.length]!;
      const bytes = rand.int(3) === 0 ? 0 : 1 + rand.int(200_000);
      const label = `seed ${rand.seed}, case ${i}: ${how}, ${bytes} bytes`;
      // client: the proxy's accepted side (its far end is the test's client); server: the proxy's dialled side.
      const c = await pairs.pair();
      const s = await pairs.pair();
      const t = new ProbeTunnel(c.near);
      t.watchClient();
      if (how === 'client-leaves-early') {
        c.far.resetAndDestroy(); // a FIN alone is a half-close: the tunnel waits for its destination
        await t.done;
        s.near.destroy();
        s.far.destroy();
      } else {
        t.splice(s.near);
        if (bytes > 0) {
          c.far.write(Buffer.alloc(bytes, 1));
          s.far.write(Buffer.alloc(bytes, 2));
        }
        c.far.resume();
        s.far.resume();
        if (how === 'client-ends') c.far.end();
        else if (how === 'server-ends') s.far.end();
        else if (how === 'client-error') c.near.destroy(new Error('probe'));
        else s.near.destroy(new Error('probe'));
        // The far ends close theirs once they see the FIN (allowHalfOpen: they must be told).
        c.far.once('end', () => c.far.end());
        s.far.once('end', () => s.far.end());
        await t.done;
      }
      assert.ok(t.ended !== undefined, `${label}: the tunnel ended`);
      for (const [name, sock] of [['client', c.near], ['server', s.near]] as const) {
        if (how === 'client-leaves-early' && name === 'server') continue; // never spliced
        assert.notEqual((sock as SlottedSocket)[kSocketUser], t, `${label}: the ${name} socket still points to its tunnel after it ended (${String(t.ended)})`);
      }
      c.far.destroy();
      s.far.destroy();
    }
  });
});
