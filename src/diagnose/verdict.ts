import { ERROR_TYPES, type Phase, type ProxyErrorType } from '../failure/index.js';
import { fingerprint } from './fingerprints.js';
import type { Diagnosis } from './diagnose.js';
import { outcomeOf, outcomeWords } from './experiments.js';
import type { PhaseFailure } from './probe.js';

/** Whose side must act. */
export type Side = 'none' | 'client-network' | 'intermediary' | 'upstream' | 'unknown';

export interface Verdict {
  healthy: boolean;
  side: Side;
  /** The hop that produced the error (or answered, when healthy), in words. */
  hop: string;
  /** Where it failed: the phase of this probe (dns, connect, tls, headers, body) or the hop's own failed phase. */
  phase?: Phase;
  errorType?: ProxyErrorType;
  status?: number;
  confidence: 'high' | 'medium' | 'low';
  /** The verdict in one or two plain sentences. */
  words: string;
  evidence: string[];
  next: string[];
  contact: { who: string; quote: string[] };
  /** 0 healthy, 1 failing on the site's side (upstream or an intermediary), 2 on the client's network, 3 could not tell. */
  exitCode: 0 | 1 | 2 | 3;
}

type Input = Omit<Diagnosis, 'verdict' | 'durationMs'>;

/** The phase a hop's failure of this type happened in. */
export function phaseOfType(t: ProxyErrorType): Phase {
  if (t.startsWith('dns_')) return 'dns';
  if (t.startsWith('tls_')) return 'tls';
  if (t === 'connection_refused' || t === 'connection_timeout' || t === 'destination_ip_unroutable' || t === 'destination_ip_prohibited') return 'connect';
  if (t === 'connection_write_timeout' || t === 'connection_terminated') return 'send';
  if (t === 'connection_read_timeout' || t === 'http_response_body_size' || t === 'http_response_incomplete' || t === 'http_response_transfer_coding' || t === 'http_response_content_coding' || t.startsWith('http_response_trailer')) return 'body';
  if (t === 'destination_unavailable' || t === 'connection_limit_reached') return 'pick';
  if (t.startsWith('proxy_') || t === 'destination_not_found') return 'route';
  if (t === 'http_request_error' || t === 'http_request_denied') return 'accept';
  return 'headers';
}

function sideOfType(t: ProxyErrorType): Side {
  const s = ERROR_TYPES[t].source;
  return s === 'gateway' ? 'intermediary' : s === 'client' ? 'client-network' : 'upstream';
}

function exitOf(side: Side): 0 | 1 | 2 | 3 {
  return side === 'none' ? 0 : side === 'client-network' ? 2 : side === 'unknown' ? 3 : 1;
}

function failureWords(f: PhaseFailure): string {
  return `${f.type} (${f.detail})`;
}

function addrPort(p: Input['main']): string | undefined {
  const c = p.connect.find((x) => x.ok && x.to === 'site');
  return c ? `${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port}` : undefined;
}

/** The taxonomy's words are the gateway's; here the one asking is this machine. */
function mine(explain: string): string {
  return explain.replace(/the gateway/g, 'this machine');
}

/** Node's certificate verdicts in words. */
const TRUST_WORDS: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the certificate is self-signed (it vouches for itself)',
  SELF_SIGNED_CERT_IN_CHAIN: 'the chain ends in a self-signed certificate this machine does not trust (a private CA, or a proxy intercepting TLS)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the issuer is not trusted here, or the server does not send its intermediate certificate',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the issuer is not trusted here, or the server does not send its intermediate certificate',
  CERT_HAS_EXPIRED: 'the certificate has expired',
  CERT_NOT_YET_VALID: 'the certificate is not valid yet (or this machine\'s clock is wrong)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the certificate is not for this host name',
};

function site(d: Input): string {
  return new URL(d.url).host;
}

