import type { Dispatcher } from 'undici';
import { request } from 'undici';
import assert from 'node:assert/strict';
import { prng } from './seeded.js';

/** What a keep-alive race load sent and what went wrong. */
export interface RaceLoadResult {
  get: number;
  post: number;
  failures: string[];
}

/** The `/echo` answer the race tests' upstreams give: the method and the body bytes they read. */
export interface Echo {
  method: string;
  bodyBytes: number;
}

export interface RaceLoad {
  /** Where requests go (the gateway, or the proxy's dispatcher). */
  dispatcher: Dispatcher;
  /** The base URL: `${url}/echo?c=…&i=…` is requested. */
  url: string;
  seed: number;
  clients: number;
  durationMs: number;
  gapMaxMs: number;
  /**
   * What the case needs to have happened (say, the destination dropped requests): the load
   * goes on past `durationMs` until it holds, up to `maxDurationMs` (default 4 × durationMs).
   * A stalled machine sends fewer requests in the same time; the case is judged on what it exercised.
   */
  until?: () => boolean;
  maxDurationMs?: number;
}

/**
 * `clients` clients send GET and POST (random body size) with random gaps in [0, gapMaxMs]
 * for `durationMs` (longer while `until` does not hold; at most 10,000 requests each); each client draws from its own
 * generator seeded from the case's seed. A failure is anything but a 200 whose echo matches
 * what was sent (`echoCheck`). The keep-alive race tests of both faces drive their families with it.
 */
export async function driveGetPost(o: RaceLoad): Promise<RaceLoadResult> {
  const r: RaceLoadResult = { get: 0, post: 0, failures: [] };
  const stopAt = Date.now() + o.durationMs;
  const hardStopAt = Date.now() + (o.maxDurationMs ?? 4 * o.durationMs);
  const more = (): boolean => {
    const now = Date.now();
    return now < stopAt || (o.until !== undefined && !o.until() && now < hardStopAt);
  };
  const worker = async (w: number): Promise<void> => {
    const rand = prng(o.seed + 7919 * (w + 1));
    for (let i = 0; more() && i < 10_000; i++) {
      // Load shaping, not synchronisation: the gaps make idle ages straddle the upstream's closes.
      const gap = rand() * o.gapMaxMs;
      if (gap >= 1) await new Promise((res) => setTimeout(res, gap));
      const post = rand() < 0.5;
      const bytes = post ? 1 + Math.floor(rand() * 4096) : 0;
      const method = post ? 'POST' : 'GET';
      if (post) r.post++;
      else r.get++;
      try {
        const res = await request(`${o.url}/echo?c=${w}&i=${i}`, { dispatcher: o.dispatcher, method, body: post ? 'p'.repeat(bytes) : undefined });
        const text = await res.body.text();
        if (res.statusCode !== 200) {
          r.failures.push(`${method} → ${res.statusCode} ${String(res.headers['proxy-status'] ?? '')}`);
          continue;
        }
        const wrong = echoCheck(JSON.parse(text) as Echo, method, bytes);
        if (wrong !== undefined) r.failures.push(`${method}: ${wrong}`);
      } catch (err) {
        r.failures.push(`${method} → client error ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, w) => worker(w)));
  return r;
}

export function echoCheck(body: Echo, method: string, bytes: number): string | undefined {
  if (body.method !== method) return `the upstream saw ${body.method}`;
  if (body.bodyBytes !== bytes) return `the upstream saw ${body.bodyBytes} of ${bytes} body bytes`;
  return undefined;
}

/** The property of every family: both methods sent, none failed (the family's parameters named). */
export function assertNoErrors(r: RaceLoadResult, family: string): void {
  assert.ok(r.get > 0 && r.post > 0, `${family}: both methods were sent (GET ${r.get}, POST ${r.post})`);
  const shown = r.failures.slice(0, 10).join('; ');
  assert.equal(r.failures.length, 0, `${family}: ${r.failures.length} of ${r.get + r.post} requests failed (GET ${r.get}, POST ${r.post}): ${shown}`);
}
