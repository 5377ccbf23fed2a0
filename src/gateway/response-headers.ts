import { appendMember } from '../failure/index.js';

// Response fields never passed on (RFC 9110 §7.6.1), lower-case.
const RESPONSE_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te']);
/** Lengths of the names above and of proxy-status. */
const SPECIAL_LENGTHS: boolean[] = [];
for (const n of [...RESPONSE_DROP, 'proxy-status']) SPECIAL_LENGTHS[n.length] = true;

/**
 * Build the client response head from undici's raw header buffers in one pass:
 * hop-by-hop and Connection-listed fields removed, Via added, Proxy-Status extended
 * with `proxyStatusMember` when given, the request id set.
 * `keepUpgrade` keeps Connection/Upgrade (for a 101 answer).
 */
export function buildResponseHead(
  raw: readonly Buffer[],
  via: string,
  idHeader: string,
  requestId: string,
  proxyStatusMember: string | undefined,
  keepUpgrade = false,
): string[] {
  const out: string[] = [];
  let listed: Set<string> | undefined;
  let priorProxyStatus: string | undefined;
  // Connection-listed names: rare, so a cheap pre-scan by length.
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toString('latin1').toLowerCase() === 'connection') {
      for (const part of raw[i + 1]!.toString('latin1').split(',')) {
        const n = part.trim().toLowerCase();
        if (n && n !== 'close' && n !== 'keep-alive' && n !== 'upgrade') (listed ??= new Set()).add(n);
      }
    }
  }
  const idLen = idHeader.length;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const len = name.length;
    // Only names of these lengths can need attention: skip lower-casing the rest.
    if (!SPECIAL_LENGTHS[len] && len !== idLen && listed === undefined) {
      out.push(name, raw[i + 1]!.toString('latin1'));
      continue;
    }
    const lower = name.toLowerCase();
    if (RESPONSE_DROP.has(lower)) {
      if (keepUpgrade && (lower === 'upgrade' || lower === 'connection')) out.push(name, raw[i + 1]!.toString('latin1'));
      continue;
    }
    if (listed?.has(lower) || lower === idHeader) continue;
    if (lower === 'proxy-status' && proxyStatusMember !== undefined) {
      const v = raw[i + 1]!.toString('latin1');
      priorProxyStatus = priorProxyStatus ? `${priorProxyStatus}, ${v}` : v;
      continue;
    }
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  out.push('via', via, idHeader, requestId);
  if (proxyStatusMember !== undefined) out.push('proxy-status', appendMember(priorProxyStatus, proxyStatusMember));
  return out;
}

/** Trailers from undici's raw buffers as an object for `res.addTrailers`. */
export function trailersObject(raw: ReadonlyArray<Buffer | string>): Record<string, string> {
  const t: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = latin1(raw[i]!);
    const v = latin1(raw[i + 1]!);
    t[k] = t[k] === undefined ? v : `${t[k]}, ${v}`;
  }
  return t;
}

function latin1(b: Buffer | string): string {
  return typeof b === 'string' ? b : b.toString('latin1');
}
