import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LAB_FAULTS, startLab } from '../../src/lab/index.js';
import { startOneUpstreamGateway } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { accessLine, basic, startTestProxy } from './helpers.js';

/**
 * A destination that fails after its response head went out: no page can follow, so the
 * client's connection ends short of the framing, and the record names the cause. Found
 * (session "story"): for a chunked body broken mid-stream (lab /bad-chunk) the reverse gateway
 * recorded http_response_transfer_coding, but the forward relay classified without telling the
 * classifier the body was chunked (undici's parser error carries no llhttp code there) and
 * recorded http_protocol_error: two stories for one failure.
 */
test('a response that fails mid-body is cut short on both faces, and both records name the same cause', { timeout: 90_000 }, async () => {
  const lab = await startLab({});
  const proxy = await startTestProxy({ revealDetails: true, timeouts: { responseBodyIdle: '1s' }, rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } } as never);
  const gw = await startOneUpstreamGateway(lab.url, { cluster: { timeouts: { idle: '1s' } } });
  try {
    const { host } = new URL(lab.url);
    assert.equal(host.split(':')[0], '127.0.0.1');
    const failed: string[] = [];
    for (const fault of LAB_FAULTS.filter((f) => f.midBody)) {
      const path = fault.path;
      for (const face of ['reverse', 'forward'] as const) {
        const n = proxy.lines.length;
        const head =
          face === 'forward'
            ? `GET http://${host}${path} HTTP/1.1\r\nhost: ${host}\r\nproxy-authorization: ${basic()}\r\n`
            : `GET ${path} HTTP/1.1\r\nhost: ${host}\r\n`;
        const r = await replayRaw(`${head}accept: text/html\r\n\r\n`, { port: face === 'forward' ? proxy.port : gw.port, deadlineMs: 15_000 });
        const res = r.responses[0];
        const rid = res?.headers.find(([k]) => k.toLowerCase() === 'x-request-id')?.[1];
        const record =
          face === 'forward'
            ? await accessLine(proxy.lines, (l) => proxy.lines.indexOf(l) >= n && l.protocol === 'http', `the forward record of ${path}`)
            : await gw.logFor(rid!);
        const got = `status ${res?.status} complete=${res?.complete} end=${r.end} page=${/<!doctype/i.test(r.data.toString('latin1'))} record=${String(record.error)}/${String(record.status)}`;
        if (res === undefined || res.status !== fault.expectStatus || res.complete || r.end !== 'closed' || /<!doctype/i.test(r.data.toString('latin1')) || record.error !== fault.expectType || record.status !== fault.expectStatus) {
          failed.push(`${face} ${path}: want a cut ${fault.expectStatus} recorded ${fault.expectType}, got ${got}`);
        }
      }
    }
    assert.deepEqual(failed, []);
  } finally {
    await gw.close();
    await proxy.close();
    await lab.close();
  }
});
