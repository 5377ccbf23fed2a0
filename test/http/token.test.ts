import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BAD_VALUE_RE, TOKEN_RE, lowerCase, nameIs } from '../../src/http/token.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * The name helpers that stand for String#toLowerCase on the hot path (src/http/token.ts) must
 * give toLowerCase's answer for every name a head can carry: bytes 0–255 as the parsers decode
 * them (latin1), and any string a hook hands over. Seeded families around each constant: its
 * own spelling in every letter case, one byte changed, cut or grown, and random strings.
 */
const CONSTANTS = ['host', 'date', 'expect', 'upgrade', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'];

/** A string of `n` code units drawn mostly from what names hold, sometimes any byte or a code unit above 0xff. */
function randomName(rand: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.6) s += 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_0'[Math.floor(rand() * 56)];
    else if (r < 0.95) s += String.fromCharCode(Math.floor(rand() * 256));
    else s += String.fromCharCode(0x100 + Math.floor(rand() * 0xfeff));
  }
  return s;
}

/** The constant with each letter's case drawn, then (half the time) one code unit changed, cut or added. */
function neighbour(rand: () => number, c: string): string {
  let s = '';
  for (const ch of c) s += rand() < 0.5 ? ch.toUpperCase() : ch;
  if (rand() < 0.5) return s;
  const at = Math.floor(rand() * s.length);
  const unit = String.fromCharCode(rand() < 0.8 ? Math.floor(rand() * 256) : Math.floor(rand() * 0x10000));
  const op = Math.floor(rand() * 3);
  if (op === 0) return s.slice(0, at) + unit + s.slice(at + 1);
  if (op === 1) return s.slice(0, at) + s.slice(at + 1);
  return s.slice(0, at) + unit + s.slice(at);
}

describe('field-name helpers (http/token.ts)', () => {
  it('nameIs agrees with toLowerCase() === constant for latin1 names: every case spelling and seeded neighbours of each framing name', async () => {
    await seededRun('nameIs against toLowerCase', (rand) => {
      for (let k = 0; k < 20_000; k++) {
        const c = CONSTANTS[k % CONSTANTS.length]!;
        const s = k % 3 === 0 ? randomName(rand, between(rand, 0, 20)) : neighbour(rand, c);
        const latin1 = [...s].every((ch) => ch.charCodeAt(0) <= 0xff);
        const want = s.toLowerCase() === c;
        if (latin1) assert.equal(nameIs(s, c), want, `nameIs(${JSON.stringify(s)}, ${c})`);
        // Beyond latin1 it may only say no where toLowerCase says yes (the Kelvin sign U+212A
        // lower-cases to k): such a name is not a token and is refused where names are judged.
        else if (nameIs(s, c)) assert.ok(want, `nameIs(${JSON.stringify(s)}, ${c})`);
      }
    });
  });

  it('a name that only lower-cases to a framing name through a non-latin1 letter is not a token', () => {
    const kelvin = '\u212Aeep-alive';
    assert.equal(kelvin.toLowerCase(), 'keep-alive');
    assert.equal(nameIs(kelvin, 'keep-alive'), false);
    assert.equal(TOKEN_RE.test(kelvin), false);
  });

  it('lowerCase gives toLowerCase\'s string for seeded names of 0–40 code units, and the same string object when nothing changes', async () => {
    await seededRun('lowerCase against toLowerCase', (rand) => {
      for (let k = 0; k < 20_000; k++) {
        const s = k % 2 === 0 ? randomName(rand, between(rand, 0, 40)) : neighbour(rand, CONSTANTS[k % CONSTANTS.length]!);
        assert.equal(lowerCase(s), s.toLowerCase(), JSON.stringify(s));
      }
    });
    const plain = ['host', 'x-request-id', 'content-type', '0-9_.!#'].map((x) => x.slice());
    for (const p of plain) assert.ok(Object.is(lowerCase(p), p));
  });

  it('a concatenation of names or values is valid exactly when each part is (the one-test-per-head judgement)', async () => {
    await seededRun('concatenated validity', (rand) => {
      for (let k = 0; k < 5_000; k++) {
        const parts = Array.from({ length: between(rand, 1, 12) }, () => randomName(rand, between(rand, 1, 12)));
        const joined = parts.join('');
        assert.equal(TOKEN_RE.test(joined), parts.every((p) => TOKEN_RE.test(p)), JSON.stringify(parts));
        assert.equal(BAD_VALUE_RE.test(joined), parts.some((p) => BAD_VALUE_RE.test(p)), JSON.stringify(parts));
      }
    });
  });
});
