import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { startOneUpstreamGateway, type TestGateway } from '../helpers/gateway.js';
import { RawH2, T, frame } from '../helpers/h2-frames.js';
import { startRawServer, type RawServer } from '../helpers/scripted-upstream.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';

/**
 * The listener's `maxHeaderSize` over HTTP/2 (attacker's audit of the h2 front). Node enforces
 * SETTINGS_MAX_HEADER_LIST_SIZE only once the client has acknowledged the gateway's SETTINGS
 * (nghttp2's local settings change at the ACK): a client that never sends the ACK had header
 * sections of up to ~64 KiB forwarded to the upstream whatever `maxHeaderSize` said (found:
 * 17 000 and 65 000 bytes against the 16 384 default, and 40 fields of 1 000 bytes, all
 * forwarded; over HTTP/1.1 the same head is a 431). The front now measures the header list as
 * RFC 9113 §6.5.2 does (name + value + 32 per field, pseudo-headers included: the measure Node
 * applies after the ACK, so the boundary is the same either way) and answers a larger one 431
 * `header_fields_too_large`, recorded, nothing sent upstream.
 */

const PSEUDO: Array<[string, string]> = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/s'],
  [':authority', 'x'],
];

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(v: number, bits: number): Buffer {
  const max = (1 << bits) - 1;
  if (v < max) return Buffer.from([v]);
  const out = [max];
  v -= max;
  while (v >= 128) {
    out.push((v & 127) | 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** Literal fields without indexing, new names, no Huffman: any length. */
function literalBlock(fields: Array<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [n, v] of fields) parts.push(Buffer.from([0]), hpackInt(n.length, 7), Buffer.from(n, 'latin1'), hpackInt(v.length, 7), Buffer.from(v, 'latin1'));
  return Buffer.concat(parts);
}

/** HEADERS (END_STREAM) and as many CONTINUATION frames as the block needs (16 384-byte frames). */
function headerFrames(block: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let o = 0; o === 0 || o < block.length; o += 16384) {
    const last = o + 16384 >= block.length;
    out.push(frame(o === 0 ? T.HEADERS : 9, (last ? 0x4 : 0) | (o === 0 ? 0x1 : 0), 1, block.subarray(o, o + 16384)));
  }
  return Buffer.concat(out);
}

const listSize = (fields: Array<[string, string]>): number => fields.reduce((n, [k, v]) => n + k.length + v.length + 32, 0);

/** The pseudo-headers and `count` fields whose list size (RFC 9113 §6.5.2) is exactly `size`. */
function fieldsOfSize(size: number, count: number, tag: string): Array<[string, string]> {
  const fields = [...PSEUDO, ['x-case', tag] as [string, string]];
  const names = Array.from({ length: count }, (_, i) => `x-f${i}`);
  let left = size - listSize(fields) - names.reduce((n, k) => n + k.length + 32, 0);
  assert.ok(left >= count, `size ${size} too small for ${count} fields`);
  for (let i = 0; i < count; i++) {
    const v = i === count - 1 ? left : Math.floor(left / (count - i));
    fields.push([names[i]!, 'v'.repeat(v)]);
    left -= v;
  }
  assert.equal(listSize(fields), size);
  return fields;
}

let upstream: RawServer;
const heads: string[] = [];

before(async () => {
  upstream = await startRawServer((socket: Socket) => {
    let bytes = '';
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      bytes += d.toString('latin1');
      if (!bytes.includes('\r\n\r\n')) return;
      heads.push(bytes);
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  });
});

after(async () => {
  await upstream?.close();
});

/** One request on a raw connection that never acknowledges the gateway's SETTINGS: 'served' (200 from the upstream) or the gateway's 431. */
async function ask(gw: TestGateway, fields: Array<[string, string]>): Promise<{ answer: string; reset: boolean }> {
  const c = new RawH2(gw.port);
  try {
    await c.write(headerFrames(literalBlock(fields)));
    const ended = await c.until((fs) => fs.some((f) => f.stream === 1 && (f.type === T.RST_STREAM || (f.type === T.DATA && (f.flags & 1) === 1))), 10_000);
    assert.ok(ended, 'no answer nor reset within 10 s');
    const body = Buffer.concat(c.frames.filter((f) => f.stream === 1 && f.type === T.DATA).map((f) => f.payload)).toString('latin1');
    return { answer: body, reset: c.frames.some((f) => f.stream === 1 && f.type === T.RST_STREAM) };
  } finally {
    c.destroy();
  }
}

async function family(limit: number | undefined, seed?: number): Promise<void> {
  const max = limit ?? 16384;
  const gw = await startOneUpstreamGateway(upstream.url, { listener: { http2: { h2c: true }, ...(limit !== undefined ? { maxHeaderSize: limit } : {}) } });
  try {
    await seededRun(`maxHeaderSize ${max}`, async (rand) => {
      const cases: Array<{ size: number; count: number; over: boolean }> = [
        { size: max, count: 1, over: false },
        { size: max + 1, count: 1, over: true },
      ];
      for (let i = 0; i < 4; i++) cases.push({ size: max + between(rand, 1, 40_000), count: between(rand, 1, 40), over: true });
      for (let i = 0; i < 3; i++) cases.push({ size: max - between(rand, 0, max - 3000), count: between(rand, 1, 40), over: false });
      let n = 0;
      await everyCase(cases, async ({ size, count, over }) => {
        const tag = `c${n++}-${size}`;
        const what = `list size ${size} in ${count} field(s), limit ${max}`;
        const a = await ask(gw, fieldsOfSize(size, count, tag));
        const forwarded = heads.some((h) => h.includes(`x-case: ${tag}\r\n`));
        if (over) {
          assert.ok(!a.reset && a.answer.startsWith('431 '), `${what}: answered ${JSON.stringify(a.answer.slice(0, 60))}${a.reset ? ' (reset)' : ''}, not the gateway's 431`);
          assert.ok(!forwarded, `${what}: forwarded upstream`);
        } else {
          assert.equal(a.answer, 'ok', `${what}: not served`);
          assert.ok(forwarded, `${what}: the upstream did not get it`);
        }
      });
      const refused = gw.logs.filter((l) => l.type === 'access' && l.status === 431);
      assert.equal(refused.length, cases.filter((c) => c.over).length, 'one 431 record per refused request');
      for (const r of refused) {
        assert.equal(r.error, 'http_request_error');
        assert.equal(r.reason, 'header_fields_too_large');
        assert.match(String(r.detail), new RegExp(`maxHeaderSize \\(${max}\\)`));
      }
    }, seed);
  } finally {
    await gw.close();
  }
}

describe('HTTP/2: maxHeaderSize holds for a client that never acknowledges the gateway\'s SETTINGS', () => {
  test('seeded family over sizes and field counts, default limit (16384): over it 431 header_fields_too_large, recorded, nothing upstream; at or under it served', { timeout: 120_000 }, async () => {
    await family(undefined);
  });

  test('seeded family over a configured limit (4096–12000) and sizes', { timeout: 120_000 }, async () => {
    await seededRun('configured limit', async (rand) => family(between(rand, 4096, 12000), between(rand, 0, 2 ** 31)));
  });
});

/**
 * `maxHeaderCount` over HTTP/2. Node keeps at most `maxHeaderListPairs` fields of a stream
 * (default 128, pseudo-headers and each cookie crumb counted) and resets a stream with more
 * itself (`RST_STREAM ENHANCE_YOUR_CALM`, no record): found, a listener allowed 130–400
 * fields had h2 requests of 129 and more refused, and over the default 100 only 101 to ~124
 * got the gateway's recorded 431. Node's bound is now set past anything the header-size limit
 * lets through (each field costs 32 bytes of the list), so the count is judged by the
 * gateway, as over HTTP/1.1.
 */
async function countFamily(maxCount: number | undefined, rand: () => number): Promise<void> {
  const max = maxCount ?? 100;
  const gw = await startOneUpstreamGateway(upstream.url, { listener: { http2: { h2c: true }, maxHeaderSize: 32768, ...(maxCount !== undefined ? { maxHeaderCount: maxCount } : {}) } });
  try {
    // `count` x-f fields; the head counted holds them, x-case and Host (from :authority), as
    // HTTP/1.1's does: at the limit, just over it, and seeded ones on both sides.
    const cases: Array<{ count: number; over: boolean }> = [
      { count: max - 2, over: false },
      { count: max - 1, over: true },
    ];
    for (let i = 0; i < 3; i++) cases.push({ count: max - 1 + between(rand, 0, 300), over: true });
    for (let i = 0; i < 2; i++) cases.push({ count: between(rand, Math.max(1, max - 120), max - 2), over: false });
    let n = 0;
    await everyCase(cases, async ({ count, over }) => {
      const tag = `n${n++}-${count}`;
      const fields: Array<[string, string]> = [...PSEUDO, ['x-case', tag]];
      for (let i = 0; i < count; i++) fields.push([`x-f${i}`, 'v']);
      const what = `${count + 2} fields (${count + 5} with the pseudo-headers), maxHeaderCount ${max}`;
      const a = await ask(gw, fields);
      const forwarded = heads.some((h) => h.includes(`x-case: ${tag}\r\n`));
      if (over) {
        assert.ok(!a.reset && a.answer.startsWith('431 '), `${what}: answered ${JSON.stringify(a.answer.slice(0, 60))}${a.reset ? ' (reset)' : ''}, not the gateway's 431`);
        assert.ok(!forwarded, `${what}: forwarded upstream`);
      } else {
        assert.equal(a.answer, 'ok', `${what}: not served${a.reset ? ' (reset)' : ''}`);
        assert.ok(forwarded, `${what}: the upstream did not get it`);
      }
    });
    const refused = gw.logs.filter((l) => l.type === 'access' && l.status === 431);
    assert.equal(refused.length, cases.filter((c) => c.over).length, 'one 431 record per refused request');
    for (const r of refused) assert.equal(r.reason, 'header_fields_too_large');
  } finally {
    await gw.close();
  }
}

describe('HTTP/2: maxHeaderCount is the gateway\'s, not Node\'s 128 fields', () => {
  test('seeded family, default limit (100): 101 to 400 fields get the recorded 431, up to 100 are served', { timeout: 120_000 }, async () => {
    await seededRun('default maxHeaderCount', (rand) => countFamily(undefined, rand));
  });

  test('seeded family over a configured limit (130–400): up to it served, over it the recorded 431', { timeout: 120_000 }, async () => {
    await seededRun('configured maxHeaderCount', (rand) => countFamily(between(rand, 130, 400), rand));
  });
});
