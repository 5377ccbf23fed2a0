import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import { SocksClient } from 'socks';
import { request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { closedPort, eventually } from '../helpers/admin-stack.js';
import { withTestUpstreamClient } from '../helpers/upstream-client.js';
import { withTestFront } from '../helpers/front.js';

// Adversarial probe (session adminsec): what a client of either face chooses (a SOCKS
// destination, a proxy username, a request path, User-Agent, Host, X-Request-Id) reaches the
// records the dashboard shows. Markup in it must show as text, and no script may run.

const CHROMIUM = process.env.GATEWISE_CHROMIUM ?? '/usr/bin/chromium';
const noBrowser = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}`;

/** A user name the schema takes (no ':' or space) that is markup: the users table shows it. */
const HOSTILE_USER = `"><img/src=x/onerror=window.__pwned='user'>`;

const PAYLOADS = [
  `x"><img src=x onerror="window.__pwned='img'">`,
  `<script>window.__pwned='script'</script>`,
  `javascript:window.__pwned='js'`,
  `\u202e<svg onload="window.__pwned='svg'">`,
  `'><iframe srcdoc="<script>parent.__pwned='iframe'</script>">`,
];

/** One request through the HTTP proxy with the given Proxy-Authorization user. */
function viaProxy(port: number, user: string, password: string, target: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: target, agent: false, headers: { host: new URL(target).host, 'proxy-authorization': `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`, ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

test('client-chosen text in records (SOCKS destination, proxy username, path, User-Agent, Host) shows on the dashboard as text, in Chromium: no script runs, no element is injected, no CSP violation', { skip: noBrowser, timeout: 120_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const dead = await closedPort();
  const hash = await hashPassword('pw-0123456789', { N: 1024, r: 8, p: 1 });
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig(withTestFront(withTestUpstreamClient({
    listeners: [{ port: 0 }],
    admin: { port: 0, failures: 200 },
    clusters: { dead: { endpoints: [`http://127.0.0.1:${dead}`], waitForEndpoint: { timeout: '0s' } } },
    routes: [{ name: 'dead', cluster: 'dead' }],
    forward: {
      listeners: [{ address: '127.0.0.1', port: 0 }],
      // Wrong passwords are sent on purpose, more than the lockout's threshold from one address: off here.
      auth: { required: true, users: [{ name: 'alice', password: hash }, { name: HOSTILE_USER, password: hash }], lockout: { maxFailures: 0 } },
      // Only loopback; names under .invalid are denied before any lookup (no DNS query leaves).
      rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }], deny: [{ hosts: ['*.invalid'] }], connectPorts: ['1-65535'] },
      timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
    },
  })));
  const rt = await startRuntime(config, { logger, probeUpstreams: false });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const admin = rt.adminUrl!;
    const gateway = rt.gateway!.addresses()[0]!.url;
    const proxyPort = (lines.map((l) => JSON.parse(l) as { event?: string; listeners?: Array<{ port: number }> }).find((l) => l.event === 'forward-ready')!).listeners![0]!.port;
    for (const p of PAYLOADS) {
      // A SOCKS5 destination name (denied by name: never resolved).
      await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxyPort, type: 5, userId: 'alice', password: 'pw-0123456789' }, destination: { host: `${p}.invalid`, port: 80 }, command: 'connect', timeout: 5000 }).then((c) => c.socket.destroy(), () => undefined);
      // A SOCKS5 username and an HTTP proxy username that are not users.
      await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxyPort, type: 5, userId: p, password: 'x' }, destination: { host: '127.0.0.1', port: dead }, command: 'connect', timeout: 5000 }).then((c) => c.socket.destroy(), () => undefined);
      assert.equal(await viaProxy(proxyPort, p, 'x', `http://127.0.0.1:${dead}/`), 407);
      // A path and a User-Agent to a closed port through the forward proxy, and through the reverse gateway.
      await viaProxy(proxyPort, 'alice', 'pw-0123456789', `http://127.0.0.1:${dead}/${encodeURIComponent(p)}`, { 'user-agent': p.replace(/[^\x20-\x7e]/g, '') });
      await request(`${gateway}/${encodeURIComponent(p)}`, { headers: { 'user-agent': p.replace(/[^\x20-\x7e]/g, ''), 'x-request-id': p.replace(/[^\x20-\x7e]/g, '') } }).then((r) => r.body.dump());
      // A Host with markup (refused by the gateway's Host check).
      await request(`${gateway}/`, { headers: { host: p.replace(/[^\x20-\x7e]/g, '') } }).then((r) => r.body.dump(), () => undefined);
    }
    // A real user whose name is markup: its traffic (a refused connection) puts it in the users table.
    assert.equal(await viaProxy(proxyPort, HOSTILE_USER, 'pw-0123456789', `http://127.0.0.1:${dead}/`), 502);
    // Every failure is in the ring before the page opens.
    const failures = await eventually(async () => {
      const r = await request(`${admin}/failures?limit=200`);
      const body = (await r.body.json()) as { failures: Array<Record<string, unknown>> };
      return body.failures.length >= PAYLOADS.length * 4 ? body.failures : undefined;
    }, 10_000, 'the failures');
    const seen = JSON.stringify(failures);
    assert.ok(PAYLOADS.some((p) => seen.includes(JSON.stringify(p).slice(1, -1))), `some payload reached a record: ${seen.slice(0, 2000)}`);

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.addInitScript(() => {
      const w = window as unknown as { violations: string[] };
      w.violations = [];
      document.addEventListener('securitypolicyviolation', (e) => w.violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
    });
    await page.goto(`${admin}/`);
    await page.waitForSelector('#failures tbody tr[data-request-id]', { timeout: 10_000 });
    // A second refresh: whatever the first render injected would have run by now.
    const first = await page.locator('#updated').textContent();
    await page.waitForFunction((t) => document.querySelector('#updated')?.textContent !== t, first, { timeout: 10_000 });
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned), undefined, 'an injected script ran');
    assert.deepEqual(await page.evaluate(() => (window as unknown as { violations: string[] }).violations), [], 'markup was injected (the CSP blocked it)');
    // Nothing but the page's own elements: no img, script, iframe, and one svg (the chart).
    const elements = await page.evaluate(() => [...document.querySelectorAll('main img, main script, main iframe, main svg, main a, main [onerror], main [onload]')].map((e) => e.outerHTML.slice(0, 120)));
    assert.equal(elements.length, 1, elements.join('\n'));
    assert.match(elements[0]!, /^<svg id="chart"/);
    // The markup shows as text: the users table names the user literally, and the failures table shows the records.
    assert.ok((await page.locator(`#users tbody tr td:first-child`).allTextContents()).includes(HOSTILE_USER));
    assert.ok((await page.locator('#failures tbody tr[data-request-id]').count()) >= 20);
  } finally {
    await browser.close();
    await rt.close();
  }
});
