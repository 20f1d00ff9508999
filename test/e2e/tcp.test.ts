/**
 * TCP shares: `beam tcp <port>` on one side, `beam connect <link>` on the
 * other, real processes over loopback. TCP semantics are kept: half-close
 * both ways, resets on errors, many connections at once, byte-exact data.
 */

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PATH_DEAD_MS } from '../../shared/constants.js';
import { request } from '../helpers/http.js';
import { type AgentHandle, BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

let server: ServerHandle;
let origin: net.Server;
let originPort: number;
let agent: AgentHandle;
let connect: BeamProcess;
let localPort: number;
/** What the origin does with a connection, chosen by the first byte the client sends. */
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  origin = net.createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('error', () => {});
    socket.once('data', (first: Buffer) => {
      const mode = first.subarray(0, 1).toString();
      if (mode === 'R') {
        // Reset the connection. (Data then RST in one burst reads as a plain
        // end on Linux even without Beam, so the reset comes alone.)
        socket.resetAndDestroy();
        return;
      }
      if (mode === 'I') {
        // Interactive echo: every chunk straight back.
        socket.write(first.subarray(1));
        socket.on('data', (d: Buffer) => socket.write(d));
        socket.on('end', () => socket.end());
        return;
      }
      if (mode === 'S') {
        // Server half-closes first, then keeps reading until the client's FIN, and answers with what it got.
        socket.end('server done writing\n');
      }
      chunks.push(first.subarray(1));
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('end', () => {
        const got = Buffer.concat(chunks);
        if (mode === 'S') {
          socket.destroy();
          halfCloseReceived?.(got);
          return;
        }
        // 'E': echo sha256 and length after the client's FIN (the client half-closed and still receives).
        socket.end(`${sha(got)} ${got.length}\n`);
      });
    });
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  originPort = (origin.address() as net.AddressInfo).port;
  server = await startServer();
  agent = await startTcpAgent(originPort);
  const ready = await agent.proc.waitFor('ready');
  connect = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
  const local = await connect.waitFor('ready');
  expect(local['url']).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
  localPort = Number(new URL(local['url'] as string).port);
});
afterAll(async () => {
  await connect?.kill();
  await agent?.proc.kill();
  await server?.proc.kill();
  origin?.close();
});

/** Resolved by the origin with what it read after it half-closed. */
let halfCloseReceived: ((body: Buffer) => void) | undefined;

async function startTcpAgent(port: number): Promise<AgentHandle> {
  const proc = new BeamProcess(['tcp', `127.0.0.1:${port}`, '--server', server.url, '--json']);
  const ready = await proc.waitFor('ready');
  const name = ready['name'] as string;
  return { proc, name, url: ready['url'] as string, host: `${name}.localhost:${server.port}` };
}

/** Connects through `beam connect`, writes `payload`, half-closes, and collects the reply. */
function exchange(payload: Buffer, port = localPort): Promise<{ reply: Buffer; error: string | undefined }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (err: NodeJS.ErrnoException) => resolve({ reply: Buffer.concat(chunks), error: err.code ?? err.message }));
    socket.on('end', () => {
      socket.end();
      resolve({ reply: Buffer.concat(chunks), error: undefined });
    });
    socket.on('connect', () => socket.end(payload));
  });
}

describe('beam tcp + beam connect', () => {
  it('announces a TCP share and carries 8 MiB byte-exact; the client half-closes and still receives', async () => {
    const ready = await agent.proc.waitFor('ready');
    expect(ready['kind']).toBe('tcp');
    const body = randomBytes(8 * 1024 * 1024);
    const r = await exchange(Buffer.concat([Buffer.from('E'), body]));
    expect(r.error).toBeUndefined();
    expect(r.reply.toString()).toBe(`${sha(body)} ${body.length}\n`);
  });

  it('the server half-closes first and still receives what the client sends after (as SSH does)', async () => {
    const received = new Promise<Buffer>((resolve) => (halfCloseReceived = resolve));
    const socket = net.connect({ port: localPort, host: '127.0.0.1', allowHalfOpen: true });
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('S');
    await new Promise<void>((resolve) => socket.once('end', () => resolve()));
    expect(Buffer.concat(got).toString()).toBe('server done writing\n');
    // Our read side is done; our write side still works.
    const late = randomBytes(256 * 1024);
    socket.end(late);
    expect(sha(await received)).toBe(sha(late));
  });

  it('an origin reset becomes a reset on the client, not a clean end', async () => {
    // The client keeps its write side open: a socket that has sent FIN sees a
    // peer's RST as a plain end, through Beam or not.
    const error = await new Promise<string | undefined>((resolve) => {
      const socket = net.connect({ port: localPort, host: '127.0.0.1', allowHalfOpen: true });
      socket.on('data', () => {});
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code));
      socket.on('end', () => resolve(undefined));
      socket.on('connect', () => socket.write('R'));
    });
    expect(error).toBe('ECONNRESET');
  });

  it('carries 200 connections at once, each byte-exact', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const body = randomBytes(64 * 1024);
        const r = await exchange(Buffer.concat([Buffer.from('E'), body]));
        return r.reply.toString() === `${sha(body)} ${body.length}\n`;
      }),
    );
    expect(results.filter(Boolean).length).toBe(200);
  });

  it(
    `an idle connection outlives PATH_DEAD_MS (${PATH_DEAD_MS} ms) several times over: Beam's keepalives hold the path`,
    async () => {
      const socket = net.connect({ port: localPort, host: '127.0.0.1' });
      const next = (): Promise<string> => new Promise((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      let reply = next();
      socket.write('Ihello');
      expect(await reply).toBe('hello');
      // Idle: nothing from the application for 2.5 x PATH_DEAD_MS. The connection must not be reset meanwhile.
      let failed: string | undefined;
      socket.once('error', (err: NodeJS.ErrnoException) => (failed = err.code));
      socket.once('end', () => (failed = 'end'));
      await new Promise((r) => setTimeout(r, PATH_DEAD_MS * 2.5));
      expect(failed).toBeUndefined();
      reply = next();
      socket.write('still here');
      expect(await reply).toBe('still here');
      socket.destroy();
    },
    PATH_DEAD_MS * 2.5 + 20_000,
  );

  it('an HTTP request to a TCP share gets 400 BEAM_ERR_SHARE_KIND from the gateway', async () => {
    const res = await request(server.port, agent.host, '/');
    expect(res.status).toBe(400);
    expect(res.headers['beam-error']).toBe('BEAM_ERR_SHARE_KIND');
  });

  it('with the origin down, a local connection is reset and the agent says so', async () => {
    const dead = net.createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const deadPort = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const downAgent = await startTcpAgent(deadPort);
    const ready = await downAgent.proc.waitFor('ready');
    const c = new BeamProcess(['connect', ready['link'] as string, '--server', server.url, '--json']);
    try {
      const port = Number(new URL((await c.waitFor('ready'))['url'] as string).port);
      const r = await exchange(Buffer.from('E'), port);
      expect(r.error).toBe('ECONNRESET');
      const said = await downAgent.proc.waitFor((e) => e.event === 'origin-unreachable' && e['code'] === 'ECONNREFUSED');
      expect(said['origin']).toBe(`127.0.0.1:${deadPort}`);
    } finally {
      await c.kill();
      await downAgent.proc.kill();
    }
  });
});
