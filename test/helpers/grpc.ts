/**
 * A real gRPC service (@grpc/grpc-js) for end-to-end tests: every call
 * type, an error status, and a call that never answers so a deadline or a
 * cancel can be watched reaching the server. Messages are raw bytes (no
 * protobuf needed): the service checks and hashes what it gets.
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/beam.test.Test/${name}`,
  requestStream,
  responseStream,
  requestSerialize: bytes.serialize,
  requestDeserialize: bytes.deserialize,
  responseSerialize: bytes.serialize,
  responseDeserialize: bytes.deserialize,
});

export const TestService = {
  /** Unary: the request back, with trailing metadata `x-sha256` of it. */
  echo: method('Echo', false, false),
  /** Server streaming: the request is "count,size": `count` messages of `size` bytes, message i filled with byte i. */
  stream: method('Stream', false, true),
  /** Client streaming: the sha256 (hex) of every message, in order, and how many. */
  sum: method('Sum', true, false),
  /** Bidirectional: each message back as it comes, reversed. */
  chat: method('Chat', true, true),
  /** Unary that fails with NOT_FOUND and the request as its details. */
  fail: method('Fail', false, false),
  /** Unary that never answers: the server records when the call is cancelled. */
  hang: method('Hang', false, false),
} as const;

export const TestClient = grpc.makeGenericClientConstructor(TestService as unknown as grpc.ServiceDefinition, 'Test');
export type TestClientInstance = InstanceType<typeof TestClient> & Record<string, (...args: unknown[]) => unknown>;

export interface GrpcOrigin {
  port: number;
  /** Resolves with the hang call's tag (its request) once the server sees it cancelled. */
  cancelled(tag: string): Promise<void>;
  /** Resolves once the server has the hang call tagged `tag`. */
  started(tag: string): Promise<void>;
  close(): Promise<void>;
}

export async function startGrpcOrigin(): Promise<GrpcOrigin> {
  const server = new grpc.Server();
  const started = new Set<string>();
  const startWaiters = new Map<string, () => void>();
  const cancelWaiters = new Map<string, () => void>();
  const cancelledTags = new Set<string>();
  server.addService(TestService as unknown as grpc.ServiceDefinition, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const trailer = new grpc.Metadata();
      trailer.set('x-sha256', createHash('sha256').update(call.request).digest('hex'));
      cb(null, call.request, trailer);
    },
    stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const [count, size] = call.request.toString().split(',').map(Number) as [number, number];
      let i = 0;
      const next = (): void => {
        while (i < count) {
          const ok = call.write(Buffer.alloc(size, i % 256));
          i++;
          if (!ok) {
            call.once('drain', next);
            return;
          }
        }
        call.end();
      };
      next();
    },
    sum: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const hash = createHash('sha256');
      let n = 0;
      call.on('data', (m: Buffer) => {
        hash.update(m);
        n++;
      });
      call.on('end', () => cb(null, Buffer.from(`${n},${hash.digest('hex')}`)));
    },
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (m: Buffer) => call.write(Buffer.from(m).reverse()));
      call.on('end', () => call.end());
    },
    fail: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      cb({ code: grpc.status.NOT_FOUND, details: call.request.toString() });
    },
    hang: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
      const tag = call.request.toString();
      started.add(tag);
      startWaiters.get(tag)?.();
      call.on('cancelled', () => {
        cancelledTags.add(tag);
        cancelWaiters.get(tag)?.();
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    started: (tag) => (started.has(tag) ? Promise.resolve() : new Promise<void>((resolve) => startWaiters.set(tag, resolve))),
    cancelled: (tag) =>
      cancelledTags.has(tag)
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            cancelWaiters.set(tag, resolve);
          }),
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** A client for `address`, sending `authority` as :authority (a share's host through a gateway), over h2c. */
export function grpcClient(address: string, authority?: string): TestClientInstance {
  return new TestClient(address, grpc.credentials.createInsecure(), authority ? { 'grpc.default_authority': authority } : {}) as TestClientInstance;
}

export { grpc };
