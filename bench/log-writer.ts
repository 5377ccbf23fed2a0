// CPU per access-log line: pino's destination (sonic-boom) against the LineWriter, both
// batched (16 KiB) to /dev/null. `node dist/bench/log-writer.js` (LINES=300000).
import fs from 'node:fs';
import pino from 'pino';
import { LineWriter } from '../src/observe/line-writer.js';

const LINE =
  '{"level":"info","time":"2026-12-03T06:35:43.566Z","component":"gateway","type":"access","face":"reverse","protocol":"http","requestId":"145qmwq-mx76kwfn-4",' +
  '"clientAddress":"127.0.0.1","method":"GET","listener":"127.0.0.1:19000","host":"127.0.0.1:19000","path":"/","httpVersion":"1.1","route":"route-0","cluster":"default",' +
  '"status":200,"endedBy":"complete","bytesUp":40,"bytesDown":1200,"attempts":[{"endpoint":"http://127.0.0.1:19001","phase":"complete","connection":"reused","status":200,' +
  '"startMs":0.1,"headersMs":0.5,"endMs":0.6}],"durationMs":0.712,"msg":"request"}\n';
const N = Number(process.env.LINES ?? 300_000);

async function measure(name: string, write: (s: string) => void, settle: () => Promise<void>): Promise<void> {
  const t = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    write(LINE);
    // Let the writes complete as they would between requests.
    if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
  }
  await settle();
  const c = process.cpuUsage(t);
  console.log(`${name.padEnd(12)} ${((c.user + c.system) / N).toFixed(2)} µs CPU per line`);
}

const fd = fs.openSync('/dev/null', 'w');
for (let round = 0; round < 2; round++) {
  const sb = pino.destination({ dest: fd, sync: false, minLength: 16384, maxWrite: 65536, periodicFlush: 1000 });
  await new Promise((r) => sb.once('ready', r));
  await measure('sonic-boom', (s) => sb.write(s), () => new Promise<void>((r) => sb.flush(() => r())));
  const lw = new LineWriter({ dest: fd });
  await measure('LineWriter', (s) => lw.write(s), () => new Promise<void>((r) => lw.flush(() => r())));
  lw.end();
}
process.exit(0);
