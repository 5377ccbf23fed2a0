// The keep-alive race, counted: spurious 502s (and other failures) of each reverse proxy in
// front of an upstream that closes idle keep-alive connections after a short time without
// advertising it, under GET and POST traffic whose gaps straddle that time.
// Usage: npm run bench:race   (env: RACE_SECONDS (20), RACE_CLIENTS (32), RACE_IDLE_MS (200))
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { startLab } from '../src/lab/index.js';
import { CONTENDERS, Skip, type Running, type StartContext } from './contenders.js';
import { installCleanupHandlers, stopAll, type Proc } from './procs.js';
import { ensureTools } from './system.js';
import { envNumber, log } from './util.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const seconds = envNumber('RACE_SECONDS', 20);
const clients = envNumber('RACE_CLIENTS', 32);
const idleMs = envNumber('RACE_IDLE_MS', 200);

interface Tally {
  requests: number;
  ok: number;
  status: Map<number, number>;
  socketErrors: number;
}

/** Clients with their own keep-alive connections to the proxy, pausing around the upstream's idle limit. */
async function load(port: number): Promise<Tally> {
  const agent = new Agent({ keepAliveTimeout: 60_000, connections: clients });
  const t: Tally = { requests: 0, ok: 0, status: new Map(), socketErrors: 0 };
  const stopAt = Date.now() + seconds * 1000;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; Date.now() < stopAt; i++) {
      await new Promise((r) => setTimeout(r, idleMs * (0.97 + Math.random() * 0.06)));
      const post = (i + w) % 2 === 1;
      t.requests++;
      try {
        const res = await request(`http://127.0.0.1:${port}/echo`, { dispatcher: agent, method: post ? 'POST' : 'GET', body: post ? 'x'.repeat(512) : undefined });
        await res.body.dump();
        t.status.set(res.statusCode, (t.status.get(res.statusCode) ?? 0) + 1);
        if (res.statusCode === 200) t.ok++;
      } catch {
        t.socketErrors++;
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
  await agent.close();
  return t;
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const tools = ensureTools();
  // The upstream: the lab, closing idle connections after idleMs and not saying so.
  const lab = await startLab({ keepAliveTimeoutMs: idleMs, advertiseKeepAlive: false });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-race-'));
  const ctx: StartContext = { dir, root, originPort: lab.port, origin: undefined as unknown as Proc, tools, cpus: undefined };
  const rows: string[] = [];
  try {
    for (const c of CONTENDERS.filter((x) => x.groups.includes('reverse') && x.id !== 'direct' && !x.id.endsWith('-quiet'))) {
      let running: Running;
      try {
        running = await c.start(ctx);
      } catch (err) {
        rows.push(`| ${c.label} | not run: ${err instanceof Skip ? err.message : String(err)} | | | |`);
        continue;
      }
      log(`race: ${c.label} for ${seconds}s with ${clients} clients`);
      const t = await load(running.port);
      await running.proc?.stop();
      const failed = t.requests - t.ok;
      const detail = [...t.status].filter(([s]) => s !== 200).map(([s, n]) => `${n}× ${s}`).concat(t.socketErrors ? [`${t.socketErrors}× socket error`] : []).join(', ');
      rows.push(`| ${c.label} | ${t.requests} | ${failed} | ${((failed / Math.max(1, t.requests)) * 100).toFixed(2)} % | ${detail || '—'} |`);
    }
  } finally {
    await lab.close();
    await stopAll();
  }
  const table = [
    `### The keep-alive race (\`npm run bench:race\`)`,
    '',
    `Upstream: the Gatewise lab closing idle keep-alive connections after ${idleMs} ms without a \`Keep-Alive\` header. ` +
      `${clients} clients, each on its own keep-alive connection, send GET and POST (512 B) alternately with pauses of ` +
      `${Math.round(idleMs * 0.97)}–${Math.round(idleMs * 1.03)} ms, for ${seconds} s per proxy. Each proxy keeps its default keep-alive settings ` +
      `(as configured in the main benchmark). A failed request is anything but a 200.`,
    '',
    '| proxy | requests | failed | failure rate | what failed |',
    '| --- | ---: | ---: | ---: | --- |',
    ...rows,
    '',
  ].join('\n');
  process.stdout.write(table + '\n');
  fs.mkdirSync(path.join(root, 'bench', '.work'), { recursive: true });
  fs.writeFileSync(path.join(root, 'bench', '.work', 'keepalive-race.md'), table);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench:race failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
