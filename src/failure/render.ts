import type { Failure } from './failure.js';
import { failureMember, appendMember, parseProxyStatus, type ProxyStatusMember, type ProxyStatusOptions } from './proxy-status.js';
import { ERROR_TYPES, isProxyErrorType } from './types.js';

/** One try at the upstream, as shown to programs in problem+json `attempts`. */
export interface AttemptSummary {
  endpoint: string;
  phase: string;
  error?: string;
  status?: number;
  durationMs: number;
}

export interface RenderInput {
  failure: Failure;
  requestId: string;
  accept: string | undefined;
  /** Proxy-Status received from an earlier hop, kept in front of ours. */
  priorProxyStatus?: string | string[];
  attempts?: readonly AttemptSummary[];
  proxyStatus: ProxyStatusOptions;
  /** HEAD requests get the headers without a body. */
  head?: boolean;
  /** The header that carries the request id (`requestId.header`); default x-request-id. */
  requestIdHeader?: string;
}

export interface Rendered {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export type BodyFormat = 'problem' | 'html' | 'text';

/**
 * The default prefix of a problem+json `type`: a tag URI (RFC 4151), a name and not a link
 * (RFC 9457 §3.1.1), followed by the type's anchor in docs/errors.md. A config sets its own
 * base (proxyStatus.problemTypeBase, forward.problemTypeBase) to make the types links to
 * where it publishes that page.
 */
export const PROBLEM_TYPE_BASE = 'tag:gatewise,2026:error:';

/** The anchor of an error type in docs/errors.md: `connection_refused` → `connection-refused`. */
export function errorAnchor(type: string): string {
  return type.replace(/_/g, '-');
}

/** Pick the body format from Accept: programs get problem+json, browsers HTML, the rest text. */
export function negotiate(accept: string | undefined): BodyFormat {
  if (!accept) return 'text';
  const a = accept.toLowerCase();
  let best: BodyFormat = 'text';
  let bestQ = 0;
  for (const part of a.split(',')) {
    const [rawType, ...params] = part.split(';');
    const type = rawType!.trim();
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split('=');
      if (k?.trim() === 'q' && v !== undefined) q = Number(v) || 0;
    }
    let fmt: BodyFormat | undefined;
    if (type === 'application/problem+json' || type === 'application/json') fmt = 'problem';
    else if (type === 'text/html' || type === 'application/xhtml+xml') fmt = 'html';
    else if (type === 'text/plain') fmt = 'text';
    if (fmt && q > bestQ) {
      best = fmt;
      bestQ = q;
    }
  }
  return best;
}

function whoseSide(f: Failure): string {
  switch (f.source) {
    case 'client':
      return 'the request (client side)';
    case 'gateway':
      return 'the gateway';
    default:
      return 'the upstream server';
  }
}

/**
 * Whether the same request may succeed if sent again: a 503 or 504 (the upstream or the gateway
 * busy or slow), or a failure the taxonomy calls safe to retry. Not only-if-cached's 504: it is
 * the gateway's answer to what the request asked (a stored response only), the same until
 * something is stored.
 */
function retryable(f: Failure): boolean {
  if (f.reason === 'only_if_cached') return false;
  return f.status === 503 || f.status === 504 || f.retrySafe;
}

function retryAdvice(f: Failure): string {
  if (f.retryAfter !== undefined) return `Retrying after ${Math.max(0, Math.ceil(f.retryAfter))} s may help.`;
  if (f.reason === 'proxy_auth_required') return 'Send the request again with valid proxy credentials.';
  if (f.reason === 'bad_username_parameter') return 'Send the request again with the parameter in the user name fixed.';
  if (f.reason === 'request_timeout') return 'Retrying may help if the client sends the whole request in time.';
  if (f.reason === 'route_method_not_allowed') return 'Send the request with one of the methods the Allow field lists.';
  if (f.reason === 'only_if_cached') return 'The same request will fail the same way until the cache holds a response it may use; sent without only-if-cached, it goes to the upstream.';
  if (f.source === 'client') return 'Retrying the same request will fail the same way; the request must be fixed.';
  if (f.status === 503 || f.status === 504) return 'Retrying later may help.';
  if (f.type === 'proxy_loop_detected' || f.type === 'proxy_configuration_error' || f.type === 'destination_not_found') {
    return 'Retrying will not help until the gateway configuration is fixed.';
  }
  if (f.type.startsWith('tls_certificate') || f.type === 'http_request_denied') return 'Retrying will not help.';
  return 'Retrying may help if the problem was temporary.';
}

