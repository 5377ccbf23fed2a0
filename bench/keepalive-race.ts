// The keep-alive race, counted by family of upstream: spurious failures (502s and socket
// errors) of each reverse proxy in front of upstreams that close reused connections when a
// proxy cannot know it, under GET and POST traffic with random gaps around the closes.
// Families: a fixed idle timeout, idle closes uniform in 0–N ms (N above and below 50 ms),
// idle closes far shorter than an advertised Keep-Alive: timeout=, and a limit of requests
// per connection (nginx keepalive_requests) with and without Connection: close on the last.
// Usage: npm run bench:race   (env: RACE_SECONDS (10) per family and proxy, RACE_CLIENTS (32),
//   RACE_SEED (random; printed), RACE_PROXIES (gatewise,nginx,haproxy,http-proxy,fastify),
//   RACE_FAMILIES (all; ids below), RACE_DOCS (docs/benchmarks-race.md))
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { startLab, type LabOptions } from '../src/lab/index.js';
import { prng } from '../test/helpers/seeded.js';
import { CONTENDERS, Skip, type Running, type StartContext } from './contenders.js';
import { installCleanupHandlers, stopAll, type Proc } from './procs.js';
import { ensureTools } from './system.js';
import { envList, envNumber, log } from './util.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const seconds = envNumber('RACE_SECONDS', 10);
const clients = envNumber('RACE_CLIENTS', 32);
const seed = envNumber('RACE_SEED', Math.floor(Math.random() * 2 ** 31));
const proxies = envList('RACE_PROXIES') ?? ['gatewise', 'nginx', 'haproxy', 'http-proxy', 'fastify'];

interface Family {
  id: string;
  /** Column heading. */
  title: string;
  /** What the upstream does, for the method paragraph. */
  says: string;
  lab: LabOptions;
  /** Each client waits a uniform random time in [0, gapMaxMs] before each request. */
  gapMaxMs: number;
}

const FAMILIES: Family[] = [
  { id: 'fixed-200', title: 'idle close at 200 ms', says: 'closes idle connections after exactly 200 ms, no `Keep-Alive` header; gaps 0–300 ms', lab: { keepAliveTimeoutMs: 200, advertiseKeepAlive: false }, gapMaxMs: 300 },
  { id: 'random-200', title: 'idle close 0–200 ms', says: 'closes each idle connection after a uniform random 0–200 ms, no `Keep-Alive` header; gaps 0–300 ms', lab: { idleCloseMs: [0, 200], advertiseKeepAlive: false }, gapMaxMs: 300 },
  { id: 'random-30', title: 'idle close 0–30 ms', says: 'closes each idle connection after a uniform random 0–30 ms, no `Keep-Alive` header; gaps 0–45 ms', lab: { idleCloseMs: [0, 30], advertiseKeepAlive: false }, gapMaxMs: 45 },
  { id: 'under-hint', title: '50–150 ms under `timeout=5`', says: 'says `Keep-Alive: timeout=5` and closes idle connections after a uniform random 50–150 ms; gaps 0–225 ms', lab: { idleCloseMs: [50, 150], advertiseKeepAlive: 5 }, gapMaxMs: 225 },
  { id: 'after-5', title: 'close after 5 requests', says: 'closes each connection right after its 5th response, without `Connection: close`; gaps 0–20 ms', lab: { maxRequestsPerConnection: 5, closeHeaderOnLast: false }, gapMaxMs: 20 },
  { id: 'after-5-close', title: 'after 5, with `Connection: close`', says: 'says `Connection: close` on each connection\'s 5th response and closes it (nginx `keepalive_requests`); gaps 0–20 ms', lab: { maxRequestsPerConnection: 5, closeHeaderOnLast: true }, gapMaxMs: 20 },
];

interface Tally {
  get: number;
  post: number;
  getFailed: number;
  postFailed: number;
  /** What failed: status or socket error → count. */
  what: Map<string, number>;
}

