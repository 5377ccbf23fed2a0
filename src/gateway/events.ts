import { channel } from 'node:diagnostics_channel';
import type { ProxyErrorType, Phase } from '../failure/index.js';

/** One try at an upstream endpoint. */
export interface AttemptRecord {
  endpoint: string;
  /** The furthest phase reached. */
  phase: Phase;
  /** Whether the attempt used a new upstream connection or reused a pooled one. */
  connection?: 'new' | 'reused';
  status?: number;
  error?: ProxyErrorType;
  detail?: string;
  /** Milliseconds from the start of the request. */
  startMs: number;
  /** New connections only: DNS, TCP connect and TLS handshake times (ms). */
  dnsMs?: number;
  tcpMs?: number;
  tlsMs?: number;
  /** Handed to a connected socket (includes DNS, connect and TLS when a new connection was opened). */
  connectedMs?: number;
  firstByteMs?: number;
  headersMs?: number;
  endMs?: number;
}

/** Who ended the exchange, HAProxy style. */
export type EndedBy = 'complete' | 'client' | 'upstream' | 'gateway';

/** Published once per request on `gatewise:request:end` when it has subscribers. */
export interface RequestRecord {
  time: number;
  requestId: string;
  listener: string;
  clientAddress: string | undefined;
  method: string;
  host: string;
  path: string;
  httpVersion: string;
  route: string | undefined;
  cluster: string | undefined;
  status: number;
  /** RFC 9209 error type when the gateway produced the response or cut it short. */
  error: ProxyErrorType | undefined;
  /** The phase where the exchange ended badly, if it did. */
  phase: Phase | undefined;
  endedBy: EndedBy;
  detail: string | undefined;
  attempts: AttemptRecord[];
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  upgrade: boolean;
}

export interface UpstreamConnectRecord {
  cluster: string;
  endpoint: string;
  dnsMs?: number;
  connectMs?: number;
  tlsMs?: number;
  error?: ProxyErrorType;
}

export const requestEnd = channel('gatewise:request:end');
export const gatewayLifecycle = channel('gatewise:gateway:lifecycle');

export interface LifecycleRecord {
  event: 'listening' | 'draining' | 'closed' | 'config-warning';
  detail: string;
}

/** What every request record takes from the request itself. */
export function requestFields(
  requestId: string,
  listener: string,
  clientAddress: string,
  req: { method?: string; url?: string; httpVersion?: string; headers: { host?: string } } | undefined,
): Pick<RequestRecord, 'time' | 'requestId' | 'listener' | 'clientAddress' | 'method' | 'host' | 'path' | 'httpVersion'> {
  return {
    time: Date.now(),
    requestId,
    listener,
    clientAddress,
    method: req?.method ?? '',
    host: req?.headers.host ?? '',
    path: req?.url ?? '',
    httpVersion: req?.httpVersion ?? '',
  };
}
