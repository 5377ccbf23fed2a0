import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { Agent, request } from 'undici';
import { LAB_FAULTS, startLab, type Lab, type LabFault } from '../../src/lab/index.js';
import { labGatewayConfig } from '../../src/cli/demo.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { readLate } from '../helpers/late-reader.js';

/** Every lab fault through the gateway: status, Proxy-Status type, body formats, log line, metric. */

let lab: Lab;
let gw: TestGateway;
const client = new Agent({ keepAliveTimeout: 1000 });

const PREFIX: Record<string, string> = { http: '', refused: '/_refused', 'tls-self-signed': '/_tls-self', 'tls-ca': '/_tls-ca' };

let dir: string | undefined;

before(async () => {
  lab = await startLab({ tls: true });
  dir = mkdtempSync(join(tmpdir(), 'gatewise-test-'));
  const caFile = join(dir, 'lab-ca.pem');
  writeFileSync(caFile, lab.caPem!);
  gw = await startTestGateway(labGatewayConfig(lab, caFile, { connect: '1s', response: '600ms', idle: '600ms' }));
});

after(async () => {
  await gw?.close();
  await lab?.close();
  await client.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function errorType(proxyStatus: string | string[] | undefined): string | undefined {
  const v = Array.isArray(proxyStatus) ? proxyStatus.join(', ') : proxyStatus;
  return v ? /;error=([a-z_]+)/.exec(v)?.[1] : undefined;
}

async function get(f: LabFault, accept: string) {
  const res = await request(gw.url + PREFIX[f.listener ?? 'http'] + f.path, { dispatcher: client, headers: { accept } });
  let body = '';
  let bodyError: unknown;
  try {
    body = await res.body.text();
  } catch (err) {
    bodyError = err;
  }
  return { res, body, bodyError };
}

const faults = LAB_FAULTS.filter((f) => f.expectType !== undefined);

describe('each lab fault is named', () => {
  for (const f of faults) {
    test(`${f.listener ?? 'http'} ${f.path} → ${f.expectStatus} ${f.expectType}`, async () => {
      const before = await gw.requestsCounted({ error: f.expectType! });
      const { res, body, bodyError } = await get(f, 'application/problem+json');
      assert.equal(res.statusCode, f.expectStatus, body);
      const rid = res.headers['x-request-id'] as string;
      assert.ok(rid, 'every response has a request id');
      if (f.midBody) {
        // The upstream's head was passed on; the cut must reach the client as an aborted body.
        assert.ok(bodyError, 'a truncated body must never look complete');
      } else {
        assert.equal(errorType(res.headers['proxy-status']), f.expectType);
        assert.equal(res.headers['content-type'], 'application/problem+json');
        const problem = JSON.parse(body) as Record<string, unknown>;
        assert.equal(problem.errorType, f.expectType);
        assert.equal(problem.status, f.expectStatus);
        assert.equal(problem.requestId, rid);
        assert.ok(Array.isArray(problem.attempts) && problem.attempts.length >= 1, 'attempts listed');
        assert.match(String(res.headers['proxy-status']), /next-hop="127\.0\.0\.1:\d+"|next-hop="localhost:\d+"/);
      }
      const line = await gw.logFor(rid);
      assert.equal(line.error, f.expectType);
      assert.equal(line.status, f.expectStatus);
      assert.ok(line.attempts && line.attempts[0]!.error === f.expectType);
      assert.equal(await gw.requestsCounted({ error: f.expectType! }), before + 1);
    });
  }
});

describe('error bodies are negotiated', () => {
  const quick = faults.filter((f) => !f.midBody && !f.needsTimeout);
  for (const f of quick) {
    test(`${f.listener ?? 'http'} ${f.path}: html for browsers, text otherwise`, async () => {
      const html = await get(f, 'text/html,application/xhtml+xml,*/*;q=0.8');
      assert.equal(html.res.statusCode, f.expectStatus);
      assert.match(String(html.res.headers['content-type']), /^text\/html/);
      assert.match(html.body, /<!doctype html>/);
      assert.ok(html.body.includes(String(html.res.headers['x-request-id'])), 'the page quotes the request id');
      assert.match(html.body, /Retrying/);
      const text = await get(f, '*/*');
      assert.match(String(text.res.headers['content-type']), /^text\/plain/);
      assert.ok(text.body.includes(`Error type: ${f.expectType}`));
      assert.equal(errorType(text.res.headers['proxy-status']), f.expectType);
    });
  }
});

describe('upstream answers are passed on', () => {
  for (const f of LAB_FAULTS.filter((x) => x.expectType === undefined && x.path !== '/ws')) {
    test(`${f.listener ?? 'http'} ${f.path} → ${f.expectStatus}`, async () => {
      const { res, bodyError } = await get(f, '*/*');
      assert.equal(res.statusCode, f.expectStatus);
      assert.equal(bodyError, undefined);
      const ps = res.headers['proxy-status'];
      if (f.expectStatus >= 500) {
        assert.match(String(ps), /received-status=\d{3}/);
        assert.equal(errorType(ps), undefined, 'a passed-through 5xx carries no error');
      } else {
        assert.equal(ps, undefined);
      }
    });
  }
});

describe('the timeouts count only the upstream’s delays (response 600 ms, idle 600 ms)', () => {
  test('a body streamed in pieces 300 ms apart for 1.5 s arrives whole', async () => {
    const { res, body, bodyError } = await get({ path: '/chunked?pieces=6&delay=300' } as LabFault, '*/*');
    assert.equal(res.statusCode, 200);
    assert.equal(bodyError, undefined);
    assert.equal(body, [1, 2, 3, 4, 5, 6].map((i) => `piece ${i}\n`).join(''));
    const line = await gw.logFor(res.headers['x-request-id'] as string);
    assert.equal(line.error, undefined);
  });

  test('a client that reads nothing for 1.5 s (backpressure) still gets all 64 MiB', { timeout: 20_000 }, async () => {
    const n = 64 * 1024 * 1024;
    const { head, bodyBytes } = await readLate(connect({ port: gw.port, host: '127.0.0.1' }), `GET /bytes?n=${n} HTTP/1.1\r\nhost: lab\r\nconnection: close\r\n\r\n`, 1500);
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.equal(bodyBytes, n);
  });

  test('an upload sent in pieces 250 ms apart for 1.25 s is answered, not timed out', async () => {
    const sock = connect({ port: gw.port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    sock.write('POST /upload HTTP/1.1\r\nhost: lab\r\nconnection: close\r\ncontent-length: 5120\r\n\r\n');
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 250));
      sock.write(Buffer.alloc(1024, 0x61));
    }
    await closed;
    const text = Buffer.concat(chunks).toString('latin1');
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /"bytes":5120/);
  });

  test('the response wait starts once the body is sent: POST /hang → 504 http_response_timeout after ~600 ms', async () => {
    const t0 = performance.now();
    const res = await request(`${gw.url}/hang`, { dispatcher: client, method: 'POST', body: Buffer.alloc(200 * 1024, 0x62), headers: { accept: 'application/problem+json' } });
    const body = await res.body.text();
    const ms = performance.now() - t0;
    assert.equal(res.statusCode, 504, body);
    assert.equal(errorType(res.headers['proxy-status']), 'http_response_timeout');
    assert.ok(ms >= 550 && ms < 3000, `answered after ${Math.round(ms)} ms`);
    const line = await gw.logFor(res.headers['x-request-id'] as string);
    assert.equal(line.error, 'http_response_timeout');
    assert.equal(line.attempts![0]!.error, 'http_response_timeout');
  });
});
