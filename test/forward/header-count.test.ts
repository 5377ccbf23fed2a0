import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accessLines, basic, dial, rawExchange, readUntil, startOrigin, startTestProxy, waitFor, type Origin } from './helpers.js';
import { prng } from '../helpers/seeded.js';

/**
 * Issue 14, finding 6 (forward part): Node drops request header lines past its
 * `maxHeadersCount` without a word. The forward listener refuses a head with more than
 * `limits.maxHeaderCount` lines with 431 `header_fields_too_large`, and passes every line
 * of a head within it.
 */


const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);

let origin: Origin;
before(async () => {
  origin = await startOrigin();
});
after(async () => {
  await origin?.close();
});

/** An absolute-form GET with `lines` header lines in all (Host and Proxy-Authorization included). */
function headWith(lines: number, tag: string): string {
  let h = `GET http://127.0.0.1:${origin.port}/${tag} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n`;
  for (let i = 3; i < lines; i++) h += `x-h${i}: ${i}\r\n`;
  return h + '\r\n';
}

function connectWith(lines: number): string {
  let h = `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\n`;
  for (let i = 2; i < lines; i++) h += `x-h${i}: ${i}\r\n`;
  return h + '\r\n';
}

/** The answer head to a CONNECT (the tunnel, if any, is closed at once). */
async function connectAnswer(port: number, head: string): Promise<string> {
  const s = await dial(port);
  s.on('error', () => {});
  s.write(head);
  const buf = await readUntil(s, (b) => b.includes('\r\n\r\n'), 5000);
  s.destroy();
  return buf.toString('latin1');
}

describe('request header line count on the forward listener', () => {
  it('2,500 header lines with the default limit: 431 header_fields_too_large, never forwarded with lines dropped', async () => {
    const p = await startTestProxy({ limits: { maxHeaderSize: 1048576 } });
    try {
      const before = origin.requests.length;
      const text = await rawExchange(p.port, headWith(2500, 'many'), 5000);
      assert.match(text, /^HTTP\/1\.1 431 /, text.slice(0, 60));
      assert.match(text, /\r\nproxy-status: [^\r]*error=http_request_error/i);
      assert.equal(origin.requests.length, before, 'nothing forwarded');
      const rid = /\r\nx-request-id: ([^\r]*)/i.exec(text)?.[1];
      assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.requestId === rid)));
      const line = accessLines(p.lines).find((l) => l.requestId === rid)!;
      assert.equal(line.status, 431);
      assert.equal(line.reason, 'header_fields_too_large');
    } finally {
      await p.close();
    }
  });

  it(`a seeded family of limits: within the limit every line arrives, one over is 431, for requests and CONNECT (seed ${SEED})`, { timeout: 60_000 }, async () => {
    const rand = prng(SEED);
    for (let round = 0; round < 4; round++) {
      const limit = 8 + Math.floor(rand() * 300);
      const p = await startTestProxy({ limits: { maxHeaderCount: limit, maxHeaderSize: 1048576 } });
      try {
        for (const n of [limit - 1, limit, limit + 1, limit + 1 + Math.floor(rand() * 2000)]) {
          const where = `limit ${limit}, ${n} lines; rerun with GATEWISE_SEED=${SEED}`;
          const tag = `r${round}n${n}`;
          const text = await rawExchange(p.port, headWith(n, tag), 5000);
          if (n <= limit) {
            assert.match(text, /^HTTP\/1\.1 200 /, where);
            const got = origin.requests.find((r) => r.url === `/${tag}`);
            assert.ok(got, where);
            for (let i = 3; i < n; i++) assert.equal(got.headers[`x-h${i}`], String(i), `${where}: line ${i}`);
          } else {
            assert.match(text, /^HTTP\/1\.1 431 /, where);
            assert.equal(origin.requests.find((r) => r.url === `/${tag}`), undefined, where);
          }
          const c = await connectAnswer(p.port, connectWith(n));
          assert.match(c, n <= limit ? /^HTTP\/1\.1 200 / : /^HTTP\/1\.1 431 /, `CONNECT: ${where}`);
        }
      } catch (err) {
        console.error(`header-count family failed; rerun with GATEWISE_SEED=${SEED}`);
        throw err;
      } finally {
        await p.close();
      }
    }
  });
});
