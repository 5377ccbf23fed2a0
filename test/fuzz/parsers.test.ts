import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseConnectHead } from '../../src/forward/connect-head.js';
import { AddressTypeError, BadAddressError, parseAddress } from '../../src/forward/socks/socks-address.js';
import { corpusPath } from '../helpers/corpora.js';
import { announce, caseSeed, FuzzFailure, fuzzPlan, mutate, Rng, runCases } from './mutate.js';

/**
 * Pure-parser fuzzers (no proxy): the CONNECT fast path against llhttp (a differential
 * test: the fast path never accepts what llhttp refuses, and agrees on what both accept),
 * and the SOCKS address parser (only its own errors, never out of bounds).
 */

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

const CONNECT_SEEDS = [
  'CONNECT host.example:443 HTTP/1.1\r\nHost: host.example:443\r\nProxy-Authorization: Basic dTpw\r\nX-Trace: a b\tc\r\n\r\n',
  'CONNECT 127.0.0.1:8443 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUser-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n',
  'CONNECT [::1]:443 HTTP/1.0\r\nX-A: \t v  w \t\r\n\r\n\x16\x03\x01\x02\x00',
  'CONNECT a.b-c_d.example:1 HTTP/1.1\r\n\r\n',
  'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nContent-Length: 0\r\n\r\n',
  'CONNECT example.com:443 HTTP/1.1\r\nhost: x\r\nHost: y\r\n\r\n',
].map(b);

/** Request heads from the corpora, for splices. */
function corpusPieces(): Buffer[] {
  const out: Buffer[] = [];
  const llhttp = JSON.parse(readFileSync(corpusPath('llhttp-requests.json'), 'utf8')) as Array<{ raw: string }>;
  for (const c of llhttp) out.push(Buffer.from(c.raw, 'base64'));
  const smuggler = JSON.parse(readFileSync(corpusPath('smuggler-mutations.json'), 'utf8')) as Array<{ header: string }>;
  for (let i = 0; i < smuggler.length; i += 7) out.push(Buffer.from(smuggler[i]!.header.replaceAll('__METHOD__', 'CONNECT').replaceAll('__ENDPOINT__', 'a.example:443').replaceAll('__HOST__', 'a.example').replaceAll('__REPLACE_CL__', '0').replaceAll('__RANDOM__', 'r'), 'utf8'));
  return out;
}

type NodeView = { url: string; headers: Record<string, unknown> } | 'refused';

/** What llhttp (Node's strict server) makes of the bytes: the CONNECT request, or refused. */
async function nodeParse(server: Server, bytes: Buffer): Promise<NodeView> {
  const port = (server.address() as AddressInfo).port;
  const sock = connect(port, '127.0.0.1');
  sock.on('error', () => {});
  const localPort = await new Promise<number>((resolve) => sock.once('connect', () => resolve(sock.localPort!)));
  const got = new Promise<NodeView>((resolve) => {
    const onConnect = (req: IncomingMessage, s: Duplex): void => {
      // Several cases may be in flight: only ours (matched by the client port).
      if ((req.socket.remotePort ?? -1) !== localPort) return;
      server.off('connect', onConnect);
      s.destroy();
      resolve({ url: req.url ?? '', headers: { ...req.headers } });
    };
    server.on('connect', onConnect);
    sock.once('close', () => {
      server.off('connect', onConnect);
      resolve('refused');
    });
  });
  sock.end(bytes);
  return got;
}

