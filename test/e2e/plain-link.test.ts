/**
 * The agent's side of the gateway's relay link without Noise
 * (SessionOpened.plainLink): a real `beam http` against a signaling server
 * that says what it likes. The agent offers the plain link only where its own
 * connection is private, and takes it only for the server's own gateway over
 * a private relay URL: a server that asks for it anywhere else gets the relay
 * path refused (audit `auth.refused`), and the agent never joins the relay.
 * Then the relay path with Noise where no visitor ever speaks: no refusal.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { RELAY_PATH, SIGNALING_PATH } from '../../shared/constants.js';
import type { Handshake, IncomingSession } from '../../shared/signaling.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess } from '../helpers/procs.js';

interface FakeServer {
  port: number;
  /** The handshakes agents connected with. */
  handshakes: Handshake[];
  /** Relay WebSockets the agent opened (each answered 404, so no path comes up). */
  relayJoins: string[];
  /** Sends this session to the next agent that registers. */
  next(incoming: Omit<IncomingSession, 'share'>): void;
  close(): Promise<void>;
}

/** `relay`: what the fake relay does with a join: answer 404, or take it and never say a word (no visitor ever comes). */
async function fakeServer(relay: 'refuse' | 'silent' = 'refuse'): Promise<FakeServer> {
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  const relayJoins: string[] = [];
  const silent = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (!req.url?.startsWith(RELAY_PATH)) return;
    relayJoins.push(req.url);
    if (relay === 'silent') silent.handleUpgrade(req, socket, head, () => {});
    else socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
  });
  const io = new Server(server, { path: SIGNALING_PATH, transports: ['websocket'], destroyUpgrade: false });
  const handshakes: Handshake[] = [];
  let pending: Omit<IncomingSession, 'share'> | undefined;
  io.on('connection', (socket) => {
    handshakes.push(socket.handshake.auth as Handshake);
    socket.on('share:register', (_req: unknown, ack: (res: unknown) => void) => {
      ack({ ok: true, value: { name: 'plain-link-test', url: `http://127.0.0.1/`, resumeToken: 'r'.repeat(32), resumed: false } });
      if (pending) socket.emit('session:incoming', { ...pending, share: 'plain-link-test' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    handshakes,
    relayJoins,
    next(incoming) {
      pending = incoming;
    },
    close: () =>
      new Promise((resolve) => {
        for (const ws of silent.clients) ws.terminate();
        silent.close();
        io.close(() => resolve());
      }),
  };
}

const session = (visitor: 'gateway' | 'cli', plainLink = true): Omit<IncomingSession, 'share'> => ({
  sessionId: `s${Math.random().toString(36).slice(2, 14).padEnd(12, 'x')}`,
  visitor: { kind: visitor },
  iceServers: [],
  relayToken: 't'.repeat(32),
  relayFirst: true,
  ...(plainLink ? { plainLink } : {}),
});

let origin: Origin;
let fake: FakeServer;
let agent: BeamProcess | undefined;

beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await origin?.close();
});
afterEach(async () => {
  await agent?.kill();
  agent = undefined;
  await fake?.close();
});

/** A `beam http` registered with the fake server through `url` (which reaches it); resolves once its session came in. */
async function agentVia(
  url: (port: number) => string,
  visitor: 'gateway' | 'cli',
  options: { plainLink?: boolean; relay?: 'refuse' | 'silent' } = {},
): Promise<BeamProcess> {
  fake = await fakeServer(options.relay);
  fake.next(session(visitor, options.plainLink ?? true));
  agent = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--server', url(fake.port), '--json', '--log-level', 'debug', '--no-inspect']);
  await agent.waitFor('ready');
  return agent;
}

describe("the gateway's relay link without Noise: the agent's side", () => {
  it('offers it over a loopback connection, and takes it for the gateway: it joins the relay', async () => {
    const proc = await agentVia((port) => `http://127.0.0.1:${port}`, 'gateway');
    expect(fake.handshakes[0]?.plainGatewayLink).toBe(true);
    // The fake relay answers 404: the path fails there, after the agent came to join it.
    const failed = await proc.waitForLog({ msg: 'relay path failed' });
    // The relay refused the agent's ticket: no one was refused, so it is no audit line.
    expect(failed).toMatchObject({ code: 'BEAM_ERR_RELAY_REFUSED', path: 'relay' });
    expect(failed['audit']).toBeUndefined();
    expect(fake.relayJoins).toHaveLength(1);
    expect(proc.logs.filter((e) => String(e['msg']).startsWith('relay path refused'))).toEqual([]);
  });

  it('refuses it for any other visitor, whatever the server says: no relay join, an auth.refused line', async () => {
    const proc = await agentVia((port) => `http://127.0.0.1:${port}`, 'cli');
    const refused = await proc.waitForLog({ audit: 'auth.refused' });
    expect(refused).toMatchObject({ code: 'BEAM_ERR_HANDSHAKE_FAILED', path: 'relay', visitor: 'cli' });
    expect(fake.relayJoins).toEqual([]);
  });

  it('neither offers nor takes it over plain http to another host (here 0.0.0.0, which Linux connects locally but is no loopback address)', async () => {
    const proc = await agentVia((port) => `http://0.0.0.0:${port}`, 'gateway');
    expect(fake.handshakes[0]?.plainGatewayLink).toBeUndefined();
    const refused = await proc.waitForLog({ audit: 'auth.refused' });
    expect(refused).toMatchObject({ code: 'BEAM_ERR_HANDSHAKE_FAILED', path: 'relay', visitor: 'gateway' });
    expect(fake.relayJoins).toEqual([]);
  });
});

describe("the agent's relay path with Noise: what it logs", () => {
  it('a relay where no visitor ever speaks: the handshake gives up, as BEAM_ERR_RELAY_TIMEOUT at info, no auth.refused line', async () => {
    const proc = await agentVia((port) => `http://127.0.0.1:${port}`, 'cli', { plainLink: false, relay: 'silent' });
    const failed = await proc.waitForLog({ msg: 'relay path failed' });
    expect(fake.relayJoins).toHaveLength(1);
    expect(failed).toMatchObject({ code: 'BEAM_ERR_RELAY_TIMEOUT', path: 'relay', level: 30 });
    expect(failed['audit']).toBeUndefined();
    expect(proc.logs.filter((e) => e['audit'] === 'auth.refused')).toEqual([]);
  });
});
