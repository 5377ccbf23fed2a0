import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyStatus } from '../../src/failure/index.js';
import { describeCountingUpstream } from '../helpers/gateway.js';
import { replayRaw } from '../helpers/raw-http.js';
import { between, seededRun, shuffle } from '../helpers/seeded.js';

/**
 * Adversarial probe (session attack): the net front's parser (src/http/request-head.ts) took
 * two chunked framings that llhttp (the node front) refuses, so the two fronts disagreed about
 * where a chunked body ends — the start of request smuggling behind a front proxy that reads
 * the bytes as llhttp does:
 *
 * - a quoted-pair in a chunk extension escaping a control byte (`1;a="\<CR>"`): RFC 9112
 *   §7.1.1 / RFC 9110 §5.6.4 allow only HTAB, SP, VCHAR and obs-text after the backslash, and
 *   llhttp refuses the rest (HPE_STRICT); the net front skipped the escaped byte unchecked, so
 *   a bare CR (or NUL, DEL, …) inside a chunk-size line passed;
 * - `Transfer-Encoding: chunked,` (anything but whitespace after the last `chunked` of the
 *   field): llhttp reads chunked as not the final coding and refuses the request (RFC 9112
 *   §6.3: no length); the net front dropped the empty list element and framed the body as
 *   chunked.
 *
 * Both fronts must now answer 400 http_request_error and close, and no such request reaches
 * the upstream.
 */

/** Bytes a quoted-pair may not escape: every control byte but HTAB, and DEL (LF would end the line). */
const CONTROL: number[] = [];
for (let c = 0; c < 0x20; c++) if (c !== 0x09 && c !== 0x0a) CONTROL.push(c);
CONTROL.push(0x7f);

/** Transfer-Encoding values whose last coding is followed by more than whitespace in the same field. */
const TRAILING_LIST = ['chunked,', 'chunked, ', 'chunked ,', 'chunked,,', 'Chunked,\t', 'gzip, chunked,', 'chunked, ,'];

function field(headers: Array<[string, string]>, name: string): string | undefined {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

describeCountingUpstream((front) => `chunked framing llhttp refuses (${front} front)`, (front, rig) => {
  /** Send one request in one write; the verdict must be 400 http_request_error and a closed connection. */
  async function refused(bytes: Buffer): Promise<string | undefined> {
    const r = await replayRaw(bytes, { port: rig.gateway.port, deadlineMs: 5000 });
    const res = r.responses[0];
    if (res === undefined) return `no answer (${r.end})`;
    const member = parseProxyStatus(field(res.headers, 'proxy-status') ?? '').at(-1);
    const got = `${res.status} ${String(member?.params.error)} end=${r.end} connection=${String(field(res.headers, 'connection'))}`;
    return res.status === 400 && member?.params.error === 'http_request_error' && r.end === 'closed' && field(res.headers, 'connection')?.toLowerCase() === 'close' ? undefined : got;
  }

  test('seeded family: a quoted-pair escaping a control byte in a chunk extension → 400, nothing relayed', { timeout: 120_000 }, async () => {
    await seededRun(`${front} front, quoted-pair`, async (rand) => {
      // CR always (the byte that makes a second line end), then a seeded handful of the others.
      const bytes = [0x0d, ...shuffle(rand, CONTROL.filter((c) => c !== 0x0d)).slice(0, 5)];
      const failed: string[] = [];
      const before = rig.received();
      for (const c of bytes) {
        const name = shuffle(rand, ['a', 'ext', 'x-y', 'n1']).at(0)!;
        const size = between(rand, 1, 8);
        const lead = rand() < 0.5 ? '' : `;k=${'v'.repeat(between(rand, 1, 4))}`;
        const ext = Buffer.concat([Buffer.from(`${lead};${name}="`, 'latin1'), Buffer.from([0x5c, c]), Buffer.from('"', 'latin1')]);
        // On a data chunk, or on the last chunk.
        const onLast = rand() < 0.5;
        const body = onLast
          ? Buffer.concat([Buffer.from(`${size.toString(16)}\r\n${'b'.repeat(size)}\r\n0`, 'latin1'), ext, Buffer.from('\r\n\r\n', 'latin1')])
          : Buffer.concat([Buffer.from(size.toString(16), 'latin1'), ext, Buffer.from(`\r\n${'b'.repeat(size)}\r\n0\r\n\r\n`, 'latin1')]);
        const head = Buffer.from('POST /upload HTTP/1.1\r\nHost: gw.test\r\nAccept: application/problem+json\r\nTransfer-Encoding: chunked\r\n\r\n', 'latin1');
        const why = await refused(Buffer.concat([head, body]));
        if (why !== undefined) failed.push(`0x${c.toString(16).padStart(2, '0')} on the ${onLast ? 'last' : 'data'} chunk: ${why}`);
      }
      assert.deepEqual(failed, []);
      assert.equal(rig.received() - before, 0, 'the upstream read a whole request body with a control byte in its framing');
    });
  });

  test('Transfer-Encoding with anything but whitespace after its last chunked → 400, nothing relayed', { timeout: 60_000 }, async () => {
    const failed: string[] = [];
    const before = rig.received();
    for (const te of TRAILING_LIST) {
      const why = await refused(Buffer.from(`POST /upload HTTP/1.1\r\nHost: gw.test\r\nAccept: application/problem+json\r\nTransfer-Encoding: ${te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 'latin1'));
      if (why !== undefined) failed.push(`${JSON.stringify(te)}: ${why}`);
    }
    assert.deepEqual(failed, []);
    assert.equal(rig.received() - before, 0);
  });

  test('control: the same requests, well formed, are relayed', { timeout: 60_000 }, async () => {
    const before = rig.received();
    for (const [te, ext] of [['chunked', ';a="\\ b\\\t"'], ['chunked ', ';a=b'], ['gzip , chunked', '']] as const) {
      const r = await replayRaw(`POST /upload HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nTransfer-Encoding: ${te}\r\n\r\n3${ext}\r\nabc\r\n0\r\n\r\n`, { port: rig.gateway.port, deadlineMs: 5000 });
      // gzip before chunked is the 501 of RFC 9112 §6.1 (test/gateway/te-final-coding.test.ts): framed, not relayed.
      assert.equal(r.responses[0]?.status, te.startsWith('gzip') ? 501 : 200, `${te} ${ext}`);
    }
    assert.equal(rig.received() - before, 2);
  });
});
