/**
 * Hardening, round two, on real sockets: connections that never send a byte
 * are closed, one address can't hold the gateway's connections, duplicate
 * Host and X-Request-Id headers don't reach the origin, the Basic scheme is
 * case-insensitive, `beam connect`'s local port answers only loopback names
 * (DNS rebinding), and a server named by an IP address is refused at start.
 */
import net from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { rawResponseProblem } from '../../gateway/gateway.js';
import { type BeamServer, startBeamServer } from '../../gateway/server.js';
import { loadEngine } from '../../transport/index.js';
import { parseLink } from '../../transport/link.js';
import { rawExchange, request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type AgentHandle, BeamProcess, type ServerHandle, startAgent } from '../helpers/procs.js';

/** Short, so the silent-connection test is quick; the default is GATEWAY_HEADERS_TIMEOUT_MS. */
const HEADERS_TIMEOUT_MS = 1_500;
/** Small, so one address can reach it in a test; the default is GATEWAY_MAX_CONNECTIONS_PER_IP. */
const MAX_CONNECTIONS_PER_IP = 40;

let origin: Origin;
let server: BeamServer;
let handle: ServerHandle;
let agent: AgentHandle;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startBeamServer(
    { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }) },
    { port: 0, host: '127.0.0.1', headersTimeoutMs: HEADERS_TIMEOUT_MS, maxConnectionsPerIp: MAX_CONNECTIONS_PER_IP },
  );
  handle = { proc: undefined as unknown as BeamProcess, port: server.port, url: `http://127.0.0.1:${server.port}` };
  agent = await startAgent(`127.0.0.1:${origin.port}`, handle, ['--no-inspect', '--auth', 'alice:s3cret']);
});
afterAll(async () => {
  await agent?.proc.kill();
  await server?.close();
  await origin?.close();
});

const AUTH = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;

/** A connection from `localAddress` that sends nothing; resolves with when it was closed and whether it got any byte. */
function silent(localAddress: string): { socket: net.Socket; closed: Promise<{ afterMs: number; bytes: number }> } {
  const started = performance.now();
  const socket = net.connect({ host: '127.0.0.1', port: server.port, localAddress });
  let bytes = 0;
  socket.on('data', (d: Buffer) => (bytes += d.byteLength));
  socket.on('error', () => {});
  return { socket, closed: new Promise((resolve) => socket.on('close', () => resolve({ afterMs: performance.now() - started, bytes }))) };
}

/** Writes raw bytes to the gateway; resolves with all it answered once it closes the connection. */
const raw = (bytes: string): Promise<string> => rawExchange(server.port, bytes);

describe('connections that never send a byte', () => {
  it(`are closed within the headers timeout (${HEADERS_TIMEOUT_MS} ms) of accept, and answer nobody`, async () => {
    const conns = Array.from({ length: 30 }, () => silent('127.0.0.3'));
    const results = await Promise.all(conns.map((c) => c.closed));
    for (const r of results) {
      expect(r.afterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
      expect(r.afterMs).toBeLessThan(HEADERS_TIMEOUT_MS + 2_000);
    }
  });

  it('a connection whose request came in time stays open for its keep-alive', async () => {
    const res = await request(server.port, agent.host, '/kept', { headers: { authorization: AUTH } });
    expect(res.status).toBe(200);
  });
});

describe(`one address holds at most MAX_CONNECTIONS_PER_IP (${MAX_CONNECTIONS_PER_IP}) connections`, () => {
  it('past the cap its new connections are closed at once, while another address is served', async () => {
    // The server's side of each connection from 127.0.0.2, to know when it let go of them.
    const accepted: Array<Promise<void>> = [];
    const watch = (socket: net.Socket): void => {
      if (socket.remoteAddress === '127.0.0.2') accepted.push(new Promise((resolve) => socket.once('close', () => resolve())));
    };
    server.http.on('connection', watch);
    const flood = Array.from({ length: MAX_CONNECTIONS_PER_IP }, () => silent('127.0.0.2'));
    await Promise.all(flood.map((c) => new Promise<void>((resolve) => c.socket.once('connect', () => resolve()))));
    // The server counts a connection once it accepted it: wait until one past the cap is turned away at once.
    const over = silent('127.0.0.2');
    const overClosed = await over.closed;
    expect(overClosed.afterMs).toBeLessThan(HEADERS_TIMEOUT_MS - 200);
    expect(overClosed.bytes).toBe(0);
    // Meanwhile 127.0.0.1 gets its answers.
    for (let i = 0; i < 5; i++) {
      const res = await request(server.port, agent.host, `/other-address-${i}`, { headers: { authorization: AUTH } });
      expect(res.status).toBe(200);
    }
    expect(origin.hits.get('/other-address-4')).toBe(1);
    for (const c of flood) c.socket.destroy();
    await Promise.all(flood.map((c) => c.closed));
    await Promise.all(accepted);
    server.http.off('connection', watch);
    // Once they are gone the address gets in again.
    const again = await new Promise<number>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: server.port, localAddress: '127.0.0.2' });
      s.on('data', (d: Buffer) => {
        resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'))?.[1]));
        s.destroy();
      });
      s.on('error', reject);
      s.on('close', () => reject(new Error('closed without an answer')));
      s.write(`GET /again HTTP/1.1\r\nHost: ${agent.host}\r\nAuthorization: ${AUTH}\r\nConnection: close\r\n\r\n`);
    });
    expect(again).toBe(200);
  });
});

