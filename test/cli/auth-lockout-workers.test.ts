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
          // A source whose wrong passwords the kernel handed to more than one worker (bounded: 8
          // sources; each sends its maxFailures - 1 wrong passwords in concurrent pairs, which
          // the kernel tends to spread).
          let spread: string | undefined;
          let guesses = 0;
          for (let s = 0; s < 8 && spread === undefined; s++) {
            const from = `127.0.${40 + workers}.${10 + s + 20 * (maxFailures - 2)}`;
            for (let i = 0; i < maxFailures - 1; i += 2) {
              const batch = Array.from({ length: Math.min(2, maxFailures - 1 - i) }, (_, j) => connectStatus(fwdPort, target, from, `wrong-${s}-${i + j}`));
              for (const st of await Promise.all(batch)) assert.equal(st, 407, `wrong password ${i} from ${from} below maxFailures ${maxFailures}`);
              guesses += batch.length;
            }
            const wrongFrom = (): Array<Record<string, unknown>> => proc.access().filter((l) => l.face === 'forward' && l.status === 407 && l.clientAddress === from);
            await proc.waitFor(() => wrongFrom().length >= maxFailures - 1, 10_000, `the access records of ${from}'s wrong passwords`);
            if (new Set(wrongFrom().map((l) => processOf(l.requestId))).size >= 2) spread = from;
          }
          assert.ok(spread !== undefined, `the wrong passwords of some source landed on 2 workers or more (${guesses} sent)`);
          // The right password still passes below maxFailures.
          assert.equal(await connectStatus(fwdPort, target, spread, MALLORY_PASSWORD), 200, 'maxFailures - 1 wrong passwords lock nothing');
          // The maxFailures-th wrong one in all: the address is locked out in every worker
          // within a message round trip (bounded wait: 40 tries, 50 ms apart).
          assert.equal(await connectStatus(fwdPort, target, spread, 'wrong-last'), 407);
          let first = 0;
          for (let t = 0; t < 40; t++) {
            first = await connectStatus(fwdPort, target, spread, MALLORY_PASSWORD);
            if (first === 429) break;
            await new Promise((r) => setTimeout(r, 50));
          }
          assert.equal(first, 429, `after ${maxFailures} wrong passwords spread over ${workers} workers, the right one is refused`);
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
