/**
 * The page's bridge (gateway/bridge.ts), driven as the browser page drives
 * it: a WebSocket to /.beam/bridge on the share's host with the page's
 * Origin, the multiplexer on it, request heads as the page writes them, on
 * a real `beam serve` and `beam http`. The app's bytes arrive whole both
 * ways; the gateway, not the page, says where a request came from; the
 * agent answers as it answers a page (the origin's address); a page of
 * another site gets no bridge; and the HTTP path drops a visitor's claim to
 * be the bridge.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SocketChannel } from '../../gateway/bridge.js';
import { BRIDGE_HEADER, BRIDGE_MAX_STREAMS, BRIDGE_PATH } from '../../shared/constants.js';
import { StreamProtocol } from '../../shared/frames.js';
import { encodeHead, exchange, type ResponseHead } from '../../shared/http-head.js';
import { Mux, type MuxStream } from '../../shared/mux.js';
import { request, sha256 } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
let agent: AgentHandle;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  agent = await startAgent(origin.port, server, ['--no-inspect']);
});
afterAll(async () => {
  await agent?.proc.kill();
  await server?.proc.kill();
  await origin?.close();
});

/** Opens the bridge as a page of `pageOrigin` does; rejects with the HTTP status when refused. */
function openBridge(pageOrigin = `http://${agent.host}`): Promise<{ mux: Mux; ws: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}${BRIDGE_PATH}`, { headers: { host: agent.host, origin: pageOrigin } });
    ws.on('unexpected-response', (_req, res) =>
      reject(Object.assign(new Error(`refused: ${res.statusCode}`), { status: res.statusCode, code: res.headers['beam-error'] })),
    );
    ws.on('error', reject);
    ws.on('open', () => resolve({ mux: new Mux(new SocketChannel(ws), { role: 'initiator' }), ws }));
  });
}

/** One exchange over the bridge: the response head and its whole body. */
async function send(mux: Mux, target: string, options: { method?: string; headers?: Array<[string, string]>; body?: Buffer } = {}) {
  const stream: MuxStream = mux.openStream(StreamProtocol.HTTP);
  const head = await exchange(
    stream,
    {
      method: options.method ?? 'GET',
      target,
      headers: [['Host', agent.host], ...(options.headers ?? [])],
      upgrade: false,
      body: options.body !== undefined,
    },
    options.body,
  );
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { head, body: Buffer.concat(chunks) };
}

const header = (head: ResponseHead, name: string): string | undefined =>
  head.kind === 'response' ? head.headers.find(([k]) => k.toLowerCase() === name)?.[1] : undefined;

describe('the page bridge', () => {
  it("carries the page's requests to the agent, bytes whole both ways, many at once", async () => {
    const { mux, ws } = await openBridge();
    try {
      const upload = randomBytes(3 * 1024 * 1024);
      const [down, up, ...small] = await Promise.all([
        send(mux, '/download?size=5242880&seed=3'),
        send(mux, '/upload', { method: 'POST', body: upload }),
        ...Array.from({ length: 20 }, (_, i) => send(mux, `/hello-${i}`)),
      ]);
      expect(down?.head).toMatchObject({ kind: 'response', status: 200 });
      expect(down?.body.byteLength).toBe(5 * 1024 * 1024);
      const expected = await request(origin.port, `127.0.0.1:${origin.port}`, '/download?size=5242880&seed=3');
      expect(sha256(down?.body ?? Buffer.alloc(0))).toBe(sha256(expected.body));
      expect(JSON.parse(up?.body.toString() ?? '{}')).toEqual({ bytes: upload.byteLength, sha256: sha256(upload) });
      expect(small.map((r) => r.body.toString())).toEqual(small.map((_, i) => `hello from /hello-${i}`));
    } finally {
      ws.close();
    }
  });

  it('says where the request came from itself, and the agent answers it as a page: the origin address for the page', async () => {
    const { mux, ws } = await openBridge();
    try {
      const { head, body } = await send(mux, '/headers', {
        headers: [
          ['X-Forwarded-For', '203.0.113.9'],
          ['X-Forwarded-Host', 'elsewhere.example'],
          ['X-Request-Id', 'the-page-chose-this-id'],
        ],
      });
      const seen = (JSON.parse(body.toString()) as { headers: Record<string, string> }).headers;
      expect(seen['x-forwarded-for']).toMatch(/127\.0\.0\.1$/);
      expect(seen['x-forwarded-host']).toBe(agent.host);
      expect(seen['x-request-id']).not.toBe('the-page-chose-this-id');
      expect(seen[BRIDGE_HEADER]).toBeUndefined();
      expect(header(head, 'beam-origin')).toMatch(new RegExp(`:${origin.port}$`));
    } finally {
      ws.close();
    }
  });

  it(`carries ${BRIDGE_MAX_STREAMS} streams at once; the next is reset with BEAM_ERR_TOO_MANY_STREAMS, and the bridge goes on`, async () => {
    const { mux, ws } = await openBridge();
    try {
      // Uploads that never end hold their streams open.
      const held: MuxStream[] = [];
      for (let i = 0; i < BRIDGE_MAX_STREAMS; i++) {
        const stream = mux.openStream(StreamProtocol.HTTP);
        stream.on('error', () => {});
        stream.write(encodeHead({ method: 'POST', target: '/upload', headers: [['Host', agent.host]], upgrade: false, body: true }));
        stream.write(Buffer.from('x'));
        held.push(stream);
      }
      const over = mux.openStream(StreamProtocol.HTTP);
      over.end(encodeHead({ method: 'GET', target: '/over', headers: [['Host', agent.host]], upgrade: false, body: false }));
      const [err] = (await once(over, 'error')) as [{ code?: string }];
      expect(err.code).toBe('BEAM_ERR_TOO_MANY_STREAMS');
      // One upload ends and is answered: its place is free again.
      const first = held[0] as MuxStream;
      first.resume();
      first.end();
      await once(first, 'close');
      expect((await send(mux, '/after')).body.toString()).toBe('hello from /after');
      for (const s of held) s.destroy();
    } finally {
      ws.close();
    }
  });

  it("is for the share's own page only, and the HTTP path drops a claim to be the bridge", async () => {
    await expect(openBridge('http://attacker.example')).rejects.toMatchObject({ status: 403, code: 'BEAM_ERR_FORBIDDEN' });
    await expect(openBridge('')).rejects.toMatchObject({ status: 403 });
    const plain = await request(server.port, agent.host, '/headers', { headers: { [BRIDGE_HEADER]: '1' } });
    expect(plain.status).toBe(200);
    expect(plain.headers['beam-origin']).toBeUndefined();
    expect((JSON.parse(plain.body.toString()) as { headers: Record<string, string> }).headers[BRIDGE_HEADER]).toBeUndefined();
    // What the bridges carry shows in the server's metrics.
    const carried = async (): Promise<number> =>
      Number(/^beam_gateway_bridge_streams_total (\d+)/m.exec((await request(server.port, `127.0.0.1:${server.port}`, '/metrics')).body.toString())?.[1]);
    const before = await carried();
    const { mux, ws } = await openBridge();
    await send(mux, '/counted');
    await send(mux, '/counted');
    ws.close();
    expect(await carried()).toBe(before + 2);
  });
});
