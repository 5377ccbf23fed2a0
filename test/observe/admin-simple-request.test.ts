import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { withTestUpstreamClient } from '../helpers/upstream-client.js';
import { withTestFront } from '../helpers/front.js';
import { between, seededRun } from '../helpers/seeded.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GatewiseProcess } from '../helpers/gatewise-process.js';

// Finding (admin review, session 32): a POST without a body (drain, undrain, purge, reload,
// disable, enable by query string) to a loopback admin listener without a token was refused
// only by the Origin / Sec-Fetch-Site check. A browser that sends no Origin (an extension or a
// privacy setting strips it) could make one cross-site as a "simple" request, with no preflight.
// Now every state-changing request must carry what a simple request cannot: a JSON Content-Type,
// an Authorization header, or Gatewise-Admin.

const CHROMIUM = process.env.GATEWISE_CHROMIUM ?? '/usr/bin/chromium';
const noBrowser = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM}`;

interface Stack {
  lab: Lab;
  rt: Runtime;
  admin: string;
  endpoint: string;
  draining(): Promise<boolean>;
  close(): Promise<void>;
}

/** The reverse gateway in front of the lab with a loopback admin listener and no token (the case the finding is about). */
async function startStack(): Promise<Stack> {
  const lab = await startLab();
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig(withTestFront(withTestUpstreamClient({ listeners: [{ port: 0 }], admin: { port: 0 }, clusters: { app: { endpoints: [lab.url] } }, routes: [{ cluster: 'app' }] })));
  let rt: Runtime;
  try {
    rt = await startRuntime(config, { logger, probeUpstreams: false });
  } catch (err) {
    await lab.close();
    throw err;
  }
  const admin = rt.adminUrl!;
  const endpoint = new URL(lab.url).host;
  return {
    lab,
    rt,
    admin,
    endpoint,
    async draining() {
      const r = await request(`${admin}/clusters`);
      const body = (await r.body.json()) as Record<string, Array<{ draining: boolean }>>;
      return body.app![0]!.draining;
    },
    async close() {
      await rt.close();
      await lab.close();
    },
  };
}

/** One request over node:http with exactly these headers (no Origin unless given): status and body. */
function raw(url: string, method: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent: false }, (res) => {
      let got = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (got += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: got }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('a state-changing request without a body and without Origin needs a header a simple request cannot carry: refused 403 (problem+json) and nothing changes; Gatewise-Admin, Authorization or a JSON type pass (seeded)', async () => {
  const s = await startStack();
  try {
    await seededRun('admin simple request', async (rand) => {
      // What a browser's form or no-cors fetch may carry without a preflight (no Origin: stripped).
      const simple: Array<Record<string, string>> = [{}, { 'content-type': 'text/plain' }, { 'content-type': 'application/x-www-form-urlencoded' }, { 'content-type': 'multipart/form-data; boundary=x' }, { accept: '*/*', 'accept-language': 'en' }, { 'sec-fetch-site': 'same-site' }, { 'content-type': 'text/plain', 'sec-fetch-mode': 'no-cors' }];
      const marked: Array<Record<string, string>> = [{ 'gatewise-admin': '1' }, { 'Gatewise-Admin': 'yes' }, { 'content-type': 'application/json' }, { 'content-type': 'application/merge-patch+json' }, { authorization: 'Bearer anything-at-all' }];
      for (let i = 0; i < 24; i++) {
        const isSimple = rand() < 0.6;
        const headers = isSimple ? simple[between(rand, 0, simple.length - 1)]! : marked[between(rand, 0, marked.length - 1)]!;
        const target = [`/clusters/app/drain?endpoint=${s.endpoint}`, '/cache/purge?key=example.com/x', '/reload', '/accounts/nobody/disable?reason=x', '/accounts/nobody/enable'][between(rand, 0, 4)]!;
        const r = await raw(`${s.admin}${target}`, 'POST', headers);
        const what = `POST ${target} ${JSON.stringify(headers)}: ${r.status} ${r.body}`;
        if (isSimple) {
          assert.equal(r.status, 403, what);
          const p = JSON.parse(r.body) as { type: string; status: number; detail: string };
          assert.equal(p.type, 'tag:gatewise,2026:admin:simple-request', what);
          assert.equal(p.status, 403);
          assert.match(p.detail, /Gatewise-Admin/);
        } else {
          assert.notEqual(r.status, 403, what);
          if (target.includes('/drain')) {
            assert.equal(r.status, 200, what);
            assert.equal(await s.draining(), true);
            const u = await raw(`${s.admin}/clusters/app/undrain?endpoint=${s.endpoint}`, 'POST', { 'gatewise-admin': '1' });
            assert.equal(u.status, 200, u.body);
          }
        }
        assert.equal(await s.draining(), false, `still in service after ${what}`);
      }
      // DELETE is state-changing too.
      const del = await raw(`${s.admin}/accounts/nobody`, 'DELETE', {});
      assert.equal(del.status, 403, del.body);
      // Reading needs nothing.
      assert.equal((await raw(`${s.admin}/clusters`, 'GET', {})).status, 200);
    });
  } finally {
    await s.close();
  }
});

test('gatewise run (the CLI, a real process): POST /reload by a program needs Gatewise-Admin (or Authorization, or a JSON type) on a loopback listener without a token', { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-simple-'));
  let p: GatewiseProcess | undefined;
  try {
    p = await GatewiseProcess.start(join(dir, 'gatewise.json'), { admin: { port: 0 }, forward: { listeners: [{ address: '127.0.0.1', port: 0 }], auth: { required: false } } });
    const admin = String(p.lines.find((l) => l.event === 'admin')!.url);
    const bare = await raw(`${admin}/reload`, 'POST', {});
    assert.equal(bare.status, 403, bare.body);
    assert.equal((JSON.parse(bare.body) as { type: string }).type, 'tag:gatewise,2026:admin:simple-request');
    for (const headers of [{ 'gatewise-admin': '1' }, { 'content-type': 'application/json' }] as Array<Record<string, string>>) {
      const ok = await raw(`${admin}/reload`, 'POST', headers);
      assert.equal(ok.status, 200, ok.body);
      assert.equal((JSON.parse(ok.body) as { ok: boolean }).ok, true);
    }
  } finally {
    await p?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A page on another loopback origin that makes the browser POST a drain to the admin listener: a form, two no-cors fetches, and a fetch with the header (preflighted). */
function attackerPage(admin: string, endpoint: string, marked: boolean): string {
  const drain = `${admin}/clusters/app/drain?endpoint=${encodeURIComponent(endpoint)}`;
  return `<!doctype html><html><body>
