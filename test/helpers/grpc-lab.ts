import { Server, ServerCredentials, Metadata, status, makeGenericClientConstructor, credentials, type Client, type ServiceDefinition, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';

/**
 * A gRPC server for the tests (h2c on loopback, @grpc/grpc-js), with raw byte messages so no
 * .proto is needed: `Say` echoes its request (trailing metadata x-upstream: lab; a request
 * "not-found" is answered NOT_FOUND), `Count` streams N one-byte messages (N = the request's
 * first byte), `Hang` never answers, `OneThenHang` streams one message and then stays silent.
 * `cancelled` counts calls the client (the gateway) cancelled.
 */
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
function method(name: string, responseStream: boolean) {
  return { path: `/lab.Echo/${name}`, requestStream: false, responseStream, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize };
}
export const ECHO_SERVICE = {
  Say: method('Say', false),
  Count: method('Count', true),
  Hang: method('Hang', false),
  OneThenHang: method('OneThenHang', true),
} as unknown as ServiceDefinition;

export interface GrpcLab {
  port: number;
  /** Calls whose client went away before the answer. */
  cancelled: number;
  /** Calls begun, by method name. */
  calls: Record<string, number>;
  close(): Promise<void>;
}

export async function startGrpcLab(): Promise<GrpcLab> {
  const server = new Server();
  const lab: GrpcLab = { port: 0, cancelled: 0, calls: {}, close: () => new Promise<void>((r) => server.tryShutdown(() => r())) };
  const hanging = new Set<{ end?: () => void }>();
  const count = (name: string, call: { on(ev: 'cancelled', fn: () => void): unknown }): void => {
    lab.calls[name] = (lab.calls[name] ?? 0) + 1;
    call.on('cancelled', () => lab.cancelled++);
  };
  const impl: UntypedServiceImplementation = {
    Say(call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) {
      count('Say', call);
      const md = new Metadata();
      md.set('x-upstream', 'lab');
      if (call.request.toString() === 'not-found') cb({ code: status.NOT_FOUND, details: 'no such thing here' }, null, md);
      else cb(null, call.request, md);
    },
    Count(call: ServerWritableStream<Buffer, Buffer>) {
      count('Count', call);
      const n = call.request[0] ?? 0;
      for (let i = 0; i < n; i++) call.write(Buffer.from([i]));
      call.end();
    },
    Hang(call: ServerUnaryCall<Buffer, Buffer>) {
      count('Hang', call);
    },
    OneThenHang(call: ServerWritableStream<Buffer, Buffer>) {
      count('OneThenHang', call);
      call.write(Buffer.from([1]));
      hanging.add(call);
    },
  };
  server.addService(ECHO_SERVICE, impl);
  lab.port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
  const close = lab.close;
  lab.close = () => {
    server.forceShutdown();
    return close().catch(() => undefined);
  };
  return lab;
}

/** A client of the echo service at `target` (host:port, cleartext h2c). */
export function echoClient(target: string): Client & Record<string, (...args: unknown[]) => unknown> {
  const Ctor = makeGenericClientConstructor(ECHO_SERVICE as never, 'Echo');
  return new Ctor(target, credentials.createInsecure()) as never;
}
