import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort, runSuite, staleTestIds, startSuiteOrigin, suiteGatewayConfig, type SuiteResults } from './cache-suite.js';

/**
 * The public HTTP caching test suite (npm http-cache-tests 0.4.5, cache-tests.fyi) against
 * the gateway with a cached route in front of the suite's own origin, all on loopback. Every
 * test listed in http-cache-tests.pass.json must pass (pass-list.test.ts checks that the list
 * only grows). nginx 1.22.1 proxy_cache passed 188 of the suite here at best (the issue
 * quoted 144; docs/cache.md).
 */
const NGINX_BEST = 188;
const listed = JSON.parse(readFileSync(new URL('../../../test/cache/http-cache-tests.pass.json', import.meta.url), 'utf8')) as { pass: string[] };

let origin: ChildProcess;
let gw: TestGateway;

before(async () => {
  const port = await freePort();
  origin = await startSuiteOrigin(port, join(tmpdir(), `gatewise-cache-tests-${process.pid}.pid`));
  gw = await startTestGateway(suiteGatewayConfig(port));
});

after(async () => {
  origin?.kill();
  await gw?.close();
});

test('http-cache-tests: every listed test passes, more than nginx proxy_cache, and every stale-if-error / stale-while-revalidate test', { timeout: 240_000 }, async () => {
  const { results } = await runSuite(gw.url.replace(/\/$/, ''));
  const r = results as SuiteResults;
  const passed = Object.keys(r).filter((k) => r[k] === true);
  console.log(`http-cache-tests: ${passed.length} of ${Object.keys(r).length} pass`);
  const failed = listed.pass.filter((id) => r[id] !== true).map((id) => `${id}: ${JSON.stringify(r[id])}`);
  assert.deepEqual(failed, [], 'listed tests that failed');
  assert.ok(passed.length > NGINX_BEST, `${passed.length} pass`);
  const stale = await staleTestIds();
  console.log(`http-cache-tests: stale-if-error / stale-while-revalidate tests: ${stale.filter((id) => r[id] === true).length} of ${stale.length} pass (${stale.join(', ')})`);
  assert.ok(stale.length >= 2);
  for (const id of stale) assert.equal(r[id], true, id);
  // Passing tests that are not listed yet: add them (the list only grows).
  const unlisted = passed.filter((id) => !listed.pass.includes(id));
  if (unlisted.length > 0) console.log(`http-cache-tests: passing but not on the list: ${unlisted.join(', ')}`);
});
