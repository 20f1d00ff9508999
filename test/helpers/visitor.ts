/**
 * A visitor that reaches an agent peer to peer, without the gateway: signaling
 * as a plain visitor, a WebRTC connection, and the stream protocol. Built from
 * the project's own modules, as `beam connect` will be.
 */
import { io as connectSocket } from 'socket.io-client';
import { SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION, STREAM_CHANNEL_LABEL } from '../../shared/constants.js';
import { Mux } from '../../shared/mux.js';
import type { Ack, SessionOpened, SessionSignal } from '../../shared/signaling.js';
import { loadEngine } from '../../transport/index.js';

export interface DirectVisitor {
  mux: Mux;
  close(): void;
}

export async function directVisitor(serverUrl: string, share: string): Promise<DirectVisitor> {
  const socket = connectSocket(serverUrl, {
    path: SIGNALING_PATH,
    transports: ['websocket'],
    auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor' },
    reconnection: false,
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const opened = await new Promise<Ack<SessionOpened>>((resolve) => socket.emit('session:open', { share }, resolve));
  if (!opened.ok) throw new Error(opened.error.code);
  const sessionId = opened.value.sessionId;
  const peer = (await loadEngine('node-datachannel')).createPeer({ iceServers: opened.value.iceServers });
  peer.onSignal((signal) => socket.emit('session:signal', { sessionId, signal }));
  const failed = new Promise<never>((_, reject) => {
    socket.on('session:signal', (msg: SessionSignal) => {
      if (msg.sessionId === sessionId) peer.signal(msg.signal).catch((err: Error) => reject(new Error(`signal ${msg.signal.type}: ${err.message}`)));
    });
    socket.on('session:closed', (msg: { code: string }) => reject(new Error(`session closed: ${msg.code}`)));
  });
  const channel = peer.createDataChannel(STREAM_CHANNEL_LABEL);
  await Promise.race([new Promise<void>((resolve) => channel.onOpen(resolve)), failed]);
  failed.catch(() => {});
  const mux = new Mux(channel, { role: 'initiator' });
  return {
    mux,
    close() {
      mux.close();
      peer.close();
      socket.close();
    },
  };
}
