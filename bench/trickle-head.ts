// `npm run bench:trickle`: what a request head trickled a few bytes per write costs each server
// front (issue 17; adversarial review of session 26). A front that re-reads the whole partial
// line on each read (or copies it again) spends time quadratic in the line's length, up to
// maxHeaderSize: a cheap way to load a gateway. Both fronts run at once on CPU 1 (`front: node`
// and `front: net`, the same config otherwise); clients on CPU 0 open TRICKLE_CLIENTS connections
// to each and send one header line TRICKLE_STEP bytes per write, one write per ms, until the line
// has TRICKLE_LINE bytes or TRICKLE_SECONDS have passed. Reported: each front's CPU per read.
//
// Environment: TRICKLE_CLIENTS (40), TRICKLE_STEP (4), TRICKLE_LINE (15000), TRICKLE_SECONDS (8).
// Loopback only; every loop bounded by its count and its time.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { reverseFrontConfig } from './configs.js';
import { installCleanupHandlers, runMain, startProcess, stopAll } from './procs.js';
import { treeCpuSeconds } from './rss.js';
import { envNumber, freePort, log, sleep, waitForPort } from './util.js';

const CLIENTS = envNumber('TRICKLE_CLIENTS', 40);
const STEP = envNumber('TRICKLE_STEP', 4);
const LINE = envNumber('TRICKLE_LINE', 15000);
const SECONDS = envNumber('TRICKLE_SECONDS', 8);

/** One client: a head whose one field line grows by STEP bytes per write; returns the writes made. */
async function trickle(port: number, until: number): Promise<number> {
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  s.on('error', () => {});
  s.on('data', () => {});
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  s.write('GET / HTTP/1.1\r\nHost: trickle.test\r\nX-Long: ');
  const piece = 'a'.repeat(STEP);
  let writes = 0;
  for (let sent = 0; sent < LINE && Date.now() < until && !s.destroyed; sent += STEP) {
    s.write(piece);
    writes++;
    await sleep(1);
  }
  s.destroy();
  return writes;
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-trickle-'));
  try {
    // The heads never end, so no request reaches the origin: a port with nothing on it will do.
    const origin = await freePort();
    const fronts = [];
    for (const front of ['node', 'net'] as const) {
      const port = await freePort();
      const file = path.join(dir, `${front}.yaml`);
      fs.writeFileSync(file, reverseFrontConfig(port, origin, front, true));
      const proc = startProcess(`gatewise-${front}`, process.execPath, [path.resolve('bin/gatewise.js'), 'run', '-c', file], { cpus: '1' });
      if (!(await waitForPort(port, 15_000))) throw new Error(`gatewise (front ${front}) did not start`);
      fronts.push({ front, port, proc });
    }
    await sleep(500);
    const cpu0 = fronts.map((f) => treeCpuSeconds(f.proc.pid));
    const until = Date.now() + SECONDS * 1000;
    const writes = await Promise.all(fronts.map(async (f) => (await Promise.all(Array.from({ length: CLIENTS }, () => trickle(f.port, until)))).reduce((a, b) => a + b, 0)));
    const rows = fronts.map((f, i) => {
      const cpu = treeCpuSeconds(f.proc.pid) - cpu0[i]!;
      return { front: f.front, writes: writes[i]!, cpuS: cpu, usPerRead: (cpu * 1e6) / writes[i]! };
    });
    for (const r of rows) log(`front ${r.front}: ${r.writes} writes of ${STEP} B, ${r.cpuS.toFixed(2)} s CPU, ${r.usPerRead.toFixed(1)} µs per write`);
    log(`net / node CPU per write: ${(rows[1]!.usPerRead / rows[0]!.usPerRead).toFixed(2)}× (${CLIENTS} clients per front, lines up to ${LINE} B)`);
  } finally {
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

runMain('trickle-head', main);
