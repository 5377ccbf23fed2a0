import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { GatewiseProcess, processOf } from '../helpers/gatewise-process.js';
import { freePorts } from '../helpers/redis.js';
import { MALLORY_PASSWORD } from '../helpers/loopback-forward-runtime.js';
import { between, seededRun } from '../helpers/seeded.js';

// `--workers N`: forward.auth.lockout counts wrong passwords for the whole group, not per
// worker. Before, each worker counted on its own, so a guesser whose connections the kernel
// spread over the workers had N × maxFailures guesses, and a lockout in one worker did not
// refuse the address in another (docs/security.md). Each case uses its own 127.0.0.x sources
// against its own gatewise process group.

const basic = (password: string): string => `Basic ${Buffer.from(`mallory:${password}`).toString('base64')}`;

/** One CONNECT on a fresh connection from `from`: the status of the answer. */
function connectStatus(proxyPort: number, target: string, from: string, password: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const s = connect({ port: proxyPort, host: '127.0.0.1', localAddress: from });
    let got = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`no answer from the proxy within 20 s (from ${from})`))), 20_000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      clearTimeout(timer);
      s.destroy();
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0));
    });
    s.on('error', (err) => (clearTimeout(timer), reject(err)));
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic(password)}\r\n\r\n`);
  });
}

test('--workers N: wrong passwords spread over the workers lock the address out after maxFailures in all, in every worker (seeded over maxFailures and N)', { timeout: 280_000 }, async () => {
  const lab = await startLab();
  const hash = await hashPassword(MALLORY_PASSWORD, { N: 1024, r: 8, p: 1 });
  const target = new URL(lab.url).host;
  try {
    await seededRun('lockout-workers', async (rand) => {
      for (const workers of [2, between(rand, 2, 3)]) {
        const maxFailures = between(rand, 2, 6);
        const [fwdPort] = (await freePorts(1)) as [number];
        const dir = mkdtempSync(join(tmpdir(), 'gatewise-lockout-workers-'));
        let p: GatewiseProcess | undefined;
        try {
          p = await GatewiseProcess.start(
            join(dir, 'gatewise.json'),
            {
              forward: {
                listeners: [{ address: '127.0.0.1', port: fwdPort }],
                auth: { required: true, users: [{ name: 'mallory', password: hash }], lockout: { maxFailures, window: '10m', lockout: '10m' } },
                rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }], connectPorts: ['1-65535'] },
              },
            },
            { workers },
          );
          const proc = p;
          // Per source (bounded: 8): maxFailures - 1 wrong passwords in concurrent pairs on fresh
          // connections (the kernel tends to spread them over the workers), the right one still
          // taken, then the maxFailures-th wrong one: the address is locked out in every worker
          // within a message round trip (bounded wait: 40 tries, 50 ms apart). The case counts
          // once its maxFailures wrong passwords landed on 2 workers or more.
          let spread: string | undefined;
          let guesses = 0;
          for (let s = 0; s < 8 && spread === undefined; s++) {
            const from = `127.0.${40 + workers}.${10 + s + 20 * (maxFailures - 2)}`;
            for (let i = 0; i < maxFailures - 1; i += 2) {
              const batch = Array.from({ length: Math.min(2, maxFailures - 1 - i) }, (_, j) => connectStatus(fwdPort, target, from, `wrong-${s}-${i + j}`));
              for (const st of await Promise.all(batch)) assert.equal(st, 407, `wrong password ${i} from ${from} below maxFailures ${maxFailures}`);
              guesses += batch.length;
            }
            assert.equal(await connectStatus(fwdPort, target, from, MALLORY_PASSWORD), 200, `${from}: maxFailures - 1 wrong passwords lock nothing`);
            assert.equal(await connectStatus(fwdPort, target, from, `wrong-${s}-last`), 407);
            guesses++;
            let first = 0;
            for (let t = 0; t < 40; t++) {
              first = await connectStatus(fwdPort, target, from, MALLORY_PASSWORD);
              if (first === 429) break;
              await new Promise((r) => setTimeout(r, 50));
            }
            const wrongFrom = (): Array<Record<string, unknown>> => proc.access().filter((l) => l.face === 'forward' && l.status === 407 && l.clientAddress === from);
            await proc.waitFor(() => wrongFrom().length >= maxFailures, 10_000, `the access records of ${from}'s wrong passwords`);
            const landed = new Set(wrongFrom().map((l) => processOf(l.requestId))).size;
            assert.equal(first, 429, `after ${maxFailures} wrong passwords from ${from} over ${landed} of ${workers} workers, the right one is refused`);
            if (landed >= 2) spread = from;
          }
          assert.ok(spread !== undefined, `the wrong passwords of some source landed on 2 workers or more (${guesses} sent)`);
          // Every worker refuses it: right passwords on fresh connections, until 2 workers answered 429 (bounded).
          const lockedFrom = (): Array<Record<string, unknown>> => proc.access().filter((l) => l.face === 'forward' && l.clientAddress === spread && l.status === 429);
          for (let t = 0; t < 12; t++) {
            const sts: number[] = await Promise.all([0, 1, 2, 3].map(() => connectStatus(fwdPort, target, spread!, MALLORY_PASSWORD)));
            assert.deepEqual(sts, [429, 429, 429, 429], 'locked out in every worker');
            await proc.waitFor(() => lockedFrom().length >= 4 * (t + 1), 10_000, 'the access records of the refusals');
            if (new Set(lockedFrom().map((l) => processOf(l.requestId))).size >= 2) break;
          }
          assert.ok(new Set(lockedFrom().map((l) => processOf(l.requestId))).size >= 2, 'refusals came from 2 workers or more');
          // Another source is not locked out.
          assert.equal(await connectStatus(fwdPort, target, `127.0.${40 + workers}.250`, MALLORY_PASSWORD), 200);
          // One lockout in the group: logged once (by the worker whose failure tripped it).
          await proc.waitFor(() => proc.lines.some((l) => l.type === 'auth-lockout'), 10_000, 'the lockout log line');
          assert.equal(proc.lines.filter((l) => l.type === 'auth-lockout' && l.address === spread).length, 1, 'one log line for the lockout');
        } finally {
          await p?.stop();
          rmSync(dir, { recursive: true, force: true });
        }
      }
    });
  } finally {
    await lab.close();
  }
});

