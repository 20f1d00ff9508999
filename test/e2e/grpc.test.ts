/**
 * gRPC end to end: a real @grpc/grpc-js server behind `beam http
 * --app-protocol http2`, and a real grpc-js client (h2c) through the
 * server's gateway and through `beam connect`'s local port, on the direct
 * path and on the relay. Every call type, status codes in trailers, trailing
 * metadata, a deadline and a cancel that reach the server as a cancelled call.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GrpcOrigin, grpc, grpcClient, TestClient, type TestClientInstance } from '../helpers/grpc.js';
import { type AgentHandle, BeamProcess, type ServerHandle, startAgent, startServer, tlsServe } from '../helpers/procs.js';
import { makeCertificates } from '../helpers/tls.js';

let origin: GrpcOrigin;
let server: ServerHandle;
const agents: AgentHandle[] = [];
const connects: BeamProcess[] = [];

beforeAll(async () => {
  origin = await (await import('../helpers/grpc.js')).startGrpcOrigin();
  server = await startServer();
});
afterAll(async () => {
  for (const c of connects) await c.kill();
  for (const a of agents) await a.proc.kill();
  await server?.proc.kill();
  await origin?.close();
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Outcome {
  value?: Buffer;
  error?: grpc.ServiceError;
  trailers?: grpc.Metadata;
}

function unary(client: TestClientInstance, name: string, request: Buffer, options: grpc.CallOptions = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const call = (client[name] as (...a: unknown[]) => grpc.ClientUnaryCall)(
      request,
      new grpc.Metadata(),
      options,
      (error: grpc.ServiceError | null, value?: Buffer) => {
        // 'status' (with the trailers) comes before or after the callback: wait for both.
        const done = (): void => resolve({ ...(value ? { value } : {}), ...(error ? { error } : {}), ...(trailers ? { trailers } : {}) });
        if (trailers) done();
        else
          call.once('status', (s: grpc.StatusObject) => {
            trailers = s.metadata;
            done();
          });
      },
    );
    call.once('status', (s: grpc.StatusObject) => {
      trailers = s.metadata;
    });
  });
}

/**
 * The routes a gRPC client takes to the share: the gateway (its own host as
 * :authority) and `beam connect`'s local port; each on an agent that goes
 * direct (`--relay never`) and one on the relay alone (`--relay always`).
 */
const routes = [
  { via: 'gateway', relay: 'never' },
  { via: 'gateway', relay: 'always' },
  { via: 'connect', relay: 'never' },
  { via: 'connect', relay: 'always' },
] as const;

