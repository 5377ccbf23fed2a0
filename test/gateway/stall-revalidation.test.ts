import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { seededRandom } from '../helpers/seeded.js';
import { onHeads, startRawServer, type RawServer } from '../helpers/scripted-upstream.js';

/**
 * Stall hunt (session 13): a background revalidation (stale-while-revalidate) whose
 * upstream sends the head of a new answer and then stops mid-body. The revalidation times
 * its wait for the head (a Timeout of the response timeout) but nothing after it: it is
 * dispatched with undici's `headersTimeout: 0, bodyTimeout: 0` and cancels its only timer
 * in onHeaders. So it is held for ever, and with it the key's collapsing slot (no further
 * revalidation of the key ever starts), a slot of the cluster's admission, the endpoint's
 * in-flight count and the context's in-flight count (a drain waits for it).
 *
 * The cluster's idle timeout (the wait between body bytes of any response) is 300 ms here:
 * the revalidation must end within it (plus slack) and be recorded.
 */

const IDLE_MS = 300;
/** What the gateway may take beyond the idle timeout (deadline resolution, a busy 2-core machine). */
const SLACK_MS = 3000;

let upstream: RawServer;
/** Conditional requests (background revalidations) seen per path. */
const conditional = new Map<string, number>();

/**
 * `/r/<case>/<sent>/<of>`: a plain GET gets a small 200 that is fresh for 1 s and may be
 * served stale for 60 s while revalidated; a conditional GET (a revalidation) gets the head
 * of a new 200 announcing `of` body bytes, `sent` of them, then silence (the socket stays open).
 */
before(async () => {
  upstream = await startRawServer((s) =>
    onHeads(s, (head) => {
      const path = /^GET (\S+)/.exec(head)?.[1] ?? '/';
      const m = /^\/r\/\d+\/(\d+)\/(\d+)$/.exec(path);
      if (m === null) {
        s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      if (/\r\nif-none-match:/i.test(head)) {
        conditional.set(path, (conditional.get(path) ?? 0) + 1);
        const sent = Number(m[1]);
        const of = Number(m[2]);
        s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=60\r\nETag: "v2"\r\nContent-Length: ${of}\r\n\r\n`);
        if (sent > 0) s.write(Buffer.alloc(sent, 0x62));
        return; // then nothing: the upstream stalls mid-body
      }
      s.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=1, stale-while-revalidate=60\r\nETag: "v1"\r\nContent-Length: 2\r\n\r\nv1`);
    }),
  );
  await startGateway();
});

after(() => upstream.close());

/** One GET on a fresh connection: status and Cache-Status (bounded: 5 s). */
async function get(port: number, path: string): Promise<{ status: number; cs: string }> {
  const c = new RawConn(port);
  try {
    await c.write(`GET ${path} HTTP/1.1\r\nHost: app.test\r\n\r\n`);
    const text = await c.waitFor((t) => {
      const h = parseHead(t);
      return h !== undefined && t.length >= h.end + Number(h.get('content-length') ?? 0);
    }, 5000, `the answer to GET ${path}`);
    const h = parseHead(text)!;
    return { status: h.status, cs: h.get('cache-status') ?? '' };
  } finally {
    c.destroy();
  }
}

async function until<T>(fn: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 20));
  }
}

let gw: TestGateway;

async function startGateway(): Promise<void> {
  gw = await startTestGateway({
    clusters: {
      up: {
        endpoints: [upstream.url],
        timeouts: { response: '2s', idle: `${IDLE_MS}ms` },
        outlierDetection: { enabled: false },
      },
    },
    routes: [{ cluster: 'up', retry: { tries: 1 }, cache: {} }],
  });
}

after(async () => {
  await gw?.close();
});

const background = (path: string): LogLine[] => gw.logs.filter((l) => l.type === 'access' && l.background === 'revalidation' && l.path === path);

test('a background revalidation whose upstream stops mid-body ends after the idle timeout, and the key is revalidated again later (seeded)', { timeout: 60_000 }, async () => {
  const rand = seededRandom();
  const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed})`;
  // Announced sizes around the buffer sizes; stall points at the start, after a byte, and within.
  const cases = [16384, 65536, 1 << 20, 1 + rand.int(200_000)].map((of, i) => {
    const sent = rand.pick([0, 1, rand.int(of)]);
    return { path: `/r/${i}/${sent}/${of}`, sent, of };
  });
  // Store every case, then let them all go stale (max-age=1) at once.
  for (const c of cases) {
    const r = await get(gw.port, c.path);
    assert.equal(r.status, 200, `${ctx}: ${c.path}`);
    assert.match(r.cs, /stored/, `${ctx}: ${c.path} was not stored: ${r.cs}`);
  }
  await new Promise((r) => setTimeout(r, 2100));
  // A stale hit each: answered from the store at once, a revalidation starts behind it.
  for (const c of cases) {
    const r = await get(gw.port, c.path);
    assert.match(r.cs, /stale-while-revalidate/, `${ctx}: ${c.path}: ${r.cs}`);
  }
  const failures: string[] = [];
  for (const c of cases) {
    const started = await until(() => ((conditional.get(c.path) ?? 0) >= 1 ? true : undefined), 3000);
    assert.ok(started, `${ctx}: no revalidation of ${c.path} reached the upstream`);
    const lines = await until(() => (background(c.path).length > 0 ? background(c.path) : undefined), IDLE_MS + SLACK_MS);
    if (lines === undefined) {
      failures.push(`${c.path}: the revalidation whose upstream stopped after ${c.sent} of ${c.of} body bytes was still held ${IDLE_MS + SLACK_MS} ms later (no record; idle timeout ${IDLE_MS} ms)`);
      continue;
    }
    assert.notEqual(lines[0]!.revalidation, 'replaced', `${ctx}: ${c.path}: a cut answer replaced the stored one: ${JSON.stringify(lines[0])}`);
    // The key's collapsing slot is free again: the next stale hit revalidates once more.
    const before = conditional.get(c.path) ?? 0;
    const r = await get(gw.port, c.path);
    assert.equal(r.status, 200, `${ctx}: ${c.path}`);
    const again = await until(() => ((conditional.get(c.path) ?? 0) > before ? true : undefined), 3000);
    if (again === undefined) failures.push(`${c.path}: after the first revalidation ended, a stale hit started no new one (the key's slot is still held)`);
  }
  assert.deepEqual(failures, [], `${ctx}:\n${failures.join('\n')}`);
});
