import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request } from 'undici';
import { startLab } from '../../src/lab/index.js';
import { startTestGateway } from '../helpers/gateway.js';

test('close() drains in-flight requests, then stops accepting', async () => {
  const lab = await startLab();
  const gw = await startTestGateway({ clusters: { lab: { endpoints: [lab.url] } }, routes: [{ cluster: 'lab' }] });
  try {
    const inflight = [request(`${gw.url}/slow?ms=400`), request(`${gw.url}/slow?ms=300`, { method: 'POST', body: 'x' })];
    await new Promise((r) => setTimeout(r, 100));
    const closing = gw.gw.close(5000);
    const responses = await Promise.all(inflight);
    for (const r of responses) {
      assert.equal(r.statusCode, 200);
      assert.equal(r.headers.connection, 'close', 'drained responses close their connection');
      await r.body.text();
    }
    await closing;
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect(gw.port, '127.0.0.1', () => resolve(s));
        s.on('error', reject);
      }),
      (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED',
    );
  } finally {
    await gw.close();
    await lab.close();
  }
});

test('close() cuts what is still running after the drain timeout', async () => {
  const lab = await startLab();
  const gw = await startTestGateway({ clusters: { lab: { endpoints: [lab.url] } }, routes: [{ cluster: 'lab' }] });
  try {
    const hanging = request(`${gw.url}/hang`).then(
      (r) => r.statusCode,
      (e: NodeJS.ErrnoException) => e.code,
    );
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await gw.gw.close(300);
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(typeof (await hanging), 'string', 'the hanging request was cut');
  } finally {
    await gw.close();
    await lab.close();
  }
});
