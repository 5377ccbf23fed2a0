import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/observe/access-log.js';
import { request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime } from '../../src/cli/runtime.js';
import { startLab } from '../../src/lab/index.js';

test('admin API: metrics, cluster status, drain and undrain', async () => {
  const lab = await startLab();
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig({
    listeners: [{ port: 0 }],
    admin: { port: 0 },
    clusters: { app: { endpoints: [lab.url] } },
    routes: [{ cluster: 'app' }],
  });
  const rt = await startRuntime(config, { logger });
  try {
    const gw = rt.gateway!.addresses()[0]!.url;
    const adminLine = lines.map((l) => JSON.parse(l) as { event?: string; url?: string }).find((l) => l.event === 'admin')!;
    const admin = adminLine.url!;
    assert.equal((await (await request(`${gw}/ok`)).body.text()).length > 0, true);
    const metrics = await (await request(`${admin}/metrics`)).body.text();
    assert.match(metrics, /gatewise_requests_total\{face="reverse",protocol="http",route="route-0",cluster="app",status="200",error="",reason="",ended_by="complete"\} 1/);
    const status = (await (await request(`${admin}/clusters`)).body.json()) as Record<string, Array<{ endpoint: string; available: boolean }>>;
    const ep = status.app![0]!.endpoint;
    assert.equal(status.app![0]!.available, true);
    const d = await request(`${admin}/clusters/app/drain?endpoint=${ep}`, { method: 'POST', headers: { 'gatewise-admin': '1' } });
    assert.equal(d.statusCode, 200);
    await d.body.text();
    const r = await request(`${gw}/ok`);
    assert.equal(r.statusCode, 503);
    assert.match(String(r.headers['proxy-status']), /error=destination_unavailable/);
    await r.body.text();
    const after = await (await request(`${admin}/metrics`)).body.text();
    assert.match(after, /gatewise_requests_total\{[^}]*status="503",error="destination_unavailable"[^}]*\} 1/);
    await (await request(`${admin}/clusters/app/undrain?endpoint=${ep}`, { method: 'POST', headers: { 'gatewise-admin': '1' } })).body.text();
    assert.equal((await request(`${gw}/ok`)).statusCode, 200);
    const unknown = await request(`${admin}/clusters/app/drain?endpoint=1.2.3.4:1`, { method: 'POST', headers: { 'gatewise-admin': '1' } });
    assert.equal(unknown.statusCode, 404);
    await unknown.body.text();
    // What a browser is made to send (finding, session 29): a cross-site POST, and a page on a
    // DNS-rebound name reading the config. Refused, and the endpoint stays in service.
    const own = new URL(admin).host;
    const browser: Array<[string, string, Record<string, string>]> = [
      ['POST', `/clusters/app/drain?endpoint=${ep}`, { origin: 'https://evil.example', 'content-type': 'text/plain' }],
      ['POST', `/clusters/app/drain?endpoint=${ep}`, { origin: 'null' }],
      ['POST', `/clusters/app/drain?endpoint=${ep}`, { 'sec-fetch-site': 'cross-site' }],
      ['POST', `/clusters/app/drain?endpoint=${ep}`, { origin: `http://${own}.evil.example` }],
      ['GET', '/config', { host: `rebound.evil.example:${new URL(admin).port}` }],
      ['POST', `/clusters/app/drain?endpoint=${ep}`, { host: 'rebound.evil.example', origin: 'http://rebound.evil.example' }],
    ];
    for (const [method, path, headers] of browser) {
      const b = await request(`${admin}${path}`, { method: method as 'GET', headers });
      assert.equal(b.statusCode, 403, `${method} ${path} ${JSON.stringify(headers)}`);
      await b.body.text();
    }
    assert.equal((await request(`${gw}/ok`)).statusCode, 200, 'still in service');
    // Its own pages (same origin) and programs (no Origin) may, with the header a cross-site simple request cannot carry.
    const same = await request(`${admin}/clusters/app/drain?endpoint=${ep}`, { method: 'POST', headers: { origin: `http://${own}`, 'gatewise-admin': '1' } });
    assert.equal(same.statusCode, 200);
    await same.body.text();
    await (await request(`${admin}/clusters/app/undrain?endpoint=${ep}`, { method: 'POST', headers: { origin: `http://${own}`, 'sec-fetch-site': 'same-origin', 'gatewise-admin': '1' } })).body.text();
    const local = await request(`${admin}/clusters`, { headers: { host: `localhost:${new URL(admin).port}` } });
    assert.equal(local.statusCode, 200);
    await local.body.text();
  } finally {
    await rt.close();
    await lab.close();
  }
});

test('admin /healthz says it means only "alive" and stays 200 while draining; /ready turns 503 when the gateway drains', async () => {
  const lab = await startLab();
  const lines: string[] = [];
  const seen = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig({ listeners: [{ port: 0 }], admin: { port: 0 }, clusters: { app: { endpoints: [lab.url] } }, routes: [{ cluster: 'app' }] });
  const rt = await startRuntime(config, { logger: seen });
  try {
    const admin = lines.map((l) => JSON.parse(l) as { event?: string; url?: string }).find((l) => l.event === 'admin')!.url!;
    const get = async (path: string): Promise<{ status: number; body: string }> => {
      const r = await request(`${admin}${path}`);
      return { status: r.statusCode, body: await r.body.text() };
    };
    const live = await get('/healthz');
    assert.equal(live.status, 200);
    assert.match(live.body, /^alive: .*says nothing about upstreams.*\/ready/);
    assert.deepEqual(await get('/ready'), { status: 200, body: 'ready: accepting traffic\n' });
    await rt.gateway!.close(0);
    assert.equal((await get('/ready')).status, 503);
    assert.equal((await get('/healthz')).status, 200);
  } finally {
    await rt.close();
    await lab.close();
  }
});

test('an upstream unreachable at start is logged once as a warning naming the endpoint, and the gateway starts anyway', async () => {
  const lab = await startLab();
  // A port nothing listens on: bound, then closed.
  const closed = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig({
    listeners: [{ port: 0 }],
    clusters: { app: { endpoints: [lab.url, `http://127.0.0.1:${closed}`] } },
    routes: [{ cluster: 'app' }],
  });
  const rt = await startRuntime(config, { logger });
  try {
    await rt.upstreamProbe;
    const warnings = lines.map((l) => JSON.parse(l) as { level: string; event?: string; endpoint?: string; cluster?: string; err?: string; msg: string }).filter((l) => l.event === 'upstream-unreachable');
    assert.equal(warnings.length, 1, lines.join(''));
    assert.equal(warnings[0]!.level, 'warn');
    assert.equal(warnings[0]!.endpoint, `http://127.0.0.1:${closed}`);
    assert.equal(warnings[0]!.cluster, 'app');
    assert.equal(warnings[0]!.err, 'ECONNREFUSED');
    assert.match(warnings[0]!.msg, /unreachable at start/);
    // Not fatal: the gateway serves through the endpoint that is up.
    const r = await request(`${rt.gateway!.addresses()[0]!.url}/ok`);
    assert.equal(r.statusCode, 200);
    await r.body.dump();
  } finally {
    await rt.close();
    await lab.close();
  }
});
