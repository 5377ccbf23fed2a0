import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import { Metadata, status, type ServiceError, type ClientReadableStream } from '@grpc/grpc-js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { echoClient, startGrpcLab, type GrpcLab } from '../helpers/grpc-lab.js';
import { GRPC_CODES, GRPC_STATUS_OF_TYPE, ERROR_TYPE_NAMES, Failure, grpcStatus, isGrpc, grpcMessage } from '../../src/failure/index.js';

/**
 * gRPC through the gateway: a real @grpc/grpc-js client, the gateway on an h2c listener, a
 * real grpc-js server behind a cluster with `protocol: h2c`. Unary and server-streaming calls
 * pass with their trailers (grpc-status, custom trailing metadata); the gateway's own
 * failures reach the client as gRPC statuses (refused → UNAVAILABLE, no answer in time →
 * DEADLINE_EXCEEDED, an upstream silent mid-stream → DEADLINE_EXCEEDED after the messages
 * already passed) with Proxy-Status beside them.
 */

let lab: GrpcLab;
let gw: TestGateway;
let client: ReturnType<typeof echoClient>;
let closedPort: number;

before(async () => {
  lab = await startGrpcLab();
  closedPort = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const timeouts = { connect: '1s', response: '600ms', idle: '600ms' };
  gw = await startTestGateway({
    listeners: [{ address: '127.0.0.1', port: 0, http2: { h2c: true } }],
    clusters: {
      grpc: { endpoints: [`http://127.0.0.1:${lab.port}`], protocol: 'h2c', timeouts },
      down: { endpoints: [`http://127.0.0.1:${closedPort}`], protocol: 'h2c', timeouts, waitForEndpoint: { timeout: '0s' } },
    },
    routes: [
      { match: { pathPrefix: '/down.Echo' }, cluster: 'down', rewritePrefix: '/lab.Echo' },
      { match: { pathPrefix: '/lab.Echo' }, cluster: 'grpc', retry: { tries: 1 } },
    ],
  });
  client = echoClient(`127.0.0.1:${gw.port}`);
});

after(async () => {
  client?.close();
  await gw?.close();
  await lab?.close();
});

function unary(method: string, req: Buffer, path?: string): Promise<{ err: ServiceError | null; res: Buffer | undefined; trailers: Metadata | undefined; headers: Metadata | undefined }> {
  return new Promise((resolve) => {
    let trailers: Metadata | undefined;
    let headers: Metadata | undefined;
    const fn = path === undefined ? (client[method] as (...a: unknown[]) => { on(ev: string, fn: (m: unknown) => void): void }) : undefined;
    const call = fn
      ? fn.call(client, req, (err: ServiceError | null, res?: Buffer) => setImmediate(() => resolve({ err, res, trailers, headers })))
      : (client.makeUnaryRequest(path!, (b: Buffer) => b, (b: Buffer) => b, req, (err: ServiceError | null, res?: Buffer) => setImmediate(() => resolve({ err, res, trailers, headers }))) as unknown as { on(ev: string, fn: (m: unknown) => void): void });
    call.on('metadata', (m) => (headers = m as Metadata));
    call.on('status', (s) => (trailers = (s as { metadata: Metadata }).metadata));
  });
}

function stream(method: string, req: Buffer): Promise<{ messages: Buffer[]; err: ServiceError | undefined; headers: Metadata | undefined }> {
  return new Promise((resolve) => {
    const call = (client[method] as (r: Buffer) => ClientReadableStream<Buffer>).call(client, req);
    const messages: Buffer[] = [];
    let headers: Metadata | undefined;
    call.on('metadata', (m) => (headers = m));
    call.on('data', (b: Buffer) => messages.push(b));
    call.on('error', (err: ServiceError) => resolve({ messages, err, headers }));
    call.on('end', () => resolve({ messages, err: undefined, headers }));
  });
}

describe('gRPC passes through', () => {
  test('unary: the answer, and the trailers (grpc-status 0, custom trailing metadata) reach the client', async () => {
    const r = await unary('Say', Buffer.from('hello'));
    assert.equal(r.err, null);
    assert.equal(r.res?.toString(), 'hello');
    assert.deepEqual(r.trailers?.get('x-upstream'), ['lab']);
    const id = String(r.headers?.get('x-request-id')[0]);
    const line = await gw.logFor(id);
    assert.equal(line.httpVersion, '2.0');
    assert.equal(line.status, 200);
    assert.equal(line.error, undefined);
  });

  test('an upstream gRPC error status passes through unchanged (grpc-status 5, its message)', async () => {
    const r = await unary('Say', Buffer.from('not-found'));
    assert.equal(r.err?.code, status.NOT_FOUND);
    assert.equal(r.err?.details, 'no such thing here');
    // grpc-js answers an error Trailers-Only: its metadata is in the one head, which the client reads as such.
    assert.deepEqual([...(r.headers?.get('x-upstream') ?? []), ...(r.trailers?.get('x-upstream') ?? [])], ['lab']);
  });

  test('server streaming: every message in order, then OK', async () => {
    const r = await stream('Count', Buffer.from([25]));
    assert.equal(r.err, undefined);
    assert.deepEqual(r.messages.map((b) => b[0]), Array.from({ length: 25 }, (_, i) => i));
  });
});

