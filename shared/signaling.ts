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
 * never sees application traffic. Every event is decoded by one function
 * below on receipt; a malformed one is answered with BEAM_ERR_BAD_MESSAGE and
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
import { z } from 'zod';
import { MAX_CANDIDATE_BYTES, MAX_NAME_LENGTH, MAX_SDP_BYTES, SIGNALING_PROTOCOL_VERSION } from './constants.js';
import { BeamError, ERROR_CODES, type ErrorCode } from './errors.js';

export const SHARE_KINDS = ['http', 'tcp', 'udp'] as const;
/** What a share carries: HTTP exchanges, raw TCP connections, or UDP datagrams. */
export type ShareKind = (typeof SHARE_KINDS)[number];

export const RELAY_MODES = ['auto', 'never', 'always'] as const;
export type RelayMode = (typeof RELAY_MODES)[number];

/** A libp2p peer ID in its string forms (base58btc multihash, or a base32 CID). */
export const PeerIdStringSchema = z.string().regex(/^(?:[1-9A-HJ-NP-Za-km-z]{40,64}|b[a-z2-7]{50,70})$/);

export const HandshakeSchema = z.object({
  protocol: z.literal(SIGNALING_PROTOCOL_VERSION),
  role: z.enum(['agent', 'visitor']),
  gatewayToken: z.string().max(128).optional(),
  peerId: PeerIdStringSchema.optional(),
  relay: z.enum(RELAY_MODES).optional(),
  kind: z.enum(SHARE_KINDS).optional(),
  private: z.boolean().optional(),
  /** A visitor running in a browser page (browser-client/), for the agent's and the server's counts. */
  client: z.enum(['browser']).optional(),
  /** An agent's token, for a server with --token-file. */
  token: z.string().min(1).max(256).optional(),
});
export type Handshake = z.infer<typeof HandshakeSchema>;

const sessionId = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/);
const relayToken = z.string().regex(/^[A-Za-z0-9_-]{16,128}$/);
const shareName = z.string().min(1).max(MAX_NAME_LENGTH);

export const SignalSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('offer'),
    sdp: z.string().min(1).max(MAX_SDP_BYTES),
    /**
     * false: a first attempt that leaves TURN out on both sides (the agent
     * answers without it too), so the pair that forms is direct; TURN comes
     * with the next attempt. Absent means true.
     */
    turn: z.boolean().optional(),
  }),
  z.object({ type: z.literal('answer'), sdp: z.string().min(1).max(MAX_SDP_BYTES) }),
  z.object({
    type: z.literal('candidate'),
    candidate: z.string().max(MAX_CANDIDATE_BYTES),
    mid: z.string().max(64),
  }),
  z.object({ type: z.literal('relay') }),
]);
export type Signal = z.infer<typeof SignalSchema>;
/** The signals a WebRTC peer connection produces and consumes. */
export type PeerSignal = Exclude<Signal, { type: 'relay' }>;

export const RegisterRequestSchema = z.object({
  name: shareName.optional(),
  resumeToken: z.string().regex(/^[A-Za-z0-9_-]{16,128}$/).optional(),
});
export type RegisterRequest = z.infer<typeof RegisterRequestSchema>;

export const OpenSessionRequestSchema = z.object({ share: shareName });
export type OpenSessionRequest = z.infer<typeof OpenSessionRequestSchema>;

export const SessionSignalSchema = z.object({ sessionId, signal: SignalSchema });
export type SessionSignal = z.infer<typeof SessionSignalSchema>;

export const SessionRefSchema = z.object({ sessionId });
export type SessionRef = z.infer<typeof SessionRefSchema>;

/** `session:close`: optionally why, passed on to the other party (an agent refusing a visitor over --max-visitors). */
export const SessionCloseSchema = z.object({ sessionId, code: z.enum(ERROR_CODES as [ErrorCode, ...ErrorCode[]]).optional() });
export type SessionClose = z.infer<typeof SessionCloseSchema>;

export const IceServerSchema = z.object({
  urls: z.string().max(512),
  username: z.string().max(256).optional(),
  credential: z.string().max(256).optional(),
});
export type IceServer = z.infer<typeof IceServerSchema>;

export type VisitorKind = 'gateway' | 'browser' | 'cli';

export const IncomingSessionSchema = z.object({
  sessionId,
  share: shareName,
  /** `address`: where the server saw a (non-gateway) visitor connect from, for the agent's IP rules on relayed paths. */
  visitor: z.object({ kind: z.enum(['gateway', 'browser', 'cli']), address: z.string().max(64).optional() }),
  iceServers: z.array(IceServerSchema).max(16),
  relayToken,
  /** The node whose relay this session uses (several nodes: see transport/relay.ts relayServerFor). */
  relayUrl: z.string().max(512).optional(),
});
export type IncomingSession = z.infer<typeof IncomingSessionSchema>;

export const SessionClosedSchema = z.object({ sessionId, code: z.string().max(64) });
export type SessionClosed = z.infer<typeof SessionClosedSchema>;

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

/** Decodes `value` with `schema`, or throws BEAM_ERR_BAD_MESSAGE naming the first problem. */
export function decode<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? ` at ${issue.path.join('.')}` : '';
    throw new BeamError('BEAM_ERR_BAD_MESSAGE', `${what}${where}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

export function wireError(err: unknown): WireError {
  if (err instanceof BeamError) return { code: err.code, message: err.message, ...(err.detail ? { detail: err.detail } : {}) };
  return { code: 'BEAM_ERR_BAD_MESSAGE', message: 'internal error' };
}
