/**
 * A visitor that reaches an agent without the gateway: signaling as a plain
 * (cli) visitor and a VisitorSession, the same module the gateway and
 * `beam connect` use, so every path (direct, relay) can be driven from a test.
 */

import type { PeerId } from '@libp2p/interface';
import pino from 'pino';
import { io as connectSocket } from 'socket.io-client';
import { SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION } from '../../shared/constants.js';
import { decode, type RelayMode, SessionClosedSchema, SessionSignalSchema } from '../../shared/signaling.js';
import { ephemeralIdentity } from '../../transport/identity.js';
import { loadEngine } from '../../transport/index.js';
import { type PathInfo, VisitorSession, type VisitorSocket } from '../../transport/session.js';

export interface DirectVisitor {
  session: VisitorSession;
  /** Every 'path' event, in order. */
  paths: PathInfo[];
  close(): void;
}

export async function directVisitor(
  serverUrl: string,
  share: string,
  options: { relay?: RelayMode; expectPeer?: PeerId; directTimeoutMs?: number } = {},
): Promise<DirectVisitor> {
  const socket: VisitorSocket = connectSocket(serverUrl, {
    path: SIGNALING_PATH,
    transports: ['websocket'],
    auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor' },
    reconnection: false,
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const session = new VisitorSession(
    { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }), socket, identity: await ephemeralIdentity() },
    { share, server: serverUrl, relay: options.relay ?? 'auto', expectPeer: options.expectPeer, directTimeoutMs: options.directTimeoutMs },
  );
  const paths: PathInfo[] = [];
  session.on('path', (p) => paths.push(p));
  socket.on('session:signal', (raw) => {
    const msg = decode(SessionSignalSchema, raw, 'session:signal');
    if (msg.sessionId === session.sessionId) session.signal(msg.signal);
  });
  socket.on('session:closed', (raw) => {
    const msg = decode(SessionClosedSchema, raw, 'session:closed');
    if (msg.sessionId === session.sessionId) session.close();
  });
  try {
    await session.ready;
  } catch (err) {
    socket.close();
    throw err;
  }
  return {
    session,
    paths,
    close() {
      session.close();
      socket.close();
    },
  };
}
