import assert from 'node:assert/strict';
import { ERROR_TYPES, parseProxyStatus, type ProxyErrorType } from '../../src/failure/index.js';
import type { LiveTraffic } from '../../src/observe/live.js';
import type { attachMetrics } from '../../src/observe/metrics.js';
import { accessLine, type TestProxy } from './helpers.js';

/**
 * The proxy-and-log rig of the forward proxy's error-story probes (error-story.test.ts,
 * error-story-exits.test.ts): an HTTP answer read raw, the request metrics, and one answer's
 * whole story checked against the access-log line and the dashboard's record.
 */

export interface Raw {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A raw HTTP/1.1 answer: status, lower-case header names (the last of a repeated one), body as UTF-8. */
export function parse(text: string): Raw {
  const end = text.indexOf('\r\n\r\n');
  const head = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of head.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head[0]!)?.[1]), headers, body: Buffer.from(text.slice(end + 4), 'latin1').toString('utf8') };
}

/** gatewise_requests_total summed over the series whose labels include `labels`. */
export async function counted(metrics: ReturnType<typeof attachMetrics>, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric('gatewise_requests_total')!.get();
  let n = 0;
  for (const v of m.values) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) n += v.value;
  return n;
}

/** Where a story is told: the proxy (its log lines), the dashboard's records, the run's seed. */
export interface StoryRig {
  p: TestProxy;
  live: LiveTraffic;
  seed: number;
}

/**
 * One HTTP answer's story: status (the type's own unless `status`), Proxy-Status, request id,
 * the body (`format`: problem+json, or the HTML page), the access-log line and the dashboard's
 * record, which say the same type, status, phase, reason and detail. Returns the line and our
 * Proxy-Status member's parameters.
 */
export async function checkStory(
  rig: StoryRig,
  a: Raw,
  type: ProxyErrorType,
  where: string,
  o: { status?: number; format?: 'problem' | 'html' } = {},
): Promise<{ line: Record<string, unknown>; params: Record<string, unknown> }> {
  const { p, live } = rig;
  const said = `${where} [seed ${rig.seed}]: ${a.status} ${JSON.stringify(a.headers)} ${a.body.slice(0, 400)}`;
  assert.equal(a.status, o.status ?? ERROR_TYPES[type].status, said);
  const rid = a.headers['x-request-id'] ?? '';
  assert.ok(rid.length > 0, `a request id: ${said}`);
  const ours = parseProxyStatus(a.headers['proxy-status'] ?? '').at(-1)!;
  assert.equal(ours.params.error, type, said);
  const line = await accessLine(p.lines, (l) => l.requestId === rid, `the line of ${rid}`);
  assert.equal(line.error, type, `${said} ${JSON.stringify(line)}`);
  assert.equal(line.status, a.status, `${said} ${JSON.stringify(line)}`);
  // The operator's line says the failure in words on every protocol (CONNECT's and SOCKS's did, the HTTP proxy's did not).
  assert.equal(typeof line.detail, 'string', `the line's detail: ${said} ${JSON.stringify(line)}`);
  if ((o.format ?? 'problem') === 'problem') {
    assert.match(a.headers['content-type'] ?? '', /^application\/problem\+json/, said);
    const pj = JSON.parse(a.body) as Record<string, unknown>;
    assert.equal(pj.errorType, type, said);
    assert.equal(pj.status, a.status, said);
    assert.equal(pj.requestId, rid, said);
    assert.equal(pj.phase, line.phase, `${said} ${JSON.stringify(line)}`);
  } else {
    assert.match(a.headers['content-type'] ?? '', /^text\/html/, said);
    assert.ok(a.body.includes(`<code>${rid}</code>`), said);
    assert.ok(a.body.includes(`<code>${type}</code>`), said);
  }
  const rec = live.failure(rid);
  assert.ok(rec, `a record for the dashboard: ${said}`);
  assert.equal(rec.error, type, said);
  assert.equal(rec.status, a.status, said);
  assert.equal(rec.phase, line.phase, said);
  assert.equal(rec.reason, line.reason, said);
  assert.equal(rec.detail, line.detail, said);
  return { line, params: ours.params };
}