describe('duplicate and raw headers', () => {
  it('two Host headers: 400 BEAM_ERR_BAD_REQUEST, the origin untouched', async () => {
    const answer = await raw(
      `GET /two-hosts HTTP/1.1\r\nHost: ${agent.host}\r\nHost: 127.0.0.1:${origin.port}\r\nAuthorization: ${AUTH}\r\nConnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).toMatch(/beam-error: BEAM_ERR_BAD_REQUEST/i);
    expect(origin.hits.get('/two-hosts')).toBeUndefined();
  });

  it('two X-Request-Ids: the origin sees one, the id the gateway answers with', async () => {
    const res = await request(server.port, agent.host, '/headers', {
      headers: { authorization: AUTH, 'x-request-id': ['attacker-chosen-1', 'attacker-chosen-2'] },
    });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString()) as { rawHeaders?: string[]; headers: Record<string, string> };
    expect(seen.headers['x-request-id']).toBe(res.headers['x-request-id']);
    expect(seen.headers['x-request-id']).not.toMatch(/attacker/);
  });

  it.each(['basic', 'BASIC', 'bAsIc'])('the Basic scheme is case-insensitive: %s gets in', async (scheme) => {
    const res = await request(server.port, agent.host, `/scheme-${scheme}`, {
      headers: { authorization: `${scheme} ${Buffer.from('alice:s3cret').toString('base64')}` },
    });
    expect(res.status).toBe(200);
    expect(origin.hits.get(`/scheme-${scheme}`)).toBe(1);
  });

  it('a wrong password in any case is still 401', async () => {
    const res = await request(server.port, agent.host, '/wrong', { headers: { authorization: `basic ${Buffer.from('alice:nope').toString('base64')}` } });
    expect(res.status).toBe(401);
    expect(res.headers['beam-error']).toBe('BEAM_ERR_UNAUTHORIZED');
  });

  it("an agent's status text or headers with CR, LF or other bytes HTTP forbids are never written raw", () => {
    expect(
      rawResponseProblem('Switching Protocols', [
        ['Upgrade', 'websocket'],
        ['Connection', 'Upgrade'],
      ]),
    ).toBeUndefined();
    expect(rawResponseProblem('OK\r\nSet-Cookie: x=1', [])).toMatch(/status text/);
    expect(rawResponseProblem('OK', [['X-A', 'b\r\nSet-Cookie: x=1']])).toMatch(/X-A/);
    expect(rawResponseProblem('OK', [['X-A\r\nSet-Cookie', 'x']])).toMatch(/header/);
    expect(rawResponseProblem('OK', [['X A', 'x']])).toMatch(/header/);
    expect(rawResponseProblem('OK', [['X-A', 'nul\0']])).toMatch(/header/);
  });
});

describe("beam connect's local HTTP port answers only loopback names (DNS rebinding)", () => {
  let connect: BeamProcess;
  let port: number;
  beforeAll(async () => {
    const link = (await agent.proc.waitFor('ready'))['link'] as string;
    connect = new BeamProcess(['connect', link, '--server', handle.url, '--json', '--allow-host', 'dev.example.test']);
    port = Number(new URL((await connect.waitFor('ready'))['url'] as string).port);
  });
  afterAll(async () => {
    await connect?.kill();
  });

  it.each(['localhost', '127.0.0.1', '[::1]', 'LOCALHOST'])('Host %s (with the port) is served', async (name) => {
    const res = await request(port, `${name}:${port}`, '/loopback', { headers: { authorization: AUTH } });
    expect(res.status).toBe(200);
  });

  it('a name given with --allow-host is served', async () => {
    expect((await request(port, 'dev.example.test', '/allowed', { headers: { authorization: AUTH } })).status).toBe(200);
  });

  it.each(['attacker.example', `attacker.example:${0}`, 'localhost.attacker.example', '127.0.0.1.nip.example', `localhost:1`])(
    'Host %s gets 403 BEAM_ERR_HOST_NOT_ALLOWED, the origin untouched',
    async (name) => {
      const path = `/rebound-${encodeURIComponent(name)}`;
      const res = await request(port, name, path, { headers: { authorization: AUTH } });
      expect(res.status).toBe(403);
      expect(res.headers['beam-error']).toBe('BEAM_ERR_HOST_NOT_ALLOWED');
      expect(origin.hits.get(path)).toBeUndefined();
    },
  );

  it('a WebSocket under another name is refused too', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: 'attacker.example', authorization: AUTH } });
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    expect(status).toBe(403);
  });
});

describe('a server named by an IP address', () => {
  it.each([
    ['--public-url', 'http://203.0.113.7:7070'],
    ['--public-url', 'http://[2001:db8::7]:7070'],
    ['--domain', '203.0.113.7'],
  ])('beam serve %s %s is refused at start with what to do', async (flag, value) => {
    const proc = new BeamProcess(['serve', '--port', '0', '--host', '127.0.0.1', flag, value, '--json']);
    expect(await proc.exited).toBe(1);
    const error = proc.events.find((e) => e.event === 'error');
    expect(error?.['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(error?.['message'])).toMatch(/wildcard DNS name/);
  });

  it('beam connect with a bare IP link says it names no share, and how to name it', () => {
    expect(() => parseLink('http://203.0.113.7:7070/#peer=x')).toThrow(
      expect.objectContaining({ code: 'BEAM_ERR_BAD_OPTION', message: expect.stringContaining('#share=<name>') }),
    );
    expect(parseLink('http://203.0.113.7:7070/#share=My-App')).toMatchObject({ server: 'http://203.0.113.7:7070', share: 'my-app' });
    expect(() => parseLink('http://203.0.113.7:7070/#share=-bad-')).toThrow(expect.objectContaining({ code: 'BEAM_ERR_NAME_INVALID' }));
  });

  it("a link with #share= opens with the link alone (no --server): the server is the link's host as it is", async () => {
    const link = new URL((await agent.proc.waitFor('ready'))['link'] as string);
    const fragment = new URLSearchParams(link.hash.slice(1));
    fragment.set('share', agent.name);
    const byAddress = `http://127.0.0.1:${server.port}/#${fragment.toString()}`;
    const connect = new BeamProcess(['connect', byAddress, '--json']);
    try {
      const ready = await connect.waitFor('ready');
      const port = Number(new URL(ready['url'] as string).port);
      const res = await request(port, `127.0.0.1:${port}`, '/by-address', { headers: { authorization: AUTH } });
      expect(res.status).toBe(200);
      expect(origin.hits.get('/by-address')).toBe(1);
    } finally {
      await connect.kill();
    }
  });

  it("the share's own link opens with the link alone too", async () => {
    const link = (await agent.proc.waitFor('ready'))['link'] as string;
    expect(new URL(link).hostname).toBe(`${agent.name}.localhost`);
    const connect = new BeamProcess(['connect', link, '--json']);
    try {
      const ready = await connect.waitFor('ready');
      expect(ready['server']).toBe(`http://localhost:${server.port}`);
      const port = Number(new URL(ready['url'] as string).port);
      expect((await request(port, `localhost:${port}`, '/by-name', { headers: { authorization: AUTH } })).status).toBe(200);
    } finally {
      await connect.kill();
    }
  });
});

describe('a malicious agent', () => {
  it("can't inject headers or a response into an upgraded connection: its status text and headers are checked before the raw write", async () => {
    const { Agent } = await import('../../peer-agent/agent.js');
    const { ephemeralIdentity } = await import('../../transport/identity.js');
    const { decodeRequestHead, encodeHead, readHead } = await import('../../shared/http-head.js');
    const evil = new Agent(
      { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }), identity: await ephemeralIdentity() },
      { server: handle.url, origin: { host: '127.0.0.1', port: origin.port } },
    );
    // Its code is its own: every request is answered with a 101 that carries CR/LF, as a raw write would pass them on.
    const answers = [
      {
        status: 101,
        statusText: 'Switching Protocols\r\nX-Injected: status',
        headers: [
          ['Upgrade', 'websocket'],
          ['Connection', 'Upgrade'],
        ],
      },
      {
        status: 101,
        statusText: 'Switching Protocols',
        headers: [
          ['Upgrade', 'websocket\r\nX-Injected: value'],
          ['Connection', 'Upgrade'],
        ],
      },
      { status: 101, statusText: 'Switching Protocols', headers: [['X-Injected: name\r\nUpgrade', 'websocket']] },
    ];
    let next = 0;
    (evil as unknown as { forwarder: { serve: (stream: import('node:stream').Duplex) => Promise<void> } }).forwarder.serve = async (stream) => {
      decodeRequestHead(await readHead(stream));
      stream.write(
        encodeHead({ kind: 'response', ...(answers[next++ % answers.length] as { status: number; statusText: string; headers: Array<[string, string]> }) }),
      );
    };
    const { name } = await evil.start();
    try {
      for (let i = 0; i < answers.length; i++) {
        const answer = await raw(
          `GET /ws HTTP/1.1\r\nHost: ${name}.localhost:${server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
        expect(answer).not.toMatch(/^X-Injected/im);
        expect(answer).toMatch(/^HTTP\/1\.1 400/);
        expect(answer).toMatch(/beam-error: BEAM_ERR_BAD_MESSAGE/i);
      }
    } finally {
      await evil.close();
    }
  });
});