/** One hop of the path an error page draws: you → this gateway (→ earlier intermediaries) → the upstream. */
export interface PathHop {
  role: 'client' | 'gateway' | 'intermediary' | 'upstream';
  name: string;
  /** `refused`: the hop works and turned the request away by policy (403, 407, 429). */
  state: 'working' | 'failed' | 'refused' | 'not reached';
  /** The failure's plain words (failed), or what the hop did (a status it passed on). */
  words?: string;
}

/**
 * The path of a gateway-made answer, from the same data as its `Proxy-Status`: the client,
 * this gateway, the intermediaries an earlier `Proxy-Status` names (nearest this gateway
 * first), and the upstream; the failure's side marks which hop failed.
 */
export function failurePath(input: Pick<RenderInput, 'failure' | 'priorProxyStatus' | 'proxyStatus'>): PathHop[] {
  const f = input.failure;
  let prior: ProxyStatusMember[] = [];
  if (input.priorProxyStatus !== undefined && input.priorProxyStatus.length) {
    try {
      prior = parseProxyStatus(input.priorProxyStatus);
    } catch {
      prior = []; // a malformed field from upstream is left out of the picture, not guessed at
    }
  }
  const failedPrior = prior.find((m) => typeof m.params.error === 'string');
  const path: PathHop[] = [
    { role: 'client', name: 'You', state: f.source === 'client' ? 'failed' : 'working', ...(f.source === 'client' ? { words: f.explain } : {}) },
    {
      role: 'gateway',
      name: input.proxyStatus.name,
      state: f.type === 'http_request_denied' ? 'refused' : f.source === 'gateway' ? 'failed' : 'working',
      ...(f.source === 'gateway' ? { words: f.explain } : {}),
    },
  ];
  // Proxy-Status lists the hop nearest the origin first; the picture walks from this gateway outwards.
  let beyondFailure = f.source !== 'upstream';
  for (const m of [...prior].reverse()) {
    const err = typeof m.params.error === 'string' ? m.params.error : undefined;
    const received = m.params['received-status'];
    path.push({
      role: 'intermediary',
      name: m.name,
      state: beyondFailure ? 'not reached' : err ? 'failed' : 'working',
      ...(err ? { words: isProxyErrorType(err) ? ERROR_TYPES[err].explain : err } : received !== undefined ? { words: `passed on ${received}` } : {}),
    });
    if (err) beyondFailure = true;
  }
  const upstreamName = input.proxyStatus.revealTopology && f.nextHop && !failedPrior ? `Upstream ${f.nextHop}` : 'Upstream server';
  path.push({
    role: 'upstream',
    name: upstreamName,
    state: beyondFailure ? 'not reached' : 'failed',
    ...(!beyondFailure ? { words: f.explain } : {}),
  });
  return path;
}

const PATH_MARK = { working: '✓ Working', failed: '✗ Failed', refused: '⛔ Refused', 'not reached': '– Not reached' } as const;

function pathHtml(path: readonly PathHop[]): string {
  const items = path.map(
    (h, i) =>
      `<li class="hop ${h.state === 'not reached' ? 'unreached' : h.state}" data-role="${h.role}" data-state="${h.state}">` +
      `<span class="name">${escapeHtml(h.name)}</span><span class="state">${PATH_MARK[h.state]}</span>` +
      `${h.words ? `<span class="words">${escapeHtml(h.words)}</span>` : ''}</li>` +
      (i < path.length - 1 ? '<li class="arrow" aria-hidden="true"></li>' : ''),
  );
  return `<ol class="path" aria-label="Where the request failed">${items.join('')}</ol>`;
}

