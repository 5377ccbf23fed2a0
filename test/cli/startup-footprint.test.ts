import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { BIN } from '../helpers/gatewise-process.js';
import { freePorts } from '../helpers/redis.js';
import { seededRun } from '../helpers/seeded.js';
import { YOUNG_GENERATION_FLOOR_FLAG } from '../../src/cli/young-generation.js';

/**
 * What a started `gatewise proxy` holds before any traffic (the idle RSS of docs/benchmarks.md
 * §27), asked of the real process through a probe loaded with `--import`: on each line "report"
 * on its stdin it writes the young generation's size and which large modules are loaded.
 *  - The young generation stays at its first size while starting (src/cli/young-generation.ts)
 *    and grows again under traffic (the hold is released once the listeners are up).
 *  - Neither undici's index (src/http/undici.ts) nor the YAML parser (no config file) is loaded;
 *    a forward proxy loads undici's index with the first request its relay hands to an undici
 *    Client (an absolute-form request), not before; the `socks` package only with a SOCKS5
 *    upstream's UDP association.
 */
const PROBE = `
import v8 from 'node:v8';
import { createRequire } from 'node:module';
import readline from 'node:readline';
const require = createRequire(import.meta.url);
const loaded = (end) => Object.keys(require.cache).some((k) => k.endsWith(end));
readline.createInterface({ input: process.stdin }).on('line', () => {
  const young = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  process.stderr.write('probe ' + JSON.stringify({
    youngMiB: young.space_size / 1048576,
    undiciIndex: loaded('/node_modules/undici/index.js'),
    undiciErrors: loaded('/node_modules/undici/lib/core/errors.js'),
    yaml: loaded('/node_modules/yaml/dist/index.js'),
    socks: loaded('/node_modules/socks/build/index.js'),
  }) + '\\n');
});
`;

interface Report {
  youngMiB: number;
  undiciIndex: boolean;
  undiciErrors: boolean;
  yaml: boolean;
  socks: boolean;
}

interface Started {
  /** Asks the probe. */
  report(): Promise<Report>;
  /** One request through the process (resolves when its answer has ended). */
  get(): Promise<void>;
  stop(): void;
}

/** A gatewise command with the probe, once it printed `ready`; requests through it go to a 1 KiB upstream. */
async function startWithProbe(args: (port: number, upstream: number) => string[], ready: RegExp, requestPath: (upstream: number) => string, nodeFlags: string[] = []): Promise<Started> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatewise-footprint-'));
  const probe = path.join(dir, 'probe.mjs');
  writeFileSync(probe, PROBE);
  const upstream = http.createServer((_req, res) => res.end('x'.repeat(1024)));
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const up = (upstream.address() as AddressInfo).port;
  const [port] = await freePorts(1);
  // The operator's own semi-space flags turn the hold off: none here.
  const env = { ...process.env, NODE_OPTIONS: '' };
  const child = spawn(process.execPath, [...nodeFlags, '--import', probe, BIN, ...args(port!, up)], { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  const waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  child.stdout.on('data', (c: Buffer) => ((out += c.toString()), wake()));
  child.stderr.on('data', (c: Buffer) => ((out += c.toString()), wake()));
  child.on('exit', wake);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const stop = (): void => {
    agent.destroy();
    child.kill('SIGKILL');
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const until = async (cond: () => boolean, what: string): Promise<void> => {
    const end = Date.now() + 60_000;
    while (!cond()) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`gatewise exited while waiting for ${what}: ${out}`);
      if (Date.now() > end) throw new Error(`not within 60 s: ${what}; output: ${out}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  let asked = 0;
  const reports = (): string[] => out.match(/^probe (.*)$/gm) ?? [];
  try {
    await until(() => ready.test(out), `${ready}`);
  } catch (err) {
    stop();
    throw err;
  }
  return {
    async report() {
      const want = ++asked;
      child.stdin.write('report\n');
      await until(() => reports().length >= want, 'the probe');
      return JSON.parse(reports()[want - 1]!.slice('probe '.length)) as Report;
    },
    get: () =>
      new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: requestPath(up), agent }, (res) => res.resume().on('end', resolve).on('error', reject)).on('error', reject);
      }),
    stop,
  };
}

/**
 * Traffic until the young generation grew past `from` MiB (the hold was released). Bounded:
 * at most 40 rounds of 500 requests; it grew within the first rounds when this was written.
 */
async function growsUnderTraffic(g: Started, from: number): Promise<void> {
  for (let round = 0; round < 40; round++) {
    for (let i = 0; i < 500; i += 8) await Promise.all(Array.from({ length: 8 }, g.get));
    if ((await g.report()).youngMiB > from) return;
  }
  assert.fail(`young generation still ${from} MiB after 20,000 requests: the hold was not released`);
}

test('a started gatewise proxy: young generation at its first size, undici index and YAML not loaded; the young generation grows under traffic', { timeout: 120_000 }, async () => {
  const g = await startWithProbe((port, up) => ['proxy', '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${up}`, '--no-access-log'], /"event":"ready"/, () => '/');
  try {
    const started = await g.report();
    assert.equal(started.undiciErrors, true, 'the native client throws undici error classes: loaded by path');
    assert.equal(started.undiciIndex, false, 'undici index loaded by a gateway on the native client');
    assert.equal(started.yaml, false, 'the YAML parser loaded without a config file');
    // V8's first size is 1 MiB a semi-space (2 with both); left to grow while starting it reached 16.
    assert.ok(started.youngMiB <= 4, `young generation ${started.youngMiB} MiB right after start`);
    await growsUnderTraffic(g, started.youngMiB);
  } finally {
    g.stop();
  }
});

