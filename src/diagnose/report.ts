import type { Diagnosis } from './diagnose.js';
import { outcomeWords } from './experiments.js';

const SIDE_WORDS = {
  none: 'nobody: it works',
  'client-network': 'YOUR side (this machine or its network)',
  intermediary: "the SITE's side: an intermediary (proxy, CDN, load balancer)",
  upstream: "the SITE's side: its server (behind the hop named, if one is)",
  unknown: 'could not tell',
} as const;

function ms(n: number | undefined): string {
  return n === undefined ? '?' : n < 10 ? `${n.toFixed(1)} ms` : `${Math.round(n)} ms`;
}

function header(h: Record<string, string | string[] | undefined>, n: string): string | undefined {
  const v = h[n];
  return v === undefined ? undefined : Array.isArray(v) ? v.join(', ') : v;
}

const SHOWN_HEADERS = ['server', 'via', 'proxy-status', 'cache-status', 'x-cache', 'age', 'retry-after', 'content-type', 'content-length', 'x-request-id', 'cf-ray', 'x-amz-cf-id', 'x-amz-cf-pop', 'x-served-by', 'x-azure-ref', 'x-vercel-id', 'x-vercel-error', 'x-nf-request-id', 'x-squid-error', 'x-varnish'];

/** The diagnosis for a person: phases, hop, experiments, then the verdict (last, where the eye lands). */
export function formatDiagnosis(d: Diagnosis): string {
  const L: string[] = [];
  L.push(`gatewise diagnose: ${d.method} ${d.url}   (${d.startedAt})`, '');
  L.push('Phases');
  const dns = d.dns;
  if (dns.source === 'literal') L.push(`  DNS      skipped: the URL names an address (${dns.host})`);
  else if (dns.source === 'resolve-flag') L.push(`  DNS      skipped: --resolve gives ${dns.addresses[0]?.address}`);
  else {
    L.push(`  DNS      ${dns.host} via ${dns.resolver}, ${ms(dns.ms)}`);
    for (const [fam, r] of [['IPv4', dns.v4], ['IPv6', dns.v6]] as const) {
      if (!r) continue;
      L.push(`           ${fam}: ${r.addresses.length ? r.addresses.join(', ') : r.failure ? `none (${r.failure.code ?? r.failure.type})` : 'none'}`);
    }
    if (dns.failure) L.push(`           FAILED: ${dns.failure.type} — ${dns.failure.explain}`);
  }
  const m = d.main;
  for (const c of m.connect) {
    const who = c.to === 'proxy' ? ' (the proxy)' : '';
    L.push(`  connect  ${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port} ${c.family === 4 ? 'IPv4' : 'IPv6'}${who}: ${c.ok ? `ok, ${ms(c.ms)}` : `FAILED after ${ms(c.ms)}: ${c.failure?.type} (${c.failure?.code ?? ''}) — ${c.failure?.explain}`}`);
  }
  if (!m.connect.length && !dns.failure) L.push('  connect  not tried');
  if (m.tunnel) L.push(`  tunnel   the proxy answered CONNECT with ${m.tunnel.status}`);
  if (m.tls) {
    const t = m.tls;
    L.push(`  TLS      ${t.protocol ?? '?'}${t.alpn ? `, ALPN ${t.alpn}` : ''}${t.cipher ? `, ${t.cipher}` : ''}, ${ms(t.ms)}`);
    L.push(`           certificate: ${t.names.join(', ') || '(no names)'}; expires ${t.chain[0]?.validTo ?? '?'} (${t.daysLeft ?? '?'} days)`);
    for (const [i, c] of t.chain.entries()) L.push(`           chain ${i}: ${c.subject}  ← issued by ${c.issuer}`);
    L.push(`           trust: ${t.trusted ? 'trusted' : `NOT trusted (${t.trustError})`}`);
  } else if (new URL(d.url).protocol === 'http:') L.push('  TLS      none (http://)');
  if (m.http) {
    const h = m.http;
    L.push(`  HTTP     ${h.status} ${h.statusText}, HTTP/${h.httpVersion}; first byte ${ms(h.ttfbMs)}, head ${ms(h.headersMs)}; body ${h.bodyBytes} bytes${h.complete ? ', ended cleanly' : ', DID NOT END CLEANLY'}`);
    for (const n of SHOWN_HEADERS) {
      const v = header(h.headers, n);
      if (v !== undefined) L.push(`           ${n}: ${v.length > 200 ? v.slice(0, 200) + '…' : v}`);
    }
  }
  if (m.failure && m.failure !== dns.failure) L.push(`  FAILED   in the ${m.failure.phase} phase: ${m.failure.type}${m.failure.code ? ` (${m.failure.code})` : ''} — ${m.failure.explain.replace(/the gateway/g, 'this machine')}`);
  L.push(`  total    ${ms(m.totalMs)}`);

  if (d.hop) {
    const hop = d.hop;
    L.push('', 'Hops seen in the answer');
    if (hop.proxyStatus?.length) {
      L.push(`  Proxy-Status, nearest the origin first:`);
      for (const [i, p] of hop.proxyStatus.entries()) L.push(`    ${i + 1}. ${p.name}${Object.entries(p.params).map(([k, v]) => `; ${k}=${v}`).join('')}`);
    }
    if (hop.proxyStatusInvalid) L.push(`  Proxy-Status is malformed: ${hop.proxyStatusInvalid}`);
    for (const h of hop.hops) L.push(`  ${h.name} (${h.kind})${h.made ? ' — wrote this answer' : ' — on the path'}: ${h.evidence.join('; ')}`);
    if (!hop.hops.length) L.push('  no known intermediary (no fingerprint matched)');
    if (hop.pageWords) L.push(`  the page says: "${hop.pageWords}"`);
  }

  const ex = d.experiments;
  L.push('', 'Experiments (the troubleshooting guide, run)');
  const r = ex.refresh;
  L.push(`  refresh       ${r.tries.length} ${r.tries.length === 1 ? "try" : "tries"} ${r.spacingMs} ms apart: ${r.tries.map(outcomeWords).join(', ')} → ${r.pattern === 'none' ? 'all worked' : r.pattern === 'persistent' ? `persistent (${r.failed}/${r.tries.length} failed)` : `transient (${r.failed}/${r.tries.length} failed)`}`);
  if (ex.cache) L.push(`  bypass cache  no-cache + ?${ex.cache.bustParam}: ${outcomeWords(ex.cache.fresh)} → ${ex.cache.differs ? 'DIFFERENT from the first answer' : 'the same: not a cached answer'}${ex.cache.cacheSignals.length ? ` (${ex.cache.cacheSignals.join('; ')})` : ''}`);
  if (ex.client) L.push(`  other client  browser-like: ${outcomeWords(ex.client.browser)}, curl-like: ${outcomeWords(ex.client.curl)} → ${ex.client.differs ? 'DEPENDS on the client' : 'the same for both'}`);
  for (const e of ex.path.entries) L.push(`  network path  ${e.label}: ${outcomeWords(e.outcome)}${e.outcome.failure ? ` (${e.outcome.failure.phase})` : ''}`);
  if (ex.path.proxy) L.push(`  network path  ${ex.path.proxy.label}: ${outcomeWords(ex.path.proxy.outcome)}`);
  if (!ex.path.entries.length && !ex.path.proxy) L.push('  network path  no address to try');

  const v = d.verdict;
  L.push('', `Verdict: ${v.healthy ? 'HEALTHY' : 'FAILING'} — whose side: ${SIDE_WORDS[v.side]}`);
  L.push(`  ${v.words}`);
  L.push(`  Which hop: ${v.hop}${v.phase ? `; failed phase: ${v.phase}` : ''}${v.errorType ? `; error type: ${v.errorType}` : ''}`);
  L.push(`  How sure: ${v.confidence}, because:`);
  for (const e of v.evidence) L.push(`    - ${e}`);
  L.push('  What next:');
  for (const n of v.next) L.push(`    - ${n}`);
  if (v.contact.who !== 'nobody') {
    L.push(`  Whom to contact: ${v.contact.who}, quoting:`);
    for (const q of v.contact.quote) L.push(`    - ${q}`);
  }
  L.push(`  Exit code ${v.exitCode} (0 healthy, 1 site's side, 2 your side, 3 could not tell).`);
  return printable(L.join('\n')) + '\n';
}

/** The diagnosis for programs: one JSON object (bodies cut to their first 2 KiB). */
export function diagnosisJson(d: Diagnosis): Record<string, unknown> {
  const cut = (s: string): string => (s.length > 2048 ? s.slice(0, 2048) : s);
  const main = { ...d.main, ...(d.main.http ? { http: { ...d.main.http, body: cut(d.main.http.body) } } : {}) };
  return { ...d, main };
}

/**
 * The report as a terminal may show it: control characters other than the line breaks between
 * its lines (ESC, BEL, CR, C1 controls…) written as visible escapes. The report quotes what
 * the remote side sent (its page's words, its headers), and a hostile page could otherwise
 * clear the screen, retitle the window or fake a verdict line (finding, session 29).
 */
export function printable(s: string): string {
  return s.replace(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
