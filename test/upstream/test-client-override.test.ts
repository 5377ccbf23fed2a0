import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { testUpstreamClient, withTestUpstreamClient } from '../helpers/upstream-client.js';

/** The tests' GATEWISE_TEST_UPSTREAM_CLIENT override (npm run test:undici) touches HTTP/1.1 clusters only. */
describe('test helper: the upstream-client override', () => {
  const input = {
    listeners: [{ port: 0 }],
    clusters: {
      plain: { endpoints: ['http://127.0.0.1:1'] },
      h1: { endpoints: ['http://127.0.0.1:1'], protocol: 'http1' },
      h2: { endpoints: ['https://127.0.0.1:1'], protocol: 'h2' },
      h2c: { endpoints: ['http://127.0.0.1:1'], protocol: 'h2c' },
      pinned: { endpoints: ['http://127.0.0.1:1'], client: 'undici' },
    },
    routes: [{ cluster: 'plain' }],
  };

  it('sets client native on clusters without a protocol or with http1, leaves h2, h2c and a pinned client alone', () => {
    const out = withTestUpstreamClient(input, 'native') as unknown as { clusters: Record<string, { client?: string }> };
    assert.equal(out.clusters.plain!.client, 'native');
    assert.equal(out.clusters.h1!.client, 'native');
    assert.equal(out.clusters.h2!.client, undefined);
    assert.equal(out.clusters.h2c!.client, undefined);
    assert.equal(out.clusters.pinned!.client, 'undici');
    assert.equal((input.clusters.plain as { client?: string }).client, undefined, 'the input is not changed');
  });

  it('without the variable the config is the test\'s own; a value other than undici or native is refused', () => {
    assert.equal(withTestUpstreamClient('not a config', 'native'), 'not a config');
    const before = process.env.GATEWISE_TEST_UPSTREAM_CLIENT;
    try {
      delete process.env.GATEWISE_TEST_UPSTREAM_CLIENT;
      assert.equal(testUpstreamClient(), undefined);
      assert.equal(withTestUpstreamClient(input), input);
      process.env.GATEWISE_TEST_UPSTREAM_CLIENT = 'nativ';
      assert.throws(() => testUpstreamClient(), /must be "undici" or "native"/);
    } finally {
      if (before === undefined) delete process.env.GATEWISE_TEST_UPSTREAM_CLIENT;
      else process.env.GATEWISE_TEST_UPSTREAM_CLIENT = before;
    }
  });
});
