import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startDemo } from '../helpers/gatewise-process.js';
import { ADMIN_TOKEN, FWD_PASSWORD, FWD_USER, eventually, startAdminStack } from '../helpers/admin-stack.js';

const CHROMIUM = process.env.GATEWISE_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does) to run the dashboard test`;

test('the dashboard, in a real browser, shows each lab fault under its own cause within 2 s of the traffic, with endpoints, exits, users and failures', { skip }, async () => {
  const { chromium } = await import('playwright-core');
  const s = await startAdminStack();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-dashboard-'));
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    // The token travels in the fragment: the page sends it as a bearer token to the API.
    await page.goto(`${s.admin}/#token=${ADMIN_TOKEN}`);
    await page.waitForSelector('#updated:text-matches("updated")', { timeout: 5000 });
    assert.equal(await page.locator('#ready').textContent(), 'ready');
    assert.equal(await page.locator('#causes tbody').textContent(), 'No failures yet.');
    assert.equal(await page.locator('#error').textContent(), '');
    // Endpoints and exits are there before any traffic.
    assert.equal(await page.locator('#endpoints tbody tr').count(), 2);
    assert.equal(await page.locator(`#endpoints tr[data-endpoint="${new URL(s.lab.url).host}"] td.state`).textContent(), 'up');
    assert.match((await page.locator('#exits tbody').textContent()) ?? '', /127\.0\.0\.1/);

    // Traffic through the lab: three causes, and a forward user over their quota.
    const ids: Record<string, string> = {};
    for (const [path, cause] of [['/dead/x', 'connection_refused'], ['/garbage', 'http_protocol_error'], ['/oversized-headers', 'http_response_header_section_size']] as const) {
      for (let i = 0; i < 2; i++) {
        const r = await request(`${s.gateway}${path}`);
        assert.equal(r.statusCode, 502);
        assert.match(String(r.headers['proxy-status']), new RegExp(`error=${cause}`));
        ids[cause] = String(r.headers['x-request-id']);
        await r.body.dump();
      }
    }
    const ok = await request(`${s.gateway}/ok`);
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
    await s.viaProxy(`${FWD_USER}-session-s9`, FWD_PASSWORD, `${s.lab.url}/bytes?n=8000`);
    await eventually(async () => ((await s.viaProxy(FWD_USER, FWD_PASSWORD, `${s.lab.url}/ok`)).status === 429 ? true : undefined), 5000, 'a 429 past the quota');
    const sent = Date.now();

    // Within 2 s the page shows every cause with its count and plain words.
    for (const cause of Object.keys(ids)) {
      // The row may already be there from a poll during the traffic: wait for the final count.
      await page.waitForFunction(
        (c) => document.querySelector(`#causes tr[data-cause="${c}"] td:nth-child(3)`)?.textContent === '2',
        cause,
        { timeout: Math.max(1, 2000 - (Date.now() - sent)) },
      );
    }
    assert.ok(Date.now() - sent <= 2000, `the causes took ${Date.now() - sent} ms to show`);
    assert.match((await page.locator('#causes tr[data-cause="connection_refused"]').textContent()) ?? '', /The upstream server refused the connection: nothing is listening there\./);
    await page.locator('#causes tr[data-cause="too_many_requests"]').waitFor({ timeout: 2000 });
    // Each failure is listed by its request id with its explanation.
    const failureRow = page.locator(`#failures tr[data-request-id="${ids.http_protocol_error}"]`);
    await failureRow.waitFor({ timeout: 2000 });
    assert.match((await failureRow.textContent()) ?? '', /HTTP Protocol Error — The upstream server sent a response that is not valid HTTP\./);
    // The user with their quota bar full and their top refusal.
    const user = page.locator(`#users tr[data-user="${FWD_USER}"]`);
    await user.waitFor({ timeout: 2000 });
    assert.match((await user.textContent()) ?? '', /small.*100% of bytesPerDay\.down.*too_many_requests/);
    assert.equal(await user.locator('.bar > i').getAttribute('style'), 'width: 100%;');
    // The chart draws bars per cause; the header counts.
    assert.ok((await page.locator('#chart rect[data-cause="http_protocol_error"]').count()) >= 1);
    assert.ok(Number(await page.locator('#tot-failures').textContent()) >= 7);

    const shot = join(dir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    // GATEWISE_SCREENSHOT=docs/dashboard.png refreshes the picture in the docs.
    if (process.env.GATEWISE_SCREENSHOT) writeFileSync(process.env.GATEWISE_SCREENSHOT, png);
  } finally {
    await browser.close();
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gatewise demo: the dashboard URL it prints shows, in a real browser, every lab fault under its own cause, and a new failure within 2 s', { skip, timeout: 60_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const { LAB_FAULTS } = await import('../../src/lab/index.js');
  const demo = await startDemo();
  const out = demo.out();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] }).catch(async (err: unknown) => {
    await demo.stop();
    throw err;
  });
  try {
    const dashboard = /^Dashboard: (http:\/\/127\.0\.0\.1:\d+\/) /m.exec(out)?.[1];
    assert.ok(dashboard, out);
    const gateway = /the gateway at (http:\/\/127\.0\.0\.1:\d+) /.exec(out)![1]!;
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    const opened = Date.now();
    await page.goto(dashboard);
    // Every cause the lab catalogue expects is on the page, each under its own name.
    const causes = new Set(LAB_FAULTS.flatMap((f) => (f.expectType ? [f.expectType] : [])));
    assert.ok(causes.size >= 8);
    for (const cause of causes) {
      const f = LAB_FAULTS.find((x) => x.expectType === cause)!;
      const accepted = [cause, ...((f as { alsoAccept?: string[] }).alsoAccept ?? [])];
      await page.waitForFunction((cs) => cs.some((c) => document.querySelector(`#causes tr[data-cause="${c}"]`) !== null), accepted, { timeout: Math.max(1, 2000 - (Date.now() - opened)) });
    }
    // A fault tried now shows within 2 s: the count of connection_refused goes up by one.
    const cell = page.locator('#causes tr[data-cause="connection_refused"] td:nth-child(3)');
    const before = Number(await cell.textContent());
    const r = await request(`${gateway}/_refused/ok`);
    assert.equal(r.statusCode, 502);
    await r.body.dump();
    const sent = Date.now();
    await page.waitForFunction((n) => document.querySelector('#causes tr[data-cause="connection_refused"] td:nth-child(3)')?.textContent === String(n), before + 1, { timeout: 2000 });
    assert.ok(Date.now() - sent <= 2000);
  } finally {
    await browser.close();
    assert.equal(await demo.stop('SIGINT'), 0, out);
  }
});