/** Clients with their own keep-alive connections to the proxy; GET or POST (512 B) at random, random gaps. */
async function load(port: number, gapMaxMs: number, runSeed: number): Promise<Tally> {
  const agent = new Agent({ keepAliveTimeout: 60_000, connections: clients });
  const t: Tally = { get: 0, post: 0, getFailed: 0, postFailed: 0, what: new Map() };
  const stopAt = Date.now() + seconds * 1000;
  const failed = (post: boolean, what: string): void => {
    if (post) t.postFailed++;
    else t.getFailed++;
    const key = `${post ? 'POST' : 'GET'} ${what}`;
    t.what.set(key, (t.what.get(key) ?? 0) + 1);
  };
  const worker = async (w: number): Promise<void> => {
    const rand = prng(runSeed + 7919 * (w + 1));
    while (Date.now() < stopAt) {
      const gap = rand() * gapMaxMs;
      if (gap >= 1) await new Promise((r) => setTimeout(r, gap));
      const post = rand() < 0.5;
      if (post) t.post++;
      else t.get++;
      try {
        const res = await request(`http://127.0.0.1:${port}/echo`, { dispatcher: agent, method: post ? 'POST' : 'GET', body: post ? 'x'.repeat(512) : undefined });
        await res.body.dump();
        if (res.statusCode !== 200) failed(post, String(res.statusCode));
      } catch (err) {
        failed(post, `socket error ${(err as NodeJS.ErrnoException).code ?? ''}`.trim());
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
  await agent.close();
  return t;
}

function cell(t: Tally): string {
  return `${t.getFailed} / ${t.postFailed} <sub>of ${t.get + t.post}</sub>`;
}

async function main(): Promise<void> {
  installCleanupHandlers();
  const tools = ensureTools();
  const want = envList('RACE_FAMILIES');
  const families = want ? FAMILIES.filter((f) => want.includes(f.id)) : FAMILIES;
  const contenders = proxies.map((id) => {
    const c = CONTENDERS.find((x) => x.id === id);
    if (!c) throw new Error(`RACE_PROXIES: no contender ${id}`);
    return c;
  });
  log(`race: RACE_SEED=${seed}, ${families.length} families × ${contenders.length} proxies × ${seconds} s, ${clients} clients`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatewise-race-'));
  const cells = new Map<string, Map<string, string>>();
  const notes: string[] = [];
  try {
    for (const [fi, f] of families.entries()) {
      for (const c of contenders) {
        // A fresh upstream per run, so no proxy inherits another's connections or the lab's state.
        const lab = await startLab({ ...f.lab, random: prng(seed ^ (fi + 1)) });
        const ctx: StartContext = { dir, root, originPort: lab.port, origin: undefined as unknown as Proc, tools, cpus: undefined };
        const row = cells.get(c.label) ?? new Map<string, string>();
        cells.set(c.label, row);
        let running: Running;
        try {
          running = await c.start(ctx);
        } catch (err) {
          row.set(f.id, err instanceof Skip ? `not run: ${err.message}` : `not run: ${String(err)}`);
          await lab.close();
          continue;
        }
        log(`race: ${f.id} × ${c.label}`);
        const t = await load(running.port, f.gapMaxMs, seed + fi);
        await running.proc?.stop();
        await lab.close();
        row.set(f.id, cell(t));
        if (t.what.size > 0) notes.push(`${c.label}, ${f.title}: ${[...t.what].map(([w, n]) => `${n}× ${w}`).join(', ')}`);
      }
    }
  } finally {
    await stopAll();
  }
  const table = [
    `### The keep-alive race (\`npm run bench:race\`)`,
    '',
    `Run on ${new Date().toISOString().slice(0, 10)} with RACE_SEED=${seed}. ${clients} clients, each on its own keep-alive connections to the proxy, send GET or POST (512 B) at random, ` +
      `each after a uniform random gap, for ${seconds} s per proxy and family; a new upstream (the Gatewise lab) and a new proxy process for each run. ` +
      'Each proxy keeps the configuration of the main benchmark (HAProxy: `http-reuse always`; nginx: `keepalive 256`). A failed request is anything but a 200. The upstream families:',
    '',
    ...families.map((f) => `- **${f.title}**: ${f.says}.`),
    '',
    'Cells: failed GET / failed POST, of all requests sent.',
    '',
    `| proxy | ${families.map((f) => f.title).join(' | ')} |`,
    `| --- | ${families.map(() => '---:').join(' | ')} |`,
    ...[...cells].map(([label, row]) => `| ${label} | ${families.map((f) => row.get(f.id) ?? '').join(' | ')} |`),
    '',
    ...(notes.length ? ['What failed:', '', ...notes.map((n) => `- ${n}`), ''] : []),
  ].join('\n');
  process.stdout.write(table + '\n');
  fs.mkdirSync(path.join(root, 'bench', '.work'), { recursive: true });
  fs.writeFileSync(path.join(root, 'bench', '.work', 'keepalive-race.md'), table);
  const doc = [
    '# The keep-alive race',
    '',
    'Produced by `npm run bench:race` (bench/keepalive-race.ts); how Gatewise avoids the race and what counts as proof that a request was never processed: [architecture.md](architecture.md#the-keep-alive-race). `npm run bench` does not run it.',
    '',
    table.replace(/^### .*\n\n/, ''),
  ].join('\n');
  const out = process.env.RACE_DOCS ?? path.join(root, 'docs', 'benchmarks-race.md');
  fs.writeFileSync(out, doc);
  log(`wrote ${path.relative(root, out)}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench:race failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
