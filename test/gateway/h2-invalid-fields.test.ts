import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startLab, type Lab } from '../../src/lab/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { E, RawH2, T, errorCode, frame, headerBlock } from '../helpers/h2-frames.js';
import { seededRandom, withSeed, type Rand } from '../helpers/seeded.js';
import { startRawServer } from '../helpers/scripted-upstream.js';

/**
 * HTTP/2 request fields that RFC 9113 §8.2.1 makes malformed (a value with CR, LF, NUL or
 * another control, a leading or trailing SP/HTAB; a name with a character outside lower-case
 * tchar). What Node 20 does, found with raw HPACK blocks: nghttp2 refuses an upper-case name
 * (RST_STREAM PROTOCOL_ERROR), and *drops* every other such field before any JavaScript sees
 * it (Node's native `OnInvalidHeader` returns 0: "ignore invalid header fields"; no event,
 * no 'frameError', no session 'error', no option of Node 20's `http2.createServer` changes
 * it — `strictFieldWhitespaceValidation` is Node 22's). The gateway cannot refuse what it is
 * never shown (docs/security.md, "HTTP/2 request fields"); what it can and must guarantee is
 * pinned here: the field never reaches the upstream, nothing is injected, the other fields
 * of the request arrive as sent, and the request is recorded. If a later Node hands such a
 * field to JavaScript, this test fails and the refusal belongs in `adaptRequest`.
 */

async function withGateway(fn: (gw: TestGateway, lab: Lab) => Promise<void>): Promise<void> {
  const lab = await startLab();
  let gw: TestGateway | undefined;
  try {
    gw = await startTestGateway({ listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }], clusters: { lab: { endpoints: [lab.url] } }, routes: [{ cluster: 'lab', retry: { tries: 1 } }] });
    await fn(gw, lab);
  } finally {
    await gw?.close();
    await lab.close();
  }
}

const CONTROLS = [...Array.from({ length: 9 }, (_, i) => i), ...Array.from({ length: 22 }, (_, i) => 10 + i), 0x7f];
const NAME_BAD = [' ', ':', '"', '(', ')', ',', '/', ';', '<', '=', '>', '?', '@', '[', '\\', ']', '{', '}', '\t', '\u00e9', '\u007f', '\u0000'];

/** One malformed field: its name and value, and whether nghttp2 refuses the stream (upper case) rather than dropping the field. */
function malformedField(r: Rand): { name: string; value: string; refused: boolean; what: string } {
  const base = `v${r.int(1000)}`;
  switch (r.int(5)) {
    case 0: {
      const c = String.fromCharCode(r.pick(CONTROLS));
      const at = r.int(base.length + 1);
      return { name: 'x-bad', value: `${base.slice(0, at)}${c}${base.slice(at)}`, refused: false, what: `a value with 0x${c.charCodeAt(0).toString(16)}` };
    }
    case 1:
      return { name: 'x-bad', value: `${base}\r\nx-injected: 1`, refused: false, what: 'a value with CRLF and a field after it' };
    case 2: {
      const ws = r.pick([' ', '\t']);
      return r.next() < 0.5 ? { name: 'x-bad', value: `${ws}${base}`, refused: false, what: 'a leading SP/HTAB' } : { name: 'x-bad', value: `${base}${ws}`, refused: false, what: 'a trailing SP/HTAB' };
    }
    case 3: {
      const c = r.pick(NAME_BAD);
      return { name: `x${c}bad`, value: base, refused: false, what: `a name with 0x${c.charCodeAt(0).toString(16)}` };
    }
    default:
      return { name: r.pick(['X-Bad', 'x-Bad', 'X-BAD']), value: base, refused: true, what: 'an upper-case name' };
  }
}

