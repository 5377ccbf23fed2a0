import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { startTestGateway, type TestGateway } from './gateway.js';
import { RawConn, parseHead } from './raw-conn.js';
import { startScriptedUpstream, type ScriptedUpstream } from './scripted-upstream.js';

/** An upstream handler that answers every request 200 "ok". */
export function answerOk(_req: unknown, res: ServerResponse): void {
  res.writeHead(200, { 'content-length': '2' });
  res.end('ok');
}

/** What a routing probe saw: the status, which upstream got the request and the request-target it got (undefined: none did), the Proxy-Status. */
export interface Routed {
  status: number;
  reached: { upstream: string; url: string } | undefined;
  proxyStatus: string | undefined;
}

/**
 * Send `GET target` over a raw connection to the gateway on `port` and see which of the
 * named `upstreams` received it (at most one may) and with what request-target.
 */
export async function sendRouted(port: number, target: string, upstreams: Readonly<Record<string, ScriptedUpstream>>): Promise<Routed> {
  const counts = Object.fromEntries(Object.entries(upstreams).map(([k, u]) => [k, u.received.length]));
  const conn = new RawConn(port);
  let text: string;
  try {
    await conn.write(`GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`);
    text = await conn.closed(10_000);
  } finally {
    conn.destroy();
  }
  const head = parseHead(text);
  const got = Object.entries(upstreams).filter(([k, u]) => u.received.length > counts[k]!);
  assert.ok(got.length <= 1, `${target} reached ${got.map(([k]) => k).join(' and ')}`);
  const reached = got.length === 0 ? undefined : { upstream: got[0]![0], url: got[0]![1].received.at(-1)!.url };
  return { status: head?.status ?? 0, reached, proxyStatus: head?.get('proxy-status') };
}

/** A gateway over scripted upstreams that answer `answerOk`, one cluster of each upstream's name. */
export interface OkClusters<N extends string> {
  gateway: TestGateway;
  upstreams: Record<N, ScriptedUpstream>;
  /** Close the gateway, then the upstreams. */
  close(): Promise<void>;
}

/**
 * Start one scripted upstream answering `answerOk` for each of `names` (in that order) and a
 * test gateway whose cluster of that name has it as its one endpoint; `input` gives the rest
 * of the config (routes, top-level settings). If a start fails, what has started is closed.
 */
export async function startOkClusters<const N extends string>(
  names: readonly N[],
  input: Omit<Parameters<typeof startTestGateway>[0], 'clusters'>,
): Promise<OkClusters<N>> {
  const started: ScriptedUpstream[] = [];
  const upstreams = {} as Record<N, ScriptedUpstream>;
  const clusters: Record<string, { endpoints: string[] }> = {};
  const closeUpstreams = async (): Promise<void> => {
    for (const u of started) await u.close();
  };
  try {
    for (const name of names) {
      const u = await startScriptedUpstream(answerOk);
      started.push(u);
      upstreams[name] = u;
      clusters[name] = { endpoints: [u.url] };
    }
    const gateway = await startTestGateway({ ...input, clusters });
    return {
      gateway,
      upstreams,
      async close() {
        await gateway.close();
        await closeUpstreams();
      },
    };
  } catch (err) {
    await closeUpstreams();
    throw err;
  }
}
