import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startRawUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { accessLines, basic, dial, readUntil, startTestProxy, waitFor, type TestProxy } from './helpers.js';
import { prng } from '../helpers/seeded.js';

/**
 * Issue 14, finding 7 (forward part): valid but unusual responses are relayed, never
 * turned into an empty reply blamed on the gateway: a 304 with `Content-Length: 5`
 * (RFC 9110 §8.6), reason phrases with control bytes or obs-text, 103s with invalid `Link`.
 */


const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);

let p: TestProxy;
before(async () => {
  p = await startTestProxy();
});
after(async () => {
  await p?.close();
});

/** Send `n` GETs on one connection to an upstream that answers `answer`; the raw bytes back. */
async function through(answer: Buffer | string, n: number, done: (text: string) => boolean): Promise<{ text: string; up: ScriptedUpstream }> {
  const up = await startRawUpstream(() => answer);
  try {
    const s = await dial(p.port);
    s.on('error', () => {});
    const req = `GET http://127.0.0.1:${up.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`;
    s.write(req.repeat(n));
    const buf = await readUntil(s, (b) => done(b.toString('latin1')), 3000);
    s.destroy();
    return { text: buf.toString('latin1'), up };
  } finally {
    await up.close();
  }
}

function count(text: string, re: RegExp): number {
  return text.match(re)?.length ?? 0;
}

/** The access lines of requests to that destination, once `n` of them are written. */
async function logged(destinationPort: number, n = 1): Promise<Record<string, unknown>[]> {
  const mine = (): Record<string, unknown>[] => accessLines(p.lines).filter((l) => l.destination === `127.0.0.1:${destinationPort}`);
  await waitFor(() => mine().length >= n);
  return mine();
}

describe('unusual destination responses through the HTTP proxy', () => {
  it('a 304 with Content-Length: 5 is relayed as a 304 without a body, and the connection stays usable', async () => {
    const { text, up } = await through('HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 5\r\n\r\n', 2, (t) => count(t, /HTTP\/1\.1 304 /g) >= 2);
    assert.equal(count(text, /HTTP\/1\.1 304 /g), 2, JSON.stringify(text));
    assert.match(text, /\r\ncontent-length: 5\r\n/i);
    const lines = await logged(up.port, 2);
    assert.deepEqual(
      lines.map((l) => [l.status, l.error]),
      [
        [304, undefined],
        [304, undefined],
      ],
    );
  });

  it('a 204 with Content-Length: 5 is relayed as a 204 without the Content-Length', async () => {
    const { text, up } = await through('HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n', 1, (t) => t.includes('\r\n\r\n'));
    assert.match(text, /^HTTP\/1\.1 204 /);
    assert.doesNotMatch(text, /content-length/i);
    assert.deepEqual((await logged(up.port)).map((l) => [l.status, l.error]), [[204, undefined]]);
  });

  it(`reason phrases with control bytes or obs-text: the status and body pass, the gateway is never blamed (seed ${SEED})`, async () => {
    const rand = prng(SEED);
    const phrases: Buffer[] = [Buffer.from([0xff, 0xfe]), Buffer.from([0x01]), Buffer.from('caf\xe9', 'latin1'), Buffer.from('OK')];
    for (let i = 0; i < 6; i++) {
      const len = 1 + Math.floor(rand() * 12);
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) {
        let c = Math.floor(rand() * 256);
        if (c === 0x0d || c === 0x0a) c = 0x7f;
        b[j] = c;
      }
      phrases.push(b);
    }
    for (const phrase of phrases) {
      const answer = Buffer.concat([Buffer.from('HTTP/1.1 200 '), phrase, Buffer.from('\r\nContent-Length: 2\r\n\r\nok')]);
      const { text, up } = await through(answer, 1, (t) => t.endsWith('\r\n\r\nok'));
      const lines = await logged(up.port);
      const where = `reason ${phrase.toString('hex')}: ${JSON.stringify(text.slice(0, 40))} ${JSON.stringify(lines)}; seed ${SEED}`;
      const status = lines[0]?.status;
      if (status === 502) {
        // llhttp refuses some bytes in the status line (NUL, …): the destination's invalid HTTP.
        assert.equal(lines[0]!.error, 'http_protocol_error', where);
        assert.match(text, /^HTTP\/1\.1 502 /, where);
        continue;
      }
      assert.match(text, /^HTTP\/1\.1 200 [\t\x20-\x7e]*\r\n/, where);
      assert.ok(text.endsWith('\r\n\r\nok'), where);
      assert.equal(status, 200, where);
      assert.equal(lines[0]!.error, undefined, where);
    }
  });

  it('a 103 with an invalid Link is dropped; the final answer passes (never a 500)', async () => {
    for (const link of ['not a link', '<\xff>; rel=preload', '', '<a>; rel="unterminated']) {
      const answer = Buffer.from(`HTTP/1.1 103 Early Hints\r\nLink: ${link}\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`, 'latin1');
      const { text, up } = await through(answer, 1, (t) => t.endsWith('\r\n\r\nok'));
      assert.match(text, /^HTTP\/1\.1 200 /, `link ${JSON.stringify(link)}: ${JSON.stringify(text.slice(0, 40))}`);
      assert.deepEqual((await logged(up.port)).map((l) => [l.status, l.error]), [[200, undefined]]);
    }
  });
});
