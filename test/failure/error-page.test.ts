import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Failure, failurePath, renderFailure } from '../../src/failure/index.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * The gateway's error page draws the path (you → this gateway → earlier intermediaries → the
 * upstream), each hop marked working, failed or not reached, from the same data as Proxy-Status.
 */

const CHROMIUM = process.env.GATEWISE_CHROMIUM ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does) to run the error page test`;

let lab: Lab;
let gw: TestGateway;
let chain: Server;
let chainUrl = '';

before(async () => {
  lab = await startLab();
  gw = await startTestGateway({
    name: 'edge-gw',
    clusters: { dead: { endpoints: [`http://127.0.0.1:${lab.refusedPort}`], waitForEndpoint: { timeout: '0s' } } },
    routes: [{ cluster: 'dead' }],
  });
  // A page whose failure came with a Proxy-Status chain from intermediaries behind this gateway.
  chain = createServer((req, res) => {
    const out = renderFailure({
      failure: new Failure({ type: 'http_response_incomplete', phase: 'body', nextHop: 'lb.internal:443', detail: 'cut' }),
      requestId: 'req-chain-1',
      accept: req.headers.accept,
      priorProxyStatus: 'origin-lb;error=connection_timeout;next-hop="10.0.0.7:8080", "regional-cache";received-status=504',
      proxyStatus: { name: 'edge-gw', revealTopology: false },
    });
    res.writeHead(out.status, out.headers);
    res.end(out.body);
  });
  await new Promise<void>((r) => chain.listen(0, '127.0.0.1', r));
  chainUrl = `http://127.0.0.1:${(chain.address() as AddressInfo).port}/`;
});

after(async () => {
  await gw?.close();
  await lab?.close();
  await new Promise((r) => chain?.close(r));
});

