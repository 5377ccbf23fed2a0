import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { GatewiseProcess, processOf } from '../helpers/gatewise-process.js';
import { freePorts } from '../helpers/redis.js';
import { MALLORY_PASSWORD } from '../helpers/loopback-forward-runtime.js';
import { between, seededRun } from '../helpers/seeded.js';
import { statusFrom } from '../helpers/raw-http.js';

// `--workers N`: forward.auth.lockout counts wrong passwords for the whole group, not per
// worker. Before, each worker counted on its own, so a guesser whose connections the kernel
// spread over the workers had N × maxFailures guesses, and a lockout in one worker did not
// refuse the address in another (docs/security.md). Each case uses its own 127.0.0.x sources
// against its own gatewise process group.

const basic = (password: string): string => `Basic ${Buffer.from(`mallory:${password}`).toString('base64')}`;

/** One CONNECT on a fresh connection from `from`: the status of the answer. */
function connectStatus(proxyPort: number, target: string, from: string, password: string): Promise<number> {
  return statusFrom(proxyPort, from, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic(password)}\r\n\r\n`);
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

/**
 * The process holding the server side of the loopback connection from `from`:`port` to
 * `serverPort`, among `pids`: the socket's inode from /proc/net/tcp, then whose fd it is. Asked
 * while the client holds the connection open, so the answer is fixed (no wait).
 */
function holderOf(serverPort: number, from: string, port: number, pids: readonly number[]): number | undefined {
  const hex = (ip: string, p: number): string => `${ip.split('.').reverse().map((b) => Number(b).toString(16).padStart(2, '0')).join('')}:${p.toString(16).padStart(4, '0')}`.toUpperCase();
  const local = hex('127.0.0.1', serverPort);
  const remote = hex(from, port);
  const row = readFileSync('/proc/net/tcp', 'latin1').split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[1] === local && f[2] === remote);
  if (row === undefined) return undefined;
  const socket = `socket:[${row[9]}]`;
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === socket) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return undefined;
}

/**
 * GET `path` from the admin listener on a fresh keep-alive connection from `from`, with
 * `token`: the status, and the worker (pid, among `workers`) that answered, looked up while
 * the connection is still open.
 */
function adminAnswer(port: number, from: string, token: string, workers: readonly number[], path = '/config'): Promise<{ status: number; worker: number | undefined }> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: from });
    let got = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`no admin answer within 20 s (from ${from})`))), 20_000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      clearTimeout(timer);
      const worker = holderOf(port, from, s.localPort!, workers);
      s.destroy();
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0), worker });
    });
    s.on('error', (err) => (clearTimeout(timer), reject(err)));
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  });
}

/** The primary's children: its workers' pids. */
const workersOf = (primary: number): number[] =>
  execFileSync('ps', ['-o', 'pid=', '--ppid', String(primary)], { encoding: 'utf8' }).split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);

test('--workers 2: wrong admin tokens on fresh connections that land on both workers lock the address out after maxFailures in all, in both workers (seeded maxFailures)', { timeout: 120_000 }, async () => {
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
      const workers = workersOf(p.pid);
      assert.equal(workers.length, 2, `the primary's workers (${workers.join(', ')})`);
      // Per source (bounded: 8): maxFailures wrong tokens in concurrent pairs on fresh
      // connections (the kernel tends to spread them over the workers), each answer's worker
      // read from the kernel's tables while its connection is open. The case counts once a
      // source's wrong tokens landed on both workers.
      let spread: string | undefined;
      for (let s = 0; s < 8 && spread === undefined; s++) {
        const from = `127.0.47.${10 + s + 20 * (maxFailures - 2)}`;
        const landed = new Set<number>();
        for (let i = 0; i < maxFailures; i += 2) {
          const answers = await Promise.all(Array.from({ length: Math.min(2, maxFailures - i) }, (_, j) => adminAnswer(adminPort, from, `wrong-${s}-${i + j}`, workers)));
          for (const a of answers) {
            assert.equal(a.status, 401, 'a wrong token below the threshold');
            assert.ok(a.worker !== undefined, `the worker that answered ${from} is found`);
            landed.add(a.worker);
          }
        }
        // Within a round trip, the right token is refused (bounded: 40 tries, 50 ms apart).
        let st = 0;
        for (let t = 0; t < 40 && st !== 429; t++) {
          st = (await adminAnswer(adminPort, from, token, workers)).status;
          if (st !== 429) await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal(st, 429, `after ${maxFailures} wrong tokens from ${from} over ${landed.size} of 2 workers, the right one is refused`);
        if (landed.size === 2) spread = from;
      }
      assert.ok(spread !== undefined, 'the wrong tokens of some source landed on both workers');
      // Both workers refuse it: right tokens on fresh connections until both answered 429 (bounded).
      const refusedBy = new Set<number>();
      for (let t = 0; t < 12 && refusedBy.size < 2; t++) {
        const right: Array<{ status: number; worker: number | undefined }> = await Promise.all(Array.from({ length: 4 }, () => adminAnswer(adminPort, spread!, token, workers)));
        assert.deepEqual(right.map((a) => a.status), [429, 429, 429, 429], 'refused by every worker');
        for (const a of right) if (a.worker !== undefined) refusedBy.add(a.worker);
      }
      assert.equal(refusedBy.size, 2, 'refusals came from both workers');
      assert.equal((await adminAnswer(adminPort, '127.0.47.250', token, workers)).status, 200, 'another address is not locked out');
    } finally {
      await p?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The forward section of these cases: mallory (password MALLORY_PASSWORD), the lockout at `maxFailures`, loopback destinations. */
function forwardSection(port: number, hash: string, maxFailures: number): Record<string, unknown> {
  return {
    listeners: [{ address: '127.0.0.1', port }],
    auth: { required: true, users: [{ name: 'mallory', password: hash }], lockout: { maxFailures, window: '10m', lockout: '10m' } },
    rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }], connectPorts: ['1-65535'] },
  };
}

