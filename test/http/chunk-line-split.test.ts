import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkedDecoder } from '../../src/http/request-head.js';
import { parserRefusal } from '../../src/failure/index.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * Adversarial probe (session attack): the net front's chunked decoder bounded a chunk-size line
 * (its extensions) and a trailer line at 4096 bytes only while the line was still arriving: the
 * same bytes were taken when the line came in one read and refused when it came in two. A
 * client (or the network's segmentation) picked the verdict: a 20,000-byte extension that
 * node:http refuses (its 16 KiB of chunk extensions, HPE_CHUNK_EXTENSIONS_OVERFLOW) passed in
 * one write, and a 5,000-byte one that node:http takes was refused when trickled; a 5,000-byte
 * trailer line likewise. Now one bound holds however the bytes are cut: a chunk-size line of
 * at most 16 KiB (which holds every extension llhttp takes that a client would send), a
 * trailer section of at most the decoder's limit (the listener's maxHeaderSize).
 */

const MAX_TRAILER = 16384;

/** Decode `input` fed in pieces cut at `cuts` (ascending offsets), as the connection does. */
function decodeIn(input: Buffer, cuts: readonly number[]): string {
  const d = new ChunkedDecoder(MAX_TRAILER);
  let buf: Buffer | undefined;
  let from = 0;
  let body = '';
  for (const to of [...cuts, input.length]) {
    const piece = input.subarray(from, to);
    from = to;
    buf = buf === undefined ? piece : Buffer.concat([buf, piece]);
    const r = d.decode(buf, 0, (x) => (body += x.toString('latin1')));
    if (typeof r === 'string') return `refused ${parserRefusal(r).status}`;
    buf = buf.subarray(r);
    if (d.state === 4) return `body ${body} trailers ${d.trailers.length / 2}`;
  }
  return 'incomplete';
}

/** Cuts every `step` bytes (a line trickled in pieces). */
function trickle(len: number, step: number): number[] {
  const cuts: number[] = [];
  for (let at = step; at < len; at += step) cuts.push(at);
  return cuts;
}

const extension = (n: number): string => `1;a=${'v'.repeat(n)}\r\nx\r\n0\r\n\r\n`;
const trailer = (n: number): string => `1\r\nx\r\n0\r\nX-T: ${'t'.repeat(n)}\r\n\r\n`;

describe('chunked body lines: one verdict however the bytes are cut', () => {
  /** Twelve seeded extension sizes in [lo, hi], each decoded whole and in pieces of 200–`maxStep` bytes: `want` both ways. */
  const extensionFamily = (label: string, lo: number, hi: number, maxStep: number, want: string) => async (): Promise<void> => {
    await seededRun(label, (rand) => {
      for (let k = 0; k < 12; k++) {
        const n = between(rand, lo, hi);
        const input = Buffer.from(extension(n), 'latin1');
        const step = between(rand, 200, maxStep);
        assert.equal(decodeIn(input, []), want, `extension of ${n} bytes, whole`);
        assert.equal(decodeIn(input, trickle(input.length, step)), want, `extension of ${n} bytes, in pieces of ${step}`);
      }
    });
  };

  it('seeded family: chunk extensions llhttp takes (4 KiB – 16 KiB) are taken whole and trickled', extensionFamily('extensions within the bound', 4100, 16370, 4000, 'body x trailers 0'));

  it('seeded family: chunk extensions past 16 KiB are refused 400 whole and trickled', extensionFamily('extensions past the bound', 16400, 60000, 8000, 'refused 400'));

  it('seeded family: a trailer line within the trailer limit is taken whole and trickled; past it refused both ways', async () => {
    await seededRun('trailer lines', (rand) => {
      for (let k = 0; k < 12; k++) {
        const within = between(rand, 4100, MAX_TRAILER - 100);
        const past = between(rand, MAX_TRAILER + 10, 3 * MAX_TRAILER);
        const step = between(rand, 200, 4000);
        for (const [n, want] of [[within, 'body x trailers 1'], [past, 'refused 431']] as const) {
          const input = Buffer.from(trailer(n), 'latin1');
          assert.equal(decodeIn(input, []), want, `trailer of ${n} bytes, whole`);
          assert.equal(decodeIn(input, trickle(input.length, step)), want, `trailer of ${n} bytes, in pieces of ${step}`);
        }
      }
    });
  });
});