test('failurePath: each side of a failure marks its own hop; earlier intermediaries come from Proxy-Status, nearest this gateway first', () => {
  const opts = { name: 'gw', revealTopology: true };
  const up = failurePath({ failure: new Failure({ type: 'connection_refused', phase: 'connect', nextHop: '10.0.0.1:80' }), proxyStatus: opts });
  assert.deepEqual(up.map((h) => [h.role, h.name, h.state]), [['client', 'You', 'working'], ['gateway', 'gw', 'working'], ['upstream', 'Upstream 10.0.0.1:80', 'failed']]);
  assert.equal(up[2]!.words, 'The upstream server refused the connection: nothing is listening there.');
  const gwFail = failurePath({ failure: new Failure({ type: 'proxy_configuration_error', phase: 'route' }), proxyStatus: opts });
  assert.deepEqual(gwFail.map((h) => h.state), ['working', 'failed', 'not reached']);
  const client = failurePath({ failure: new Failure({ type: 'http_request_error', phase: 'accept', reason: 'bad_request' }), proxyStatus: opts });
  assert.deepEqual(client.map((h) => h.state), ['failed', 'working', 'not reached']);
  const denied = failurePath({ failure: new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required' }), proxyStatus: opts });
  assert.deepEqual(denied.map((h) => h.state), ['working', 'refused', 'not reached']);
  const chained = failurePath({
    failure: new Failure({ type: 'http_response_incomplete', phase: 'body' }),
    priorProxyStatus: 'origin-lb;error=connection_timeout, "regional-cache";received-status=504',
    proxyStatus: opts,
  });
  assert.deepEqual(chained.map((h) => [h.name, h.state, h.words]), [
    ['You', 'working', undefined],
    ['gw', 'working', undefined],
    ['regional-cache', 'working', 'passed on 504'],
    ['origin-lb', 'failed', 'The upstream server did not accept the connection in time.'],
    ['Upstream server', 'not reached', undefined],
  ]);
  // A malformed field from upstream is left out, not guessed at.
  assert.equal(failurePath({ failure: new Failure({ type: 'connection_refused', phase: 'connect' }), priorProxyStatus: 'a;;;', proxyStatus: opts }).length, 3);
});

test('the text body carries the same path in one line', async () => {
  const r = await fetch(`${gw.url}/x`, { headers: { accept: 'text/plain' } });
  const text = await r.text();
  assert.equal(r.status, 502);
  assert.match(text, /^Path: You \(working\) -> edge-gw \(working\) -> Upstream 127\.0\.0\.1:\d+ \(FAILED: The upstream server refused the connection: nothing is listening there\.\)$/m);
  // The page quotes the request: a browser must not sniff a text page into HTML (review, session 29).
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  for (const accept of ['text/html', 'application/json']) {
    const other = await fetch(`${gw.url}/x`, { headers: { accept } });
    await other.text();
    assert.equal(other.headers.get('x-content-type-options'), 'nosniff', accept);
  }
});

const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

test('in Chromium, the error page draws the path, readable on a phone and side by side on a desktop', { skip, timeout: 60_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-error-page-'));
  try {
    // A phone: 360 CSS px wide. The hops stack top to bottom, nothing overflows sideways.
    const phone = await browser.newPage({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, extraHTTPHeaders: { accept: BROWSER_ACCEPT } });
    const res = await phone.goto(`${gw.url}/some/page`);
    assert.equal(res?.status(), 502);
    const hops = phone.locator('ol.path li.hop');
    assert.equal(await hops.count(), 3);
    assert.deepEqual(await hops.evaluateAll((els) => els.map((e) => [e.getAttribute('data-role'), e.getAttribute('data-state')])), [
      ['client', 'working'],
      ['gateway', 'working'],
      ['upstream', 'failed'],
    ]);
    for (let i = 0; i < 3; i++) assert.ok(await hops.nth(i).isVisible(), `hop ${i} visible`);
    assert.equal(await hops.nth(1).locator('.name').textContent(), 'edge-gw');
    assert.equal(await hops.nth(2).locator('.state').textContent(), '✗ Failed');
    assert.equal(await hops.nth(2).locator('.words').textContent(), 'The upstream server refused the connection: nothing is listening there.');
    const widths = await phone.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
    assert.ok(widths.scroll <= widths.client, `no sideways scrolling on a phone: ${JSON.stringify(widths)}`);
    const boxes = await hops.evaluateAll((els) => els.map((e) => e.getBoundingClientRect().toJSON() as DOMRect));
    for (let i = 1; i < boxes.length; i++) assert.ok(boxes[i]!.top >= boxes[i - 1]!.bottom, 'stacked top to bottom on a phone');
    for (const b of boxes) assert.ok(b.left >= 0 && b.right <= 360, `inside the screen: ${JSON.stringify(b)}`);
    // The failed hop is the one in red.
    const colour = await hops.nth(2).evaluate((e) => getComputedStyle(e).borderTopColor);
    assert.equal(colour, 'rgb(198, 40, 40)');
    const shot = join(dir, 'error-page-phone.png');
    await phone.screenshot({ path: shot, fullPage: true });
    assert.equal(readFileSync(shot).subarray(1, 4).toString(), 'PNG');
    // GATEWISE_SCREENSHOT_ERROR_PAGE=docs/error-page.png refreshes the picture in the docs.
    if (process.env.GATEWISE_SCREENSHOT_ERROR_PAGE) writeFileSync(process.env.GATEWISE_SCREENSHOT_ERROR_PAGE, readFileSync(shot));

    // A desktop: the same hops side by side, and a chain from Proxy-Status with the failed intermediary marked.
    const desk = await browser.newPage({ viewport: { width: 1024, height: 700 }, extraHTTPHeaders: { accept: BROWSER_ACCEPT } });
    await desk.goto(chainUrl);
    const chainHops = desk.locator('ol.path li.hop');
    assert.deepEqual(await chainHops.locator('.name').allTextContents(), ['You', 'edge-gw', 'regional-cache', 'origin-lb', 'Upstream server']);
    assert.deepEqual(await chainHops.evaluateAll((els) => els.map((e) => e.getAttribute('data-state'))), ['working', 'working', 'working', 'failed', 'not reached']);
    const row = await chainHops.evaluateAll((els) => els.map((e) => Math.round(e.getBoundingClientRect().top)));
    assert.equal(new Set(row).size, 1, `side by side on a desktop: ${row.join(',')}`);
    const dw = await desk.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
    assert.ok(dw);
    await desk.screenshot({ path: join(dir, 'error-page-desktop.png'), fullPage: true });
    if (process.env.GATEWISE_SCREENSHOT_ERROR_PAGE) writeFileSync(process.env.GATEWISE_SCREENSHOT_ERROR_PAGE.replace(/\.png$/, '-chain.png'), readFileSync(join(dir, 'error-page-desktop.png')));
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
