import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Writable } from 'node:stream';
import { startRuntime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/access-log.js';
import { closedPort } from '../helpers/admin-stack.js';
import { GUARD_MS } from '../helpers/time-bounds.js';

const CHROMIUM = process.env.GATEWISE_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does) to run the dashboard test`;

/**
 * Finding (newcomer walk-through): the dashboard of `gatewise demo` (a reverse gateway, no
 * forward proxy) logged "Failed to load resource: the server responded with a status of 404"
 * in the browser's console at every refresh: the page asked /exits and /users, which answer
 * 404 where no forward proxy runs (and /clusters where no reverse gateway runs). The page must
 * ask only for the faces `/status` says run, and show the same figures.
 *
 * Both one-face processes: the page is loaded, three of its refreshes complete (waited on the
 * page's own resource timings), and then the console holds no error or warning and no
 * response the page fetched was 4xx or 5xx; the figures of the face that runs are shown, the
 * other face's tables say it does not run.
 */

async function quietLogger() {
  return createLogger({ level: 'warn', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
}

const FACES = {
  reverse: async () => {
    const dead = await closedPort();
    return validateConfig({
      listeners: [{ address: '127.0.0.1', port: 0 }],
      admin: { port: 0 },
      clusters: { app: { endpoints: [`http://127.0.0.1:${dead}`] } },
      routes: [{ cluster: 'app' }],
    });
  },
  forward: async () =>
    validateConfig({
      admin: { port: 0 },
      forward: { listeners: [{ address: '127.0.0.1', port: 0 }], auth: { required: false } },
    }),
};

for (const [face, make] of Object.entries(FACES)) {
  test(`the dashboard of a ${face}-only process: no console error and no failed fetch over three refreshes, figures shown`, { skip, timeout: 120_000 }, async () => {
    const { chromium } = await import('playwright-core');
    const rt = await startRuntime(await make(), { logger: await quietLogger(), probeUpstreams: false });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()} (${m.location().url})`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('response', (r) => {
        if (r.status() >= 400) problems.push(`${r.status()} ${new URL(r.url()).pathname}`);
      });
      await page.addInitScript(() => performance.setResourceTimingBufferSize(1_000_000));
      await page.goto(`${rt.adminUrl}/`);
      await page.waitForFunction(
        () => performance.getEntriesByType('resource').filter((r) => r.name.includes('/traffic?') && (r as PerformanceResourceTiming).responseEnd > 0).length >= 3 && document.getElementById('updated')!.textContent!.startsWith('updated'),
        undefined,
        { timeout: GUARD_MS },
      );
      assert.equal(await page.locator('#error').textContent(), '');
      assert.equal(await page.locator('#ready').textContent(), 'ready');
      if (face === 'reverse') {
        assert.equal(await page.locator('#endpoints tbody tr[data-endpoint]').count(), 1);
        assert.equal(await page.locator('#exits tbody').textContent(), 'No forward proxy runs.');
        assert.equal(await page.locator('#users tbody').textContent(), 'No forward proxy runs.');
      } else {
        assert.equal(await page.locator('#endpoints tbody').textContent(), 'No reverse gateway runs.');
        assert.equal(await page.locator('#exits tbody').textContent(), 'No egress pools: connections leave directly.');
        assert.equal(await page.locator('#users tbody').textContent(), 'No forward users seen yet.');
      }
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
      await rt.close();
    }
  });
}