/** Turn what the phases and experiments found into a verdict. */
export function decide(d: Input): Verdict {
  const main = d.main;
  const ex = d.experiments;
  const evidence: string[] = [];
  const next: string[] = [];
  const quote: string[] = [`the time: ${d.startedAt}`, `the URL: ${d.method} ${d.url}`];
  const proxyOk = ex.path.proxy?.outcome.healthy === true;
  const refresh = ex.refresh;
  if (refresh.pattern !== 'none') evidence.push(`refresh: ${refresh.failed} of ${refresh.tries.length} tries failed (${refresh.tries.map(outcomeWords).join(', ')})`);
  const transientNote = refresh.pattern === 'transient' ? ` It is intermittent: ${refresh.tries.length - refresh.failed} of ${refresh.tries.length} tries worked, so refreshing can help.` : '';
  const byAddress = ex.path.entries;
  const goodAddr = byAddress.filter((e) => e.outcome.healthy);
  const badAddr = byAddress.filter((e) => !e.outcome.healthy);
  const v = (x: Omit<Verdict, 'exitCode' | 'evidence' | 'next' | 'contact' | 'healthy'> & { contactWho: string; more?: string[]; nextSteps: string[] }): Verdict => {
    const { contactWho, more, nextSteps, ...rest } = x;
    return {
      healthy: x.side === 'none',
      ...rest,
      evidence: [...(more ?? []), ...evidence],
      next: [...nextSteps, ...next],
      contact: { who: contactWho, quote },
      exitCode: exitOf(x.side),
    };
  };

  // --- no answer at all ---------------------------------------------------------------------
  if (!main.http && main.failure) {
    const f = main.failure;
    const phase = f.phase;
    quote.push(`the error: ${failureWords(f)}`);
    if (proxyOk) {
      return v({
        side: 'client-network',
        hop: 'your network (this machine, its resolver or its route to the site)',
        phase,
        errorType: f.type,
        confidence: 'high',
        words: `From here the ${phase} phase fails (${f.type}: ${f.explain}), but the same request through the proxy works: the site is up, and the problem is between this machine and the site.`,
        more: [`direct: ${failureWords(f)}`, `${ex.path.proxy!.label}: ${outcomeWords(ex.path.proxy!.outcome)}`],
        nextSteps: ['Use the proxy for now; check this network\'s DNS, firewall and routes (restart the network equipment, try another network).'],
        contactWho: 'your network administrator or ISP',
      });
    }
    if (phase === 'dns') {
      const nx = f.type === 'dns_error' && f.params?.rcode === 'NXDOMAIN';
      if (f.type === 'dns_timeout') {
        return v({
          side: 'client-network',
          hop: `your resolver (${d.dns.resolver})`,
          phase,
          errorType: f.type,
          confidence: 'medium',
          words: `The name ${d.dns.host} could not be resolved in time: the resolver this machine uses did not answer.`,
          more: [`DNS: ${failureWords(f)}`],
          nextSteps: ['Check this machine\'s DNS settings and network; try again with --resolve HOST:PORT:ADDRESS if you know the address.'],
          contactWho: 'your network administrator or ISP (the resolver)',
        });
      }
      return v({
        side: nx ? 'upstream' : 'unknown',
        hop: `the DNS of ${d.dns.host}`,
        phase,
        errorType: f.type,
        confidence: nx ? 'medium' : 'low',
        words: nx
          ? `The name ${d.dns.host} does not exist (NXDOMAIN) for ${d.dns.resolver}: check its spelling; if it is right, the site's DNS records are missing.`
          : `The name ${d.dns.host} could not be resolved (${f.code ?? f.type}).`,
        more: [`DNS: ${failureWords(f)}`],
        nextSteps: nx ? ['Check the spelling of the host name.', 'If it is right, the site\'s operators must fix their DNS records.'] : ['Try again later or with another resolver; give --proxy to compare with another network.'],
        contactWho: nx ? 'the site\'s operators (their DNS)' : 'your network administrator, then the site\'s operators',
      });
    }
    const tried = main.connect.map((c) => `${c.address}:${c.port} (${c.family === 4 ? 'IPv4' : 'IPv6'}) ${c.ok ? `connected in ${c.ms} ms` : `${c.failure?.type} after ${c.ms} ms`}`);
    if (phase === 'connect') {
      const serverAt = main.connect.map((c) => `${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port}`).join(', ');
      if (f.type === 'connection_refused') {
        return v({
          side: 'upstream',
          hop: `the server at ${serverAt}`,
          phase,
          errorType: f.type,
          confidence: 'high',
          words: `Nothing accepts connections at ${serverAt}: the host answered, and refused (${f.code ?? 'refused'}). The site's server is down or listens elsewhere.${transientNote}`,
          more: tried,
          nextSteps: ['The site\'s operators must start the server (or fix the port/firewall). Nothing on your side can fix a refusal.'],
          contactWho: `the operators of ${site(d)}`,
        });
      }
      if (f.type === 'destination_ip_unroutable') {
        return v({
          side: 'client-network',
          hop: 'your network (no route to the site)',
          phase,
          errorType: f.type,
          confidence: 'medium',
          words: `This machine has no route to ${serverAt} (${f.code}): the problem is this machine's network.`,
          more: tried,
          nextSteps: ['Check this machine\'s network connection and routes (restart the network equipment, try another network).'],
          contactWho: 'your network administrator or ISP',
        });
      }
      return v({
        side: 'unknown',
        hop: `the path to ${serverAt}`,
        phase,
        errorType: f.type,
        confidence: 'low',
        words: `Connecting to ${serverAt} ${f.type === 'connection_timeout' ? 'timed out' : `failed (${f.type})`}: the server may be down or overloaded, or a firewall on either side drops the packets. From here it cannot be told which.`,
        more: tried,
        nextSteps: ['Run again with --proxy URL (or from another network): if it works there, the problem is your network; if not, the site.'],
        contactWho: `your network administrator first; if other networks fail too, the operators of ${site(d)}`,
      });
    }
    if (phase === 'tls') {
      const t = main.tls;
      const certWords = t ? ` The certificate names ${t.names.join(', ') || 'nothing'}, expires ${t.chain[0]?.validTo ?? '?'} (${t.daysLeft ?? '?'} days), issued by ${t.chain[0]?.issuer ?? '?'}.` : '';
      return v({
        side: 'upstream',
        hop: `the TLS server at ${addrPort(main) ?? site(d)}`,
        phase,
        errorType: f.type,
        confidence: f.type === 'tls_certificate_error' ? 'high' : 'medium',
        words: `The secure connection fails: ${mine(f.explain).replace(/\.$/, '')}${f.code && TRUST_WORDS[f.code] ? `: ${TRUST_WORDS[f.code]}` : ''} (${f.code ?? f.type}).${certWords}`,
        more: [`TLS: ${failureWords(f)}`],
        nextSteps: [
          f.type === 'tls_certificate_error'
            ? 'The site\'s operators must install a valid certificate for this name (a company proxy that intercepts TLS would also cause this: compare with --proxy or another network).'
            : 'The site\'s TLS setup must be fixed (protocol versions, ciphers); compare from another network with --proxy.',
        ],
        contactWho: `the operators of ${site(d)}`,
      });
    }
    // HTTP phase without a usable answer: the server took the connection and then failed.
    const serverAt = addrPort(main) ?? site(d);
    const others = goodAddr.length && badAddr.length ? ` Other addresses work (${goodAddr.map((e) => e.label).join(', ')}): one server is failing.` : '';
    return v({
      side: 'upstream',
      hop: `the server at ${serverAt}${main.http ? '' : ' (or what answers for it)'}`,
      phase,
      errorType: f.type,
      confidence: 'high',
      words: `The connection to ${serverAt} works, but the HTTP exchange fails in the ${phase} phase: ${mine(f.explain).replace(/\.$/, '')} (${f.type}).${others}${transientNote}`,
      more: [`HTTP: ${failureWords(f)}`, ...tried],
      nextSteps: ['The site\'s operators must look at the server behind this address (its logs at the time above).'],
      contactWho: `the operators of ${site(d)}`,
    });
  }

  // --- an answer arrived --------------------------------------------------------------------
  const http = main.http ?? { status: main.tunnel!.status, headers: main.tunnel!.headers, body: main.tunnel!.body, complete: true };
  const hop = d.hop;
  const status = http.status;
  for (const h of hop?.hops ?? []) for (const [k, val] of Object.entries(h.ids)) quote.push(`${k}: ${val} (${h.name})`);
  const rid = http.headers['x-request-id'];
  if (rid !== undefined && !quote.some((q) => q.startsWith('x-request-id'))) quote.push(`x-request-id: ${rid}`);
  quote.push(`the answer: ${status}${hop?.pageWords ? ` "${hop.pageWords}"` : ''}`);

  if (main.failure) {
    // Head arrived, body did not finish (cut, stalled, broken chunking).
    const f = main.failure;
    const named = hop?.hops[0];
    return v({
      side: 'upstream',
      hop: named ? `${named.name} or the server behind it` : `the server at ${addrPort(main) ?? site(d)}`,
      phase: f.phase,
      errorType: f.type,
      status,
      confidence: 'medium',
      words: `The answer started (${status}) but did not end cleanly: ${f.explain} (${f.type}). An intermediary passing the body on cannot tell you more than this cut; the origin's logs can.${transientNote}`,
      more: [`HTTP: ${status}, then ${failureWords(f)}`, ...(named ? [`on the path: ${hop!.hops.map((h) => h.name).join(', ')}`] : [])],
      nextSteps: ['The site\'s operators must look at why the server stops mid-response (crash, timeout, size limit).'],
      contactWho: `the operators of ${site(d)}`,
    });
  }

  const cache = ex.cache;
  const client = ex.client;
  if (status < 500) {
    const warnings: string[] = [];
    if (badAddr.length) warnings.push(`Some addresses fail (${badAddr.map((e) => `${e.label}: ${outcomeWords(e.outcome)}`).join('; ')}); clients that try them first fall back to the others.`);
    if (refresh.pattern !== 'none') warnings.push(`But ${refresh.failed} of ${refresh.tries.length} refresh tries failed: the site is unstable.`);
    if (client?.differs) warnings.push(`The answer depends on the client: browser-like ${outcomeWords(client.browser)}, curl-like ${outcomeWords(client.curl)}.`);
    const unstable = refresh.pattern !== 'none';
    return v({
      side: unstable ? 'upstream' : 'none',
      hop: hop?.hops[0] ? `${hop.hops[0].name}${hop.hops.length > 1 ? ` (and ${hop.hops.slice(1).map((h) => h.name).join(', ')})` : ''}` : `the server at ${main.address ?? site(d)}`,
      status,
      confidence: unstable ? 'medium' : 'high',
      words: `${unstable ? 'Mostly working' : 'Working'}: ${d.method} ${d.url} answered ${status}${main.http?.statusText ? ` ${main.http.statusText}` : ''} in ${main.totalMs} ms.${warnings.length ? ' ' + warnings.join(' ') : ''}`,
      more: [`HTTP: ${status}, ${main.http?.bodyBytes ?? 0} bytes, complete`],
      nextSteps: unstable ? ['Retry; if it keeps happening, tell the site\'s operators the times and answers above.'] : status >= 400 ? ['The path works; the site refused this request itself (check the URL, method and credentials).'] : ['Nothing to do.'],
      contactWho: unstable ? `the operators of ${site(d)}` : 'nobody',
    });
  }

  // A 5xx answer: who wrote it?
  const maker = hop?.madeBy;
  const hopsWords = hop?.hops.length ? hop.hops.map((h) => `${h.name} (${h.kind}${h.made ? ', wrote this answer' : ''})`).join(', ') : undefined;
  const more: string[] = [`HTTP: ${status} ${main.http?.statusText ?? ''}`.trim()];
  if (hopsWords) more.push(`on the path: ${hopsWords}`);
  if (hop?.via.length) more.push(`Via: ${hop.via.join(', ')}`);
  if (hop?.proxyStatus && hop.proxyStatus.length > 1) more.push(`Proxy-Status (nearest the origin first): ${hop.proxyStatus.map((m) => `${m.name}${Object.entries(m.params).map(([k, val]) => `;${k}=${val}`).join('')}`).join(', ')}`);

  if (cache?.differs && cache.fresh.healthy) {
    return v({
      side: 'intermediary',
      hop: `a cache on the path${hop?.hops.find((h) => h.kind === 'CDN' || h.kind === 'cache') ? ` (${hop.hops.find((h) => h.kind === 'CDN' || h.kind === 'cache')!.name})` : ''}`,
      status,
      confidence: 'medium',
      words: `A cached error: the first answer was ${status}, but a fresh request (no-cache, cache-busting query) answered ${outcomeWords(cache.fresh)}. A cache keeps serving an old failure.`,
      more: [...more, `bypass caches: ${outcomeWords(cache.fresh)}`, ...cache.cacheSignals],
      nextSteps: ['Clear the browser cache and reload; the site\'s operators should purge the cached error from their CDN/cache.'],
      contactWho: `the operators of ${site(d)} (their cache or CDN)`,
    });
  }
  if (client?.differs && (client.browser.healthy || client.curl.healthy)) {
    const works = client.browser.healthy ? 'a browser-like client' : 'a curl-like client';
    return v({
      side: 'intermediary',
      hop: maker?.name ?? hop?.hops[0]?.name ?? `the server at ${main.address ?? site(d)}`,
      status,
      confidence: 'medium',
      words: `The answer depends on the client: browser-like ${outcomeWords(client.browser)}, curl-like ${outcomeWords(client.curl)}. Only ${works} gets through: a filter (bot protection, WAF, or a rule on User-Agent/Accept) decides.`,
      more,
      nextSteps: [`Use ${works}; the site's operators should check the rule that treats clients differently.`],
      contactWho: `the operators of ${site(d)}`,
    });
  }

  if (maker) {
    const fp = maker.id ? fingerprint(maker.id) : undefined;
    const t = maker.type;
    const side: Side = t ? sideOfType(t) : fp?.operator === 'local' ? 'client-network' : 'upstream';
    const fromProxyStatus = hop?.proxyStatus?.some((m) => m.name === maker.name && m.params.error !== undefined);
    const nextHop = maker.params?.['next-hop'];
    const what = t ? `${t}: ${(maker.typeMeans ?? mine(ERROR_TYPES[t].explain)).replace(/\.$/, '')}` : `its page says "${hop?.pageWords ?? status}"`;
    const beyond = side === 'upstream' ? `the server behind it${nextHop ? ` (${nextHop})` : ''}` : side === 'intermediary' ? 'itself' : 'your side';
    const phase = t ? phaseOfType(t) : undefined;
    const label = `${maker.name}${fp && fp.name !== maker.name ? ` (${fp.name}, ${fp.kind})` : fp ? ` (${fp.kind})` : maker.kind ? ` (${maker.kind})` : ''}`;
    return v({
      side,
      hop: label,
      phase,
      errorType: t,
      status,
      confidence: maker.confidence,
      words:
        `${label} answered ${status} itself: ${what}. ` +
        (side === 'upstream'
          ? `${maker.name} itself works; what failed is ${beyond}, on the site's side.`
          : side === 'intermediary'
            ? `The failure is in ${maker.name} itself (its configuration or its limits), on the site's side.`
            : `${maker.name} is on your side of the path (a proxy you use).`) +
        transientNote,
      more: [...more, ...maker.evidence.map((e) => `${fromProxyStatus ? '' : 'fingerprint: '}${e}`), ...(fp ? [`fingerprint source: ${fp.source}`] : [])],
      nextSteps:
        side === 'upstream'
          ? [
              `The operators of ${site(d)} must fix ${beyond}${phase ? `, which failed in the ${phase} phase` : ''}; quote what is listed under "Whom to contact".`,
              refresh.pattern === 'transient' ? 'Refreshing may get through meanwhile.' : 'Refreshing will not help until it is fixed.',
            ]
          : side === 'intermediary'
            ? [`The operators of ${site(d)} must fix ${maker.name}'s configuration or capacity.`]
            : ['Check the proxy you use (its settings, or go without it).'],
      contactWho: fp?.operator === 'local' ? 'your proxy\'s administrator' : fp?.operator === 'vendor-and-site' ? `the operators of ${site(d)} (they can raise it with ${fp.name})` : `the operators of ${site(d)}`,
    });
  }

  // Nothing on the path wrote it: the application (or its server software) answered 5xx.
  const passed = hop?.proxyStatus?.filter((m) => m.params['received-status'] !== undefined).map((m) => m.name) ?? [];
  const server = hop?.server ? ` (Server: ${hop.server})` : '';
  return v({
    side: 'upstream',
    hop: `the origin server${server}`,
    status,
    confidence: passed.length ? 'high' : hop?.hops.length ? 'medium' : 'medium',
    words:
      `The site's own server answered ${status}${hop?.pageWords ? ` ("${hop.pageWords}")` : ''}: no intermediary's error page or Proxy-Status error says it made this answer` +
      `${passed.length ? `, and ${passed.join(', ')} ${passed.length === 1 ? 'says it' : 'say they'} passed it on (Proxy-Status received-status)` : hop?.hops.length ? `; ${hop.hops.map((h) => h.name).join(', ')} passed it on` : ''}. The application is failing.${transientNote}`,
    more,
    nextSteps: ['The site\'s operators must look at the application\'s logs at the time below.', refresh.pattern === 'transient' ? 'Refreshing may get through meanwhile.' : 'Refreshing will not help until it is fixed.'],
    contactWho: `the operators of ${site(d)}`,
  });
}

export { outcomeOf };
