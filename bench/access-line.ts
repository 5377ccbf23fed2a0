// CPU and garbage per access-log line: records shaped like the reverse 1 KiB duel's, built
// fresh, written through `AccessLog` into a `LineWriter` to /dev/null, ~20 per event-loop turn
// (as the gateway hands them over). `node --min-semi-space-size=16 --max-semi-space-size=16
// dist/bench/access-line.js [ROOT]` (LINES=200000; NOLOG=1 builds the records only, the part
// the gateway pays without the log). ROOT: a built checkout to measure instead of this one.
// Young-generation collections per 10,000 lines at a fixed 16 MiB semi-space tell the bytes
// allocated per line (~16 MiB each); run both builds pinned to one core, several times.
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ReverseRecord } from '../src/record/index.js';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = process.argv[2] ? path.join(path.resolve(process.argv[2]), 'dist') : here;
const { AccessLog, createLogger } = (await import(pathToFileURL(path.join(root, 'src/observe/access-log.js')).href)) as typeof import('../src/observe/access-log.js');
const { LineWriter } = (await import(pathToFileURL(path.join(root, 'src/observe/line-writer.js')).href)) as typeof import('../src/observe/line-writer.js');

const N = Number(process.env.LINES ?? 200_000);
const log = new AccessLog(createLogger({ destination: new LineWriter({ dest: '/dev/null' }) }));
let scavenges = 0;
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === 1) scavenges++;
}).observe({ entryTypes: ['gc'] });

let seq = 0;
const t0 = performance.now();
const port = 19120;
const sink: ReverseRecord[] = [];
/** A record as the gateway builds it: fresh strings where Node's parser makes them fresh (host, version, id). */
function record(): ReverseRecord {
  seq++;
  return {
    face: 'reverse', protocol: 'http', time: Date.now(), requestId: `abc1234-mx7uirma-${seq.toString(36)}`, listener: '127.0.0.1:19120', clientAddress: '127.0.0.1',
    method: 'GET', host: `127.0.0.1:${port}`, path: '/1k', httpVersion: `${1 + (seq & 0)}.1`, route: 'default', cluster: 'default', status: 200,
    error: undefined, reason: undefined, phase: undefined, endedBy: 'complete', detail: undefined,
    attempts: [{ endpoint: '127.0.0.1:18080', phase: 'body', connection: 'reused', status: 200, startMs: 0, connectedMs: 0, firstByteMs: 1, headersMs: 1, endMs: 1 }],
    bytesUp: 0, bytesDown: 1361, durationMs: Math.round(((performance.now() - t0) % 7) * 1000) / 1000 + 0.001, upgrade: false, cache: undefined, recoveredFrom: undefined,
  };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
for (let round = 0; round < 6; round++) {
  scavenges = 0;
  const c0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    if (process.env.NOLOG) {
      sink.push(record());
      if (sink.length > 64) sink.length = 0;
    } else log.write(record());
    if (i % 20 === 19) await turn();
  }
  await turn();
  const c = process.cpuUsage(c0);
  await new Promise((r) => setTimeout(r, 50)); // the gc entries of the round arrive
  console.log(`round ${round}: ${((c.user + c.system) / N).toFixed(3)} µs CPU per line, young-generation collections per 10,000 lines ${((scavenges / N) * 10_000).toFixed(2)}`);
}
