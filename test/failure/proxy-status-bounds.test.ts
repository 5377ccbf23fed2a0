import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { parseProxyStatus, PROXY_STATUS_PARAM_MAX } from '../../src/failure/index.js';
import { startTestGateway } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * A gateway-made answer quotes text the client sent (the path of a request no route takes, the
 * Via of a loop) in its `details`. Found (session "story"): that text went into Proxy-Status
 * whole, so a long path made a header as long as the request head, and past ~16 KiB the client
 * (undici's and Node's 16 KiB head limit) could not read the answer at all: the 404 that names
 * its cause arrived as a headers-overflow error. Every parameter string is now bounded
 * (PROXY_STATUS_PARAM_MAX), and stays a valid RFC 8941 string whatever bytes the client sent.
 */

const MAX_HEAD = 16 * 1024;
/** Bytes an attacker may put in a header value: quotes, backslashes, tabs, obs-text. */
const HOSTILE = ['"', '\\', '\t', 'a', 'Z', ' ', ';', '=', ',', '\x80', '\xff', '\xe9', '%'];
/** Path characters the path rules take in one segment (no `/`, `;`, `.`: empty, parameter and dot segments are refused first). */
const PATH = ['a', 'Z', '0', '-', '_', '~', '%22', '%5C', ':', '@', '!', '$', '&', "'", '(', ')', '*', '+', ',', '='];

function headOf(data: Buffer): { head: string; size: number } {
  const end = data.indexOf('\r\n\r\n');
  return { head: data.subarray(0, end < 0 ? data.length : end).toString('latin1'), size: end < 0 ? data.length : end + 4 };
}

for (const front of ['node', 'net'] as const) {
  test(`${front} front: Proxy-Status stays bounded and valid however long and hostile the client's text it quotes (seeded lengths up to the head limit)`, { timeout: 120_000 }, async () => {
    const g = await startTestGateway({
      name: 'story-gw',
      listeners: [{ address: '127.0.0.1', port: 0, front }],
      clusters: { up: { endpoints: ['http://127.0.0.1:9'] } },
      routes: [{ cluster: 'up', match: { host: 'known.test' } }],
    } as never);
    try {
      await seededRun(`${front} bounded details`, async (rand) => {
        for (let i = 0; i < 10; i++) {
          const len = i === 0 ? 15_900 : between(rand, 1, 15_900);
          // No route: the path is quoted in details.
          let path = '/a';
          while (path.length < len) path += PATH[between(rand, 0, PATH.length - 1)];
          const nf = await replayRaw(`GET ${path} HTTP/1.1\r\nhost: other.test\r\naccept: application/problem+json\r\nconnection: close\r\n\r\n`, { port: g.port, deadlineMs: 10_000 });
          // A loop: the client's Via is quoted in details, its bytes as sent.
          let via = '';
          while (via.length < len) via += HOSTILE[between(rand, 0, HOSTILE.length - 1)];
          const loop = await replayRaw(Buffer.from(`GET / HTTP/1.1\r\nhost: known.test\r\nvia: 1.1 story-gw, ${via}x\r\nconnection: close\r\n\r\n`, 'latin1'), { port: g.port, deadlineMs: 10_000 });
          for (const [what, r, status, type] of [['no route', nf, 404, 'destination_not_found'], ['loop', loop, 502, 'proxy_loop_detected']] as const) {
            const { head, size } = headOf(r.data);
            const ctx = `${what}, ${len} characters of client text`;
            assert.match(head, new RegExp(`^HTTP/1\\.1 ${status} `), ctx);
            assert.ok(size <= MAX_HEAD, `${ctx}: a response head of ${size} bytes is over the 16 KiB a client reads`);
            const ps = /\r\nproxy-status: ([^\r\n]*)/i.exec(head)?.[1];
            assert.ok(ps !== undefined, `${ctx}: Proxy-Status`);
            const member = parseProxyStatus(ps).at(-1)!;
            assert.equal(member.params.error, type, ctx);
            const details = member.params.details;
            assert.equal(typeof details, 'string', `${ctx}: details`);
            assert.ok((details as string).length <= PROXY_STATUS_PARAM_MAX, `${ctx}: details of ${(details as string).length} characters`);
            assert.ok(ps.length <= 2 * PROXY_STATUS_PARAM_MAX + 200, `${ctx}: Proxy-Status of ${ps.length} characters`);
            const rid = /\r\nx-request-id: (\S+)/i.exec(head)?.[1];
            const line = await g.logFor(rid!);
            assert.equal(line.error, type, ctx);
          }
        }
      });
      // What it meant for a client: undici reads the answer and its problem document.
      const res = await request(`${g.url}/${'a'.repeat(15_900)}`, { headers: { host: 'other.test', accept: 'application/problem+json' } });
      const problem = (await res.body.json()) as { errorType: string; status: number };
      assert.equal(res.statusCode, 404);
      assert.equal(problem.errorType, 'destination_not_found');
    } finally {
      await g.close();
    }
  });
}
