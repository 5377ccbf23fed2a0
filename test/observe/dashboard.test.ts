import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { request } from 'undici';
import { DASHBOARD_HTML } from '../../src/observe/dashboard.js';
import { startDemo } from '../helpers/gatewise-process.js';
import { ADMIN_TOKEN, FWD_PASSWORD, FWD_USER, eventually, startAdminStack } from '../helpers/admin-stack.js';
import { GUARD_MS } from '../helpers/time-bounds.js';

const CHROMIUM = process.env.GATEWISE_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does) to run the dashboard test`;

/**
 * "Within 2 s" without a clock on a loaded machine. The page refreshes itself: each refresh
 * fetches the API (`traffic`, `status`, … at once), renders, and schedules the next one
 * second later. The gateway records a request before its client has the answer (the record
 * is published at the response's close), so the first refresh the page starts after the
 * traffic was answered must show it; with the one-second cadence (asserted on the page's
 * source) that is "within about 2 s" on a quiet machine, and it stays true, and checkable, on
 * a loaded one, where the wall clock measured the machine rather than the dashboard (the
 * 2 s bounds failed under load in CI).
 */
const REFRESH_MS = 1000;

/** Keep every resource timing entry: a refresh makes six, and the default buffer holds 250 (about 40 s). */
async function keepResourceTimings(page: Page): Promise<void> {
  await page.addInitScript(() => performance.setResourceTimingBufferSize(1_000_000));
}

/**
 * Waits (on the page, guarded) until every `[selector, text]` holds (the element exists;
 * with a text, its textContent is that text), and returns how many of the page's own
 * refreshes had started after `afterEpochMs` and finished when it first held. A refresh is
 * one `traffic?` fetch. 20 ms of margin for the two processes' clocks: a refresh that began
 * just before the traffic is not counted as after it.
 */
async function refreshesUntilShown(page: Page, afterEpochMs: number, want: Array<[string, string | null]>): Promise<number> {
  const handle = await page.waitForFunction(
    ({ after, want }) => {
      for (const [sel, text] of want) {
        const e = document.querySelector(sel);
        if (e === null || (text !== null && e.textContent !== text)) return false;
      }
      const polls = performance.getEntriesByType('resource').filter((r) => r.name.includes('/traffic?') && performance.timeOrigin + r.startTime >= after + 20 && (r as PerformanceResourceTiming).responseEnd > 0);
      return { n: polls.length };
    },
    { after: afterEpochMs, want },
    { timeout: GUARD_MS },
  );
  return ((await handle.jsonValue()) as { n: number }).n;
}

test('the dashboard refreshes itself every second', () => {
  assert.match(DASHBOARD_HTML, new RegExp(`setTimeout\\(loop, ${REFRESH_MS}\\)`));
});

test('the dashboard, in a real browser, shows each lab fault under its own cause at its first refresh after the traffic (within 2 s), with endpoints, exits, users and failures', { skip, timeout: 120_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const s = await startAdminStack();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-dashboard-'));
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    await keepResourceTimings(page);
    // The token travels in the fragment: the page sends it as a bearer token to the API.
    await page.goto(`${s.admin}/#token=${ADMIN_TOKEN}`);
    await page.waitForSelector('#updated:text-matches("updated")', { timeout: GUARD_MS });
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
    // A client's retries until the quota refuses (each a request, not a synchronisation); the bound is a failure guard.
    await eventually(async () => ((await s.viaProxy(FWD_USER, FWD_PASSWORD, `${s.lab.url}/ok`)).status === 429 ? true : undefined), GUARD_MS, 'a 429 past the quota');
    const sent = Date.now();

    // The first refresh the page starts after the traffic shows every cause with its final
    // count (a row may be there earlier from a refresh during the traffic), the quota's 429,
    // the failure by its request id and the user: within 2 s at the page's cadence.
    const refreshes = await refreshesUntilShown(page, sent, [
      ...Object.keys(ids).map((c): [string, string] => [`#causes tr[data-cause="${c}"] td:nth-child(3)`, '2']),
      ['#causes tr[data-cause="too_many_requests"]', null],
      [`#failures tr[data-request-id="${ids.http_protocol_error}"]`, null],
      [`#users tr[data-user="${FWD_USER}"]`, null],
    ]);
    assert.ok(refreshes <= 1, `shown only after ${refreshes} refreshes started after the traffic`);
    assert.match((await page.locator('#causes tr[data-cause="connection_refused"]').textContent()) ?? '', /The upstream server refused the connection: nothing is listening there\./);
    // Each failure is listed by its request id with its explanation.
    const failureRow = page.locator(`#failures tr[data-request-id="${ids.http_protocol_error}"]`);
    assert.match((await failureRow.textContent()) ?? '', /HTTP Protocol Error — The upstream server sent a response that is not valid HTTP\./);
    // The user with their quota bar full and their top refusal.
    const user = page.locator(`#users tr[data-user="${FWD_USER}"]`);
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

