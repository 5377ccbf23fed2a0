import { ERROR_TYPE_NAMES } from '../../src/failure/index.js';
import type { ForwardRecord, RequestRecord, ReverseRecord } from '../../src/record/index.js';

/** Seeded records of both faces for the access-log tests: every optional field present or not. */
/** Strings a client, an upstream or a user may put in a record: quotes, controls, non-ASCII, lone surrogates. */
function anyString(rand: () => number): string {
  const alphabet = ['a', 'Z', '0', '/', ' ', '"', '\\', '\n', '\r', '\t', '\u0000', '\u001f', '\u007f', 'é', '€', '😀', '\u2028', '\ud800', '<', '%', '{', '}'];
  const n = Math.floor(rand() * 24);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
}

function maybe<T>(rand: () => number, v: T): T | undefined {
  return rand() < 0.5 ? v : undefined;
}

const ENDED = ['complete', 'client', 'upstream', 'gateway', 'idle', 'quota'] as const;

export function anyRecord(rand: () => number): RequestRecord {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const base = {
    time: 1_700_000_000_000 + Math.floor(rand() * 1e10),
    requestId: anyString(rand) || 'id',
    clientAddress: maybe(rand, anyString(rand)),
    method: maybe(rand, anyString(rand)),
    status: maybe(rand, 100 + Math.floor(rand() * 500)),
    error: maybe(rand, pick(ERROR_TYPE_NAMES)),
    reason: maybe(rand, anyString(rand)),
    phase: maybe(rand, pick(['accept', 'route', 'connect', 'headers', 'body'] as const)),
    endedBy: pick(ENDED),
    detail: maybe(rand, anyString(rand)),
    bytesUp: Math.floor(rand() * 1e9),
    bytesDown: Math.floor(rand() * 1e12),
    durationMs: Math.round(rand() * 1e6) / 1000,
  };
  if (rand() < 0.5) {
    const r: ReverseRecord = {
      ...base,
      face: 'reverse',
      protocol: 'http',
      listener: anyString(rand),
      host: anyString(rand),
      path: anyString(rand),
      httpVersion: pick(['1.0', '1.1']),
      route: maybe(rand, anyString(rand)),
      cluster: maybe(rand, anyString(rand)),
      attempts: rand() < 0.5 ? [] : [{ endpoint: anyString(rand), phase: 'headers', connection: 'reused', status: 200, startMs: 0.5, detail: anyString(rand) }],
      upgrade: rand() < 0.2,
      cache: maybe(rand, pick(['hit', 'stale', 'updating', 'revalidated', 'collapsed', 'miss', 'bypass'] as const)),
      bypass: maybe(rand, pick(['method', 'request-content', 'unkeyed-host', 'unkeyed-field'] as const)),
      storeRefused: maybe(rand, pick(['too-large', 'purged'] as const)),
      recoveredFrom: maybe(rand, pick(['connection_refused', '503'])),
      background: maybe(rand, 'revalidation' as const),
      revalidation: maybe(rand, pick(['refreshed', 'replaced', 'kept', 'too-large', 'purged', 'dropped', 'failed', 'refused'] as const)),
      triggeredBy: maybe(rand, anyString(rand)),
    };
    return r;
  }
  const udp = rand() < 0.3;
  const r: ForwardRecord = {
    ...base,
    face: 'forward',
    protocol: udp ? 'socks5-udp' : pick(['http', 'connect', 'socks5', 'socks4'] as const),
    user: maybe(rand, anyString(rand)),
    destination: maybe(rand, anyString(rand)),
    address: maybe(rand, anyString(rand)),
    reply: maybe(rand, Math.floor(rand() * 9)),
    plan: maybe(rand, anyString(rand)),
    pool: maybe(rand, anyString(rand)),
    exit: maybe(rand, anyString(rand)),
    session: maybe(rand, anyString(rand)),
    repinned: maybe(rand, true),
    exitRetries: maybe(rand, 1 + Math.floor(rand() * 3)),
    quota: maybe(rand, anyString(rand)),
    datagramsUp: udp ? Math.floor(rand() * 100) : undefined,
    datagramsDown: udp ? Math.floor(rand() * 100) : undefined,
    datagramsDropped: udp ? Math.floor(rand() * 10) : undefined,
  };
  return r;
}

