import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Agent, request } from 'undici';
import { proxyConfig } from '../../src/cli/main.js';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { startLab } from '../../src/lab/index.js';
import { OUTLIER_CHANNEL, type OutlierEvent } from '../../src/upstream/outlier.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * A hung endpoint beside a live one (issue 15): `gatewise proxy --to LIVE --to HUNG
 * --response-timeout T`. Idempotent requests that time out are retried on the live endpoint
 * within T; repeated timeouts eject the hung one; a POST that was sent is never retried
 * (504 http_response_timeout) unless the route trusts its Idempotency-Key.
 */

type HangMode = 'silent' | 'unread' | 'late';

/** An endpoint that accepts connections and never answers in time: reads and ignores ('silent'), never reads ('unread'), or answers after 10 s ('late'). */
async function hungEndpoint(mode: HangMode): Promise<{ url: string; requests: () => number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let requests = 0;
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (mode === 'unread') {
      s.pause();
      requests++;
      return;
    }
    s.on('data', (d: Buffer) => {
      requests += d.toString('latin1').match(/ HTTP\/1\.1\r\n/g)?.length ?? 0;
      if (mode === 'late') {
        const t = setTimeout(() => s.write('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate'), 10_000);
        timers.add(t);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests,
    close: () =>
      new Promise<void>((r) => {
        for (const t of timers) clearTimeout(t);
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const opened: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const o of opened.reverse()) await o.close();
});

const silentLogger = pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));

/** `gatewise proxy --listen 127.0.0.1:0 --to … --response-timeout …`, through the CLI's own config builder and the runtime. */
async function proxy(argv: string[], adjust?: (c: ConfigInput) => void): Promise<{ url: string; rt: Runtime }> {
  const { config } = proxyConfig(['--listen', '127.0.0.1:0', '--no-access-log', ...argv]);
  adjust?.(config);
  const rt = await startRuntime(validateConfig(config), { accessLog: false, logger: silentLogger });
  opened.push(rt);
  return { url: rt.gateway!.addresses()[0]!.url, rt };
}

function p90(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.9) - 1)]!;
}

describe('a hung endpoint beside a live one (issue 15)', () => {
  test('seeded hang modes and response timeouts: every GET gets 200, the hung endpoint is ejected for its timeouts, and then p90 ≤ 500 ms', async () => {
    for (let run = 0; run < 2; run++) {
      await seededRun(`hung endpoint run ${run}`, async (rand) => {
        const mode = (['silent', 'unread', 'late'] as const)[between(rand, 0, 2)]!;
        const timeoutMs = between(rand, 600, 2000);
        const concurrency = between(rand, 1, 4);
        const gapMs = between(rand, 1, 3);
        const live = await startLab();
        opened.push(live);
        const hung = await hungEndpoint(mode);
        opened.push(hung);
        const events: OutlierEvent[] = [];
        const onEvent = (m: unknown): void => void events.push(m as OutlierEvent);
        subscribe(OUTLIER_CHANNEL, onEvent);
        const client = new Agent({ connections: 8 });
        try {
          const { url } = await proxy(['--to', live.url, '--to', hung.url, '--response-timeout', `${timeoutMs}ms`]);
          // Until the ejection (bounded: 10,000 requests or 15 s), then 40 more: every request must get 200 all along.
          // The balancer (least-request) avoids the hung endpoint while a request of its hangs, so
          // it meets only a few requests, but each costs half the response timeout: three in a row
          // (the ejection) take about 1.5 × the response timeout, while the live endpoint serves hundreds.
          const results: Array<{ i: number; status: number; ms: number; afterEjection: boolean }> = [];
          let next = 0;
          let extra = -1;
          const started = performance.now();
          const worker = async (): Promise<void> => {
            for (;;) {
              const ejectedBefore = events.some((e) => e.event === 'ejected');
              if (ejectedBefore && extra < 0) extra = next + 40;
              if (extra >= 0 ? next >= extra : next >= 10_000 || performance.now() - started > 15_000) return;
              const i = next++;
              const t0 = performance.now();
              const res = await request(`${url}/ok?i=${i}`, { dispatcher: client });
              await res.body.text();
              results.push({ i, status: res.statusCode, ms: performance.now() - t0, afterEjection: ejectedBefore });
              // Clients think between requests (and the machine is shared).
              await new Promise((r) => setTimeout(r, gapMs));
            }
          };
          await Promise.all(Array.from({ length: concurrency }, worker));
          const bad = results.filter((r) => r.status !== 200);
          const what = `mode ${mode}, response timeout ${timeoutMs} ms, concurrency ${concurrency}`;
          assert.deepEqual(bad, [], `every GET gets 200 (${what})`);
          assert.ok(hung.requests() >= 1, 'the hung endpoint was tried');
          const ejected = events.find((e) => e.event === 'ejected' && e.endpoint === new URL(hung.url).host);
          assert.ok(ejected, `the hung endpoint was ejected (${what}); events: ${JSON.stringify(events)}`);
          assert.match(ejected.reason, /3 consecutive response timeouts/);
          for (const r of results) assert.ok(r.ms < timeoutMs + 250, `request ${r.i} took ${Math.round(r.ms)} ms: the response timeout (${timeoutMs} ms) bounds the whole wait, retries included`);
          const slow = results.filter((r) => r.ms > timeoutMs / 2 - 50).length;
          const rest = results.filter((r) => r.i >= 10).map((r) => r.ms);
          const later = results.filter((r) => r.afterEjection).map((r) => r.ms);
          const p = p90(rest);
          console.log(`hung endpoint (${what}): ${results.length} GETs, ${slow} waited for a timeout, ejected after ${results.length - later.length}; p90 after the first 10 ${p.toFixed(1)} ms, after the ejection ${p90(later).toFixed(1)} ms`);
          assert.ok(p <= 500, `p90 after the first 10 requests ${p} ms`);
          assert.ok(p90(later) <= 500, `p90 after the ejection ${p90(later)} ms`);
        } finally {
          unsubscribe(OUTLIER_CHANNEL, onEvent);
          await client.close();
        }
      });
    }
  });

  /** A live lab and a silent hung endpoint behind `gatewise proxy`, round robin, 800 ms response timeout; `adjust` changes the rest of the config. */
  async function liveAndSilent(adjust?: (c: ConfigInput) => void): Promise<{ url: string; hung: Awaited<ReturnType<typeof hungEndpoint>> }> {
    const live = await startLab();
    opened.push(live);
    const hung = await hungEndpoint('silent');
    opened.push(hung);
    const { url } = await proxy(['--to', live.url, '--to', hung.url, '--response-timeout', '800ms'], (c) => {
      c.clusters!.default!.balancer = 'round-robin';
      adjust?.(c);
    });
    return { url, hung };
  }

  test('a POST that reached the hung endpoint is not retried: 504 http_response_timeout naming the endpoint', async () => {
    const { url, hung } = await liveAndSilent();
    const client = new Agent();
    try {
      let seen: { status: number; ps: string; ms: number } | undefined;
      for (let i = 0; i < 4 && seen === undefined; i++) {
        const t0 = performance.now();
        const res = await request(`${url}/echo`, { method: 'POST', body: 'payload', dispatcher: client });
        await res.body.text();
        if (res.statusCode !== 200) seen = { status: res.statusCode, ps: String(res.headers['proxy-status']), ms: performance.now() - t0 };
      }
      assert.ok(seen, 'round robin sent a POST to the hung endpoint');
      assert.equal(seen.status, 504);
      assert.match(seen.ps, /error=http_response_timeout/);
      assert.ok(seen.ps.includes(`next-hop="${new URL(hung.url).host}"`) || seen.ps.includes(`next-hop=${new URL(hung.url).host}`), seen.ps);
      assert.ok(seen.ms >= 750, `a POST waits the whole response timeout (${Math.round(seen.ms)} ms)`);
      assert.equal(hung.requests(), 1, 'sent once, never again');
    } finally {
      await client.close();
    }
  });

  test('a POST with an Idempotency-Key is retried on a timeout when the route trusts the key', async () => {
    const { url, hung } = await liveAndSilent((c) => {
      c.routes![0]!.retry = { idempotencyKey: true };
    });
    const client = new Agent();
    try {
      for (let i = 0; i < 4; i++) {
        const res = await request(`${url}/echo`, { method: 'POST', body: 'payload', dispatcher: client, headers: { 'idempotency-key': `k${i}` } });
        await res.body.text();
        assert.equal(res.statusCode, 200);
      }
      assert.ok(hung.requests() >= 1, 'the hung endpoint was tried');
    } finally {
      await client.close();
    }
  });
});
