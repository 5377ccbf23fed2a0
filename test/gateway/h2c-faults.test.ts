import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as h2connect, constants, type ClientHttp2Session } from 'node:http2';
import { request } from 'undici';
import { LAB_FAULTS, startLab, type Lab } from '../../src/lab/index.js';
import { labGatewayConfig } from '../../src/cli/demo.js';
import { startTestGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { h2request, type H2Answer } from '../helpers/h2-request.js';

/**
 * The failure suite over h2c (HTTP/2 with prior knowledge on a plain listener) beside
 * HTTP/1.1 on the same listener, one table (the lab's catalogue): the same status and the
 * same Proxy-Status error type on both protocols, the record naming the same type; a body cut
 * upstream resets the stream. Client-side stream resets and GOAWAY are named in the record.
 * (test/gateway/h2.test.ts runs the same table over h2 on a TLS listener.)
 */

let lab: Lab;
let gw: TestGateway;
let dir: string;

const PREFIX: Record<string, string> = { http: '', refused: '/_refused', 'tls-self-signed': '/_tls-self', 'tls-ca': '/_tls-ca' };

before(async () => {
  lab = await startLab({ tls: true });
  dir = mkdtempSync(join(tmpdir(), 'gatewise-h2c-'));
  const caFile = join(dir, 'lab-ca.pem');
  writeFileSync(caFile, lab.caPem!);
  gw = await startTestGateway({
    ...labGatewayConfig(lab, caFile, { connect: '1s', response: '600ms', idle: '600ms' }),
    listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }],
  });
});

after(async () => {
  await gw?.close();
  await lab?.close();
  rmSync(dir, { recursive: true, force: true });
});

function errorType(proxyStatus: string | string[] | undefined): string | undefined {
  const v = Array.isArray(proxyStatus) ? proxyStatus.join(', ') : proxyStatus;
  return v ? /;error=([a-z_]+)/.exec(v)?.[1] : undefined;
}

function h2get(s: ClientHttp2Session, path: string): Promise<H2Answer> {
  return h2request(s, path, { allowReset: true });
}

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within 3 s');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function recordWhere(pred: (l: LogLine) => boolean): Promise<LogLine | undefined> {
  const deadline = Date.now() + 4000;
  for (;;) {
    const line = gw.logs.find((l) => l.type === 'access' && pred(l));
    if (line !== undefined || Date.now() > deadline) return line;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the failure suite over h2c and HTTP/1.1, side by side', () => {
  let s: ClientHttp2Session;
  before(() => {
    s = h2connect(gw.url);
    s.on('error', () => {});
  });
  after(() => s.close());

  for (const f of LAB_FAULTS.filter((x) => x.expectType !== undefined && !x.midBody)) {
    test(`${f.listener ?? 'http'} ${f.path}: ${f.expectStatus} ${f.expectType} on both`, async () => {
      const path = PREFIX[f.listener ?? 'http'] + f.path;
      const [over2, res1] = await Promise.all([h2get(s, path), request(gw.url + path)]);
      await res1.body.text().catch(() => '');
      assert.deepEqual(
        { h2: over2.status, h1: res1.statusCode, h2Type: errorType(over2.headers['proxy-status']), h1Type: errorType(res1.headers['proxy-status']) },
        { h2: f.expectStatus, h1: f.expectStatus, h2Type: f.expectType, h1Type: f.expectType },
      );
      const line = await gw.logFor(String(over2.headers['x-request-id']));
      assert.equal(line.error, f.expectType);
      assert.equal(line.httpVersion, '2.0');
    });
  }

  for (const f of LAB_FAULTS.filter((x) => x.midBody === true)) {
    test(`${f.path}: a body cut upstream resets the h2c stream, logged ${f.expectType}`, async () => {
      const r = await h2get(s, f.path);
      assert.equal(r.status, f.expectStatus);
      assert.ok(r.reset !== undefined, 'the stream must end with an error');
      assert.equal((await gw.logFor(String(r.headers['x-request-id']))).error, f.expectType);
    });
  }
});

describe('the client side of HTTP/2 named in the record', () => {
  test('RST_STREAM from the client: endedBy client, the code named (CANCEL, and others)', async () => {
    const s = h2connect(gw.url);
    s.on('error', () => {});
    for (const [code, name] of [[constants.NGHTTP2_CANCEL, 'CANCEL'], [constants.NGHTTP2_INTERNAL_ERROR, 'INTERNAL_ERROR']] as const) {
      const path = `/slow?ms=1500&rst=${name}`;
      const req = s.request({ ':path': path });
      req.on('error', () => {});
      // The gateway is working on it (in flight), then the client resets it.
      await until(() => gw.gw.ctx.inflight > 0);
      req.close(code);
      const line = await recordWhere((l) => l.path === path);
      assert.ok(line, `no record for ${name}`);
      assert.equal(line.endedBy, 'client');
      assert.match(String(line.detail), new RegExp(`RST_STREAM ${name}`));
    }
    s.close();
  });

  test('GOAWAY / connection closed by the client mid-request: endedBy client, named', async () => {
    const s = h2connect(gw.url);
    s.on('error', () => {});
    const path = '/slow?ms=1500&goaway=1';
    const req = s.request({ ':path': path });
    req.on('error', () => {});
    await until(() => gw.gw.ctx.inflight > 0);
    s.destroy();
    const line = await recordWhere((l) => l.path === path);
    assert.ok(line, 'no record');
    assert.equal(line.endedBy, 'client');
    assert.match(String(line.detail), /client (reset the HTTP\/2 stream|closed the HTTP\/2 connection)/);
  });
});
