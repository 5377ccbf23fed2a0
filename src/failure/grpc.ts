import type { Failure } from './failure.js';
import { failureMember, appendMember, type ProxyStatusOptions } from './proxy-status.js';
import { GRPC_CODES, GRPC_STATUS_OF_REFUSAL, GRPC_STATUS_OF_TYPE, type GrpcCodeName } from './types.js';

/**
 * A request is gRPC when its content-type is application/grpc or application/grpc+<format>
 * (gRPC over HTTP/2, PROTOCOL-HTTP2.md). gRPC-Web (application/grpc-web…) is not: its status
 * travels in the body, and its clients read HTTP statuses.
 */
export function isGrpc(contentType: string | string[] | undefined): boolean {
  if (typeof contentType !== 'string' || contentType.length < 16) return false;
  if (contentType.slice(0, 16).toLowerCase() !== 'application/grpc') return false;
  const next = contentType.charCodeAt(16);
  return Number.isNaN(next) || next === 43 /* + */ || next === 59 /* ; */;
}

/** The gRPC status name of a failure (the reason's when it has its own, else the type's). */
export function grpcStatusName(f: Failure): GrpcCodeName {
  return (f.reason !== undefined ? GRPC_STATUS_OF_REFUSAL[f.reason] : undefined) ?? GRPC_STATUS_OF_TYPE[f.type];
}

/** The numeric gRPC status of a failure. */
export function grpcStatus(f: Failure): number {
  return GRPC_CODES[grpcStatusName(f)];
}

/**
 * grpc-message is percent-encoded UTF-8: bytes outside 0x20–0x7E, and '%', as %XX
 * (PROTOCOL-HTTP2.md "Status-Message").
 */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

export interface GrpcRendered {
  /** Always 200: a gRPC client reads the outcome from grpc-status. */
  status: 200;
  headers: Record<string, string>;
  /** grpc-status and grpc-message. */
  trailers: Record<string, string>;
}

/**
 * The gateway-made answer to a gRPC request: HTTP 200, content-type application/grpc,
 * no message, and the failure as grpc-status / grpc-message in the trailers. Proxy-Status
 * and the request id are in the head, as on every gateway-made answer.
 */
export function renderGrpcFailure(input: { failure: Failure; requestId: string; proxyStatus: ProxyStatusOptions; priorProxyStatus?: string | string[]; requestIdHeader?: string }): GrpcRendered {
  const f = input.failure;
  return {
    status: 200,
    headers: {
      'content-type': 'application/grpc',
      'proxy-status': appendMember(input.priorProxyStatus, failureMember(f, input.proxyStatus)),
      [input.requestIdHeader ?? 'x-request-id']: input.requestId,
      'cache-control': 'no-store',
    },
    trailers: grpcTrailers(f, input.proxyStatus.revealTopology),
  };
}

/** grpc-status and grpc-message of a failure (the detail only for clients trusted with the topology). */
export function grpcTrailers(f: Failure, reveal: boolean): Record<string, string> {
  return { 'grpc-status': String(grpcStatus(f)), 'grpc-message': grpcMessage(`${f.title}: ${reveal ? f.detail : f.explain} (${f.type})`) };
}