describe('HTTP/2: malformed request fields (RFC 9113 §8.2.1)', () => {
  test('seeded family: a field with a control byte, CR/LF, NUL, leading/trailing whitespace or a bad name character never reaches the upstream; the rest of the request does; an upper-case name resets the stream', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`invalid-fields seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    await withSeed(rand, async () => {
      await withGateway(async (gw, lab) => {
        const c = new RawH2(gw.port);
        try {
          for (let round = 0; round < 24; round++) {
            const f = malformedField(rand);
            const id = 1 + 2 * round;
            const tag = `r${round}`;
            const before = lab.stats.requests;
            await c.write(frame(T.HEADERS, 0x5, id, headerBlock({ path: `/echo?${tag}`, extra: [['x-before', 'b'], [f.name, f.value], ['x-after', 'a']] })));
            const done = await c.until((fs) => fs.some((x) => x.stream === id && (x.type === T.RST_STREAM || (x.type === T.DATA && (x.flags & 1) === 1))), 10_000);
            assert.ok(done, `${f.what}: no answer on stream ${id}`);
            if (f.refused) {
              const rst = c.rst(id);
              assert.ok(rst, `${f.what}: not reset`);
              assert.equal(errorCode(rst), E.PROTOCOL_ERROR, `${f.what}: reset code`);
              assert.equal(lab.stats.requests, before, `${f.what}: went upstream`);
              continue;
            }
            const body = Buffer.concat(c.frames.filter((x) => x.stream === id && x.type === T.DATA).map((x) => x.payload)).toString('utf8');
            const echo = JSON.parse(body) as { rawHeaders: string[] };
            const names = echo.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
            assert.ok(!names.includes(f.name.toLowerCase()) && !names.includes('x-injected'), `${f.what}: forwarded (${JSON.stringify(echo.rawHeaders)})`);
            assert.ok(echo.rawHeaders.every((v) => !/[\r\n\0]/.test(v)), `${f.what}: CR, LF or NUL upstream`);
            const at = (n: string): string | undefined => echo.rawHeaders[echo.rawHeaders.findIndex((v, i) => i % 2 === 0 && v.toLowerCase() === n) + 1];
            assert.equal(at('x-before'), 'b', `${f.what}: x-before`);
            assert.equal(at('x-after'), 'a', `${f.what}: x-after`);
          }
          assert.equal(c.goaway(), undefined, 'the connection got GOAWAY');
        } finally {
          c.destroy();
        }
      });
    });
  });
});

/**
 * CR, LF and NUL in every place a request field can carry them (RFC 9113 §8.2.1: malformed,
 * never to reach an HTTP/1.1 upstream, where CR or LF would split the request): a regular
 * field's name or value, a pseudo-header's value (:method, :scheme, :path, :authority), a
 * trailer's name or value. Found with raw HPACK blocks on Node 20: nghttp2 resets a stream
 * whose pseudo-header carries one (RST_STREAM PROTOCOL_ERROR, nothing dialled) and drops a
 * regular field or trailer that carries one before JavaScript sees it, so nothing reaches
 * Gatewise to refuse. The upstream is a raw TCP server keeping every byte it read, so a split
 * request (a bare CR or LF, a NUL, an injected field) would show in the bytes, trailers
 * included. Seeded: the byte, where it sits, the place.
 */
const BYTES: Array<[string, string]> = [['\r', 'CR'], ['\n', 'LF'], ['\0', 'NUL'], ['\r\nx-injected: 1\r\n', 'CRLF+field']];
type Place = 'name' | 'value' | ':method' | ':scheme' | ':path' | ':authority' | 'trailer name' | 'trailer value';
const PLACES: Place[] = ['name', 'value', ':method', ':scheme', ':path', ':authority', 'trailer name', 'trailer value'];

function lit(n: string, v: string): Buffer {
  return Buffer.concat([Buffer.from([0x00, n.length]), Buffer.from(n, 'latin1'), Buffer.from([v.length]), Buffer.from(v, 'latin1')]);
}

function spliced(base: string, b: string, r: Rand): string {
  const at = 1 + r.int(base.length - 1);
  return `${base.slice(0, at)}${b}${base.slice(at)}`;
}

describe('HTTP/2: CR, LF and NUL in request field names, values, pseudo-headers and trailers', () => {
  test('seeded family: a pseudo-header with one resets the stream (PROTOCOL_ERROR, nothing upstream); a field or trailer with one never reaches the upstream, whose bytes are never split', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    console.log(`h2 CR/LF/NUL seed ${rand.seed} (replay: GATEWISE_SEED=${rand.seed})`);
    const got = new Map<string, string>();
    const up = await startRawServer((s) => {
      let text = '';
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const chunked = /\r\ntransfer-encoding: *chunked/i.test(text.slice(0, end));
        if (chunked && !/\r\n0\r\n(?:[^\r\n]*\r\n)*\r\n$/.test(text.slice(end + 2))) return;
        const tag = /^[A-Z]+ \/t\/([a-z0-9]+)/.exec(text)?.[1] ?? '?';
        got.set(tag, text);
        text = '';
        s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
      });
    });
    let gw: TestGateway | undefined;
    try {
      gw = await startTestGateway({ listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }], clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } }, routes: [{ cluster: 'up', retry: { tries: 1 } }] });
      await withSeed(rand, async () => {
        const c = new RawH2(gw!.port);
        try {
          // Every place with every byte, in a seeded order, each byte at a seeded position.
          const cases = PLACES.flatMap((place) => BYTES.map(([b, bn]) => ({ place, b, bn })));
          for (let i = cases.length - 1; i > 0; i--) {
            const j = rand.int(i + 1);
            [cases[i], cases[j]] = [cases[j]!, cases[i]!];
          }
          for (let k = 0; k < cases.length; k++) {
            const { place, b, bn } = cases[k]!;
            const id = 1 + 2 * k;
            const tag = `c${k}`;
            const what = `${bn} in ${place} (stream ${id})`;
            const trailer = place.startsWith('trailer');
            const f: Record<string, string> = { ':method': trailer ? 'POST' : 'GET', ':scheme': 'http', ':path': `/t/${tag}`, ':authority': 'a.test' };
            const extra: Array<[string, string]> = [['x-before', 'b']];
            if (place.startsWith(':')) f[place] = spliced(f[place]!, b, rand);
            else if (place === 'name') extra.push([spliced('x-bad', b, rand), 'v']);
            else if (place === 'value') extra.push(['x-bad', spliced('value', b, rand)]);
            extra.push(['x-after', 'a']);
            const head = Buffer.concat([...Object.entries(f).map(([n, v]) => lit(n, v)), ...extra.map(([n, v]) => lit(n, v))]);
            if (trailer) {
              const t = place === 'trailer name' ? lit(spliced('x-trail', b, rand), 'v') : lit('x-trail', spliced('value', b, rand));
              await c.write(Buffer.concat([frame(T.HEADERS, 0x4, id, head), frame(T.DATA, 0, id, Buffer.from('body')), frame(T.HEADERS, 0x5, id, t)]));
            } else await c.write(frame(T.HEADERS, 0x5, id, head));
            const done = await c.until((fs) => fs.some((x) => x.stream === id && (x.type === T.RST_STREAM || (x.type === T.DATA && (x.flags & 1) === 1))), 10_000);
            assert.ok(done, `${what}: no answer`);
            if (place.startsWith(':')) {
              const rst = c.rst(id);
              assert.ok(rst, `${what}: not reset`);
              assert.equal(errorCode(rst), E.PROTOCOL_ERROR, `${what}: reset code`);
              assert.equal(got.has(tag), false, `${what}: went upstream`);
              continue;
            }
            assert.equal(c.rst(id), undefined, `${what}: reset`);
            const bytes = got.get(tag);
            assert.ok(bytes !== undefined, `${what}: not upstream`);
            assert.ok(!bytes.includes('\0') && !/\r(?!\n)|(?<!\r)\n/.test(bytes), `${what}: a NUL, bare CR or bare LF upstream: ${JSON.stringify(bytes)}`);
            assert.ok(!/x-injected|x-bad|x-trail/i.test(bytes), `${what}: the field went upstream: ${JSON.stringify(bytes)}`);
            assert.ok(/\r\nx-before: b\r\n/.test(bytes) && /\r\nx-after: a\r\n/.test(bytes), `${what}: the other fields: ${JSON.stringify(bytes)}`);
            if (trailer) assert.match(bytes, /\r\n\r\n4\r\nbody\r\n0\r\n\r\n$/, `${what}: the body`);
          }
          assert.equal(c.goaway(), undefined, 'the connection got GOAWAY');
        } finally {
          c.destroy();
        }
      });
    } finally {
      await gw?.close();
      await up.close();
    }
  });
});
