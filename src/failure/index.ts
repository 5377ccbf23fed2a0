export { ERROR_TYPES, ERROR_TYPE_NAMES, REFUSAL_REASONS, CLIENT_CLOSED_STATUS, type RefusalReason, type RefusalInfo, isProxyErrorType, type ProxyErrorType, type Phase, type Source, type EndedBy, type ErrorTypeInfo } from './types.js';
export { Failure, isFailure, hookTimedOut, withDetail, type FailureInit } from './failure.js';
export { classify, parserRefusal, expectationFailed, headerListTooLarge, connectionClosedByGateway, h2StreamNotProcessed, type AttemptProgress } from './classify.js';
export { sfString, sfTokenOrString, PROXY_STATUS_PARAM_MAX, failureMember, receivedMember, appendMember, parseProxyStatus, ProxyStatusSyntaxError, type ProxyStatusMember, type ProxyStatusOptions } from './proxy-status.js';
export { renderFailure, failurePath, negotiate, errorAnchor, type PathHop, PROBLEM_TYPE_BASE, type AttemptSummary, type RenderInput, type Rendered, type BodyFormat } from './render.js';
export { isGrpc, grpcStatus, grpcStatusName, grpcMessage, grpcTrailers, renderGrpcFailure, type GrpcRendered } from './grpc.js';
export { GRPC_CODES, GRPC_STATUS_OF_TYPE, GRPC_STATUS_OF_REFUSAL, type GrpcCodeName } from './types.js';
export { ConnectionsCut, connectionCut } from './connections-cut.js';
