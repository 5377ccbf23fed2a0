import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { seededRandom } from '../helpers/seeded.js';
import { associate } from '../helpers/socks-udp.js';
import { GUARD_MS, LATE_MS } from '../helpers/time-bounds.js';
import { PASSWORD, USER, accessLines, basic, linesUntil, refusedPort, startOrigin, startTestProxy, userHashes, type Origin, type TestProxy } from './helpers.js';

/**
 * Stall hunt (forward proxy): a user's admission slots (maxConnections 1, maxTunnels 1) must
 * come back on every way a request, tunnel or association ends. A slot that is not given
 * back shows as every later request of that user refused (429 / connection_limit_reached).
 * After each exit path (seeded order, one path twice), a CONNECT of the same user must be
 * answered 200 within RELEASE_WITHIN_MS of the path's record.
 */

/**
 * How long the slot may take to come back before it counts as leaked: a leak never gives it
 * back, so the bound only has to be past what a loaded machine needs (it was 1.5 s).
 */
const RELEASE_WITHIN_MS = LATE_MS;

let origin: Origin;
let silent: Server;
let silentPort: number;
let deadPort: number;
const held: Socket[] = [];
/** Resolved when the silent destination has a request's bytes (replaced after each). */
let silentGot: () => void = () => {};
function silentRequest(): Promise<void> {
  return new Promise((resolve) => (silentGot = resolve));
}

before(async () => {
  origin = await startOrigin();
  // Accepts and reads, never answers.
  silent = createServer((s) => {
    held.push(s);
    s.on('error', () => {});
    s.once('data', () => silentGot());
    s.resume();
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  silentPort = (silent.address() as AddressInfo).port;
  deadPort = await refusedPort();
});
after(async () => {
  for (const s of held) s.destroy();
  silent.close();
  await origin.close();
});

async function open(port: number): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1' });
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/** Bytes from `s` until `done` or close, bounded by a failure guard. */
function until(s: Socket, done: (t: string) => boolean, ms = GUARD_MS): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const t = setTimeout(() => resolve(text), ms);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (done(text)) (clearTimeout(t), resolve(text));
    });
    s.once('close', () => (clearTimeout(t), resolve(text)));
  });
}

const AUTH = basic(USER, PASSWORD);
const head = (t: string): boolean => t.includes('\r\n\r\n');

function socks5Greeting(): Buffer {
  const u = Buffer.from(USER);
  const pw = Buffer.from(PASSWORD);
  return Buffer.concat([Buffer.from([5, 1, 2, 1, u.length]), u, Buffer.from([pw.length]), pw]);
}