async function strictServer(maxHeaderSize: number): Promise<Server> {
  const server = createServer({ requireHostHeader: false, joinDuplicateHeaders: false, insecureHTTPParser: false, maxHeaderSize });
  server.on('clientError', (_err, s) => s.destroy());
  server.setMaxListeners(0);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

describe('fuzz: CONNECT fast path against llhttp', () => {
  const MAX = 16 * 1024;
  const SMALL = 160;
  let server: Server;
  let small: Server;
  let pieces: Buffer[];
  before(async () => {
    server = await strictServer(MAX);
    small = await strictServer(SMALL);
    pieces = corpusPieces();
  });
  after(() => {
    server.close();
    small.close();
  });

  async function check(plan: ReturnType<typeof fuzzPlan>, i: number, m: Buffer, limit: number, srv: Server): Promise<'fast' | 'full'> {
    let p: ReturnType<typeof parseConnectHead>;
    try {
      p = parseConnectHead(m, limit);
    } catch (err) {
      throw new FuzzFailure(plan, i, m, `parseConnectHead threw ${(err as Error).stack}`);
    }
    if (p === undefined) return 'full';
    if (p.length > m.length || p.length > limit || m.toString('latin1', p.length - 4, p.length) !== '\r\n\r\n') throw new FuzzFailure(plan, i, m, `bad head length ${p.length}`);
    const node = await nodeParse(srv, m.subarray(0, p.length));
    if (node === 'refused') throw new FuzzFailure(plan, i, m, `the fast path accepted (limit ${limit}) what llhttp refuses`);
    if (node.url !== p.url) throw new FuzzFailure(plan, i, m, `url: fast ${p.url} llhttp ${node.url}`);
    const fk = Object.keys(p.headers).sort();
    const nk = Object.keys(node.headers).sort();
    if (JSON.stringify(fk) !== JSON.stringify(nk)) throw new FuzzFailure(plan, i, m, `fields: fast ${fk.join(',')} llhttp ${nk.join(',')}`);
    for (const k of fk) if (p.headers[k] !== node.headers[k]) throw new FuzzFailure(plan, i, m, `${k}: fast ${JSON.stringify(p.headers[k])} llhttp ${JSON.stringify(node.headers[k])}`);
    return 'fast';
  }

  it('mutated CONNECT heads (seeds + corpus splices): never accepts what llhttp refuses; agrees on what both accept', { timeout: 600_000 }, async () => {
    const plan = fuzzPlan('connect-head', 1000);
    let fast = 0;
    const ran = await runCases(plan, 8, async (i, rng: Rng) => {
      const seed = rng.chance(0.9) ? rng.pick(CONNECT_SEEDS) : rng.pick(pieces);
      const m = mutate(rng, seed, rng.chance(0.3) ? pieces : CONNECT_SEEDS, 3, 4096);
      if ((await check(plan, i, m, MAX, server)) === 'fast') fast++;
    });
    announce(plan, ran);
    if (plan.only === undefined && ran >= 500) assert.ok(fast > ran / 20, `only ${fast} of ${ran} mutations took the fast path: the mutator is too destructive`);
  });

  it('heads around the size limit: the fast path and llhttp draw the line at the same place', { timeout: 600_000 }, async () => {
    const plan = fuzzPlan('connect-head-limit', 300);
    const ran = await runCases(plan, 8, async (i, rng: Rng) => {
      // A valid head of SMALL-20 .. SMALL+20 bytes, then a light mutation.
      const want = SMALL - 20 + rng.int(41);
      const bare = 'CONNECT a.example:443 HTTP/1.1\r\nX-P: \r\n\r\n';
      const pad = 'p'.repeat(Math.max(0, want - bare.length));
      const head = b(`CONNECT a.example:443 HTTP/1.1\r\nX-P: ${pad}\r\n\r\n`);
      const m = rng.chance(0.5) ? head : mutate(rng, head, CONNECT_SEEDS, 1, 4096);
      await check(plan, i, m, SMALL, small);
    });
    announce(plan, ran);
  });
});

describe('fuzz: SOCKS address parser', () => {
  const SEEDS = [
    Buffer.from([0x01, 127, 0, 0, 1, 0x1f, 0x90]),
    Buffer.from([0x04, ...Buffer.alloc(15), 1, 0x01, 0xbb]),
    Buffer.concat([Buffer.from([0x03, 11]), b('example.com'), Buffer.from([0x00, 0x50])]),
    Buffer.concat([Buffer.from([0x03, 3]), b('::1'), Buffer.from([0x00, 0x50])]),
    // A UDP request header: RSV RSV FRAG, then the address at offset 3.
    Buffer.concat([Buffer.from([0x00, 0x00, 0x00, 0x01, 10, 0, 0, 1, 0x00, 0x35]), b('payload')]),
  ];
  const DOMAIN_OR_IP = /^([A-Za-z0-9_\-.]+|[0-9a-f:.]+)$/i;

  it('throws only its own errors and never reads out of bounds', async () => {
    const plan = fuzzPlan('socks-address', 20_000);
    let ok = 0;
    let n = 0;
    const one = (i: number, rng: Rng): void => {
      const m = mutate(rng, rng.pick(SEEDS), SEEDS, 4, 600);
      const offset = rng.chance(0.3) ? 3 : rng.chance(0.5) ? 0 : rng.int(m.length + 2);
      try {
        const { target, next } = parseAddress(m, offset);
        if (next > m.length || next <= offset) throw new FuzzFailure(plan, i, m, `next ${next} outside (${offset}, ${m.length}]`);
        if (target.port < 0 || target.port > 65535) throw new FuzzFailure(plan, i, m, `port ${target.port}`);
        if (!target.host || !DOMAIN_OR_IP.test(target.host)) throw new FuzzFailure(plan, i, m, `host ${JSON.stringify(target.host)}`);
        ok++;
      } catch (err) {
        if (err instanceof FuzzFailure) throw err;
        if (!(err instanceof BadAddressError || err instanceof AddressTypeError)) throw new FuzzFailure(plan, i, m, `threw ${(err as Error).stack}`);
      }
    };
    // Synchronous: a plain loop under the same count and time bounds as runCases.
    if (plan.only !== undefined) {
      await runCases(plan, 1, one);
      return;
    }
    for (let i = 0; i < plan.cases && Date.now() <= plan.deadline; i++, n++) one(i, new Rng(caseSeed(plan.base, plan.target, i)));
    announce(plan, n);
    assert.ok(ok > n / 20, `only ${ok} of ${n} parsed`);
  });
});