function pathText(path: readonly PathHop[]): string {
  return path.map((h) => `${h.name} ${h.state === 'working' ? '(working)' : h.state === 'failed' || h.state === 'refused' ? `(${h.state.toUpperCase()}${h.words ? `: ${h.words}` : ''})` : '(not reached)'}`).join(' -> ');
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Build the full gateway-generated response for a failure. */
export function renderFailure(input: RenderInput): Rendered {
  const f = input.failure;
  const reveal = input.proxyStatus.revealTopology;
  const headers: Record<string, string> = {
    'proxy-status': appendMember(input.priorProxyStatus, failureMember(f, input.proxyStatus)),
    [input.requestIdHeader ?? 'x-request-id']: input.requestId,
    'cache-control': 'no-store',
    // The page quotes the request (its path, its host): a browser must not read a text page as HTML.
    'x-content-type-options': 'nosniff',
  };
  if (f.retryAfter !== undefined) headers['retry-after'] = String(Math.max(0, Math.ceil(f.retryAfter)));
  // A 405 says what the target takes: the reason's row holds it, or the failure when the row computes it (types.ts REFUSAL_REASONS).
  if (f.allow !== undefined) headers.allow = f.allow;
  const format = negotiate(input.accept);
  let body: string;
  if (format === 'problem') {
    headers['content-type'] = 'application/problem+json';
    const problem: Record<string, unknown> = {
      type: (input.proxyStatus.problemTypeBase ?? PROBLEM_TYPE_BASE) + errorAnchor(f.type),
      title: f.title,
      status: f.status,
      detail: reveal ? f.detail : f.explain,
      errorType: f.type,
      phase: f.phase,
      source: f.source,
      requestId: input.requestId,
      retryable: retryable(f),
    };
    if (reveal && f.nextHop) problem.nextHop = f.nextHop;
    if (input.attempts) {
      problem.attempts = reveal
        ? input.attempts
        : input.attempts.map((a) => ({ phase: a.phase, error: a.error, status: a.status, durationMs: a.durationMs }));
    }
    if (f.retryAfter !== undefined) problem.retryAfter = f.retryAfter;
    body = JSON.stringify(problem);
  } else if (format === 'html') {
    headers['content-type'] = 'text/html; charset=utf-8';
    const detail = reveal ? `<p class="detail">Detail: ${escapeHtml(f.detail)}${f.nextHop ? ` (next hop ${escapeHtml(f.nextHop)})` : ''}</p>` : '';
    body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${f.status} ${escapeHtml(f.title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}h1{font-size:1.4em}code{background:#f3f3f3;padding:.1em .3em;border-radius:3px;overflow-wrap:anywhere}.detail{color:#555;overflow-wrap:anywhere}
.path{list-style:none;display:flex;flex-wrap:wrap;align-items:stretch;gap:.4em;padding:0;margin:1.5em 0}.hop{flex:1 1 0;min-width:min-content;max-width:100%;box-sizing:border-box;border:2px solid #ccc;border-radius:8px;padding:.6em;text-align:center;overflow-wrap:break-word;hyphens:auto}.hop .name{display:block;font-weight:600}.hop .state{display:block}.hop .words{display:block;font-size:.85em;color:#444;margin-top:.3em}
.hop.working{border-color:#2e7d32}.hop.working .state{color:#2e7d32}.hop.failed{border-color:#c62828;background:#fdecea}.hop.failed .state{color:#c62828;font-weight:600}.hop.refused{border-color:#ef6c00;background:#fff3e0}.hop.refused .state{color:#b35300;font-weight:600}.hop.unreached{border-style:dashed;color:#777}.arrow{flex:0 0 auto;align-self:center;color:#999}.arrow::before{content:"→"}
@media (max-width:34em){body{margin:1em auto}.path{flex-direction:column}.hop{flex:0 0 auto}.arrow::before{content:"↓"}}</style>
</head><body>
<h1>${f.status} — ${escapeHtml(f.title)}</h1>
${pathHtml(failurePath(input))}
<p>${escapeHtml(f.explain)}</p>
<p>The problem is on the side of <strong>${escapeHtml(whoseSide(f))}</strong>. ${escapeHtml(retryAdvice(f))}</p>
${detail}
<p>If you contact the site's operators, quote this request id: <code>${escapeHtml(input.requestId)}</code></p>
<p class="detail">Error type: <code>${f.type}</code></p>
</body></html>
`;
  } else {
    headers['content-type'] = 'text/plain; charset=utf-8';
    body =
      `${f.status} ${f.title}\n${f.explain}\n` +
      `Side: ${whoseSide(f)}. ${retryAdvice(f)}\n` +
      `Path: ${pathText(failurePath(input))}\n` +
      (reveal ? `Detail: ${f.detail}${f.nextHop ? ` (next hop ${f.nextHop})` : ''}\n` : '') +
      `Error type: ${f.type}\nRequest id: ${input.requestId}\n`;
  }
  const buf = Buffer.from(body, 'utf8');
  headers['content-length'] = String(buf.length);
  return { status: f.status, headers, body: input.head ? Buffer.alloc(0) : buf };
}
