import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Gateway, validateConfig } from '../../src/index.js';
import { mapLimit, replayRaw } from '../helpers/raw-http.js';
import { startStrictUpstream, type StrictUpstream } from '../helpers/strict-upstream.js';

/**
 * The reverse gateway builds the upstream head from the fields its HTTP/1.1 front parsed and
 * tells the native client not to judge them again (gateway/exchange.ts, #fieldsChecked;
 * pool/native-client.ts, CheckedDispatchOptions). That rests on one claim, tested here for
 * every byte 0–255 on both fronts: a byte a name or a value may not hold (RFC 9110 §5.5, §5.6.2)
 * never reaches the upstream. Each byte goes in a value, in a name, and in the Host value; the
 * upstream's received bytes (a tap ahead of its parser) must hold only valid field lines, and
 * every byte that is valid must have been forwarded (the family is not vacuous).
 */
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t\x20-\x7e\x80-\xff]*$/;
const isValueByte = (c: number): boolean => c === 0x09 || (c >= 0x20 && c <= 0x7e) || c >= 0x80;

let upstream: StrictUpstream;
before(async () => {
  upstream = await startStrictUpstream();
});
after(() => upstream.close());

/** Every head the upstream received, as latin1 lines (requests here have no body). */
function receivedHeads(): string[][] {
  const heads: string[][] = [];
  for (const c of upstream.connections) {
    const text = Buffer.concat(c.chunks).toString('latin1');
    for (const head of text.split('\r\n\r\n')) if (head !== '') heads.push(head.split('\r\n'));
  }
  return heads;
}

for (const front of ['node', 'net'] as const) {
  describe(`front ${front}: every byte 0-255 in a request's fields`, () => {
    test('what reaches the upstream is only valid field lines; every valid byte is forwarded', { timeout: 60_000 }, async () => {
      const gw = new Gateway(validateConfig({ listeners: [{ address: '127.0.0.1', port: 0, front }], clusters: { app: { endpoints: [upstream.url] } }, routes: [{ cluster: 'app', retry: { tries: 1 } }] }));
      const [addr] = await gw.listen();
      const port = Number(new URL(addr!.url).port);
      const from = receivedHeads().length;
      try {
        const cases: Array<{ where: 'value' | 'name' | 'host'; c: number }> = [];
        for (let c = 0; c < 256; c++) for (const where of ['value', 'name', 'host'] as const) cases.push({ where, c });
        const answers = await mapLimit(cases, 8, async ({ where, c }) => {
          const b = String.fromCharCode(c);
          const target = `/${where}-${c}`;
          const field = where === 'value' ? `X-V: a${b}b\r\n` : where === 'name' ? `X${b}N: 1\r\n` : '';
          const host = where === 'host' ? `app${b}x` : 'app';
          const bytes = Buffer.from(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${field}Connection: close\r\n\r\n`, 'latin1');
          const r = await replayRaw(bytes, { port, deadlineMs: 3000 });
          return r.responses[0]?.status;
        });
        const heads = receivedHeads().slice(from);
        for (const lines of heads) {
          for (const line of lines.slice(1)) assert.match(line, FIELD_LINE, `front ${front}: the upstream received ${JSON.stringify(line)}`);
        }
        const forwarded = new Set(heads.map((l) => l[0]!.split(' ')[1]));
        for (let i = 0; i < cases.length; i++) {
          const { where, c } = cases[i]!;
          const valid = where === 'value' ? isValueByte(c) : where === 'name' ? TCHAR.test(String.fromCharCode(c)) : /[A-Za-z0-9.-]/.test(String.fromCharCode(c));
          if (!valid) continue;
          assert.ok(forwarded.has(`/${where}-${c}`), `front ${front}: byte ${c} in the ${where} is valid and was not forwarded (answer ${answers[i]})`);
        }
      } finally {
        await gw.close(1000);
      }
    });
  });
}

describe('a Config that skipped the schema', () => {
  test('config values that reach the upstream head unjudged (request-id header, a literal route Host) are judged after all when invalid: nothing is injected', { timeout: 20_000 }, async () => {
    // The schema refuses these at load (test/config/load.test.ts); a program can still build a
    // Config by hand, and ctx.configFieldsValid then keeps the native client judging every head.
    const cases: Array<(c: ReturnType<typeof validateConfig>) => void> = [
      (c) => {
        (c.requestId as { header: string }).header = 'x-id\r\nx-injected';
      },
      (c) => {
        (c.routes[0] as { host: string }).host = 'app\r\nx-injected: 1';
      },
    ];
    for (const [k, mutate] of cases.entries()) {
      const config = validateConfig({ listeners: [{ address: '127.0.0.1', port: 0 }], clusters: { app: { endpoints: [upstream.url] } }, routes: [{ cluster: 'app', retry: { tries: 1 } }] });
      mutate(config);
      const gw = new Gateway(config);
      const [addr] = await gw.listen();
      const from = receivedHeads().length;
      try {
        const r = await replayRaw(`GET /skipped-${k} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n`, { port: Number(new URL(addr!.url).port), deadlineMs: 3000 });
        assert.ok((r.responses[0]?.status ?? 0) >= 500, `case ${k}: answered ${r.responses[0]?.status}`);
        for (const lines of receivedHeads().slice(from)) for (const line of lines) assert.doesNotMatch(line, /^x-injected/i, `case ${k}`);
      } finally {
        await gw.close(1000);
      }
    }
  });
});
