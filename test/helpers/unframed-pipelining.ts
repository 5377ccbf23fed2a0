import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { startRawUpstream, type ScriptedUpstream } from './scripted-upstream.js';
import { between } from './seeded.js';
import { readUntil } from '../forward/helpers.js';

/**
 * GETs pipelined on an HTTP/1.0 keep-alive connection behind one whose answer has no length
 * (read to its close, so the connection ends after it), on either face (the forward proxy's
 * absolute-form requests, the reverse gateway's origin-form ones): the shared origin and the
 * shared seeded family of test/forward/pipelined-behind-unframed.test.ts and
 * test/gateway/pipelined-behind-unframed.test.ts.
 */

/** An origin whose every answer is an HTTP/1.0 200 with no length: `bodyLength` bytes of `b`, then the close. */
export interface UnframedOrigin {
  upstream: ScriptedUpstream;
  /** The length of the next answers' bodies. */
  bodyLength: number;
}

export async function startUnframedOrigin(): Promise<UnframedOrigin> {
  const o = { bodyLength: 10 } as UnframedOrigin;
  o.upstream = await startRawUpstream(() => ({ bytes: `HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n${'b'.repeat(o.bodyLength)}`, close: true }));
  return o;
}

/**
 * The family (seeded by `rand`): 4, 2, 3, 1 and two of 1..4 GETs pipelined on a new connection
 * to `port` (`request(i)` the i-th, for the path `/i`), each answer 0..2000 bytes long. The
 * client gets the first answer, then the close; only `/0` reaches the origin; each request is
 * recorded once (`access()`, the face's access lines; `waitRecords(cond, what)` waits, bounded,
 * for `cond`, failing with `what`), those behind the first as never forwarded, ended by the
 * gateway. `face` and `origin` name the two sides in messages; `noLength` also asserts the
 * answer passed on has no Content-Length.
 */
export async function pipelinedBehindUnframed(
  rand: () => number,
  o: {
    origin: UnframedOrigin;
    port: number;
    request(i: number): string;
    access(): ReadonlyArray<Record<string, unknown>>;
    waitRecords(cond: () => boolean, what: string): Promise<void>;
    face: string;
    originName: string;
    noLength?: boolean;
  },
): Promise<void> {
  const { origin } = o;
  const sizes = [4, 2, 3, 1, between(rand, 1, 4), between(rand, 1, 4)];
  for (const n of sizes) {
    origin.bodyLength = between(rand, 0, 2000);
    const seen = origin.upstream.received.length;
    const before = o.access().length;
    const s = connect(o.port, '127.0.0.1');
    s.on('error', () => {});
    await once(s, 'connect');
    let out = '';
    for (let i = 0; i < n; i++) out += o.request(i);
    s.write(out);
    const res = (await readUntil(s, () => false, undefined, `the ${o.face} to close the connection`)).toString('latin1');
    s.destroy();
    const where = `${n} pipelined, body ${origin.bodyLength}; got ${JSON.stringify(res.slice(0, 200))}`;
    assert.match(res, /^HTTP\/1\.1 200 /, where);
    assert.equal(res.match(/HTTP\/1\.1 \d{3} /g)?.length, 1, `exactly one answer: ${where}`);
    assert.ok(res.endsWith('b'.repeat(origin.bodyLength)) && !(o.noLength === true && /content-length/i.test(res)), where);
    await o.waitRecords(() => o.access().length >= before + n, `${n} records: ${where}`);
    assert.deepEqual(origin.upstream.received.slice(seen).map((r) => r.url), ['/0'], `only the first reaches the ${o.originName}: ${where}`);
    const lines = o.access().slice(before);
    assert.equal(lines.length, n, JSON.stringify(lines));
    assert.equal(lines.filter((l) => l.status === 200).length, 1, JSON.stringify(lines));
    for (const l of lines.filter((x) => x.status !== 200)) {
      assert.equal(l.method, 'GET', JSON.stringify(l));
      assert.equal(l.endedBy, 'gateway', JSON.stringify(l));
      assert.match(String(l.detail), /not forwarded/, JSON.stringify(l));
    }
  }
}
