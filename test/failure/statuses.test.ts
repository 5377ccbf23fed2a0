import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_TYPES, Failure, REFUSAL_REASONS, type EndedBy, type RefusalInfo, type RefusalReason } from '../../src/failure/index.js';
import type { ForwardRecord, ReverseRecord } from '../../src/record/index.js';

const SRC = new URL('../../../src/', import.meta.url).pathname;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

// The lab is an upstream (it answers statuses on purpose); the admin API's refusals are not
// proxy failures and have their own table (observe/admin-problem.ts, each code declared once
// with its status; its routes, guards and process-group answers name a code, so they are
// checked here like every other file); the taxonomy table itself is where statuses live.
const EXEMPT = [/\/src\/lab\//, /\/src\/failure\/types\.ts$/, /\/src\/observe\/admin-problem\.ts$/, /\/src\/cli\/demo\.ts$/];

/** Error statuses (4xx, 5xx) written as literals where a status is set. */
const SETTERS = [
  /\bstatus\s*:\s*[45]\d\d\b/, // a Failure init, a record or a finish() call
  /\bstatusCode\s*=\s*[45]\d\d\b/,
  /\bwriteHead\(\s*[45]\d\d\b/,
  /\bHTTP\/1\.[01] [45]\d\d\b/, // a raw status line
  /\bstatus\s*===?\s*[45]\d\d\s*\?\s*[45]\d\d\b/, // a status chosen by a condition
];

test('statuses come only from the taxonomy table: no call site in src/ sets an error status', () => {
  const found: string[] = [];
  for (const file of sources(SRC)) {
    if (EXEMPT.some((re) => re.test(file))) continue;
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (line.trimStart().startsWith('//') || line.trimStart().startsWith('*')) return;
      if (SETTERS.some((re) => re.test(line))) found.push(`${file.slice(SRC.length)}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(found, [], `statuses set at call sites (name a REFUSAL_REASONS entry instead):\n${found.join('\n')}`);
});

test('a refusal reason gives its status and type; http_request_error carries status-code (RFC 9209 §2.3.15)', () => {
  for (const [reason, r] of Object.entries(REFUSAL_REASONS)) {
    const f = new Failure({ type: r.type, phase: 'accept', reason: reason as RefusalReason, ...allowOf(r) });
    assert.equal(f.status, r.status, reason);
    assert.equal(f.reason, reason);
    if (r.type === 'http_request_error') assert.equal(f.params?.['status-code'], r.status);
  }
  for (const [type, info] of Object.entries(ERROR_TYPES)) {
    if (info.status === 0) continue;
    assert.equal(new Failure({ type: type as keyof typeof ERROR_TYPES, phase: 'internal' }).status, info.status, type);
  }
});

test('a reason of another type is a programming error, refused at once', () => {
  assert.throws(() => new Failure({ type: 'http_request_error', phase: 'accept', reason: 'proxy_auth_required' }), /belongs to http_request_denied/);
});

/** The `allow` a reason whose row computes its Allow needs (any value: the row's own otherwise). */
function allowOf(r: RefusalInfo): { allow?: string } {
  return r.allow === 'computed' ? { allow: 'GET, HEAD, OPTIONS' } : {};
}

test('a 405 always says Allow (RFC 9110 §15.5.6): the row\'s value, or the failure\'s for a row that computes it; nowhere else', async () => {
  const { renderFailure } = await import('../../src/failure/index.js');
  const headersOf = (f: Failure): Record<string, string> => renderFailure({ failure: f, requestId: 'r1', accept: undefined, proxyStatus: { name: 'gw', revealTopology: false } }).headers;
  for (const [reason, info] of Object.entries(REFUSAL_REASONS) as Array<[RefusalReason, RefusalInfo]>) {
    if (info.status === 405) assert.ok(info.allow !== undefined, `${reason}: a 405 row names its Allow`);
    const f = new Failure({ type: info.type, phase: 'accept', reason, ...allowOf(info) });
    assert.equal(headersOf(f).allow, info.allow === 'computed' ? 'GET, HEAD, OPTIONS' : info.allow, reason);
    if (info.allow === 'computed') assert.throws(() => new Failure({ type: info.type, phase: 'route', reason }), /needs the failure's allow/, reason);
    else assert.throws(() => new Failure({ type: info.type, phase: 'route', reason, allow: 'GET' }), /allow is given only/, reason);
  }
  assert.throws(() => new Failure({ type: 'destination_not_found', phase: 'route', allow: 'GET' }), /allow is given only/);
  assert.equal(headersOf(new Failure({ type: 'destination_not_found', phase: 'route' })).allow, undefined);
});

test('proxy_configuration_error answers the table status (500), wherever it is made', () => {
  assert.equal(new Failure({ type: 'proxy_configuration_error', phase: 'connect' }).status, 500);
});

test('both faces record who ended a request in one vocabulary (EndedBy)', () => {
  // Compile-time: each face's record field is exactly EndedBy (both directions assignable).
  const forward: ForwardRecord['endedBy'] = 'complete' as EndedBy;
  const reverse: ReverseRecord['endedBy'] = 'quota' as EndedBy;
  const back: EndedBy[] = [forward!, reverse];
  assert.equal(back.length, 2);
  // A failure's side is who ended it.
  for (const type of Object.keys(ERROR_TYPES) as Array<keyof typeof ERROR_TYPES>) {
    const f = new Failure({ type, phase: 'internal' });
    const ended: EndedBy = f.source;
    assert.ok(['client', 'upstream', 'gateway'].includes(ended));
  }
});

test('a refusal reason speaks for itself on the page: its title and plain words, and retry advice that fits Retry-After', async () => {
  const { renderFailure } = await import('../../src/failure/index.js');
  const render = (f: Failure): string => renderFailure({ failure: f, requestId: 'r1', accept: 'text/plain', proxyStatus: { name: 'gw', revealTopology: false } }).body.toString();
  const auth = render(new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'proxy_auth_required' }));
  assert.match(auth, /^407 Proxy Authentication Required\n/);
  assert.match(auth, /valid user name and password/);
  assert.doesNotMatch(auth, /policy does not allow/);
  const limited = render(new Failure({ type: 'http_request_denied', phase: 'admit', reason: 'too_many_requests', retryAfter: 3 }));
  assert.match(limited, /^429 Too Many Requests\n/);
  assert.match(limited, /Retrying after 3 s may help/);
  assert.doesNotMatch(limited, /will not help/);
  for (const [reason, info] of Object.entries(REFUSAL_REASONS)) {
    const f = new Failure({ type: info.type, phase: 'accept', reason: reason as RefusalReason, ...allowOf(info) });
    assert.equal(f.title, info.title);
    assert.ok(render(f).startsWith(`${info.status} ${info.title}\n`), reason);
  }
});
