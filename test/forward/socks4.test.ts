import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PASSWORD, USER, accessLines, dial, readUntil, refusedPort, run, startOrigin, startTestProxy, tableResolver, waitFor, type Origin, type TestProxy } from './helpers.js';

function socks4Request(port: number, ip: number[], userId: string, host?: string, cmd = 1): Buffer {
  const head = Buffer.alloc(8);
  head[0] = 4;
  head[1] = cmd;
  head.writeUInt16BE(port, 2);
  ip.forEach((x, i) => (head[4 + i] = x));
  const parts = [head, Buffer.from(userId), Buffer.from([0])];
  if (host !== undefined) parts.push(Buffer.from(host), Buffer.from([0]));
  return Buffer.concat(parts);
}

async function exchange(port: number, req: Buffer, then?: string): Promise<Buffer> {
  const s = await dial(port);
  s.on('error', () => {});
  s.write(req);
  const first = await readUntil(s, (b) => b.length >= 8);
  if (then !== undefined && first[1] === 0x5a) {
    s.write(then);
    const rest = await readUntil(s, () => false, 2000);
    s.destroy();
    return Buffer.concat([first, rest]);
  }
  s.destroy();
  return first;
}

describe('SOCKS4 and SOCKS4a CONNECT', () => {
  let origin: Origin;
  let open: TestProxy;
  let authed: TestProxy;

  before(async () => {
    origin = await startOrigin();
    const resolver = tableResolver({ 'origin.test': ['127.0.0.1'] });
    open = await startTestProxy({ auth: { required: false } }, { resolver });
    authed = await startTestProxy({}, { resolver });
  });
  after(async () => {
    await open.close();
    await authed.close();
    await origin.close();
  });

  it('carries curl --socks4 and --socks4a when auth is off (and warns at start)', async () => {
    assert.ok(open.lines.some((l) => l.level === 'warn' && /WITHOUT authentication/.test(String(l.msg))));
    const a = await run('curl', ['-sS', '--socks4', `127.0.0.1:${open.port}`, `http://127.0.0.1:${origin.port}/s4`]);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /"\/s4"/);
    const b = await run('curl', ['-sS', '--socks4a', `127.0.0.1:${open.port}`, `http://origin.test:${origin.port}/s4a`]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /"\/s4a"/);
    assert.ok(await waitFor(() => accessLines(open.lines).filter((l) => l.protocol === 'socks4' && l.reply === 0x5a).length >= 2));
  });

  it('needs USERID name:password when auth is required', async () => {
    const ok = await exchange(authed.port, socks4Request(origin.port, [0, 0, 0, 1], `${USER}:${PASSWORD}`, 'origin.test'), 'GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(ok[1], 0x5a);
    assert.match(ok.subarray(8).toString(), /^HTTP\/1\.1 200/);
    const noPass = await exchange(authed.port, socks4Request(origin.port, [127, 0, 0, 1], USER));
    assert.equal(noPass[1], 0x5b);
    const wrong = await exchange(authed.port, socks4Request(origin.port, [127, 0, 0, 1], `${USER}:nope`));
    assert.equal(wrong[1], 0x5b);
    assert.ok(await waitFor(() => accessLines(authed.lines).filter((l) => l.protocol === 'socks4' && l.error === 'http_request_denied').length >= 2));
  });

  it('rejects refused, denied, unsupported and malformed requests with 0x5B', async () => {
    const port = await refusedPort();
    assert.equal((await exchange(open.port, socks4Request(port, [127, 0, 0, 1], '')))[1], 0x5b);
    assert.equal((await exchange(open.port, socks4Request(origin.port, [127, 0, 0, 1], '', undefined, 2)))[1], 0x5b);
    assert.equal((await exchange(open.port, socks4Request(origin.port, [0, 0, 0, 1], '', 'bad\x01name')))[1], 0x5b);
    const strict = await startTestProxy({ auth: { required: false }, rules: { allowPrivate: false } });
    try {
      const before = origin.connections;
      assert.equal((await exchange(strict.port, socks4Request(origin.port, [127, 0, 0, 1], '')))[1], 0x5b);
      assert.equal(origin.connections, before);
      assert.ok(await waitFor(() => accessLines(strict.lines).some((l) => l.protocol === 'socks4' && l.error === 'destination_ip_prohibited')));
    } finally {
      await strict.close();
    }
    // An over-long USERID is cut off, not buffered forever.
    const s = await dial(open.port);
    s.on('error', () => {});
    s.write(Buffer.concat([socks4Request(80, [127, 0, 0, 1], '').subarray(0, 8), Buffer.alloc(400, 0x41)]));
    const r = await readUntil(s, (b) => b.length >= 8);
    assert.equal(r[1], 0x5b);
    s.destroy();
  });
});