/** GET `path` from the admin listener on a fresh connection from `from`, with `token`: the status. */
function adminStatus(port: number, from: string, token: string, path = '/config'): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    let got = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error('no answer from the admin listener within 20 s'))), 20_000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      clearTimeout(timer);
      s.destroy();
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0));
    });
    s.on('error', (err) => (clearTimeout(timer), reject(err)));
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
  });
}

test('--workers 2: wrong admin tokens on fresh connections lock the address out after maxFailures in all, whichever workers took them (seeded maxFailures)', { timeout: 120_000 }, async () => {
  await seededRun('admin-lockout-workers', async (rand) => {
    const maxFailures = between(rand, 2, 8);
    const token = 'admin-token-0123456789abcdef';
    const [fwdPort, adminPort] = (await freePorts(2)) as [number, number];
    const dir = mkdtempSync(join(tmpdir(), 'gatewise-lockout-admin-workers-'));
    let p: GatewiseProcess | undefined;
    try {
      p = await GatewiseProcess.start(
        join(dir, 'gatewise.json'),
        {
          admin: { address: '127.0.0.1', port: adminPort, token, lockout: { maxFailures, window: '10m', lockout: '10m' } },
          forward: { listeners: [{ address: '127.0.0.1', port: fwdPort }], auth: { required: false }, rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } },
        },
        { workers: 2 },
      );
      const from = `127.0.47.${10 + maxFailures}`;
      // Wrong tokens in concurrent pairs on fresh connections: the kernel spreads them over the workers.
      for (let i = 0; i < maxFailures; i += 2) {
        const sts = await Promise.all(Array.from({ length: Math.min(2, maxFailures - i) }, (_, j) => adminStatus(adminPort, from, `wrong-${i + j}`)));
        for (const st of sts) assert.equal(st, 401, 'a wrong token below the threshold');
      }
      // Within a round trip, every worker refuses the right token (bounded: 40 tries, 50 ms apart).
      let st = 0;
      for (let t = 0; t < 40 && st !== 429; t++) {
        st = await adminStatus(adminPort, from, token);
        if (st !== 429) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(st, 429, `after ${maxFailures} wrong tokens, the right one is refused`);
      const after: number[] = await Promise.all(Array.from({ length: 8 }, () => adminStatus(adminPort, from, token)));
      assert.deepEqual(after, Array.from({ length: 8 }, () => 429), 'refused by every worker');
      assert.equal(await adminStatus(adminPort, '127.0.47.200', token), 200, 'another address is not locked out');
    } finally {
      await p?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