describe('gateway-made failures answered as gRPC', () => {
  test('upstream down (connection refused) → UNAVAILABLE, Proxy-Status connection_refused, recorded', async () => {
    const r = await unary('', Buffer.from('x'), '/down.Echo/Say');
    assert.equal(r.err?.code, status.UNAVAILABLE, String(r.err?.details));
    assert.match(String(r.err?.details), /connection_refused/);
    assert.match(String(r.headers?.get('proxy-status')[0]), /error=connection_refused/);
    const line = await gw.logFor(String(r.headers?.get('x-request-id')[0]));
    assert.equal(line.error, 'connection_refused');
  });

  test('an upstream that never answers → DEADLINE_EXCEEDED (http_response_timeout), and the upstream call is cancelled', async () => {
    const before = lab.cancelled;
    const r = await unary('Hang', Buffer.from('x'));
    assert.equal(r.err?.code, status.DEADLINE_EXCEEDED, String(r.err?.details));
    assert.match(String(r.headers?.get('proxy-status')[0]), /error=http_response_timeout/);
    const deadline = Date.now() + 2000;
    while (lab.cancelled === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    assert.ok(lab.cancelled > before, 'the upstream call was not cancelled');
  });

  test('silent mid-stream: the message already sent arrives, then DEADLINE_EXCEEDED from the trailers (never a clean end)', async () => {
    const r = await stream('OneThenHang', Buffer.from('x'));
    assert.deepEqual(r.messages.map((b) => b[0]), [1]);
    assert.equal(r.err?.code, status.DEADLINE_EXCEEDED, String(r.err?.details));
    assert.match(String(r.err?.metadata.get('proxy-status')[0]), /error=connection_read_timeout/);
  });

  test('no route → UNIMPLEMENTED; the raw answer is HTTP 200, application/grpc, grpc-status in the trailers, Proxy-Status in the head', async () => {
    const s = h2connect(gw.url);
    s.on('error', () => {});
    try {
      const got = await new Promise<{ head: IncomingHttpHeaders; trailers: IncomingHttpHeaders }>((resolve, reject) => {
        const req = s.request({ ':method': 'POST', ':path': '/none.Such/Call', 'content-type': 'application/grpc', te: 'trailers' });
        let head: IncomingHttpHeaders = {};
        req.on('response', (h) => (head = h));
        req.on('trailers', (t) => resolve({ head, trailers: t }));
        req.on('error', reject);
        req.on('end', () => resolve({ head, trailers: {} }));
        req.resume();
        req.end(Buffer.from([0, 0, 0, 0, 0]));
      });
      assert.equal(got.head[':status'], 200);
      assert.equal(got.head['content-type'], 'application/grpc');
      assert.match(String(got.head['proxy-status']), /error=destination_not_found/);
      assert.equal(got.trailers['grpc-status'], String(GRPC_CODES.UNIMPLEMENTED));
    } finally {
      s.close();
    }
  });
});

describe('the gRPC mapping (failure/types.ts)', () => {
  test('every error type has a gRPC status; the ones the issue names map as documented', () => {
    for (const t of ERROR_TYPE_NAMES) assert.ok(GRPC_STATUS_OF_TYPE[t] in GRPC_CODES, t);
    assert.equal(grpcStatus(new Failure({ type: 'connection_refused', phase: 'connect' })), 14);
    assert.equal(grpcStatus(new Failure({ type: 'destination_unavailable', phase: 'pick' })), 14);
    assert.equal(grpcStatus(new Failure({ type: 'http_response_timeout', phase: 'headers' })), 4);
    assert.equal(grpcStatus(new Failure({ type: 'connection_limit_reached', phase: 'admit' })), 8);
    assert.equal(grpcStatus(new Failure({ type: 'http_request_denied', phase: 'accept', reason: 'too_many_requests' })), 8);
    assert.equal(grpcStatus(new Failure({ type: 'http_request_error', phase: 'accept', reason: 'request_timeout' })), 4);
  });

  test('isGrpc: application/grpc and +format, not gRPC-Web; grpc-message percent-encoded', () => {
    assert.equal(isGrpc('application/grpc'), true);
    assert.equal(isGrpc('application/grpc+proto'), true);
    assert.equal(isGrpc('application/GRPC;charset=x'), true);
    assert.equal(isGrpc('application/grpc-web'), false);
    assert.equal(isGrpc('application/json'), false);
    assert.equal(isGrpc(undefined), false);
    assert.equal(grpcMessage('a 100% é'), 'a 100%25 %C3%A9');
  });
});
