import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { accessLines, readUntil, startOrigin, startTestProxy, waitFor, type Origin, type TestProxy } from './helpers.js';

/**
 * A loopback port whose connects hang: a listener that never accepts, its queue filled
 * (Linux then drops further SYNs, so a connect stays pending). Python: Node's own server
 * accepts by itself.
 */
const headDone = (b: Buffer): boolean => b.includes('\r\n\r\n');

async function hangingPort(): Promise<{ port: number; proc: ChildProcess; fillers: Socket[] }> {
  const proc = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(proc.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await new Promise((r) => setTimeout(r, 100));
  return { port, proc, fillers };
}

describe('a CONNECT tunnel while its destination is being dialled (TunnelRun)', () => {
  let p: TestProxy;
  let origin: Origin;
  let hang: Awaited<ReturnType<typeof hangingPort>>;

  before(async () => {
    origin = await startOrigin();
    hang = await hangingPort();
    // One tunnel slot: a slot that is not given back shows as a refusal of the next tunnel.
    p = await startTestProxy({ auth: { required: false }, limits: { maxTunnelsPerUser: 1 }, timeouts: { connect: '10s' } });
  });
  after(async () => {
    await p.close();
    for (const s of hang.fillers) s.destroy();
    hang.proc.kill();
    origin.server.close();
  });

  it('a client that resets while the dial is pending aborts it at once: one record (499, ended by the client), the slot freed', async () => {
    const before = accessLines(p.lines).length;
    const c = connect(p.port, '127.0.0.1');
    c.on('error', () => {});
    await once(c, 'connect');
    c.write(`CONNECT 127.0.0.1:${hang.port} HTTP/1.1\r\nHost: 127.0.0.1:${hang.port}\r\n\r\n`);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    c.resetAndDestroy();
    assert.ok(await waitFor(() => accessLines(p.lines).length > before, 3000), 'a record within 3 s of the reset (the connect timeout is 10 s)');
    assert.ok(Date.now() - t0 < 3000);
    await new Promise((r) => setTimeout(r, 200));
    const recs = accessLines(p.lines).slice(before);
    assert.equal(recs.length, 1, JSON.stringify(recs));
    assert.equal(recs[0]!.status, 499);
    assert.equal(recs[0]!.endedBy, 'client');
    // The slot is back: the next tunnel (to a live origin) is served.
    const d = connect(p.port, '127.0.0.1');
    await once(d, 'connect');
    d.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
    const head = await readUntil(d, headDone);
    assert.match(head.toString('latin1'), /^HTTP\/1\.1 200/);
    d.destroy();
    // Its slot is held until both its sockets are closed: wait for its record.
    assert.ok(await waitFor(() => accessLines(p.lines).length > before + 1, 3000));
  });

  it('a client that resets an open tunnel: recorded once, ended by the client, promptly', async () => {
    const before = accessLines(p.lines).length;
    const c = connect(p.port, '127.0.0.1');
    c.on('error', () => {});
    await once(c, 'connect');
    c.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
    assert.match((await readUntil(c, headDone)).toString('latin1'), /^HTTP\/1\.1 200/);
    const conns = origin.connections;
    c.resetAndDestroy();
    assert.ok(await waitFor(() => accessLines(p.lines).length > before, 3000), 'recorded within 3 s');
    const recs = accessLines(p.lines).slice(before);
    assert.equal(recs.length, 1);
    assert.equal(recs[0]!.endedBy, 'client');
    assert.equal(origin.connections, conns);
  });
});
