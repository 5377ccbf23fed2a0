import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { ADMIN_ROUTES, startAdmin } from '../../src/observe/admin.js';
import { ADMIN_TOKEN, startAdminStack } from '../helpers/admin-stack.js';
import { between, seededRun } from '../helpers/seeded.js';

// Finding F6 (admin review): HEAD on the probes got 405; no nosniff, CSP or framing guard; the
// dashboard left #token=… in the address bar; a text/plain POST body reached /accounts.

const CHROMIUM = process.env.GATEWISE_CHROMIUM ?? '/usr/bin/chromium';
const noBrowser = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}`;

/** One request over node:http: status, headers and the body bytes that came. */
function raw(url: string, method: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) }, agent: false }, (res) => {
      let got = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (got += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: got }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('HEAD on /healthz and /ready answers as GET does (status, type, length) without a body', async () => {
  const admin = await startAdmin({ port: 0, token: ADMIN_TOKEN, ready: () => true });
  try {
    for (const path of ['/healthz', '/ready']) {
      const get = await raw(`${admin.url}${path}`, 'GET');
      const head = await raw(`${admin.url}${path}`, 'HEAD');
      assert.equal(head.status, 200, path);
      assert.equal(head.body, '', path);
      assert.equal(head.headers['content-type'], get.headers['content-type']);
      assert.equal(head.headers['content-length'], String(Buffer.byteLength(get.body)));
      assert.equal(head.headers['x-content-type-options'], 'nosniff');
    }
  } finally {
    await admin.close();
  }
});

test('every admin response says X-Content-Type-Options: nosniff; the dashboard also sends a CSP with frame-ancestors none and X-Frame-Options DENY', async () => {
  const admin = await startAdmin({ port: 0, token: ADMIN_TOKEN });
  try {
    const cases: Array<[string, string, Record<string, string>]> = [
      ...ADMIN_ROUTES.filter((r) => r.method === 'GET' && !r.path.includes('{')).map((r): [string, string, Record<string, string>] => ['GET', r.path, { authorization: `Bearer ${ADMIN_TOKEN}` }]),
      ['GET', '/status', {}], // 401
      ['GET', '/nope', {}], // 404
      ['PUT', '/status', {}], // 405
      ['POST', '/reload', { origin: 'http://evil.example' }], // 403
    ];
    for (const [method, path, headers] of cases) {
      const r = await raw(`${admin.url}${path}`, method, headers);
      assert.equal(r.headers['x-content-type-options'], 'nosniff', `${method} ${path} → ${r.status}`);
    }
    for (const path of ['/', '/dashboard']) {
      const r = await raw(`${admin.url}${path}`, 'GET');
      const csp = String(r.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.match(csp, /script-src 'sha256-/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(r.headers['x-frame-options'], 'DENY');
    }
  } finally {
    await admin.close();
  }
});

test('a state-changing request with a body that is not JSON is refused 415 (problem+json) before its handler; JSON types pass (seeded)', async () => {
  const s = await startAdminStack();
  try {
    await seededRun('admin 415', async (rand) => {
      const targets: Array<[string, string]> = [['POST', '/accounts'], ['PATCH', '/accounts/alice'], ['POST', '/reload'], ['POST', '/clusters/app/drain?endpoint=x'], ['DELETE', '/accounts/nobody'], ['POST', '/cache/purge?key=k']];
      const bad = [undefined, 'text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'text/json'];
      const good = ['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/merge-patch+json'];
      for (let i = 0; i < 24; i++) {
        const [method, path] = targets[between(rand, 0, targets.length - 1)]!;
        const isBad = rand() < 0.6;
        const type = isBad ? bad[between(rand, 0, bad.length - 1)] : good[between(rand, 0, good.length - 1)]!;
        const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_TOKEN}`, ...(type !== undefined ? { 'content-type': type } : {}) };
        const r = await raw(`${s.admin}${path}`, method, headers, '{"name":"zed","password":"long-enough-1"}');
        if (isBad) {
          assert.equal(r.status, 415, `${method} ${path} ${type}: ${r.body}`);
          assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
          const p = JSON.parse(r.body) as { status: number; detail: string };
          assert.equal(p.status, 415);
          assert.match(p.detail, /Content-Type: application\/json/);
        } else assert.notEqual(r.status, 415, `${method} ${path} ${type}`);
      }
      // Without a body (drain by query) no type is needed.
      const drain = await raw(`${s.admin}/clusters/app/undrain?endpoint=${new URL(s.lab.url).host}`, 'POST', { authorization: `Bearer ${ADMIN_TOKEN}` });
      assert.equal(drain.status, 200, drain.body);
    });
  } finally {
    await s.close();
  }
});

test('the dashboard under its CSP, in Chromium: no violation, it renders and polls with the token, and #token=… leaves the address bar', { skip: noBrowser, timeout: 60_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const s = await startAdminStack();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    const console: string[] = [];
    page.on('console', (m) => console.push(m.text()));
    await page.addInitScript(() => {
      (window as unknown as { violations: string[] }).violations = [];
      document.addEventListener('securitypolicyviolation', (e) => (window as unknown as { violations: string[] }).violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    const res = await page.goto(`${s.admin}/#token=${ADMIN_TOKEN}`);
    assert.match(String(res?.headers()['content-security-policy']), /frame-ancestors 'none'/);
    await page.waitForSelector('#updated:text-matches("updated")', { timeout: 5000 });
    // The token is gone from the address bar (and so from history), but the page keeps polling with it.
    assert.equal(await page.evaluate(() => location.hash), '');
    assert.ok(!page.url().includes(ADMIN_TOKEN), page.url());
    const first = await page.locator('#updated').textContent();
    await page.waitForFunction((t) => document.querySelector('#updated')?.textContent !== t, first, { timeout: 5000 });
    assert.equal(await page.locator('#error').textContent(), '');
    assert.equal(await page.locator('#ready').textContent(), 'ready');
    assert.equal(await page.locator('#endpoints tbody tr').count(), 2);
    // Inline style set through the CSSOM (swatches, bars) is allowed; nothing was blocked.
    assert.deepEqual(await page.evaluate(() => (window as unknown as { violations: string[] }).violations), []);
    assert.equal(console.filter((l) => /Content Security Policy/i.test(l)).length, 0, console.join('\n'));
  } finally {
    await browser.close();
    await s.close();
  }
});
