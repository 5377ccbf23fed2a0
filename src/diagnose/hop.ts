import { ERROR_TYPES, isProxyErrorType, parseProxyStatus, type ProxyErrorType, type ProxyStatusMember } from '../failure/index.js';
import { FINGERPRINTS, type Condition, type Fingerprint, type HopKind } from './fingerprints.js';

/** What the hop reading needs of a response. */
export interface ResponseView {
  status: number;
  /** Header names in lower case; repeated fields as arrays. */
  headers: Record<string, string | string[] | undefined>;
  /** The first bytes of the body, as text. */
  body: string;
}

export interface MatchedHop {
  id: string;
  name: string;
  kind: HopKind;
  /** Whether its evidence says it wrote this answer, or only that it is on the path. */
  made: boolean;
  /** Sum of the weights of the evidence that matched. */
  score: number;
  evidence: string[];
  source: string;
  operator: Fingerprint['operator'];
  /** Its request ids (header: value), to quote. */
  ids: Record<string, string>;
  /** The RFC 9209 type its own words map to, when they do. */
  type?: ProxyErrorType;
  typeMeans?: string;
}

export interface HopReading {
  /** `Proxy-Status` members as sent (first = nearest the origin); undefined when absent; `invalid` when malformed. */
  proxyStatus?: ProxyStatusMember[];
  proxyStatusInvalid?: string;
  via: string[];
  server?: string;
  cacheStatus: string[];
  /** Every product seen, the one that wrote the answer first. */
  hops: MatchedHop[];
  /** Who wrote this answer, when anything says so. */
  madeBy?: {
    name: string;
    id?: string;
    kind?: HopKind;
    /** high: its own words or a Proxy-Status error member; medium: a header only its answers carry; low: a shape many share. */
    confidence: 'high' | 'medium' | 'low';
    evidence: string[];
    type?: ProxyErrorType;
    typeMeans?: string;
    /** Proxy-Status parameters of its member (next-hop, details, rcode…). */
    params?: Record<string, string | number | boolean>;
  };
  /** Title / heading / first line of the body, in the page's own words. */
  pageWords?: string;
}

function headerValue(h: ResponseView['headers'], name: string): string | undefined {
  const v = h[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(', ') : v;
}

function holds(c: Condition, r: ResponseView, members: readonly ProxyStatusMember[]): boolean {
  if ('header' in c) {
    const v = headerValue(r.headers, c.header);
    return v !== undefined && (c.match === undefined || c.match.test(v));
  }
  if ('noHeader' in c) return headerValue(r.headers, c.noHeader) === undefined;
  if ('body' in c) return c.body.test(r.body);
  if ('status' in c) return c.status.test(String(r.status));
  return members.some((m) => c.proxyStatus.test(m.name));
}

function decodeEntities(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n: string) => String.fromCharCode(parseInt(n, 16)))
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&nbsp;/g, ' ');
}

