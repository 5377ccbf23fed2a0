import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net, { type AddressInfo, type LookupFunction, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildConnector, errors } from '../../src/http/undici.js';
import { upstreamConnector, type UpstreamConnectOptions } from '../../src/pool/index.js';
import { freePort } from '../helpers/redis.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * The upstream connector's cleartext sockets (src/pool/plain-connector.ts) against undici's
 * `buildConnector`, which the endpoint used before:
 *
 * 1. A seeded differential family on loopback: IP literals and names through the endpoint's
 *    `lookup`, a local address, refused ports, a lookup that fails, a lookup that never answers
 *    (the connect timeout: `ConnectTimeoutError` from both), h2c's mark. Both connectors must
 *    call back the same way (error code and class, or a socket connected to the same place with
 *    the same half-open setting, read high-water mark and ALPN mark), and a connected socket
 *    must carry bytes both ways.
 * 2. The reason for it: under `--log-maps`, undici's cleartext connector makes new maps for
 *    every socket (the options copies of `net.connect` and `Socket`: `allowHalfOpen`,
 *    `emitClose`, `autoDestroy`, `decodeStrings` on maps that keep no transitions in Node
 *    20's V8), this one none per socket. It failed first with undici's (the reverse gateway
 *    opens one per POST).
 */

const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

type Connector = (o: Record<string, unknown>, cb: (err: Error | null, s: Socket | null) => void) => Socket | undefined;

interface Outcome {
  error?: { code: unknown; timeoutClass: boolean };
  socket?: { remoteAddress: unknown; remotePort: unknown; localAddress: unknown; allowHalfOpen: boolean; readableHighWaterMark: number; alpn: unknown; echoed: string };
}

let echo: net.Server;
let echoPort: number;

before(async () => {
  echo = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d) => s.write(d));
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
  echoPort = (echo.address() as AddressInfo).port;
});

after(async () => {
  await new Promise<void>((resolve) => echo.close(() => resolve()));
});

/** One connect through `c`; a connected socket sends `probe` and reads it back, then closes. */
async function outcome(c: Connector, target: { hostname: string; port: number; localAddress?: string }, probe: string): Promise<Outcome> {
  const r = await new Promise<{ err: Error | null; s: Socket | null }>((resolve) => {
    c({ hostname: target.hostname, host: `${target.hostname}:${target.port}`, protocol: 'http:', port: String(target.port), servername: undefined, localAddress: target.localAddress ?? null, httpSocket: undefined }, (err, s) => resolve({ err, s }));
  });
  if (r.err !== null || r.s === null) {
    const e = r.err as (Error & { code?: unknown }) | null;
    return { error: { code: e?.code, timeoutClass: e instanceof errors.ConnectTimeoutError } };
  }
  const s = r.s;
  let echoed = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => (echoed += d));
  s.write(probe);
  while (echoed.length < probe.length) await once(s, 'data');
  const out: Outcome = {
    socket: {
      remoteAddress: s.remoteAddress,
      remotePort: s.remotePort,
      localAddress: s.localAddress,
      allowHalfOpen: s.allowHalfOpen,
      readableHighWaterMark: s.readableHighWaterMark,
      alpn: (s as Socket & { alpnProtocol?: unknown }).alpnProtocol,
      echoed,
    },
  };
  s.destroy();
  return out;
}

