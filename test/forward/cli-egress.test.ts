import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { forwardConfigFromArgs } from '../../src/cli/forward.js';
import { startForwardProxy, type ForwardProxy } from '../../src/forward/index.js';
import { memoryLogger } from './helpers.js';
import { proxyGet, startUpstreamGatewise, whoAmI, type PoolProxy, type WhoAmI } from '../egress/helpers.js';

describe('gatewise forward --egress / --via / --rotate', () => {
  let origin: WhoAmI;
  let up: PoolProxy;
  before(async () => {
    origin = await whoAmI('0.0.0.0');
    up = await startUpstreamGatewise('cli-up');
  });
  after(async () => {
    await up.close();
    await origin.close();
  });

  async function start(args: string[]): Promise<{ proxy: ForwardProxy; port: number }> {
    const cfg = await forwardConfigFromArgs(['--listen', '127.0.0.1:0', '--user', 'carol:pw', '--allow-private', ...args]);
    const proxy = await startForwardProxy(cfg, { logger: memoryLogger().logger });
    return { proxy, port: proxy.addresses()[0]!.port };
  }

  it('--egress with --rotate round-robin alternates the source address', async () => {
    const { proxy, port } = await start(['--egress', '127.0.0.5,127.0.0.6', '--rotate', 'round-robin']);
    try {
      const seen = [];
      for (let i = 0; i < 4; i++) seen.push((await proxyGet(port, `http://127.0.0.1:${origin.port}/`, 'carol', 'pw')).body);
      assert.deepEqual(new Set(seen), new Set(['127.0.0.5', '127.0.0.6']));
      assert.notEqual(seen[0], seen[1]);
      // a session parameter pins one exit
      const s1 = (await proxyGet(port, `http://127.0.0.1:${origin.port}/`, 'carol-session-z', 'pw')).body;
      for (let i = 0; i < 3; i++) assert.equal((await proxyGet(port, `http://127.0.0.1:${origin.port}/`, 'carol-session-z', 'pw')).body, s1);
    } finally {
      await proxy.close();
    }
  });

  it('--via forms a pool of upstream proxies', async () => {
    const { proxy, port } = await start(['--via', `http://alice:secret@127.0.0.1:${up.port}`, '--via', `socks5://alice:secret@127.0.0.1:${up.port}`, '--rotate', 'round-robin']);
    try {
      const exits = new Set<string>();
      for (let i = 0; i < 2; i++) {
        const r = await proxyGet(port, `http://127.0.0.1:${origin.port}/`, 'carol', 'pw');
        assert.equal(r.status, 200);
        exits.add(String(r.headers['x-gatewise-exit']));
      }
      assert.equal(exits.size, 2);
    } finally {
      await proxy.close();
    }
  });

  it('rejects bad flags without echoing credentials', async () => {
    await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--rotate', 'sideways', '--egress', '127.0.0.2']), /--rotate expects/);
    await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--rotate', 'random']), /needs --egress or --via/);
    await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--via', 'ftp://u:topsecret@h:1']), (err: Error) => !err.message.includes('topsecret') && /proxy URL/.test(err.message));
    await assert.rejects(forwardConfigFromArgs(['--user', 'a:b', '--egress', 'not-an-ip']), /local IP address/);
  });
});