/** The right password from `from`, until it is refused (bounded: 40 tries, 50 ms apart): the last status. */
async function rightUntilRefused(port: number, target: string, from: string): Promise<number> {
  let st = 0;
  for (let t = 0; t < 40 && st !== 429; t++) {
    st = await connectStatus(port, target, from, MALLORY_PASSWORD);
    if (st !== 429) await new Promise((r) => setTimeout(r, 50));
  }
  return st;
}

/** A seeded case with a lab origin and mallory's hash; each seed gets a fresh temp dir for its config. */
async function seededGroupCase(name: string, body: (rand: () => number, c: { hash: string; target: string; lab: string; file: string }) => Promise<void>): Promise<void> {
  const lab = await startLab();
  const hash = await hashPassword(MALLORY_PASSWORD, { N: 1024, r: 8, p: 1 });
  try {
    await seededRun(name, async (rand) => {
      const dir = mkdtempSync(join(tmpdir(), `gatewise-${name}-`));
      try {
        await body(rand, { hash, target: new URL(lab.url).host, lab: lab.url, file: join(dir, 'gatewise.json') });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  } finally {
    await lab.close();
  }
}

test('--workers 2: a lockout the primary holds stands through a reload that turns the limit off and on again (seeded maxFailures)', { timeout: 200_000 }, async () => {
  // Review of session 40: turning the limit off cleared each worker's table but not the
  // primary's; turned on again, the address's wrong passwords reached the primary, which saw
  // its old lockout in force and neither counted them nor told anyone: the guesser had
  // unlimited guesses until that lockout ended (up to maxLockout).
  await seededGroupCase('lockout-workers-reload', async (rand, { hash, target, file }) => {
    const maxFailures = between(rand, 2, 4);
    const [fwdPort] = (await freePorts(1)) as [number];
    const config = (max: number): unknown => ({ forward: forwardSection(fwdPort, hash, max) });
    let p: GatewiseProcess | undefined;
    try {
      p = await GatewiseProcess.start(file, config(maxFailures), { workers: 2 });
      const from = `127.0.48.${10 + maxFailures}`;
      for (let i = 0; i < maxFailures; i++) assert.equal(await connectStatus(fwdPort, target, from, `wrong-${i}`), 407);
      assert.equal(await rightUntilRefused(fwdPort, target, from), 429, 'locked out');
      await p.reload(file, config(0), 2);
      assert.equal(await connectStatus(fwdPort, target, from, MALLORY_PASSWORD), 200, 'the limit turned off: the right password is taken');
      await p.reload(file, config(maxFailures), 2);
      // Wrong passwords again: the first is checked (the workers' tables were cleared), and the
      // lockout the primary still holds reaches every worker again (the next may be refused already).
      assert.equal(await connectStatus(fwdPort, target, from, 'again-0'), 407, 'the first wrong password after the reloads is checked');
      for (let i = 1; i < maxFailures; i++) assert.ok([407, 429].includes(await connectStatus(fwdPort, target, from, `again-${i}`)));
      assert.equal(await rightUntilRefused(fwdPort, target, from), 429, `after ${maxFailures} wrong passwords past the reloads, the right one is refused`);
      const after: number[] = await Promise.all(Array.from({ length: 6 }, () => connectStatus(fwdPort, target, from, MALLORY_PASSWORD)));
      assert.deepEqual(after, Array.from({ length: 6 }, () => 429), 'refused by every worker');
      assert.equal(await connectStatus(fwdPort, target, '127.0.48.250', MALLORY_PASSWORD), 200, 'another address is not locked out');
    } finally {
      await p?.stop();
    }
  });
});

test('--workers 2: a respawned worker counts with the group after the forward proxy was stopped and started by reloads (seeded maxFailures)', { timeout: 240_000 }, async () => {
  // Review of session 40: the group's name was `forward:forward#N`, N counting the proxies a
  // process had started: after a reload stopped the proxy and another started it, the workers
  // counted under `forward#2`, and a worker respawned after a crash under `forward#1`, a count
  // of its own (guesses multiplied, lockouts not shared).
  await seededGroupCase('lockout-workers-respawn', async (rand, { hash, target, lab, file }) => {
    const maxFailures = between(rand, 2, 4);
    const [fwdPort, revPort] = (await freePorts(2)) as [number, number];
    const reverse = { listeners: [{ address: '127.0.0.1', port: revPort }], clusters: { lab: { endpoints: [lab] } }, routes: [{ name: 'all', cluster: 'lab' }] };
    const withForward = { ...reverse, forward: forwardSection(fwdPort, hash, maxFailures) };
    let p: GatewiseProcess | undefined;
    try {
      p = await GatewiseProcess.start(file, withForward, { workers: 2 });
      const proc = p;
      await proc.reload(file, reverse, 2);
      await proc.reload(file, withForward, 2);
      // One worker dies; the primary starts another, which starts its forward proxy once.
      const workers = execFileSync('ps', ['-o', 'pid=', '--ppid', String(proc.pid)], { encoding: 'utf8' }).split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
      assert.ok(workers.length >= 2, `the primary's workers (${workers.join(', ')})`);
      const ready = proc.lines.filter((l) => l.event === 'forward-ready').length;
      process.kill(workers[0]!, 'SIGKILL');
      await proc.waitFor(() => proc.lines.filter((l) => l.event === 'forward-ready').length > ready, 60_000, 'the respawned worker ready');
      // maxFailures wrong passwords from one source that land on both workers lock it out in both.
      let spread: string | undefined;
      for (let s = 0; s < 8 && spread === undefined; s++) {
        const from = `127.0.49.${10 + s + 20 * (maxFailures - 2)}`;
        for (let i = 0; i < maxFailures - 1; i += 2) {
          const batch = Array.from({ length: Math.min(2, maxFailures - 1 - i) }, (_, j) => connectStatus(fwdPort, target, from, `wrong-${s}-${i + j}`));
          for (const st of await Promise.all(batch)) assert.equal(st, 407);
        }
        assert.equal(await connectStatus(fwdPort, target, from, `wrong-${s}-last`), 407);
        const st = await rightUntilRefused(fwdPort, target, from);
        const wrongFrom = (): Array<Record<string, unknown>> => proc.access().filter((l) => l.face === 'forward' && l.status === 407 && l.clientAddress === from);
        await proc.waitFor(() => wrongFrom().length >= maxFailures, 10_000, `the access records of ${from}'s wrong passwords`);
        const landed = new Set(wrongFrom().map((l) => processOf(l.requestId))).size;
        assert.equal(st, 429, `after ${maxFailures} wrong passwords from ${from} over ${landed} workers (one respawned), the right one is refused`);
        if (landed >= 2) spread = from;
      }
      assert.ok(spread !== undefined, 'the wrong passwords of some source landed on both workers');
    } finally {
      await p?.stop();
    }
  });
});