/** The page's own words: its title and first heading, or the first line of a text body. */
export function pageWords(body: string): string | undefined {
  const text = body.trim();
  if (!text) return undefined;
  if (/^[[{]/.test(text)) {
    try {
      const j = JSON.parse(text) as Record<string, unknown>;
      const words = [j.title, j.detail ?? j.message ?? j.error].filter((x) => typeof x === 'string');
      if (words.length) return words.join(': ');
    } catch {
      // not JSON after all: fall through to the text rules
    }
  }
  const clean = (s: string): string => decodeEntities(s.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
  const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(text)?.[1];
  const h = /<h[12][^>]*>([\s\S]*?)<\/h[12]>/i.exec(text)?.[1];
  if (title !== undefined || h !== undefined) {
    const parts = [title, h].filter((x): x is string => x !== undefined).map(clean);
    const uniq = parts.filter((p, i) => p && parts.indexOf(p) === i && !parts.some((q, j) => j !== i && q.includes(p) && q !== p));
    return uniq.join(' — ').slice(0, 160) || undefined;
  }
  return clean(text.split('\n').find((l) => l.trim()) ?? '').slice(0, 160) || undefined;
}

/** Name the hops of a response and the one that wrote it, from the fingerprint table. */
export function readHops(r: ResponseView): HopReading {
  const reading: HopReading = { via: [], cacheStatus: [], hops: [] };
  const ps = r.headers['proxy-status'];
  let members: ProxyStatusMember[] = [];
  if (ps !== undefined) {
    try {
      members = parseProxyStatus(ps);
      reading.proxyStatus = members;
    } catch (err) {
      reading.proxyStatusInvalid = (err as Error).message;
    }
  }
  const via = headerValue(r.headers, 'via');
  if (via) reading.via = via.split(',').map((s) => s.trim()).filter(Boolean);
  reading.server = headerValue(r.headers, 'server');
  const cs = headerValue(r.headers, 'cache-status');
  if (cs) reading.cacheStatus = cs.split(',').map((s) => s.trim());
  reading.pageWords = pageWords(r.body);

  const matched: MatchedHop[] = [];
  for (const fp of FINGERPRINTS) {
    const evidence: string[] = [];
    let score = 0;
    let madeScore = 0;
    for (const e of fp.evidence) {
      if (!e.when.every((c) => holds(c, r, members))) continue;
      evidence.push(e.says);
      score += e.weight;
      if (e.shows === 'made') madeScore = Math.max(madeScore, e.weight);
    }
    if (!evidence.length) continue;
    const ids: Record<string, string> = {};
    for (const name of fp.ids ?? []) {
      const v = headerValue(r.headers, name);
      if (v !== undefined) ids[name] = v;
    }
    const hop: MatchedHop = { id: fp.id, name: fp.name, kind: fp.kind, made: madeScore > 0, score: score + (madeScore > 0 ? 10 * madeScore : 0), evidence, source: fp.source, operator: fp.operator, ids };
    const rule = fp.types?.find((t) => t.when.every((c) => holds(c, r, members)));
    if (rule) {
      hop.type = rule.type;
      hop.typeMeans = rule.means;
    }
    matched.push(hop);
  }
  // A more specific entry (ingress-nginx, Istio, Fastly) replaces the one it refines.
  const refined = new Set(FINGERPRINTS.filter((f) => f.refines && matched.some((m) => m.id === f.id)).map((f) => f.refines!));
  for (const m of matched) {
    if (!refined.has(m.id)) continue;
    const by = matched.find((x) => FINGERPRINTS.find((f) => f.id === x.id)?.refines === m.id)!;
    by.evidence.push(...m.evidence.filter((e) => !by.evidence.includes(e)));
    by.made ||= m.made;
    by.score = Math.max(by.score, m.score) + 1;
    by.type ??= m.type;
    by.typeMeans ??= m.typeMeans;
  }
  reading.hops = matched.filter((m) => !refined.has(m.id)).sort((a, b) => b.score - a.score);

  // Who wrote it: a Proxy-Status member with an error (the first, nearest the origin, made it;
  // later members passed it on), else the strongest "made" evidence.
  const failed = members.find((m) => typeof m.params.error === 'string');
  if (failed) {
    let fp = reading.hops.find((h) => FINGERPRINTS.find((f) => f.id === h.id)?.evidence.some((e) => e.when.some((c) => 'proxyStatus' in c && c.proxyStatus.test(failed.name))));
    fp ??= reading.hops.find((h) => h.made);
    const type = String(failed.params.error);
    reading.madeBy = {
      name: failed.name,
      id: fp?.id,
      kind: fp?.kind,
      confidence: 'high',
      evidence: [`Proxy-Status: ${failed.name};error=${type}${members.length > 1 ? ` (member ${members.indexOf(failed) + 1} of ${members.length}, counted from the origin)` : ''}`],
      params: failed.params,
      ...(isProxyErrorType(type) ? { type, typeMeans: ERROR_TYPES[type].explain } : {}),
    };
    if (fp) {
      fp.made = true;
      reading.hops = [fp, ...reading.hops.filter((h) => h !== fp)];
    }
    return reading;
  }
  const maker = reading.hops.find((h) => h.made);
  if (maker) {
    const strongest = Math.max(...FINGERPRINTS.find((f) => f.id === maker.id)!.evidence.filter((e) => e.shows === 'made' && e.when.every((c) => holds(c, r, members))).map((e) => e.weight), 0);
    reading.madeBy = {
      name: maker.name,
      id: maker.id,
      kind: maker.kind,
      confidence: strongest >= 3 ? 'high' : strongest === 2 ? 'medium' : 'low',
      evidence: maker.evidence,
      ...(maker.type ? { type: maker.type, typeMeans: maker.typeMeans } : {}),
    };
  }
  return reading;
}
