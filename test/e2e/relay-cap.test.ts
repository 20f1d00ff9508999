/**
 * The relay's cap (`beam serve --relay-max-mib`, `--relay-max-seconds`):
 * a relayed session ends at the operator's cap with BEAM_ERR_RELAY_CAPPED,
 * the next session gets a new allowance, the server's own gateway is never
 * capped, and a session that went direct is not touched by it. Real
 * processes on loopback; the relay's own accounting is in relay.test.ts.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELAY_PATH } from '../../shared/constants.js';
import { request, sha256 } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, BeamProcess, onPath, type ServerHandle, serveRefusal, startAgent, startServer } from '../helpers/procs.js';

const MIB = 1024 * 1024;
let origin: Origin;
let server: ServerHandle;
const procs: BeamProcess[] = [];

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer(['--relay-max-mib', '1']);
});
afterAll(async () => {
  for (const p of procs) await p.kill();
  await server?.proc.kill();
  await origin?.close();
});

async function connectTo(agent: AgentHandle, extra: string[] = []): Promise<{ proc: BeamProcess; port: number }> {
  const link = (await agent.proc.waitFor('ready'))['link'] as string;
  const proc = new BeamProcess(['connect', link, '--server', server.url, '--json', '--log-level', 'info', ...extra]);
  procs.push(proc);
  const ready = await proc.waitFor('ready');
  return { proc, port: Number(new URL(ready['url'] as string).port) };
}

/** A download that may be cut: the bytes that arrived, or the error that ended it. */
async function download(port: number, host: string, size: number, seed: number): Promise<{ bytes: number; error?: string }> {
  try {
    const res = await request(port, host, `/download?size=${size}&seed=${seed}`);
    return { bytes: res.body.length };
  } catch (err) {
    return { bytes: -1, error: (err as Error).message };
  }
}

describe('the relay cap', () => {
  let forced: AgentHandle;

  beforeAll(async () => {
    // Every session with this share rides the relay: its agent asks for --relay always.
    forced = await startAgent(origin.port, server, ['--relay', 'always']);
    procs.push(forced.proc);
  });

  it('ends a relayed beam connect session at 1 MiB with BEAM_ERR_RELAY_CAPPED; the next request gets a new session', async () => {
    const { proc, port } = await connectTo(forced);
    await proc.waitFor(onPath('relay'));
    const cut = await download(port, `127.0.0.1:${port}`, 4 * MIB, 11);
    // The 4 MiB response cannot cross a 1 MiB allowance: it is cut, not completed.
    expect(cut.bytes).not.toBe(4 * MIB);
    const logged = await proc.waitForLog({ code: 'BEAM_ERR_RELAY_CAPPED' });
    expect(logged['path']).toBe('relay');
    // A small request after it opens a new session, with its own allowance.
    const small = await request(port, `127.0.0.1:${port}`, '/after-the-cap');
    expect(small.status, small.body.toString()).toBe(200);
    expect(small.body.toString()).toBe('hello from /after-the-cap');
  });

  it("never caps the server's own gateway: a gateway visitor gets 4 MiB byte-exact over the relay", async () => {
    const size = 4 * MIB;
    const res = await request(server.port, forced.host, `/download?size=${size}&seed=12`);
    expect(res.status).toBe(200);
    expect(res.headers['beam-path']).toBe('gateway; via=relay');
    expect(res.body.length).toBe(size);
    const again = await request(server.port, forced.host, `/download?size=${size}&seed=12`);
    expect(sha256(again.body)).toBe(sha256(res.body));
  });

  it('does not touch a session that went direct: 4 MiB byte-exact past the cap', async () => {
    const agent = await startAgent(origin.port, server);
    procs.push(agent.proc);
    const { proc, port } = await connectTo(agent);
    await proc.waitFor(onPath('direct'));
    const size = 4 * MIB;
    const res = await request(port, `127.0.0.1:${port}`, `/download?size=${size}&seed=13`);
    expect(res.status).toBe(200);
    expect(res.headers['beam-path']).toBe('direct');
    expect(res.body.length).toBe(size);
    const direct = await request(origin.port, `127.0.0.1:${origin.port}`, `/download?size=${size}&seed=13`);
    expect(sha256(res.body)).toBe(sha256(direct.body));
    expect(proc.logs.some((l) => l['code'] === 'BEAM_ERR_RELAY_CAPPED')).toBe(false);
  });
});

describe('the relay cap: options', () => {
  it.each([
    [['--relay-max-mib', 'lots'], /--relay-max-mib must be a whole number/],
    [['--relay-max-mib', '0'], /--relay-max-mib must be a whole number from 1/],
    [['--relay-max-seconds', '3000000'], /--relay-max-seconds must be at most 2000000/],
  ])('beam serve %j is BEAM_ERR_BAD_OPTION, with what to pass', async (args, message) => {
    expect(await serveRefusal(args)).toEqual({ code: 'BEAM_ERR_BAD_OPTION', message: expect.stringMatching(message), exit: 1 });
  });
});

describe('the relay under resets', () => {
  it('survives sides that reset their connection mid-upgrade (refused or not): the server keeps serving', async () => {
    // A side whose process dies during its upgrade resets the TCP connection; the socket had no error listener then.
    const upgrade = (session: string): string =>
      `GET ${RELAY_PATH}?session=${session}&role=agent&token=nope HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUpgrade: websocket\r\n` +
      'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    for (let i = 0; i < 60; i++) {
      await new Promise<void>((resolve) => {
        const socket = net.connect(server.port, '127.0.0.1', () => {
          socket.write(upgrade(`reset-${i}`));
          // Reset at once, or once the refusal starts to arrive.
          if (i % 2 === 0) socket.resetAndDestroy();
          else socket.once('data', () => socket.resetAndDestroy());
        });
        socket.on('error', () => {});
        socket.on('close', () => resolve());
      });
    }
    const health = await request(server.port, `127.0.0.1:${server.port}`, '/healthz');
    expect(health.status).toBe(200);
    expect(server.proc.child.exitCode).toBeNull();
  });
});