test('gatewise demo: the dashboard URL it prints shows, in a real browser, every lab fault under its own cause, and a new failure at its first refresh after it (within 2 s)', { skip, timeout: 120_000 }, async () => {
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
    await keepResourceTimings(page);
    // The demo has probed every fault before it printed its table: the page's first refresh,
    // so the first refresh after it is opened, shows them all (it was "within 2 s of opening").
    const opened = Date.now();
    await page.goto(dashboard);
    // Every cause the lab catalogue expects is on the page, each under its own name.
    const causes = new Set(LAB_FAULTS.flatMap((f) => (f.expectType ? [f.expectType] : [])));
    assert.ok(causes.size >= 8);
    const shownAt = await page.waitForFunction(
      ({ groups, after }) => {
        if (!groups.every((cs) => cs.some((c) => document.querySelector(`#causes tr[data-cause="${c}"]`) !== null))) return false;
        const polls = performance.getEntriesByType('resource').filter((r) => r.name.includes('/traffic?') && performance.timeOrigin + r.startTime >= after + 20 && (r as PerformanceResourceTiming).responseEnd > 0);
        return { n: polls.length };
      },
      {
        groups: [...causes].map((cause) => [cause, ...((LAB_FAULTS.find((x) => x.expectType === cause) as { alsoAccept?: string[] }).alsoAccept ?? [])]),
        after: opened,
      },
      { timeout: GUARD_MS },
    );
    const first = ((await shownAt.jsonValue()) as { n: number }).n;
    assert.ok(first <= 1, `every cause shown only at refresh ${first} of the page`);
    // A fault tried now shows at the first refresh after it: the count of connection_refused goes up by one.
    const cell = page.locator('#causes tr[data-cause="connection_refused"] td:nth-child(3)');
    const before = Number(await cell.textContent());
    const r = await request(`${gateway}/_refused/ok`);
    assert.equal(r.statusCode, 502);
    await r.body.dump();
    const sent = Date.now();
    const refreshes = await refreshesUntilShown(page, sent, [['#causes tr[data-cause="connection_refused"] td:nth-child(3)', String(before + 1)]]);
    assert.ok(refreshes <= 1, `shown only after ${refreshes} refreshes started after the failure`);
  } finally {
    await browser.close();
    assert.equal(await demo.stop('SIGINT'), 0, out);
  }
});

test('the dashboard shows a SOCKS failure with its reply code, as its log line does (a SOCKS answer has no HTTP status)', { skip, timeout: 120_000 }, async () => {
  // Finding (error-story probe): a SOCKS5 failure's row showed "—" where its log line says
  // `reply: 5`; the status column now says the reply code.
  const { chromium } = await import('playwright-core');
  const { connect } = await import('node:net');
  const { closedPort } = await import('../helpers/admin-stack.js');
  const s = await startAdminStack();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    await page.goto(`${s.admin}/#token=${ADMIN_TOKEN}`);
    await page.waitForSelector('#updated:text-matches("updated")', { timeout: GUARD_MS });
    // SOCKS5 CONNECT to a closed loopback port: reply 5 (connection refused).
    const dead = await closedPort();
    const sock = connect(s.proxyPort, '127.0.0.1');
    sock.on('error', () => {});
    const u = Buffer.from(FWD_USER);
    const pw = Buffer.from(FWD_PASSWORD);
    const port = Buffer.alloc(2);
    port.writeUInt16BE(dead);
    sock.write(Buffer.concat([Buffer.from([5, 1, 2, 1, u.length]), u, Buffer.from([pw.length]), pw, Buffer.from([5, 1, 0, 1, 127, 0, 0, 1]), port]));
    const got = await new Promise<Buffer>((resolve) => {
      let b = Buffer.alloc(0);
      sock.on('data', (c: Buffer) => {
        b = Buffer.concat([b, c]);
        if (b.length >= 14) resolve(b);
      });
      sock.on('close', () => resolve(b));
    });
    sock.destroy();
    assert.equal(got[5], 5, `reply ${got.toString('hex')}`);
    const line = await eventually(async () => s.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.type === 'access' && l.protocol === 'socks5' && l.error === 'connection_refused'), GUARD_MS, 'the SOCKS line');
    assert.equal(line.reply, 5, JSON.stringify(line));
    assert.equal(line.status, undefined, JSON.stringify(line));
    const row = page.locator(`#failures tr[data-request-id="${String(line.requestId)}"]`);
    await row.waitFor({ timeout: GUARD_MS });
    assert.equal(await row.locator('td.num').textContent(), 'SOCKS 5', await row.textContent() ?? '');
    assert.match((await row.textContent()) ?? '', /connection_refused/);
  } finally {
    await browser.close();
    await s.close();
  }
});
