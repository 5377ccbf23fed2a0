import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { validateConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observe/access-log.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import type { Rand } from '../helpers/seeded.js';

/**
 * The purge tests' runtime (before, each test of admin-purge.test.ts wrote its own copy): an
 * origin on loopback answered by `handler`, a gateway on 127.0.0.1 with `routes` to it (each a
 * route config without its cluster; default one catch-all route), a 1 MB store, and the admin
 * face with a token, so that a purge goes the operator's way: `POST /cache/purge?key=` or
 * `?prefix=`, through the runtime's spelling of keys and prefixes (gateway/cache-phase.ts
 * `purgeTarget`, `purgePrefixTarget`).
 */

const TOKEN = 'cache-purge-token-0123456789';

export interface PurgeRuntime {
  rt: Runtime;
  up: ScriptedUpstream;
  /** The gateway's URL without its trailing slash. */
  gwUrl: string;
  /** The gateway's port, as the text of a URL's. */
  gwPort: string;
  /** One admin purge (`by` its key or a prefix, spelled `text`): the count it answers. */
  purge(by: 'key' | 'prefix', text: string): Promise<number>;
  /** The admin face's `/metrics` text. */
  metrics(): Promise<string>;
}

export async function withPurgeRuntime(handler: (req: IncomingMessage, res: ServerResponse) => void, routes: ReadonlyArray<Record<string, unknown>> | undefined, body: (p: PurgeRuntime) => Promise<void>): Promise<void> {
  const up = await startScriptedUpstream(handler);
  let rt: Runtime | undefined;
  try {
    const logger = createLogger({ destination: new Writable({ write: (_c, _e, cb) => cb() }) });
    rt = await startRuntime(
      validateConfig({
        listeners: [{ port: 0, address: '127.0.0.1' }],
        admin: { port: 0, address: '127.0.0.1', token: TOKEN },
        clusters: { app: { endpoints: [up.url], outlierDetection: { enabled: false } } },
        routes: (routes ?? [{ cache: { collapseWait: '0s' } }]).map((r) => ({ cluster: 'app', retry: { tries: 1 }, ...r })),
        cache: { maxSize: 1_000_000 },
      }),
      { logger, probeUpstreams: false },
    );
    const gwUrl = rt.gateway!.addresses()[0]!.url.replace(/\/$/, '');
    const admin = rt.adminUrl!.replace(/\/$/, '');
    const purge = async (by: 'key' | 'prefix', text: string): Promise<number> => {
      const r = await request(`${admin}/cache/purge?${by}=${encodeURIComponent(text)}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      const answer = (await r.body.json()) as { purged: number };
      assert.equal(r.statusCode, 200, `${by}=${text}`);
      return answer.purged;
    };
    const metrics = async (): Promise<string> => {
      const r = await request(`${admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(r.statusCode, 200, '/metrics');
      return r.body.text();
    };
    await body({ rt, up, gwUrl, gwPort: new URL(gwUrl).port, purge, metrics });
  } finally {
    await rt?.close();
    await up.close();
  }
}

/** The admin token of `withPurgeRuntime`'s admin face. */
export const PURGE_TOKEN = TOKEN;

/** `s` with each ASCII letter's case drawn; never `s` itself when it has a letter (the casing differs from the configured one). */
export function recased(rand: Rand, s: string): string {
  const out = [...s].map((c) => (rand.next() < 0.5 ? c.toLowerCase() : c.toUpperCase())).join('');
  if (out !== s || !/[a-z]/i.test(s)) return out;
  return [...s].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('');
}
