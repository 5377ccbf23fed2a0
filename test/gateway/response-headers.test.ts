import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Failure, appendMember } from '../../src/failure/index.js';
import { finalResponseHead, switchResponseHead } from '../../src/gateway/response-headers.js';

/**
 * finalResponseHead and switchResponseHead (a 101's head) are written for speed (one pass,
 * names told apart by length and first byte before decoding). Here they are checked against a plain reading of the rules on
 * thousands of generated heads, Transfer-Encoding values among them (a coding that changes
 * the bytes, an empty element or a tab: refused).
 */

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te']);

/** Transfer codings that change the bytes: a head that applies one is refused (http/headers.ts). */
const BYTE_CODINGS = ['gzip', 'x-gzip', 'deflate', 'compress', 'x-compress', 'br', 'zstd'];
const TE_VALUES = ['chunked', 'Chunked', ' chunked', 'CHUNKED', 'gzip, chunked', 'GZip', 'x-custom', 'identity, chunked', 'chunked,', ', chunked', 'chunked\tx', 'br', 'deflate , chunked', 'zstd', 'x-compress'];

/** Refused, by a plain reading: a tab, an empty list element, or a coding that changes the bytes. */
function teRefused(v: string): boolean {
  return v.includes('\t') || v.split(',').some((p) => p.trim() === '' || BYTE_CODINGS.includes(p.trim().toLowerCase()));
}

function reference(raw: Buffer[], via: string, idHeader: string, requestId: string, member: string | undefined, keepUpgrade: boolean): string[] | 'refused' {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) pairs.push([raw[i]!.toString('latin1'), raw[i + 1]!.toString('latin1')]);
  // A 101 carries no body: its Transfer-Encoding is dropped unread.
  if (!keepUpgrade && pairs.some(([n, v]) => n.toLowerCase() === 'transfer-encoding' && teRefused(v))) return 'refused';
  const listed = new Set<string>();
  for (const [n, v] of pairs) {
    if (n.toLowerCase() !== 'connection') continue;
    for (const t of v.split(',')) {
      const name = t.trim().toLowerCase();
      if (name && !['close', 'keep-alive', 'upgrade'].includes(name)) listed.add(name);
    }
  }
  const out: string[] = [];
  const prior: string[] = [];
  for (const [n, v] of pairs) {
    const l = n.toLowerCase();
    if (l === 'proxy-status' && member !== undefined) {
      prior.push(v);
      continue;
    }
    if (HOP.has(l)) {
      if (keepUpgrade && (l === 'upgrade' || l === 'connection') && !listed.has(l)) out.push(n, v);
      continue;
    }
    if (listed.has(l) || l === idHeader) continue;
    out.push(n, v);
  }
  out.push('via', via, idHeader, requestId);
  if (member !== undefined) out.push('proxy-status', appendMember(prior.length ? prior.join(', ') : undefined, member));
  return out;
}

/** A small seeded generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const NAMES = ['Server', 'Date', 'Content-Type', 'Content-Length', 'Connection', 'Keep-Alive', 'Transfer-Encoding', 'TE', 'Upgrade', 'Proxy-Connection', 'Proxy-Status', 'X-Request-Id', 'X-Secret', 'Cache-Control', 'Set-Cookie', 'P3P', 'X-Request-Ix', 'Content-Typf', 'Te', 'Connectiom', 'E', 'Trace-Id'];
const CONNECTION_VALUES = ['keep-alive', 'close', 'Keep-Alive', 'CLOSE', 'x-secret', 'Keep-Alive, X-Secret', 'close, cache-control', ' trace-id ,p3p', 'upgrade', 'Upgrade, Server', ''];

function randomCase(s: string, r: () => number): string {
  let o = '';
  for (const c of s) o += r() < 0.5 ? c.toLowerCase() : c.toUpperCase();
  return o;
}

describe('finalResponseHead and switchResponseHead', () => {
  test('agrees with a plain reading of the rules on 5,000 generated heads', () => {
    const r = rng(20261125);
    for (let n = 0; n < 5000; n++) {
      const raw: Buffer[] = [];
      const count = Math.floor(r() * 12);
      for (let i = 0; i < count; i++) {
        const base = NAMES[Math.floor(r() * NAMES.length)]!;
        const name = r() < 0.3 ? randomCase(base, r) : base;
        const lower = name.toLowerCase();
        const value =
          lower === 'connection'
            ? CONNECTION_VALUES[Math.floor(r() * CONNECTION_VALUES.length)]!
            : lower === 'transfer-encoding' && r() < 0.7
              ? TE_VALUES[Math.floor(r() * TE_VALUES.length)]!
              : `v${i}-${Math.floor(r() * 1000)}`;
        raw.push(Buffer.from(name, 'latin1'), Buffer.from(value, 'latin1'));
      }
      const idHeader = r() < 0.5 ? 'x-request-id' : 'trace-id';
      const keepUpgrade = r() < 0.2;
      // A 101's head carries no Proxy-Status member (the gateway adds none to a switch).
      const member = !keepUpgrade && r() < 0.3 ? 'gatewise; received-status=503' : undefined;
      let got: string[] | 'refused';
      if (keepUpgrade) got = switchResponseHead(raw, '1.1 gw', idHeader, 'rid-1');
      else {
        const head = finalResponseHead(raw, '1.1 gw', idHeader, 'rid-1', member, 'up:80');
        if (head instanceof Failure) {
          assert.ok(head.type === 'http_response_transfer_coding' && head.nextHop === 'up:80', String(head));
          got = 'refused';
        } else got = head;
      }
      const want = reference(raw, '1.1 gw', idHeader, 'rid-1', member, keepUpgrade);
      assert.deepEqual(got, want, `case ${n}: ${raw.map((b) => b.toString('latin1')).join(' | ')} (id ${idHeader}, member ${member}, keepUpgrade ${keepUpgrade})`);
    }
  });

  test('keeps bytes above 0x7f as they came (latin1 in, latin1 out)', () => {
    const raw = [Buffer.from('X-Name'), Buffer.from([0x63, 0x61, 0x66, 0xe9])];
    assert.deepEqual((finalResponseHead(raw, 'v', 'x-request-id', 'r', undefined, undefined) as string[]).slice(0, 2), ['X-Name', 'caf\u00e9']);
  });
});

describe('one hop-by-hop table for both faces', () => {
  test('the reverse rewriters and the forward proxy drop the same fields, per direction', async () => {
    const { HOP_BY_HOP, stripHopByHop } = await import('../../src/http/headers.js');
    const all = ['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'trailer', 'x-kept'];
    const raw = all.flatMap((n) => [n, n === 'connection' ? 'x-listed' : 'v']).concat(['x-listed', 'v']);
    const forwardReq = stripHopByHop(raw, 'request').filter((_, i) => i % 2 === 0);
    const forwardRes = stripHopByHop(raw, 'response').filter((_, i) => i % 2 === 0);
    assert.deepEqual(forwardReq, ['proxy-authenticate', 'x-kept']);
    assert.deepEqual(forwardRes, ['proxy-authorization', 'trailer', 'x-kept']);
    for (const n of HOP_BY_HOP.request) assert.ok(!forwardReq.includes(n));
    for (const n of HOP_BY_HOP.response) assert.ok(!forwardRes.includes(n));
  });
});
