/**
 * A real `beam http` against a signaling server that passes a session's
 * first signals ahead of the session itself, as a cluster's nodes once did
 * (signaling/server.ts): the agent keeps them (MAX_EARLY_SIGNAL_SESSIONS,
 * MAX_EARLY_SIGNALS) and answers the offer once the session comes. Beam's
 * own server no longer sends them out of order, so the server here is the
 * test's, speaking Beam's signaling protocol; the offer is a real one
 * (node-datachannel in this process).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import ndc from 'node-datachannel';
import { Server, type Socket } from 'socket.io';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_EARLY_SIGNAL_SESSIONS, MAX_EARLY_SIGNALS, SIGNALING_PATH } from '../../shared/constants.js';
import type { IncomingSession, SessionSignal } from '../../shared/signaling.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess } from '../helpers/procs.js';

let origin: Origin;
let server: http.Server;
let io: Server;
let agent: BeamProcess;
let socket: Socket;
const peers: ndc.PeerConnection[] = [];
/** Answers the agent sent, by session. */
const answers = new Map<string, (sdp: string) => void>();

const incoming = (sessionId: string): IncomingSession => ({
  sessionId,
  share: 'early',
  visitor: { kind: 'cli', address: '127.0.0.1' },
  iceServers: [],
  relayToken: 't'.repeat(32),
});

/** A real offer, from a peer connection in this process. */
function offer(): Promise<string> {
  const pc = new ndc.PeerConnection('early-signals', { iceServers: [] });
  peers.push(pc);
  return new Promise((resolve) => {
    pc.onLocalDescription((sdp, type) => {
      if (type === 'offer') resolve(sdp);
    });
    pc.createDataChannel('beam-noise');
  });
}

/** The agent's answer for `sessionId`; rejects after 10 s (an offer it lost is never answered). */
const answered = (sessionId: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer for ${sessionId} within 10 s`)), 10_000);
    answers.set(sessionId, (sdp) => {
      clearTimeout(timer);
      resolve(sdp);
    });
  });

beforeAll(async () => {
  origin = await startOrigin();
  server = http.createServer((_req, res) => res.writeHead(404).end());
  io = new Server(server, { path: SIGNALING_PATH, transports: ['websocket'] });
  const connected = new Promise<Socket>((resolve) => {
    io.on('connection', (s) => {
      s.on('share:register', (_req: unknown, ack: (res: unknown) => void) => {
        ack({ ok: true, value: { name: 'early', url: 'http://127.0.0.1/', resumeToken: 'r'.repeat(32), resumed: false } });
        resolve(s);
      });
      s.on('session:signal', (msg: SessionSignal) => {
        if (msg.signal.type === 'answer') answers.get(msg.sessionId)?.(msg.signal.sdp);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  agent = new BeamProcess(['http', String(origin.port), '--server', `http://127.0.0.1:${port}`, '--json', '--no-inspect', '--log-level', 'debug']);
  await agent.waitFor('ready');
  socket = await connected;
});
afterAll(async () => {
  await agent?.kill();
  for (const pc of peers) pc.close();
  await new Promise<void>((resolve) => (io ? io.close(() => resolve()) : resolve()));
  await origin?.close();
});

describe('signals that reach an agent before their session', () => {
  it('are kept, and the offer answered once the session comes', async () => {
    const sessionId = 'early-session-1';
    const answer = answered(sessionId);
    // One socket: the agent hears them in this order.
    socket.emit('session:signal', { sessionId, signal: { type: 'offer', sdp: await offer() } });
    socket.emit('session:incoming', incoming(sessionId));
    expect(await answer).toMatch(/^v=0/);
    expect((await agent.waitForLog({ msg: 'signals that came before their session handed over', session: sessionId }))['signals']).toBe(1);
  });

  it(`for ${MAX_EARLY_SIGNAL_SESSIONS} sessions at most, the oldest dropped first; ${MAX_EARLY_SIGNALS} signals a session at most`, async () => {
    const ids = Array.from({ length: MAX_EARLY_SIGNAL_SESSIONS + 1 }, (_, i) => `early-many-${i}`);
    for (const sessionId of ids) socket.emit('session:signal', { sessionId, signal: { type: 'offer', sdp: await offer() } });
    expect(await agent.waitForLog({ msg: 'signals for a session that never came dropped' })).toMatchObject({ session: ids[0] });
    // The newest kept its offer.
    const last = ids.at(-1) as string;
    const answer = answered(last);
    socket.emit('session:incoming', incoming(last));
    expect(await answer).toMatch(/^v=0/);
    // One session's signals past the cap are dropped, not kept.
    const flood = 'early-flood-1';
    for (let i = 0; i <= MAX_EARLY_SIGNALS; i++)
      socket.emit('session:signal', {
        sessionId: flood,
        signal: { type: 'candidate', candidate: `candidate:${i} 1 UDP 1 127.0.0.1 ${9000 + i} typ host`, mid: '0' },
      });
    expect(await agent.waitForLog({ msg: `more than ${MAX_EARLY_SIGNALS} signals before their session; dropped` })).toMatchObject({
      session: flood,
      type: 'candidate',
    });
  });
});
