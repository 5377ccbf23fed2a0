import { test } from 'node:test';
import assert from 'node:assert/strict';
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
    assert.match(metrics, /gatewise_requests_total\{face="reverse",protocol="http",route="route-0",cluster="app",status="200",error="",ended_by="complete"\} 1/);
    const status = (await (await request(`${admin}/clusters`)).body.json()) as Record<string, Array<{ endpoint: string; available: boolean }>>;
    const ep = status.app![0]!.endpoint;
    assert.equal(status.app![0]!.available, true);
    const d = await request(`${admin}/clusters/app/drain?endpoint=${ep}`, { method: 'POST' });
    assert.equal(d.statusCode, 200);
    await d.body.text();
    const r = await request(`${gw}/ok`);
    assert.equal(r.statusCode, 503);
    assert.match(String(r.headers['proxy-status']), /error=destination_unavailable/);
    await r.body.text();
    const after = await (await request(`${admin}/metrics`)).body.text();
    assert.match(after, /gatewise_requests_total\{[^}]*status="503",error="destination_unavailable"[^}]*\} 1/);
    await (await request(`${admin}/clusters/app/undrain?endpoint=${ep}`, { method: 'POST' })).body.text();
    assert.equal((await request(`${gw}/ok`)).statusCode, 200);
    const unknown = await request(`${admin}/clusters/app/drain?endpoint=1.2.3.4:1`, { method: 'POST' });
    assert.equal(unknown.statusCode, 404);
    await unknown.body.text();
  } finally {
    await rt.close();
    await lab.close();
  }
});
