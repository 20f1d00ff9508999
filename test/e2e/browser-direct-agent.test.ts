/**
 * The agent's side of a browser page's direct path, which runs on DTLS alone
 * (no Noise: the page comes from the server, so Noise could not guard it from
 * the server). Driven from Node with the same WebRTC engine the gateway
 * uses, speaking signaling as a page does, so each rule is checked where it
 * is enforced:
 *  - only a visitor that signs in as a browser may skip Noise, and only on an
 *    HTTP share: anyone else's stream channel is closed unused;
 *  - such a visitor proves a private share's secret on every request, in the
 *    Beam-Secret header, which never reaches the origin.
 */
import { io as connectSocket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION, STREAM_CHANNEL_LABEL } from '../../shared/constants.js';
import { StreamProtocol } from '../../shared/frames.js';
import { decodeResponseHead, encodeHead, type ResponseHead, readHead } from '../../shared/http-head.js';
import { Mux } from '../../shared/mux.js';
import { type Ack, decode, type SessionOpened, SessionSignalSchema } from '../../shared/signaling.js';
import { loadEngine } from '../../transport/index.js';
import type { VisitorSocket } from '../../transport/session.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
const agents: BeamProcess[] = [];

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
});
afterAll(async () => {
  for (const a of agents) await a.kill();
  await server?.proc.kill();
  await origin?.close();
});

async function share(args: string[]): Promise<{ name: string; secret: string | null }> {
  const agent = new BeamProcess([...args, '--server', server.url, '--json', '--no-inspect']);
  agents.push(agent);
  const ready = await agent.waitFor('ready');
  return { name: ready['name'] as string, secret: new URL(ready['url'] as string).searchParams.get('beam_secret') };
}

/**
 * Opens a session as a page does and only the stream channel, with no Noise
 * channel before it. Resolves 'closed' when the agent closes that channel
 * unused, or with the open channel's mux.
 */
async function dtlsOnly(shareName: string, client: 'browser' | undefined): Promise<{ outcome: 'closed' } | { outcome: 'open'; mux: Mux; close(): void }> {
  const socket: VisitorSocket = connectSocket(server.url, {
    path: SIGNALING_PATH,
    transports: ['websocket'],
    auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor', ...(client ? { client } : {}) },
    reconnection: false,
  });
  const opened = await new Promise<SessionOpened>((resolve, reject) => {
    socket.emit('session:open', { share: shareName }, (res: Ack<SessionOpened>) => (res.ok ? resolve(res.value) : reject(new Error(res.error.code))));
  });
  const engine = await loadEngine('node-datachannel');
  const peer = engine.createPeer({ iceServers: opened.iceServers });
  peer.onSignal((signal) => socket.emit('session:signal', { sessionId: opened.sessionId, signal }));
  socket.on('session:signal', (raw) => {
    const msg = decode(SessionSignalSchema, raw, 'session:signal');
    if (msg.sessionId === opened.sessionId && msg.signal.type !== 'relay') void peer.signal(msg.signal).catch(() => {});
  });
  const channel = peer.createDataChannel(STREAM_CHANNEL_LABEL);
  const close = (): void => {
    peer.close();
    socket.close();
  };
  await new Promise<void>((resolve) => channel.onOpen(resolve));
  // The agent decides as the channel reaches it: closed at once, or kept. A PING answered means kept.
  const mux = new Mux(channel, { role: 'initiator' });
  const outcome = await new Promise<'closed' | 'open'>((resolve) => {
    mux.once('close', () => resolve('closed'));
    mux.once('rtt', () => resolve('open'));
  });
  if (outcome === 'closed') {
    close();
    return { outcome };
  }
  return { outcome, mux, close };
}

async function get(mux: Mux, target: string, headers: Array<[string, string]> = []): Promise<{ head: ResponseHead; body: Buffer }> {
  const stream = mux.openStream(StreamProtocol.HTTP);
  stream.end(encodeHead({ method: 'GET', target, headers: [['Host', 'share'], ...headers], upgrade: false, body: false }));
  const head = decodeResponseHead(await readHead(stream));
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { head, body: Buffer.concat(chunks) };
}

describe("a browser page's direct path (DTLS alone, no Noise)", () => {
  it('serves a browser visitor of an HTTP share', async () => {
    const { name } = await share(['http', `127.0.0.1:${origin.port}`]);
    const v = await dtlsOnly(name, 'browser');
    try {
      expect(v.outcome).toBe('open');
      if (v.outcome !== 'open') return;
      const res = await get(v.mux, '/inside');
      expect(res.head.kind === 'response' && res.head.status).toBe(200);
      expect(res.body.toString()).toBe('hello from /inside');
    } finally {
      if (v.outcome === 'open') v.close();
    }
  });

  it('closes the channel of a visitor that skips Noise without being a browser', async () => {
    const { name } = await share(['http', `127.0.0.1:${origin.port}`]);
    expect((await dtlsOnly(name, undefined)).outcome).toBe('closed');
  });

  it('closes the channel of a browser visitor to a TCP share: TCP streams have no requests to prove a secret in', async () => {
    const { name } = await share(['tcp', String(origin.port)]);
    expect((await dtlsOnly(name, 'browser')).outcome).toBe('closed');
  });

  it('on a private share, wants the secret on every request: 401 BEAM_ERR_PRIVATE without it or with a wrong one; the origin never sees it', async () => {
    const { name, secret } = await share(['http', `127.0.0.1:${origin.port}`, '--private']);
    expect(secret).toBeTruthy();
    const v = await dtlsOnly(name, 'browser');
    try {
      expect(v.outcome).toBe('open');
      if (v.outcome !== 'open') return;
      const before = origin.hits.get('/headers') ?? 0;
      for (const headers of [[], [['Beam-Secret', `${secret}x`]]] as Array<Array<[string, string]>>) {
        const refused = await get(v.mux, '/headers', headers);
        expect(refused.head).toMatchObject({ kind: 'error', code: 'BEAM_ERR_PRIVATE' });
      }
      expect(origin.hits.get('/headers') ?? 0).toBe(before);
      const ok = await get(v.mux, '/headers', [['Beam-Secret', secret as string]]);
      expect(ok.head.kind === 'response' && ok.head.status).toBe(200);
      const seen = JSON.parse(ok.body.toString()) as { headers: Record<string, string> };
      expect(seen.headers['beam-secret']).toBeUndefined();
      expect(origin.hits.get('/headers') ?? 0).toBe(before + 1);
    } finally {
      if (v.outcome === 'open') v.close();
    }
  });
});