<form id="f" method="POST" action="${drain}" enctype="text/plain"></form>
<script>
window.results = {};
async function run() {
  try { await fetch(${JSON.stringify(drain)}, { method: 'POST', mode: 'no-cors', body: 'x=1', headers: { 'content-type': 'text/plain' } }); window.results.noCors = 'sent'; } catch (e) { window.results.noCors = 'error ' + e; }
  try { await fetch(${JSON.stringify(drain)}, { method: 'POST', mode: 'no-cors' }); window.results.bodiless = 'sent'; } catch (e) { window.results.bodiless = 'error ' + e; }
  ${marked ? `try { const r = await fetch(${JSON.stringify(drain)}, { method: 'POST', headers: { 'gatewise-admin': '1' } }); window.results.marked = 'status ' + r.status; } catch (e) { window.results.marked = 'blocked'; }` : ''}
  window.results.done = true;
}
</script></body></html>`;
}

/** A plain-HTTP forward proxy on loopback that passes every request on without Origin, Referer and Sec-Fetch-* (only to loopback targets). */
async function startStrippingProxy(): Promise<Server> {
  const server = createServer((req, res) => {
    const target = new URL(req.url ?? '/');
    const headers = { ...req.headers };
    for (const k of Object.keys(headers)) if (k === 'origin' || k === 'referer' || k.startsWith('sec-fetch-') || k.startsWith('proxy-')) delete headers[k];
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(target.hostname)) {
      res.writeHead(403).end();
      return;
    }
    const up = httpRequest({ host: '127.0.0.1', port: target.port, method: req.method, path: target.pathname + target.search, headers, agent: false }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return server;
}

async function startPageServer(html: string, host: string): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://${host}:${(server.address() as AddressInfo).port}/` };
}

