import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { RawConn, parseHead } from './raw-conn.js';
import type { ScriptedUpstream } from './scripted-upstream.js';

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
