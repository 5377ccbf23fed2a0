import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyStatus } from '../../src/failure/index.js';
import { startTestGateway } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';

/**
 * A request whose Transfer-Encoding does not end in chunked has no length: RFC 9112 §6.3 says
 * the server MUST answer 400 and close. Found (session "story"): the net front did (its parser
 * refuses the head), but the node front answered 501 Not Implemented for the same bytes
 * (`Transfer-Encoding: gzip`), so the two fronts told two stories. A known framing with a
 * coding the gateway does not implement before chunked (`gzip, chunked`) is the 501 of
 * RFC 9112 §6.1 on both.
 */

const NO_LENGTH = ['gzip', 'identity', 'GZip', 'chunked, gzip', 'gzip, br', 'deflate'];
const UNIMPLEMENTED = ['gzip, chunked', 'br, chunked', 'x-custom,chunked'];

for (const front of ['node', 'net'] as const) {
  test(`${front} front: Transfer-Encoding whose last coding is not chunked → 400 and close; a coding before chunked → 501`, { timeout: 60_000 }, async () => {
    const g = await startTestGateway({
      listeners: [{ address: '127.0.0.1', port: 0, front }],
      clusters: { up: { endpoints: ['http://127.0.0.1:9'] } },
      routes: [{ cluster: 'up' }],
    } as never);
    try {
      const failed: string[] = [];
      for (const [codings, want] of [...NO_LENGTH.map((c) => [c, 400] as const), ...UNIMPLEMENTED.map((c) => [c, 501] as const)]) {
        const r = await replayRaw(`POST / HTTP/1.1\r\nhost: gw.test\r\naccept: application/problem+json\r\ntransfer-encoding: ${codings}\r\n\r\n0\r\n\r\n`, { port: g.port, deadlineMs: 5000 });
        const res = r.responses[0];
        if (res === undefined) {
          failed.push(`${codings}: no answer (${r.end})`);
          continue;
        }
        const field = (n: string): string | undefined => res.headers.find(([k]) => k.toLowerCase() === n)?.[1];
        const problem = JSON.parse(res.body.toString()) as { status: number; errorType: string; requestId: string };
        const member = parseProxyStatus(field('proxy-status') ?? '').at(-1);
        const line = await g.logFor(field('x-request-id')!);
        const got = `${res.status} ps=${String(member?.params.error)}/${String(member?.params['status-code'])} problem=${problem.status} record=${line.status} ${line.error} end=${r.end} connection=${field('connection')}`;
        const ok =
          res.status === want &&
          member?.params.error === 'http_request_error' &&
          member.params['status-code'] === want &&
          problem.status === want &&
          problem.requestId === field('x-request-id') &&
          line.status === want &&
          line.error === 'http_request_error' &&
          r.end === 'closed' &&
          field('connection')?.toLowerCase() === 'close';
        if (!ok) failed.push(`${JSON.stringify(codings)}: want ${want}, got ${got}`);
      }
      assert.deepEqual(failed, []);
    } finally {
      await g.close();
    }
  });
}
