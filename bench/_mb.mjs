import pino from 'pino';
import fs from 'node:fs';
const line = '{"level":"info","time":"2026-12-03T06:35:43.566Z","component":"gateway","type":"access","face":"reverse","protocol":"http","requestId":"145qmwq-mx76kwfn-4","clientAddress":"127.0.0.1","method":"GET","listener":"127.0.0.1:19000","host":"127.0.0.1:19000","path":"/","httpVersion":"1.1","route":"route-0","cluster":"default","status":200,"endedBy":"complete","bytesUp":40,"bytesDown":1200,"attempts":[{"endpoint":"http://127.0.0.1:19001","phase":"complete","connection":"reused","status":200,"startMs":0.1,"headersMs":0.5,"endMs":0.6}],"durationMs":0.712,"msg":"request"}\n';
const N = 300000;
const fd = fs.openSync('/dev/null', 'w');
async function sb() {
  const d = pino.destination({ dest: fd, sync: false, minLength: 16384, maxWrite: 65536, periodicFlush: 1000 });
  await new Promise(r => d.on('ready', r));
  const t = process.cpuUsage(); const t0 = performance.now();
  for (let i = 0; i < N; i++) { d.write(line + ''); if (i % 1000 === 0) await new Promise(r => setImmediate(r)); }
  await new Promise(r => setTimeout(r, 50));
  const c = process.cpuUsage(t);
  console.log('sonic-boom', ((c.user + c.system) / N).toFixed(3), 'µs cpu/line');
  d.end();
}
async function buf() {
  let b = Buffer.allocUnsafe(65536); let off = 0; let pending = 0;
  const flush = () => { const out = b.subarray(0, off); b = Buffer.allocUnsafe(65536); off = 0; pending++; fs.write(fd, out, () => pending--); };
  const t = process.cpuUsage();
  for (let i = 0; i < N; i++) { if (off + line.length * 3 > b.length) flush(); off += b.write(line, off); if (off >= 16384) flush(); if (i % 1000 === 0) await new Promise(r => setImmediate(r)); }
  flush(); while (pending) await new Promise(r => setImmediate(r));
  const c = process.cpuUsage(t);
  console.log('buffer', ((c.user + c.system) / N).toFixed(3), 'µs cpu/line');
}
async function latin() {
  let b = Buffer.allocUnsafe(65536); let off = 0; let pending = 0;
  const flush = () => { const out = b.subarray(0, off); b = Buffer.allocUnsafe(65536); off = 0; pending++; fs.write(fd, out, () => pending--); };
  const t = process.cpuUsage();
  for (let i = 0; i < N; i++) { if (off + line.length * 3 > b.length) flush(); off += b.latin1Write(line, off); if (off >= 16384) flush(); if (i % 1000 === 0) await new Promise(r => setImmediate(r)); }
  flush(); while (pending) await new Promise(r => setImmediate(r));
  const c = process.cpuUsage(t);
  console.log('latin1', ((c.user + c.system) / N).toFixed(3), 'µs cpu/line');
}
await sb(); await buf(); await latin(); await sb(); await buf();
