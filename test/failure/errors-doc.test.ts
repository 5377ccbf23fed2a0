import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'undici';
import { ERROR_TYPES, ERROR_TYPE_NAMES } from '../../src/failure/index.js';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('the taxonomy has all 32 RFC 9209 error types', () => {
  assert.equal(ERROR_TYPE_NAMES.length, 32);
});

test('docs/errors.md lists every error type with the status and side the code uses', () => {
  const rows = new Map<string, { status: number; side: string }>();
  for (const line of doc.split('\n')) {
    const m = /^\| `([a-z_]+)`(?: †)? \| (\d+) \| (\w+) \|/.exec(line);
    if (m) rows.set(m[1]!, { status: Number(m[2]), side: m[3]! });
  }
  assert.deepEqual([...rows.keys()].sort(), [...ERROR_TYPE_NAMES].sort());
  for (const [name, info] of Object.entries(ERROR_TYPES)) {
    assert.equal(rows.get(name)?.status, info.status, `${name} status`);
    assert.equal(rows.get(name)?.side, info.source, `${name} side`);
  }
});

test('problem+json types: the default is documented, every type has its anchor in docs/errors.md, and a configured base makes them links on both faces', async () => {
  const { PROBLEM_TYPE_BASE, errorAnchor, renderFailure, Failure } = await import('../../src/failure/index.js');
  const { startTestGateway } = await import('../helpers/gateway.js');
  const { startTestProxy, rawExchange } = await import('../forward/helpers.js');
  for (const name of ERROR_TYPE_NAMES) assert.ok(doc.includes(`<a id="${errorAnchor(name)}"></a>`), `anchor for ${name}`);
  assert.ok(doc.includes(`\`${PROBLEM_TYPE_BASE}connection-refused\``), 'the default type is shown in docs/errors.md');
  assert.match(doc, /proxyStatus\.problemTypeBase/);
  assert.match(doc, /forward\.problemTypeBase/);
  const plain = renderFailure({ failure: new Failure({ type: 'connection_refused', phase: 'connect' }), requestId: 'r', accept: 'application/json', proxyStatus: { name: 'g', revealTopology: false } });
  assert.equal((JSON.parse(plain.body.toString()) as { type: string }).type, `${PROBLEM_TYPE_BASE}connection-refused`);
  // The reverse gateway with a base: a refused endpoint's body links to the page's anchor.
  const base = 'https://docs.example.com/gatewise/errors.html#';
  const closed = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const gw = await startTestGateway({ proxyStatus: { problemTypeBase: base }, clusters: { a: { endpoints: [`http://127.0.0.1:${closed}`] } }, routes: [{ cluster: 'a', retry: { tries: 1 } }] });
  try {
    const res = await request(`${gw.url}/`, { headers: { accept: 'application/problem+json' } });
    assert.equal(res.statusCode, 502);
    assert.equal(((await res.body.json()) as { type: string }).type, `${base}connection-refused`);
  } finally {
    await gw.close();
  }
  // The forward proxy with a base: a 407's body.
  const fwd = await startTestProxy({ problemTypeBase: base });
  try {
    const raw = await rawExchange(fwd.port, 'GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: application/json\r\nConnection: close\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 407 /);
    assert.ok(raw.includes(`"type":"${base}http-request-denied"`), raw);
  } finally {
    await fwd.close();
  }
});
