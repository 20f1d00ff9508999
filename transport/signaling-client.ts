/**
 * The one way a client connects to signaling: socket.io over WebSocket only,
 * on SIGNALING_PATH, with a handshake (shared/signaling.ts) and a reconnect
 * policy by role, its timings in shared/constants.ts.
 *
 *   agent    reconnects with backoff and jitter (many agents, one server)
 *   gateway  reconnects quickly (the server's own, on the same host)
 *   none     doesn't: its owner starts over (a browser page, `beam connect`'s tests)
 */
import { io, type Socket } from 'socket.io-client';
import {
  AGENT_RECONNECT_DELAY_MAX_MS,
  AGENT_RECONNECT_DELAY_MS,
  AGENT_RECONNECT_JITTER,
  GATEWAY_RECONNECT_DELAY_MAX_MS,
  GATEWAY_RECONNECT_DELAY_MS,
  SIGNALING_PATH,
} from '../shared/constants.js';
import type { ClientToServerEvents, Handshake, ServerToClientEvents } from '../shared/signaling.js';

export type SignalingSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type Reconnect = 'agent' | 'gateway' | 'none';

const RECONNECT = {
  agent: { reconnectionDelay: AGENT_RECONNECT_DELAY_MS, reconnectionDelayMax: AGENT_RECONNECT_DELAY_MAX_MS, randomizationFactor: AGENT_RECONNECT_JITTER },
  gateway: { reconnectionDelay: GATEWAY_RECONNECT_DELAY_MS, reconnectionDelayMax: GATEWAY_RECONNECT_DELAY_MAX_MS },
  none: { reconnection: false },
} as const;

/** Connects (in the background: listen for 'connect') to the signaling server at `url`. */
export function connectSignaling(url: string, auth: Handshake, reconnect: Reconnect): SignalingSocket {
  return io(url, { path: SIGNALING_PATH, transports: ['websocket'], auth, ...RECONNECT[reconnect] });
}