/** The exit paths: each ends one request, tunnel or association of the user. */
const PATHS: Record<string, (p: TestProxy) => Promise<void>> = {
  'HTTP: destination refuses the connection (502)': async (p) => {
    const s = await open(p.port);
    s.write(`GET http://127.0.0.1:${deadPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${deadPort}\r\nProxy-Authorization: ${AUTH}\r\nConnection: close\r\n\r\n`);
    assert.match(await until(s, head), /^HTTP\/1\.1 502/);
    s.destroy();
  },
  'HTTP: client leaves before the destination answers': async (p) => {
    const s = await open(p.port);
    const arrived = silentRequest();
    s.write(`GET http://127.0.0.1:${silentPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${silentPort}\r\nProxy-Authorization: ${AUTH}\r\n\r\n`);
    // The destination has the request (it slept 150 ms, which on a loaded machine could end
    // before the proxy had even read it, another exit path), then the client leaves.
    await arrived;
    s.destroy();
  },
  'HTTP: client leaves in the middle of a large answer': async (p) => {
    const s = await open(p.port);
    s.write(`GET http://127.0.0.1:${origin.port}/big/50000000 HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${AUTH}\r\n\r\n`);
    assert.match(await until(s, head), /^HTTP\/1\.1 200/);
    s.destroy();
  },
  'HTTP: client stops in the middle of its body (408 at clientBody, before responseHeaders)': async (p) => {
    const s = await open(p.port);
    s.write(`POST http://127.0.0.1:${silentPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${silentPort}\r\nProxy-Authorization: ${AUTH}\r\nContent-Length: 100000\r\n\r\nabc`);
    assert.match(await until(s, head), /^HTTP\/1\.1 408/);
    s.destroy();
  },
  'HTTP: destination never answers (504 at responseHeaders)': async (p) => {
    const s = await open(p.port);
    s.write(`GET http://127.0.0.1:${silentPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${silentPort}\r\nProxy-Authorization: ${AUTH}\r\n\r\n`);
    assert.match(await until(s, head), /^HTTP\/1\.1 504/);
    s.destroy();
  },
  'CONNECT: destination refuses the connection (502)': async (p) => {
    const s = await open(p.port);
    s.write(`CONNECT 127.0.0.1:${deadPort} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${AUTH}\r\n\r\n`);
    assert.match(await until(s, head), /^HTTP\/1\.1 502/);
    s.destroy();
  },
  'CONNECT: client leaves an open tunnel': async (p) => {
    const s = await open(p.port);
    s.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${AUTH}\r\n\r\n`);
    assert.match(await until(s, head), /^HTTP\/1\.1 200/);
    s.end();
  },
  'SOCKS5: destination refuses the connection (reply 5)': async (p) => {
    const s = await open(p.port);
    const port = Buffer.alloc(2);
    port.writeUInt16BE(deadPort);
    s.write(Buffer.concat([socks5Greeting(), Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), port]));
    const r = await until(s, (t) => t.length >= 4 + 4);
    assert.equal(r.charCodeAt(5), 5, JSON.stringify(r));
    s.destroy();
  },
  'SOCKS5 UDP: control connection closed': async (p) => {
    const { socket } = await associate(p.port, { user: USER, password: PASSWORD });
    socket.destroy();
  },
};

describe('admission slots come back on every exit path (maxConnections 1, maxTunnels 1)', () => {
  let p: TestProxy;
  before(async () => {
    const [h1, h2] = await userHashes();
    p = await startTestProxy({
      auth: { users: [{ name: USER, password: h1, maxConnections: 1, maxTunnels: 1 }, { name: 'bob', password: h2 }] },
      // responseHeaders is LATE_MS (it was 1 s): the large answer's origin, in this process,
      // must answer its head within it, and under load it took longer, a 504 on a path that
      // wanted a 200; the silent destination's path then takes LATE_MS to its 504.
      timeouts: { responseHeaders: `${LATE_MS}ms`, clientBody: '150ms', udpIdle: '5s' },
    });
  });
  after(() => p.close());

  it('after each, the next tunnel of the same user is admitted (seeded order)', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    const names = Object.keys(PATHS);
    const order = [...names];
    for (let i = order.length - 1; i > 0; i--) {
      const j = rand.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    order.push(rand.pick(names));
    const leaks: string[] = [];
    for (const name of order) {
      const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}), after "${name}"`;
      const before = accessLines(p.lines).length;
      await PATHS[name]!(p);
      assert.ok(await linesUntil(p.lines, () => accessLines(p.lines).length > before), `${ctx}: never recorded`);
      // The slot is back: a tunnel of the same user is answered 200 (tries for RELEASE_WITHIN_MS).
      const t0 = performance.now();
      let answer = '';
      while (performance.now() - t0 < RELEASE_WITHIN_MS) {
        const s = await open(p.port);
        s.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${AUTH}\r\n\r\n`);
        answer = await until(s, head);
        const n = accessLines(p.lines).length;
        s.destroy();
        if (/^HTTP\/1\.1 200/.test(answer)) {
          // Its own record (the slot comes back after it) before the next path.
          await linesUntil(p.lines, () => accessLines(p.lines).length > n);
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      if (!/^HTTP\/1\.1 200/.test(answer)) leaks.push(`${ctx}: the user's slot is still held ${Math.round(performance.now() - t0)} ms later; the next tunnel got ${JSON.stringify(answer.split('\r\n')[0])}`);
    }
    assert.deepEqual(leaks, [], leaks.join('\n'));
  });
});
