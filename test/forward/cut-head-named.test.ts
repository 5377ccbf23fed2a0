import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyStatus } from '../../src/failure/index.js';
import { startLab } from '../../src/lab/index.js';
import { startOneUpstreamGateway } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { accessLine, basic, startTestProxy } from './helpers.js';

/**
 * A destination that sends part of its response head and then closes has started a response
 * (docs/errors.md: http_response_incomplete, FAILURES.md: "count the bytes received to tell
 * them apart"). Found (session "story"): the reverse gateway named it so, but the forward
 * proxy's relay tracked that the response had started and classified as if it had not, so the
 * same cause was `connection_terminated` ("closed the connection before sending a response")
 * on the forward face: two stories for one failure.
 */
test('a response head cut short is http_response_incomplete on both faces: status, Proxy-Status, problem and record agree', { timeout: 60_000 }, async () => {
  const lab = await startLab({});
  const proxy = await startTestProxy({ revealDetails: true, rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] } } as never);
  const gw = await startOneUpstreamGateway(lab.url);
  try {
    const { host, port } = new URL(lab.url);
    assert.equal(host.split(':')[0], '127.0.0.1');
    const asks = [
      { face: 'forward', port: proxy.port, head: `GET http://${host}/cut-headers HTTP/1.1\r\nhost: ${host}\r\nproxy-authorization: ${basic()}\r\n` },
      { face: 'reverse', port: gw.port, head: `GET /cut-headers HTTP/1.1\r\nhost: ${host}\r\n` },
    ];
    for (const a of asks) {
      const r = await replayRaw(`${a.head}accept: application/problem+json\r\nconnection: close\r\n\r\n`, { port: a.port, deadlineMs: 10_000 });
      const res = r.responses[0];
      assert.ok(res, `${a.face}: an answer (${r.end})`);
      const field = (n: string): string | undefined => res.headers.find(([k]) => k.toLowerCase() === n)?.[1];
      const rid = field('x-request-id')!;
      const problem = JSON.parse(res.body.toString()) as { errorType: string; status: number; requestId: string };
      const record = a.face === 'forward' ? await accessLine(proxy.lines, (l) => l.requestId === rid) : await gw.logFor(rid);
      assert.deepEqual(
        {
          status: res.status,
          proxyStatus: parseProxyStatus(field('proxy-status') ?? '').at(-1)?.params.error,
          problem: [problem.errorType, problem.status, problem.requestId],
          record: [record.error, record.status],
        },
        { status: 502, proxyStatus: 'http_response_incomplete', problem: ['http_response_incomplete', 502, rid], record: ['http_response_incomplete', 502] },
        `${a.face} face (port ${port})`,
      );
    }
  } finally {
    await gw.close();
    await proxy.close();
    await lab.close();
  }
});