for (const stripOrigin of [false, true]) {
  const how = stripOrigin ? 'with Origin and Sec-Fetch-* stripped (as a privacy extension does)' : 'as Chromium sends it (Origin, Sec-Fetch-Site)';
  test(`in Chromium, a page on another loopback origin cannot drain an endpoint: form POST, no-cors fetch, bodiless fetch, and a fetch with the header (preflight refused); ${how}`, { skip: noBrowser, timeout: 90_000 }, async () => {
    const { chromium } = await import('playwright-core');
    const s = await startStack();
    let page: { server: Server; url: string } | undefined;
    // A browser that sends no Origin: Chromium behind a loopback proxy that drops Origin, Referer and Sec-Fetch-* (as privacy proxies and extensions do).
    const relay = stripOrigin ? await startStrippingProxy() : undefined;
    const proxyArgs = relay ? [`--proxy-server=http://127.0.0.1:${(relay.address() as AddressInfo).port}`, '--proxy-bypass-list=<-loopback>'] : [];
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', ...proxyArgs] }).catch(async (err: unknown) => {
      relay?.closeAllConnections();
      relay?.close();
      await s.close();
      throw err;
    });
    try {
      // localhost vs 127.0.0.1: another site, both loopback.
      page = await startPageServer(attackerPage(s.admin, s.endpoint, true), 'localhost');
      const ctx = await browser.newContext();
      const tab = await ctx.newPage();
      const answers: Array<{ method: string; status: number; body: string }> = [];
      tab.on('response', (res) => {
        if (!res.url().startsWith(s.admin)) return;
        void res.text().then(
          (body) => answers.push({ method: res.request().method(), status: res.status(), body }),
          () => answers.push({ method: res.request().method(), status: res.status(), body: '' }),
        );
      });
      await tab.goto(page.url);
      await tab.evaluate(() => (window as unknown as { run(): Promise<void> }).run());
      await tab.waitForFunction(() => (window as unknown as { results: { done?: boolean } }).results.done === true, undefined, { timeout: 20_000 });
      const results = await tab.evaluate(() => (window as unknown as { results: Record<string, string> }).results);
      assert.equal(results.marked, 'blocked', 'the fetch with a custom header needs a preflight, which the listener does not grant');
      assert.equal(await s.draining(), false, `after the fetches: ${JSON.stringify(answers)}`);
      // The form: a top-level navigation POST, with no fields (an empty body).
      const nav = tab.waitForNavigation({ timeout: 20_000 });
      await tab.evaluate(() => (document.getElementById('f') as HTMLFormElement).submit());
      const res = await nav;
      assert.equal(res?.status(), 403, await res?.text());
      assert.equal(await s.draining(), false, `after the form: ${JSON.stringify(answers)}`);
      const posts = answers.filter((a) => a.method === 'POST');
      assert.ok(posts.length >= 1, JSON.stringify(answers));
      // 415 for the fetch with a text body, 403 for the bodiless ones.
      for (const a of posts) assert.ok(a.status === 403 || a.status === 415, JSON.stringify(a));
      if (stripOrigin) {
        // Without Origin only the new guard stands: every refusal is its.
        const refusal = JSON.parse((await res!.text())) as { type: string };
        assert.equal(refusal.type, 'tag:gatewise,2026:admin:simple-request');
      }
      // The listener's own page (the dashboard) still works in the same browser.
      await tab.goto(`${s.admin}/`);
      await tab.waitForSelector('#updated:text-matches("updated")', { timeout: 10_000 });
      assert.equal(await tab.locator('#error').textContent(), '');
    } finally {
      await browser.close();
      if (page) await new Promise<void>((r) => page!.server.close(() => r()));
      if (relay) {
        relay.closeAllConnections();
        await new Promise<void>((r) => relay.close(() => r()));
      }
      await s.close();
    }
  });
}
