import type { Failure } from './failure.js';
import { failureMember, appendMember, type ProxyStatusOptions } from './proxy-status.js';

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

function retryAdvice(f: Failure): string {
  if (f.retryAfter !== undefined) return `Retrying after ${Math.max(0, Math.ceil(f.retryAfter))} s may help.`;
  if (f.reason === 'proxy_auth_required') return 'Send the request again with valid proxy credentials.';
  if (f.reason === 'bad_username_parameter') return 'Send the request again with the parameter in the user name fixed.';
  if (f.reason === 'request_timeout') return 'Retrying may help if the client sends the whole request in time.';
  if (f.source === 'client') return 'Retrying the same request will fail the same way; the request must be fixed.';
  if (f.status === 503 || f.status === 504) return 'Retrying later may help.';
  if (f.type === 'proxy_loop_detected' || f.type === 'proxy_configuration_error' || f.type === 'destination_not_found') {
    return 'Retrying will not help until the gateway configuration is fixed.';
  }
  if (f.type.startsWith('tls_certificate') || f.type === 'http_request_denied') return 'Retrying will not help.';
  return 'Retrying may help if the problem was temporary.';
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
    'x-request-id': input.requestId,
    'cache-control': 'no-store',
  };
  if (f.retryAfter !== undefined) headers['retry-after'] = String(Math.max(0, Math.ceil(f.retryAfter)));
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
      retryable: f.status === 503 || f.status === 504 || f.retrySafe,
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
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}h1{font-size:1.4em}code{background:#f3f3f3;padding:.1em .3em;border-radius:3px}.detail{color:#555}</style>
</head><body>
<h1>${f.status} — ${escapeHtml(f.title)}</h1>
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
      (reveal ? `Detail: ${f.detail}${f.nextHop ? ` (next hop ${f.nextHop})` : ''}\n` : '') +
      `Error type: ${f.type}\nRequest id: ${input.requestId}\n`;
  }
  const buf = Buffer.from(body, 'utf8');
  headers['content-length'] = String(buf.length);
  return { status: f.status, headers, body: input.head ? Buffer.alloc(0) : buf };
}