describe.each(routes)('gRPC through $via, agent --relay $relay', ({ via, relay }) => {
  let client: TestClientInstance;

  beforeAll(async () => {
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server, ['--app-protocol', 'http2', '--relay', relay, '--no-inspect']);
    agents.push(agent);
    if (via === 'gateway') {
      client = grpcClient(`127.0.0.1:${server.port}`, agent.host);
      return;
    }
    const link = (await agent.proc.waitFor('ready'))['link'] as string;
    const connect = new BeamProcess(['connect', link, '--server', server.url, '--json']);
    connects.push(connect);
    const ready = await connect.waitFor('ready');
    client = grpcClient(new URL(ready['url'] as string).host);
  });
  afterAll(() => client?.close());

  it('unary: 1 MiB there and back, byte-equal, with trailing metadata', async () => {
    const payload = randomBytes(1024 * 1024);
    const out = await unary(client, 'echo', payload);
    expect(out.error).toBeUndefined();
    expect(sha(out.value as Buffer)).toBe(sha(payload));
    expect(out.trailers?.get('x-sha256')).toEqual([sha(payload)]);
  });

  it('server streaming: 200 messages of 8 KiB, in order and whole', async () => {
    const call = (client['stream'] as (...a: unknown[]) => grpc.ClientReadableStream<Buffer>)(Buffer.from('200,8192'));
    const got: Buffer[] = [];
    for await (const m of call) got.push(m as Buffer);
    expect(got).toHaveLength(200);
    const expected = createHash('sha256');
    for (let i = 0; i < 200; i++) expected.update(Buffer.alloc(8192, i % 256));
    expect(sha(Buffer.concat(got))).toBe(expected.digest('hex'));
  });

  it('client streaming: 100 messages hashed at the server as sent', async () => {
    const messages = Array.from({ length: 100 }, () => randomBytes(10_000));
    const result = await new Promise<Buffer>((resolve, reject) => {
      const call = (client['sum'] as (...a: unknown[]) => grpc.ClientWritableStream<Buffer>)((err: Error | null, v: Buffer) =>
        err ? reject(err) : resolve(v),
      );
      for (const m of messages) call.write(m);
      call.end();
    });
    expect(result.toString()).toBe(`100,${sha(Buffer.concat(messages))}`);
  });

  it('bidirectional: each message answered while the call stays open', async () => {
    const call = (client['chat'] as () => grpc.ClientDuplexStream<Buffer, Buffer>)();
    const replies: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const m = randomBytes(100 + i);
      const reply = new Promise<Buffer>((resolve) => call.once('data', resolve));
      call.write(m);
      // The answer to this message arrives before the next one is sent: no buffering until the end.
      const r = await reply;
      expect(Buffer.from(r).reverse().equals(m)).toBe(true);
      replies.push(r);
    }
    call.end();
    await new Promise<void>((resolve) => call.on('status', () => resolve()));
    expect(replies).toHaveLength(20);
  });

  it('an error status and its message reach the client in trailers', async () => {
    const out = await unary(client, 'fail', Buffer.from('no such thing'));
    expect(out.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(out.error?.details).toBe('no such thing');
  });

  it('a deadline: the client gets DEADLINE_EXCEEDED and the server sees the call cancelled', async () => {
    const tag = `deadline-${via}-${relay}`;
    const started = performance.now();
    const out = await unary(client, 'hang', Buffer.from(tag), { deadline: Date.now() + 1_500 });
    expect(out.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(performance.now() - started).toBeLessThan(10_000);
    await origin.cancelled(tag);
  });

  it("a client's cancel reaches the server as a cancelled call", async () => {
    const tag = `cancel-${via}-${relay}`;
    const call = (client['hang'] as (...a: unknown[]) => grpc.ClientUnaryCall)(Buffer.from(tag), () => {});
    // Cancel once the server has the call, so the cancel has somewhere to go.
    await origin.started(tag);
    call.cancel();
    await origin.cancelled(tag);
  });
});

describe('gRPC over TLS: beam serve --tls-cert, h2 by ALPN', () => {
  it('a grpc-js client with TLS credentials reaches the share by its name', async () => {
    const certs = makeCertificates('beam.test');
    const tls = tlsServe('beam.test', certs);
    try {
      const port = (await tls.waitFor('ready'))['port'] as number;
      const shared = new BeamProcess(
        ['http', `127.0.0.1:${origin.port}`, '--server', `https://127.0.0.1:${port}`, '--app-protocol', 'http2', '--json', '--no-inspect'],
        { NODE_EXTRA_CA_CERTS: certs.caFile },
      );
      agents.push({ proc: shared, name: '', url: '', host: '' });
      const host = new URL((await shared.waitFor('ready'))['url'] as string).hostname;
      const client = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createSsl(certs.ca), {
        'grpc.default_authority': `${host}:${port}`,
        'grpc.ssl_target_name_override': host,
      }) as TestClientInstance;
      try {
        const payload = randomBytes(200_000);
        const out = await unary(client, 'echo', payload);
        expect(out.error).toBeUndefined();
        expect(sha(out.value as Buffer)).toBe(sha(payload));
        expect(out.trailers?.get('x-sha256')).toEqual([sha(payload)]);
      } finally {
        client.close();
      }
    } finally {
      await tls.kill();
    }
  });
});
