import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { until } from '../helpers/until.js';
import { GUARD_MS, LATE_MS } from '../helpers/time-bounds.js';
import { accessLines, readUntil, startOrigin, startTestProxy, waitFor, type Origin, type TestProxy } from './helpers.js';

/**
 * A loopback port whose connects hang: a listener that never accepts, its queue filled
 * (Linux then drops further SYNs, so a connect stays pending). Python: Node's own server
 * accepts by itself.
 */
const headDone = (b: Buffer): boolean => b.includes('\r\n\r\n');

/**
 * Loopback TCP sockets whose connect is pending (SYN_SENT) towards `port`, from the kernel's
 * table: the event a test cannot be told about (the proxy's dial issued, a filler's SYN
 * dropped). IPv4 only (the dials here are to 127.0.0.1).
 */
function synSentTo(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'latin1')
    .split('\n')
    .slice(1)
    .filter((l) => {
      const f = l.trim().split(/\s+/);
      return f[2]?.endsWith(hex) === true && f[3] === '02';
    }).length;
}

async function hangingPort(): Promise<{ port: number; proc: ChildProcess; fillers: Socket[]; pending: number }> {
  const proc = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(proc.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  // The queue is full once a filler's SYN goes unanswered (it was a 100 ms sleep): from then
  // on every connect to the port stays pending.
  assert.ok(await until(() => synSentTo(port) >= 1, GUARD_MS), `a filler's connect to ${port} left pending (the listener's queue full)`);
  return { port, proc, fillers, pending: synSentTo(port) };
}

describe('a CONNECT tunnel while its destination is being dialled (TunnelRun)', () => {
  let p: TestProxy;
  let origin: Origin;
  let hang: Awaited<ReturnType<typeof hangingPort>>;

  before(async () => {
    origin = await startOrigin();
    hang = await hangingPort();
    // One tunnel slot: a slot that is not given back shows as a refusal of the next tunnel.
    p = await startTestProxy({ auth: { required: false }, limits: { maxTunnelsPerUser: 1 }, timeouts: { connect: '60s' } });
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
    // The proxy's dial is pending when one more connect to the port waits for its SYN's
    // answer (it was a 300 ms sleep, which a loaded machine could outrun or not reach).
    const pending = synSentTo(hang.port);
    assert.ok(pending <= hang.pending, `nothing dials ${hang.port} before the CONNECT (${pending} pending, ${hang.pending} fillers)`);
    assert.ok(await until(() => synSentTo(hang.port) > hang.pending, GUARD_MS), `the proxy's dial to ${hang.port} is pending`);
    const t0 = performance.now();
    c.resetAndDestroy();
    // The connect timeout (60 s) is more than LATE_MS past the reset: a record by then is the reset's.
    assert.ok(await waitFor(() => accessLines(p.lines).length > before), 'a record of the reset tunnel');
    assert.ok(performance.now() - t0 <= LATE_MS, `recorded ${Math.round(performance.now() - t0)} ms after the reset, not at once (the connect timeout is 60 s)`);
    const recs = accessLines(p.lines).slice(before);
    assert.equal(recs.length, 1, JSON.stringify(recs));
    assert.equal(recs[0]!.status, 499);
    assert.equal(recs[0]!.endedBy, 'client');
    // The slot is back: the next tunnel (to a live origin) is served.
    const d = connect(p.port, '127.0.0.1');
    await once(d, 'connect');
    d.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
    const head = await readUntil(d, headDone, undefined, 'the live tunnel\'s 200');
    assert.match(head.toString('latin1'), /^HTTP\/1\.1 200/);
    d.destroy();
    // Its slot is held until both its sockets are closed: wait for its record. The reset
    // tunnel has still one record, a round trip and a tunnel after its first (it was a 200 ms
    // sleep that kept room for a wrong second one).
    assert.ok(await waitFor(() => accessLines(p.lines).length > before + 1), 'the live tunnel\'s record');
    const reset = accessLines(p.lines).slice(before).filter((l) => String(l.destination ?? '').endsWith(`:${hang.port}`));
    assert.equal(reset.length, 1, `the reset tunnel recorded once: ${JSON.stringify(accessLines(p.lines).slice(before))}`);
  });

  it('a client that resets an open tunnel: recorded once, ended by the client, promptly', async () => {
    const before = accessLines(p.lines).length;
    const c = connect(p.port, '127.0.0.1');
    c.on('error', () => {});
    await once(c, 'connect');
    c.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
    assert.match((await readUntil(c, headDone, undefined, 'the tunnel\'s 200')).toString('latin1'), /^HTTP\/1\.1 200/);
    const conns = origin.connections;
    c.resetAndDestroy();
    assert.ok(await waitFor(() => accessLines(p.lines).length > before), 'the reset tunnel\'s record');
    const recs = accessLines(p.lines).slice(before);
    assert.equal(recs.length, 1);
    assert.equal(recs[0]!.endedBy, 'client');
    assert.equal(origin.connections, conns);
  });
});