test('a started gatewise forward: young generation at its first size, undici index and YAML not loaded until a request needs them; the young generation grows under traffic', { timeout: 120_000 }, async () => {
  const g = await startWithProbe(
    (port) => ['forward', '--listen', `127.0.0.1:${port}`, '--no-auth', '--allow-private', '--no-access-log'],
    /gatewise forward: listening on/,
    (up) => `http://127.0.0.1:${up}/`,
  );
  try {
    const started = await g.report();
    assert.equal(started.undiciIndex, false, 'undici index loaded by a forward proxy before any request (a tunnel never needs it)');
    assert.equal(started.yaml, false, 'the YAML parser loaded without a config or users file');
    assert.equal(started.socks, false, 'the socks package (UDP through an upstream SOCKS5 proxy) loaded with direct exits only');
    assert.ok(started.youngMiB <= 4, `young generation ${started.youngMiB} MiB right after start`);
    await growsUnderTraffic(g, started.youngMiB);
    assert.equal((await g.report()).undiciIndex, true, 'the absolute-form requests went through undici Clients, loaded on demand');
  } finally {
    g.stop();
  }
});

test('given a floor under the young generation (the shipped launchers\' flag, and a seeded other size), the process has it from the start and keeps it under traffic (the hold leaves an operator flag alone)', { timeout: 240_000 }, async () => {
  const shipped = Number(YOUNG_GENERATION_FLOOR_FLAG.split('=')[1]);
  await seededRun('young-generation floor', async (rand) => {
    // The shipped size, and one more of V8's semi-space sizes above its 1 MiB default.
    const others = [2, 8, 16].filter((m) => m !== shipped);
    const other = others[Math.floor(rand() * others.length)]!;
    for (const mib of [shipped, other]) {
      const g = await startWithProbe((port, up) => ['proxy', '--listen', `127.0.0.1:${port}`, '--to', `http://127.0.0.1:${up}`, '--no-access-log'], /"event":"ready"/, () => '/', [`--min-semi-space-size=${mib}`]);
      try {
        // Both semi-spaces: 2 × the floor.
        const started = await g.report();
        assert.ok(started.youngMiB >= 2 * mib, `young generation ${started.youngMiB} MiB right after start, with a ${mib} MiB floor`);
        for (let i = 0; i < 2000; i += 8) await Promise.all(Array.from({ length: 8 }, g.get));
        const after = await g.report();
        assert.ok(after.youngMiB >= 2 * mib, `young generation ${after.youngMiB} MiB after 2,000 requests, with a ${mib} MiB floor`);
      } finally {
        g.stop();
      }
    }
  });
});