describe(`the upstream connector's cleartext sockets (seed ${SEED}, replay: GATEWISE_SEED=${SEED})`, () => {
  it('connect, fail and time out as undici’s connector does, across a seeded family', async () => {
    const r = seededRandom(SEED);
    const closedPort = await freePort();
    for (let round = 0; round < 24; round++) {
      const kind = r.pick(['ip', 'name', 'local', 'refused', 'lookup-error', 'lookup-hangs', 'h2c'] as const);
      const names = new Map([[`up${r.int(100)}.test`, '127.0.0.1']]);
      const [name] = [...names.keys()];
      let pendingLookups = 0;
      const lookup: LookupFunction = (host, opts, cb) => {
        if (kind === 'lookup-hangs') {
          pendingLookups++;
          return; // never answers: only the connect timeout ends it
        }
        const address = names.get(host);
        const all = (opts as { all?: boolean }).all === true;
        if (address === undefined) {
          const e = Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
          (cb as (e: Error | null, a: string, f: number) => void)(e, '', 0);
        } else if (all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address, family: 4 }]);
        else (cb as (e: null, a: string, f: number) => void)(null, address, 4);
      };
      const timeout = kind === 'lookup-hangs' ? 20 + r.int(150) : 2_000 + r.int(8_000);
      const opts: UpstreamConnectOptions = { lookup, timeout, ...(kind === 'h2c' ? { allowH2: true, useH2c: true } : {}) };
      const target =
        kind === 'refused'
          ? { hostname: '127.0.0.1', port: closedPort }
          : kind === 'lookup-error'
            ? { hostname: 'missing.test', port: echoPort }
            : kind === 'name' || kind === 'lookup-hangs'
              ? { hostname: name!, port: echoPort }
              : kind === 'local'
                ? { hostname: '127.0.0.1', port: echoPort, localAddress: '127.0.0.1' }
                : { hostname: '127.0.0.1', port: echoPort };
      const probe = `probe-${round}-${'x'.repeat(r.int(2000))}`;
      const theirs = await outcome(buildConnector(opts as never) as unknown as Connector, target, probe);
      const ours = await outcome(upstreamConnector(opts) as unknown as Connector, target, probe);
      const what = `seed ${SEED} round ${round}: ${kind} ${JSON.stringify(target)} timeout ${timeout}`;
      // The local port differs from connection to connection; everything else must not.
      assert.deepEqual(ours, theirs, what);
      if (kind === 'lookup-hangs') {
        assert.equal(ours.error?.timeoutClass, true, what);
        assert.equal(pendingLookups, 2, what);
      }
      if (kind === 'ip' || kind === 'name' || kind === 'local' || kind === 'h2c') assert.equal(ours.socket?.echoed, probe, what);
    }
  });

  it('makes no new V8 map per socket, where undici’s connector makes some (--log-maps)', async () => {
    const r = seededRandom(SEED + 1);
    const few = 10 + r.int(10);
    const n = 40 + r.int(60);
    const count = async (which: 'ours' | 'undici', k: number): Promise<number> => optionsMaps(which, echoPort, k);
    const oursMore = (await count('ours', few + n)) - (await count('ours', few));
    const theirsMore = (await count('undici', few + n)) - (await count('undici', few));
    assert.ok(theirsMore >= n, `seed ${SEED}: undici's connector made ${theirsMore} maps for ${n} more sockets (the finding this guards)`);
    assert.ok(oursMore < n / 4, `seed ${SEED}: ${oursMore} more options maps for ${n} more sockets through upstreamConnector`);
  });
});

/**
 * A child process under `--log-maps` opens `n` cleartext sockets one after another through
 * `which` connector to `port`, then exits: the maps V8 made for the properties Node's Socket
 * constructor adds to its options copy.
 */
async function optionsMaps(which: 'ours' | 'undici', port: number, n: number): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-connector-maps-'));
  const log = path.join(dir, 'v8.log');
  const script = `
    import { upstreamConnector } from ${JSON.stringify(path.join(ROOT, 'dist', 'src', 'pool', 'index.js'))};
    import { buildConnector } from ${JSON.stringify(path.join(ROOT, 'dist', 'src', 'http', 'undici.js'))};
    const c = ${which === 'ours' ? 'upstreamConnector({ timeout: 5000 })' : 'buildConnector({ timeout: 5000 })'};
    for (let i = 0; i < ${n}; i++) {
      const s = await new Promise((resolve, reject) => c({ hostname: '127.0.0.1', host: '127.0.0.1:${port}', protocol: 'http:', port: '${port}', localAddress: null }, (err, s) => (err ? reject(err) : resolve(s))));
      s.destroy();
    }
  `;
  try {
    const child = spawn(process.execPath, ['--log-maps', `--logfile=${log}`, '--no-logfile-per-isolate', '--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0, err);
    return fs
      .readFileSync(log, 'latin1')
      .split('\n')
      .filter((l) => /^map,Transition,.*,(allowHalfOpen|emitClose|autoDestroy|decodeStrings)$/.test(l)).length;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
