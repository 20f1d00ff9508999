/**
 * Signaling protocol, version 1 (socket.io, WebSocket transport only).
 *
 * Protocol flow
 *   agent   -> server  share:register {name?, resumeToken?}         ack {name, url, resumeToken}
 *   visitor -> server  session:open {share}        ack {sessionId, iceServers, agentPeerId, agentRelay, relayToken}
 *   server  -> agent   session:incoming {sessionId, visitor, iceServers, relayToken}
 *   visitor -> server  session:signal {sessionId, signal: offer}     forwarded to the agent
 *   agent   -> server  session:signal {sessionId, signal: answer}    forwarded to the visitor
 *   both    -> server  session:signal {sessionId, signal: candidate} forwarded to the other party
 *   visitor -> server  session:signal {sessionId, signal: relay}     forwarded to the agent: "meet me
 *                      at the relay" (RELAY_PATH, each side with its one-time relayToken)
 *   either  -> server  session:close {sessionId, code?}
 *   server  -> both    session:closed {sessionId, code}  when a party leaves or closes
 *   agent   -> server  share:close {}                             ack {released}: its names are
 *                      freed at once (a dropped connection keeps them for the resume grace)
 *
 * The server forwards signals only between the two parties of a session and
 * never sees application traffic. Every event is decoded by one schema on
 * receipt (below, or in signaling-requests.ts for what only the server and
 * agents decode); a malformed one is answered with BEAM_ERR_BAD_MESSAGE and
 * the connection keeps working.
 *
 * Handshake auth: {protocol: SIGNALING_PROTOCOL_VERSION, role: 'agent' | 'visitor',
 * gatewayToken?: string, peerId?: string, relay?: RelayMode, kind?: ShareKind, token?: string, client?: 'browser'}.
 * A server with --token-file takes agents with one of its tokens only. A visitor with the gateway
 * token is the server's own gateway. An agent names its libp2p peer ID, which visitors
 * check in the Noise handshake (a `beam connect` link carries its own copy), and its
 * relay policy.
 *
 * A new offer within a session replaces the direct peer connection (a retry).
 */
import * as v from 'valibot';
import { MAX_CANDIDATE_BYTES, MAX_SDP_BYTES } from './constants.js';
import { BeamError, type ErrorCode } from './errors.js';

export { decode } from './decode.js';
// What only the server and agents decode lives apart, so a browser page's bundle leaves it out.
export type {
  Handshake,
  IceServer,
  IncomingSession,
  OpenSessionRequest,
  RegisterRequest,
  SessionClose,
  SessionRef,
} from './signaling-requests.js';

import type { IceServer, IncomingSession, OpenSessionRequest, RegisterRequest, SessionClose } from './signaling-requests.js';

export { RELAY_MODES, type RelayMode, SHARE_KINDS, type ShareKind } from './signaling-fields.js';

import { type RelayMode, type ShareKind, sessionId, text } from './signaling-fields.js';

export const SignalSchema = v.variant('type', [
  v.object({
    type: v.literal('offer'),
    sdp: text(MAX_SDP_BYTES, 1),
    /**
     * false: a first attempt that leaves TURN out on both sides (the agent
     * answers without it too), so the pair that forms is direct; TURN comes
     * with the next attempt. Absent means true.
     */
    turn: v.optional(v.boolean()),
  }),
  v.object({ type: v.literal('answer'), sdp: text(MAX_SDP_BYTES, 1) }),
  v.object({
    type: v.literal('candidate'),
    candidate: text(MAX_CANDIDATE_BYTES),
    mid: text(64),
  }),
  v.object({ type: v.literal('relay') }),
]);
export type Signal = v.InferOutput<typeof SignalSchema>;
/** The signals a WebRTC peer connection produces and consumes. */
export type PeerSignal = Exclude<Signal, { type: 'relay' }>;

export const SessionSignalSchema = v.object({ sessionId, signal: SignalSchema });
export type SessionSignal = v.InferOutput<typeof SessionSignalSchema>;

export type VisitorKind = 'gateway' | 'browser' | 'cli';

export const SessionClosedSchema = v.object({ sessionId, code: text(64) });
export type SessionClosed = v.InferOutput<typeof SessionClosedSchema>;

export interface WireError {
  code: ErrorCode;
  message: string;
  /** What only this occurrence knows (a name, a limit). */
  detail?: string;
}
export type Ack<T> = { ok: true; value: T } | { ok: false; error: WireError };

export interface Registered {
  name: string;
  url: string;
  resumeToken: string;
  resumed: boolean;
  /** The server's gateway is opening its link to this share (a warm link): the agent announces the share once it is up. */
  gatewayLink?: boolean;
}
export interface SessionOpened {
  sessionId: string;
  iceServers: IceServer[];
  /** The agent's peer ID as it told the server; `beam connect` trusts its link's copy instead. */
  agentPeerId: string;
  /** The agent's relay policy. */
  agentRelay: RelayMode;
  /** What the share carries. */
  kind: ShareKind;
  /** The share is private: visitors prove its secret (the agent checks; this only lets them fail early). */
  private: boolean;
  /** This visitor's one-time token for the relay. */
  relayToken: string;
  /** The node whose relay this session uses, when the server runs as several nodes. */
  relayUrl?: string;
  /** The HTTP head codec the agent speaks (HTTP_HEAD_VERSION); absent is 1. */
  agentHttp?: number;
  /** A pooled share (`--pool`): how many agents serve it now. Absent for a share of one agent. */
  pool?: number;
  /**
   * Only to the server's own gateway, for an agent that offered it
   * (Handshake.plainGatewayLink), when the session's relay is on a private
   * link too: the relay path runs the stream protocol with no Noise inside.
   * The gateway terminates its visitors' HTTP, so Noise there hid nothing
   * from the server, and TLS (or loopback) already hides it from everyone
   * else; the agent checks the same before it agrees.
   */
  plainLink?: boolean;
}

/**
 * A link to `url` is private: TLS (https, wss), or a loopback address, where
 * nobody on the way can read it. The gateway's relay link runs without Noise
 * only over such links (SessionOpened.plainLink).
 */
export function isPrivateLink(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol === 'https:' || parsed.protocol === 'wss:') return true;
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'ws:') return false;
  const host = parsed.hostname;
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Events the server receives. */
export interface ClientToServerEvents {
  'share:register': (req: RegisterRequest, ack: (res: Ack<Registered>) => void) => void;
  /** The agent is leaving on purpose: its names are freed at once, with no resume grace. Acked once done. */
  'share:close': (req: Record<string, never>, ack: (res: Ack<{ released: string[] }>) => void) => void;
  'session:open': (req: OpenSessionRequest, ack: (res: Ack<SessionOpened>) => void) => void;
  'session:signal': (msg: SessionSignal) => void;
  'session:close': (msg: SessionClose) => void;
}

/** Events the server sends. */
export interface ServerToClientEvents {
  'session:incoming': (msg: IncomingSession) => void;
  'session:signal': (msg: SessionSignal) => void;
  'session:closed': (msg: SessionClosed) => void;
  /** A message from this client was dropped; `code` says why. */
  'protocol:error': (err: WireError) => void;
}

/** An error as it crosses the wire: a BeamError as it is; anything else is a bug of ours (BEAM_ERR_INTERNAL), not a bad message. */
export function wireError(err: unknown): WireError {
  if (err instanceof BeamError) return { code: err.code, message: err.message, ...(err.detail ? { detail: err.detail } : {}) };
  const internal = new BeamError('BEAM_ERR_INTERNAL');
  return { code: internal.code, message: internal.message };
}
