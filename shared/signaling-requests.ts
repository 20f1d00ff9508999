/**
 * The signaling messages only the server and agents decode (shared/signaling.ts
 * has the protocol and what every client decodes): the handshake, the
 * requests clients send the server, and the sessions the server hands an
 * agent. Apart so that a browser page's bundle leaves them out: valibot's
 * schema builders run at load, so a bundler keeps every schema of a module
 * it includes.
 */
import * as v from 'valibot';
import { MAX_NAME_LENGTH, SIGNALING_PROTOCOL_VERSION } from './constants.js';
import { ERROR_CODES, type ErrorCode } from './errors.js';
import { RELAY_MODES, SHARE_KINDS, sessionId, text } from './signaling-fields.js';

const relayToken = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,128}$/));
const shareName = text(MAX_NAME_LENGTH, 1);

/** A libp2p peer ID in its string forms (base58btc multihash, or a base32 CID). */
export const PeerIdStringSchema = v.pipe(v.string(), v.regex(/^(?:[1-9A-HJ-NP-Za-km-z]{40,64}|b[a-z2-7]{50,70})$/));

export const HandshakeSchema = v.object({
  protocol: v.literal(SIGNALING_PROTOCOL_VERSION),
  role: v.picklist(['agent', 'visitor']),
  gatewayToken: v.optional(text(128)),
  peerId: v.optional(PeerIdStringSchema),
  relay: v.optional(v.picklist(RELAY_MODES)),
  kind: v.optional(v.picklist(SHARE_KINDS)),
  private: v.optional(v.boolean()),
  /** A visitor running in a browser page (browser-client/), for the agent's and the server's counts. */
  client: v.optional(v.picklist(['browser'])),
  /** An agent's token, for a server with --token-file. */
  token: v.optional(text(256, 1)),
  /** The HTTP head codec an agent speaks (HTTP_HEAD_VERSION); absent is 1. */
  http: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(255))),
  /** The agent's visitors sign in (--oidc): its browser page falls back to the gateway for the whole tab, not the frame, when peer to peer fails. */
  signIn: v.optional(v.boolean()),
  /**
   * The agent joins a pool (`--pool`): agents that register one name with
   * this flag (and, on a server with --token-file, one token) share it, and
   * visitors' sessions are spread across them.
   */
  pool: v.optional(v.boolean()),
  /**
   * The agent's connection to this server is private (https, or a loopback
   * address: see isPrivateLink): the server's own gateway may run its relay
   * link to the agent without Noise (SessionOpened.plainLink).
   */
  plainGatewayLink: v.optional(v.boolean()),
});
export type Handshake = v.InferOutput<typeof HandshakeSchema>;

export const RegisterRequestSchema = v.object({
  name: v.optional(shareName),
  resumeToken: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{16,128}$/))),
  /**
   * The token was kept on disk by an earlier process (app/names.ts): take the
   * name back only while the server holds it for a dropped agent, never from
   * a live one (two processes from one config directory).
   */
  heldOnly: v.optional(v.boolean()),
});
export type RegisterRequest = v.InferOutput<typeof RegisterRequestSchema>;

export const OpenSessionRequestSchema = v.object({
  share: shareName,
  /**
   * A pooled share: a member this visitor has no session with yet, or
   * BEAM_ERR_POOL_COVERED when it has one with each (how a gateway finds new
   * members).
   */
  spread: v.optional(v.boolean()),
  /**
   * The visitor goes to the relay at once, beside direct (relay first): the
   * agent hears so with the session and goes there too, without waiting for
   * the visitor's `relay` signal, one trip through the server sooner.
   */
  relayFirst: v.optional(v.boolean()),
  /**
   * New streams take the relay, and direct stands by (the server's own
   * gateway: shared/paths.ts RELAY_PREFERRED_ORDER): the agent ranks its
   * paths alike, so what it reports is the path the visitor's streams take.
   */
  relayPreferred: v.optional(v.boolean()),
});
export type OpenSessionRequest = v.InferOutput<typeof OpenSessionRequestSchema>;

export const SessionRefSchema = v.object({ sessionId });
export type SessionRef = v.InferOutput<typeof SessionRefSchema>;

/** `session:close`: optionally why, passed on to the other party (an agent refusing a visitor over --max-visitors). */
export const SessionCloseSchema = v.object({ sessionId, code: v.optional(v.picklist(ERROR_CODES as readonly ErrorCode[])) });
export type SessionClose = v.InferOutput<typeof SessionCloseSchema>;

export const IceServerSchema = v.object({
  urls: text(512),
  username: v.optional(text(256)),
  credential: v.optional(text(256)),
});
export type IceServer = v.InferOutput<typeof IceServerSchema>;

export const IncomingSessionSchema = v.object({
  sessionId,
  share: shareName,
  /** `address`: where the server saw a (non-gateway) visitor connect from, for the agent's IP rules on relayed paths. */
  visitor: v.object({ kind: v.picklist(['gateway', 'browser', 'cli']), address: v.optional(text(64)) }),
  iceServers: v.pipe(v.array(IceServerSchema), v.maxLength(16)),
  relayToken,
  /** The node whose relay this session uses (several nodes: see transport/relay.ts relayServerFor). */
  relayUrl: v.optional(text(512)),
  /** The visitor meets the agent at the relay at once (OpenSessionRequest.relayFirst). */
  relayFirst: v.optional(v.boolean()),
  /** The visitor's new streams take the relay, direct standing by (OpenSessionRequest.relayPreferred). */
  relayPreferred: v.optional(v.boolean()),
  /** The server's own gateway runs this session's relay link without Noise (SessionOpened.plainLink). */
  plainLink: v.optional(v.boolean()),
});
export type IncomingSession = v.InferOutput<typeof IncomingSessionSchema>;
