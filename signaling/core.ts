/**
 * The signaling core: pairs agents with visitors and forwards offers,
 * answers and candidates between the two parties of a session, nothing
 * else. It owns no socket, as derp's server core owns none: connections are
 * ids, and what goes out goes through a `SignalingWire` (the socket.io
 * adapter, signaling/server.ts). Each request method returns its answer or
 * throws a BeamError the adapter puts on the wire.
 *
 *   admit(handshake, address)   a connection's handshake: who it is, or why not
 *   register / closeShares      an agent's names
 *   openSession                 a visitor asks for a share: both sides hear of the session
 *   signal / closeSession       passed to the other side of a session, within budgets
 *   disconnected(conn, left)    a party went: on purpose (its sessions end) or dropped (the other side probes)
 */

import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import {
  ENDED_SESSIONS_KEPT,
  MAX_CONNECTIONS_PER_IP,
  MAX_POOL_TURNS_KEPT,
  MAX_SESSIONS_PER_SHARE,
  MAX_SESSIONS_PER_SHARE_PER_ADDRESS,
  MAX_SESSIONS_PER_VISITOR,
  MAX_SHARES_PER_CONNECTION,
  REGISTRATIONS_PER_IP_PER_MINUTE,
  SESSION_OFFER_TIMEOUT_MS,
  SESSIONS_PER_IP_PER_MINUTE,
  SIGNALS_PER_AGENT_PER_SECOND,
  SIGNALS_PER_SHARE_PER_SECOND,
  SIGNALS_PER_VISITOR_PER_SECOND,
} from '../shared/constants.js';
import { BeamError, type ErrorCode } from '../shared/errors.js';
import { RateLimiterMemory } from '../shared/limiter.js';
import {
  decode,
  type IceServer,
  type IncomingSession,
  isPrivateLink,
  type Registered,
  type RelayMode,
  type ServerToClientEvents,
  type SessionOpened,
  SessionSignalSchema,
  type ShareKind,
  type VisitorKind,
  wireError,
} from '../shared/signaling.js';
import { HandshakeSchema, OpenSessionRequestSchema, RegisterRequestSchema, SessionCloseSchema } from '../shared/signaling-requests.js';
import { type AgentInfo, type Member, MemoryShareRegistry, type ShareRegistry } from './registry.js';
import type { AgentTokens } from './tokens.js';

/** A session as the server keeps it (and, with --redis, as nodes pass it to each other). */
export interface Session {
  id: string;
  share: string;
  /** The agent's connection id. */
  agent: string;
  /** The visitor's connection id. */
  visitor: string;
  kind: VisitorKind;
  /** The visitor's address (not kept for the server's own gateway, which carries everyone). */
  address?: string | undefined;
  /** One-time relay tokens; a redeemed one is deleted. */
  relayTokens: Partial<Record<'visitor' | 'agent', string>>;
}

/** Who a connection is, as its handshake said. */
export interface ConnectionData {
  role: 'agent' | 'visitor';
  kind: VisitorKind | undefined;
  peerId: string | undefined;
  relay: RelayMode;
  /** What an agent's shares carry. */
  shareKind: ShareKind;
  private: boolean;
  /** An agent's HTTP head codec version. */
  http: number | undefined;
  /** An agent whose visitors sign in. */
  signIn: boolean;
  /** An agent that joins a pool (--pool). */
  pool: boolean;
  /** An agent whose link to this server is private: the gateway's relay link to it may run without Noise. */
  plainGatewayLink: boolean;
  /** The client's address (the proxy's view of it with trustProxy). */
  address: string;
  /** With --token-file: the id of the agent's token. */
  tokenId: string | undefined;
  /** The Host the client reached the server by, for the server's own STUN. */
  host: string | undefined;
}

/** What the core sends, and to whom: the adapter's side. */
export interface SignalingWire {
  /** Sends an event to a connection, on this node or (in a cluster) another. */
  emit<E extends keyof ServerToClientEvents>(to: string, event: E, ...args: Parameters<ServerToClientEvents[E]>): void;
  /** The connection is on this node. */
  isHere(conn: string): boolean;
  /** Tells the other nodes (--redis). */
  toNodes(message: { type: 'session'; session: Session; incoming: IncomingSession } | { type: 'session-end'; sessionId: string }): void;
  /** The agents connected to this node. */
  agentsHere(): string[];
  /** Closes a connection from the server's side. */
  disconnect(conn: string): void;
}

export interface SignalingComponents {
  logger: Logger;
  /** Where names live. Default: in memory. */
  registry?: ShareRegistry;
}

export interface SignalingOptions {
  /** Builds the public URL of a share from its name. */
  shareUrl: (name: string) => string;
  /** STUN/TURN servers handed to both parties of each session (TURN credentials are made per session). Default none. */
  iceServers?: () => IceServer[];
  /** Visitors that present this token are the server's own gateway. */
  gatewayToken?: string;
  /** Called when a session ends, so the relay can drop its sockets. */
  onSessionEnd?: (sessionId: string) => void;
  /**
   * Called as a share registers, so the gateway can open its link to it (once
   * the agent has its answer): true when it will, which the answer says
   * (`gatewayLink`).
   */
  onShareRegistered?: (name: string, kind: ShareKind) => boolean;
  /** --token-file: agents must present one of these tokens; a token's reserved names are its own. */
  tokens?: AgentTokens | undefined;
  /** Per client address limits. Defaults: MAX_CONNECTIONS_PER_IP, REGISTRATIONS_PER_IP_PER_MINUTE, SESSIONS_PER_IP_PER_MINUTE. */
  limits?: Partial<AddressLimits> | undefined;
  /** The client's address as a reverse proxy in front saw it (the last X-Forwarded-For entry). Default false. */
  trustProxy?: boolean | undefined;
  /** One of several nodes sharing a registry and a socket.io adapter (--redis): agents may be connected elsewhere. */
  cluster?: boolean | undefined;
  /** This node's own URL (--node-url): both sides of a session it sets up meet at its relay. */
  nodeUrl?: string | undefined;
  /** The UDP port of the server's own STUN (gateway/stun.ts), handed to both sides; none while it is undefined. */
  stunPort?: (() => number | undefined) | undefined;
}

export interface AddressLimits {
  connections: number;
  registrationsPerMinute: number;
  sessionsPerMinute: number;
  /** Signals one visitor connection may send a second. Default SIGNALS_PER_VISITOR_PER_SECOND. */
  signalsPerSecond: number;
  /** Signals all visitors together may send one share a second (not an address limit: a share's). Default SIGNALS_PER_SHARE_PER_SECOND. */
  shareSignalsPerSecond: number;
}

export class SignalingCore {
  private readonly log: Logger;
  private readonly registry: ShareRegistry;
  private readonly options: SignalingOptions;
  private readonly wire: SignalingWire;
  private readonly sessions = new Map<string, Session>();
  /** Why the last ENDED_SESSIONS_KEPT sessions ended, with their unused relay tokens (see redeemRelayToken). */
  private readonly ended = new Map<string, { code: ErrorCode; tokens: Session['relayTokens'] }>();
  private readonly sessionsByConn = new Map<string, Set<string>>();
  /** Sessions with each share, the gateway's aside (it has one per share, and carries every web visitor). */
  private readonly sessionsByShare = new Map<string, number>();
  /** Sessions with each share from each address (`share|address`): MAX_SESSIONS_PER_SHARE_PER_ADDRESS. */
  private readonly sessionsByShareAddress = new Map<string, number>();
  /** Sessions whose visitor has not sent an offer or relay request yet, with the timer that ends them. */
  private readonly awaitingOffer = new Map<string, NodeJS.Timeout>();
  private readonly visitorSignals: RateLimiterMemory;
  private readonly agentSignals = new RateLimiterMemory({ points: SIGNALS_PER_AGENT_PER_SECOND, duration: 1 });
  private readonly shareSignals: RateLimiterMemory;
  /** When each connection was last told its signals were dropped. */
  private readonly warnedAt = new Map<string, number>();
  /** Agents told to move (drain): their sessions' peer connections carry on while requests in flight finish. */
  private readonly moving = new Set<string>();
  private readonly limits: AddressLimits;
  private readonly connectionsByAddress = new Map<string, number>();
  private readonly registrations: RateLimiterMemory;
  private readonly sessionOpens: RateLimiterMemory;
  /** Who each connection is. */
  private readonly connections = new Map<string, ConnectionData>();
  /** Each pool's turn counter: new sessions take turns among its members. */
  private readonly poolTurns = new Map<string, number>();

  constructor(components: SignalingComponents, options: SignalingOptions, wire: SignalingWire) {
    this.log = components.logger.child({ component: 'signaling' });
    this.registry = components.registry ?? new MemoryShareRegistry();
    this.options = options;
    this.wire = wire;
    this.limits = {
      connections: options.limits?.connections ?? MAX_CONNECTIONS_PER_IP,
      registrationsPerMinute: options.limits?.registrationsPerMinute ?? REGISTRATIONS_PER_IP_PER_MINUTE,
      sessionsPerMinute: options.limits?.sessionsPerMinute ?? SESSIONS_PER_IP_PER_MINUTE,
      signalsPerSecond: options.limits?.signalsPerSecond ?? SIGNALS_PER_VISITOR_PER_SECOND,
      shareSignalsPerSecond: options.limits?.shareSignalsPerSecond ?? SIGNALS_PER_SHARE_PER_SECOND,
    };
    this.visitorSignals = new RateLimiterMemory({ points: this.limits.signalsPerSecond, duration: 1 });
    this.shareSignals = new RateLimiterMemory({ points: this.limits.shareSignalsPerSecond, duration: 1 });
    this.registrations = new RateLimiterMemory({ points: this.limits.registrationsPerMinute, duration: 60 });
    this.sessionOpens = new RateLimiterMemory({ points: this.limits.sessionsPerMinute, duration: 60 });
  }

  /** The client's address: the connection's own, or with trustProxy the last X-Forwarded-For entry (what the proxy saw). */
  addressOf(socketAddress: string, forwardedFor: string | string[] | undefined): string {
    if (this.options.trustProxy) {
      const last = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : (forwardedFor ?? ''))
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .at(-1);
      if (last) return last;
    }
    return socketAddress;
  }

  /** Takes one point from a per-address budget, or throws BEAM_ERR_RATE_LIMITED. */
  private async spend(limiter: RateLimiterMemory, address: string, what: string, perMinute: number): Promise<void> {
    try {
      await limiter.consume(address);
    } catch (res) {
      const wait = Math.ceil(((res as { msBeforeNext?: number }).msBeforeNext ?? 60_000) / 1000);
      this.log.warn({ audit: 'limit.hit', code: 'BEAM_ERR_RATE_LIMITED', address, limit: what }, 'limit hit');
      throw new BeamError('BEAM_ERR_RATE_LIMITED', `${perMinute} ${what} a minute from one address; retry in ${wait} s`);
    }
  }

  /**
   * A connection's handshake: who it is, or a BeamError saying why not. An
   * admitted connection counts against its address until `disconnected`.
   * `conn` is its id from now on.
   */
  admit(conn: string, auth: unknown, address: string, host?: string): ConnectionData {
    const hs = decode(HandshakeSchema, auth, 'handshake');
    let kind: VisitorKind | undefined;
    if (hs.role === 'visitor') {
      if (hs.gatewayToken === undefined) kind = hs.client === 'browser' ? 'browser' : 'cli';
      else if (this.options.gatewayToken && safeEqual(hs.gatewayToken, this.options.gatewayToken)) kind = 'gateway';
      else throw new BeamError('BEAM_ERR_UNAUTHORIZED', 'bad gateway token');
    }
    if (hs.role === 'agent' && !hs.peerId) throw new BeamError('BEAM_ERR_PROTOCOL_VERSION', 'agents must name their peer ID; update Beam');
    let tokenId: string | undefined;
    if (hs.role === 'agent' && this.options.tokens) {
      tokenId = this.options.tokens.check(hs.token);
      if (tokenId === undefined) {
        throw new BeamError(
          'BEAM_ERR_UNAUTHORIZED',
          hs.token === undefined ? 'this server takes agents with a token only: pass --token (or BEAM_TOKEN)' : 'this agent token is not one the server knows',
        );
      }
    }
    // The server's own gateway carries every web visitor: it is not one client.
    if (kind !== 'gateway') {
      const open = this.connectionsByAddress.get(address) ?? 0;
      if (open >= this.limits.connections) throw new BeamError('BEAM_ERR_RATE_LIMITED', `${this.limits.connections} connections at once from one address`);
      this.connectionsByAddress.set(address, open + 1);
    }
    const data: ConnectionData = {
      role: hs.role,
      kind,
      peerId: hs.peerId,
      relay: hs.relay ?? 'auto',
      shareKind: hs.kind ?? 'http',
      private: hs.private ?? false,
      http: hs.http,
      signIn: hs.signIn === true,
      pool: hs.pool === true,
      plainGatewayLink: hs.plainGatewayLink === true,
      address,
      tokenId,
      host,
    };
    if (tokenId !== undefined) this.log.info({ audit: 'auth.accepted', token: tokenId, address }, 'agent token accepted');
    this.connections.set(conn, data);
    this.log.debug({ socket: conn, role: data.role }, 'connected');
    return data;
  }

  private data(conn: string): ConnectionData {
    const data = this.connections.get(conn);
    if (!data) throw new BeamError('BEAM_ERR_INTERNAL', 'a message from a connection the core does not know');
    return data;
  }

  /** An agent claims a name (or resumes one). */
  async register(conn: string, raw: unknown): Promise<Registered> {
    const data = this.data(conn);
    if (data.role !== 'agent') throw new BeamError('BEAM_ERR_UNAUTHORIZED', 'only agents register shares');
    const req = decode(RegisterRequestSchema, raw, 'share:register');
    if (this.registry.namesOf(conn).length >= MAX_SHARES_PER_CONNECTION) {
      throw new BeamError('BEAM_ERR_LIMIT_REACHED', `${MAX_SHARES_PER_CONNECTION} shares per connection`);
    }
    await this.spend(this.registrations, data.address, 'registrations', this.limits.registrationsPerMinute);
    const tokens = this.options.tokens;
    if (req.name !== undefined && tokens) {
      const owner = tokens.reservedBy(req.name);
      if (owner !== undefined && owner !== data.tokenId) throw new BeamError('BEAM_ERR_NAME_RESERVED', `"${req.name.toLowerCase()}"`);
    }
    const agentInfo: AgentInfo = {
      peerId: data.peerId ?? '',
      relay: data.relay,
      kind: data.shareKind,
      private: data.private,
      http: data.http,
      signIn: data.signIn,
      ...(data.pool ? { pool: true, tokenId: data.tokenId } : {}),
      ...(data.plainGatewayLink ? { plainGatewayLink: true } : {}),
    };
    let claim = await this.registry.claim(conn, req.name, req.resumeToken, agentInfo, req.heldOnly === true).catch(async (err: unknown) => {
      throw await this.explainTaken(err, req.name);
    });
    // A random name that happens to be reserved goes back, and another is drawn.
    for (let i = 0; req.name === undefined && tokens?.reservedBy(claim.name) !== undefined && i < 8; i++) {
      await this.registry.drop(conn, claim.name);
      claim = await this.registry.claim(conn, undefined, undefined, agentInfo);
    }
    this.log.info(
      { audit: 'share.registered', share: claim.name, resumed: claim.resumed, socket: conn, address: data.address, token: data.tokenId },
      'share registered',
    );
    const gatewayLink = this.options.onShareRegistered?.(claim.name, data.shareKind) === true;
    return {
      name: claim.name,
      url: this.options.shareUrl(claim.name),
      resumeToken: claim.resumeToken,
      resumed: claim.resumed,
      ...(gatewayLink ? { gatewayLink: true } : {}),
    };
  }

  /**
   * A name held for an agent that dropped (the resume grace) is taken for a
   * while only: say for whom, how long, and how to get it back.
   */
  private async explainTaken(err: unknown, name: string | undefined): Promise<unknown> {
    if (!(err instanceof BeamError) || err.code !== 'BEAM_ERR_NAME_TAKEN' || name === undefined) return err;
    const ms = await this.registry.heldFor(name).catch(() => undefined);
    if (ms === undefined) return err;
    return new BeamError(
      'BEAM_ERR_NAME_TAKEN',
      `"${name.toLowerCase()}" is held for the agent that had it, which lost its connection, for ${Math.ceil(ms / 1000)} s more. ` +
        'Beam started from the same config directory (BEAM_CONFIG_DIR) takes it back at once; else wait, or pick another --name',
    );
  }

  /** An agent gives its names up at once (no resume grace). */
  async closeShares(conn: string): Promise<{ released: string[] }> {
    const data = this.data(conn);
    if (data.role !== 'agent') throw new BeamError('BEAM_ERR_UNAUTHORIZED', 'only agents close shares');
    const released = this.registry.namesOf(conn);
    for (const name of released) await this.registry.drop(conn, name);
    this.log.info({ audit: 'share.closed', shares: released, socket: conn, address: data.address }, 'shares closed');
    return { released };
  }

  /** A visitor asks for a share: the session is set up, and the agent hears of it. */
  async openSession(conn: string, raw: unknown): Promise<SessionOpened> {
    const data = this.data(conn);
    if (data.role !== 'visitor') throw new BeamError('BEAM_ERR_UNAUTHORIZED', 'only visitors open sessions');
    const req = decode(OpenSessionRequestSchema, raw, 'session:open');
    if (data.kind !== 'gateway') await this.spend(this.sessionOpens, data.address, 'sessions', this.limits.sessionsPerMinute);
    const share = req.share.toLowerCase();
    // Alone, an agent is here or nowhere; in a cluster, the registry's word (kept alive by its node's heartbeat) stands.
    const members = (await this.registry.membersOf(share)).filter((m) => this.options.cluster || this.wire.isHere(m.owner));
    const member = this.pick(conn, share, members, req.spread === true);
    if (!member) {
      if (await this.registry.isHeld(share)) throw new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `"${share}" lost its connection and may come back`);
      throw new BeamError('BEAM_ERR_SHARE_NOT_FOUND', `"${share}"`);
    }
    const { owner: agent, agent: agentData } = member;
    const here = this.wire.isHere(agent);
    // Counted after the last await, right before the session is added: opens that race each other can't all pass.
    if ((this.sessionsByConn.get(conn)?.size ?? 0) >= MAX_SESSIONS_PER_VISITOR) {
      throw new BeamError('BEAM_ERR_LIMIT_REACHED', `${MAX_SESSIONS_PER_VISITOR} sessions per visitor`);
    }
    if (data.kind !== 'gateway') {
      if ((this.sessionsByShareAddress.get(`${share}|${data.address}`) ?? 0) >= MAX_SESSIONS_PER_SHARE_PER_ADDRESS) {
        throw new BeamError('BEAM_ERR_LIMIT_REACHED', `${MAX_SESSIONS_PER_SHARE_PER_ADDRESS} sessions with one share from one address`);
      }
      if ((this.sessionsByShare.get(share) ?? 0) >= MAX_SESSIONS_PER_SHARE) {
        throw new BeamError('BEAM_ERR_LIMIT_REACHED', `${MAX_SESSIONS_PER_SHARE} sessions per share`);
      }
    }
    const relayTokens = { visitor: randomBytes(24).toString('base64url'), agent: randomBytes(24).toString('base64url') };
    const session: Session = {
      id: randomBytes(12).toString('base64url'),
      share,
      agent,
      visitor: conn,
      kind: data.kind ?? 'cli',
      ...(data.kind !== 'gateway' ? { address: data.address } : {}),
      relayTokens: { ...relayTokens },
    };
    this.addSession(session);
    if (data.kind !== 'gateway') {
      // A visitor offers at once; one that doesn't holds a slot of the share's for nothing.
      const timer = setTimeout(() => {
        this.awaitingOffer.delete(session.id);
        this.log.info({ audit: 'limit.hit', share, session: session.id, address: data.address }, 'session ended: the visitor sent no offer');
        this.endSession(session, 'BEAM_ERR_PEER_GONE', session.visitor, true);
      }, SESSION_OFFER_TIMEOUT_MS);
      timer.unref();
      this.awaitingOffer.set(session.id, timer);
    }
    const iceServers = this.options.iceServers?.() ?? [];
    // Each side gets the server's own STUN under the name it reached the server by (an agent on another node: the visitor's).
    const agentHost = this.connections.get(agent)?.host ?? data.host;
    // The server's own gateway and an agent whose link here is private: no Noise on the relay link, when the relay's node is private too.
    const plainLink = data.kind === 'gateway' && agentData.plainGatewayLink === true && (!this.options.nodeUrl || isPrivateLink(this.options.nodeUrl));
    const incoming: IncomingSession = {
      sessionId: session.id,
      share,
      visitor: { kind: data.kind ?? 'cli', ...(data.kind !== 'gateway' ? { address: data.address } : {}) },
      iceServers: this.withOwnStun(agentHost, iceServers),
      relayToken: relayTokens.agent,
      ...(this.options.nodeUrl ? { relayUrl: this.options.nodeUrl } : {}),
      ...(req.relayFirst === true ? { relayFirst: true } : {}),
      ...(req.relayPreferred === true ? { relayPreferred: true } : {}),
      ...(plainLink ? { plainLink: true } : {}),
    };
    // An agent on another node hears of the session from that node, in one message with its record:
    // its answer can then never arrive before the node knows the session.
    if (here) this.wire.emit(agent, 'session:incoming', incoming);
    else this.wire.toNodes({ type: 'session', session, incoming });
    this.log.info(
      { audit: 'session.opened', share, session: session.id, visitor: data.kind, address: data.kind === 'gateway' ? undefined : data.address },
      'session opened',
    );
    return {
      sessionId: session.id,
      iceServers: this.withOwnStun(data.host, iceServers),
      agentPeerId: agentData.peerId,
      agentRelay: agentData.relay,
      kind: agentData.kind,
      private: agentData.private,
      relayToken: relayTokens.visitor,
      ...(this.options.nodeUrl ? { relayUrl: this.options.nodeUrl } : {}),
      ...(agentData.http !== undefined ? { agentHttp: agentData.http } : {}),
      ...(agentData.pool ? { pool: members.length } : {}),
      ...(plainLink ? { plainLink: true } : {}),
    };
  }

  /**
   * The agent a new session goes to: the only one, or in a pool the member
   * this visitor has the fewest sessions with, taking turns among equals.
   * `spread`: only a member it has none with (BEAM_ERR_POOL_COVERED if none).
   */
  private pick(conn: string, share: string, members: Member[], spread: boolean): Member | undefined {
    if (members.length <= 1 && !spread) return members[0];
    const mine = new Map<string, number>();
    for (const id of this.sessionsByConn.get(conn) ?? []) {
      const s = this.sessions.get(id);
      if (s?.share === share && s.visitor === conn) mine.set(s.agent, (mine.get(s.agent) ?? 0) + 1);
    }
    const fewest = Math.min(...members.map((m) => mine.get(m.owner) ?? 0));
    if (spread && fewest > 0) {
      if (members.length === 0) return undefined;
      throw new BeamError('BEAM_ERR_POOL_COVERED', `${members.length} agent${members.length === 1 ? '' : 's'}`);
    }
    const least = members.filter((m) => (mine.get(m.owner) ?? 0) === fewest);
    const turn = this.poolTurns.get(share) ?? 0;
    this.poolTurns.set(share, turn + 1);
    if (this.poolTurns.size > MAX_POOL_TURNS_KEPT) this.poolTurns.delete(this.poolTurns.keys().next().value as string);
    return least[turn % least.length];
  }

  /**
   * The server's own STUN (SignalingOptions.stunPort) first, at the host a
   * client reached the server by (its Host header): a name or address that
   * client can resolve and route to. Then the servers configured with --stun
   * and --turn.
   */
  private withOwnStun(host: string | undefined, servers: IceServer[]): IceServer[] {
    const port = this.options.stunPort?.();
    if (port === undefined || host === undefined) return servers;
    const name = stunHost(host);
    return name === undefined ? servers : [{ urls: `stun:${name}:${port}` }, ...servers];
  }

  /** Passes a signal to the other side of its session, within the budgets; throws when it is not the sender's to send. */
  signal(conn: string, raw: unknown): void {
    const data = this.data(conn);
    const msg = decode(SessionSignalSchema, raw, 'session:signal');
    const session = this.sessions.get(msg.sessionId);
    if (!session || (session.agent !== conn && session.visitor !== conn)) {
      throw new BeamError('BEAM_ERR_SESSION_NOT_FOUND');
    }
    const fromAgent = session.agent === conn;
    if ((msg.signal.type === 'offer' && fromAgent) || (msg.signal.type === 'relay' && fromAgent) || (msg.signal.type === 'answer' && !fromAgent)) {
      throw new BeamError('BEAM_ERR_BAD_MESSAGE', `${msg.signal.type} from the wrong party`);
    }
    // Budgets: per connection (the gateway's is unlimited: it is every web visitor), and per share from all its visitors.
    const budgets: Array<Promise<unknown>> = [];
    if (fromAgent) budgets.push(this.agentSignals.consume(conn));
    else if (data.kind !== 'gateway') budgets.push(this.visitorSignals.consume(conn), this.shareSignals.consume(session.share));
    // Each budget answers at once: signals pass in the order they came.
    Promise.all(budgets).then(
      () => {
        if (!fromAgent && (msg.signal.type === 'offer' || msg.signal.type === 'relay')) this.progressed(session.id);
        this.wire.emit(fromAgent ? session.visitor : session.agent, 'session:signal', msg);
      },
      () => {
        // One word a second to the sender, not one per dropped signal.
        const now = Date.now();
        if (now - (this.warnedAt.get(conn) ?? 0) < 1_000) return;
        this.warnedAt.set(conn, now);
        this.log.warn(
          { audit: 'limit.hit', code: 'BEAM_ERR_RATE_LIMITED', socket: conn, address: data.address, share: session.share, limit: 'signals' },
          'signals dropped',
        );
        this.wire.emit(conn, 'protocol:error', wireError(new BeamError('BEAM_ERR_RATE_LIMITED', 'too many signals a second; they were dropped')));
      },
    );
  }

  /** A party ends a session; the other side hears why. */
  closeSession(conn: string, raw: unknown): void {
    const msg = decode(SessionCloseSchema, raw, 'session:close');
    const session = this.sessions.get(msg.sessionId);
    if (!session || (session.agent !== conn && session.visitor !== conn)) return;
    this.endSession(session, msg.code ?? 'BEAM_ERR_PEER_GONE', conn);
  }

  /**
   * A connection went. `reason` as socket.io says it: 'client namespace
   * disconnect' is a party that left on purpose.
   */
  disconnected(conn: string, reason: string): void {
    const data = this.connections.get(conn);
    if (!data) return;
    this.connections.delete(conn);
    this.warnedAt.delete(conn);
    if (data.kind !== 'gateway') SignalingCore.decrement(this.connectionsByAddress, data.address);
    const live = this.sessionsByConn.get(conn)?.size ?? 0;
    // A drop with live sessions is worth a line: at warn for an agent or a gateway (a browser tab closing is routine).
    if (live > 0 && reason !== 'client namespace disconnect' && !this.moving.has(conn)) {
      this.log[data.role === 'agent' || data.kind === 'gateway' ? 'warn' : 'info'](
        { socket: conn, role: data.role, kind: data.kind, reason, sessions: live },
        'lost a peer with live sessions',
      );
    } else {
      this.log.debug({ socket: conn, reason }, 'disconnected');
    }
    if (this.moving.delete(conn)) {
      this.sessionsByConn.delete(conn);
      return;
    }
    // A party that left on purpose ends its sessions. One that dropped (a
    // network blip, a crash: signaling can't tell) may still be there on
    // the sessions' own paths: the other side checks them (PATH_PROBE_MS).
    const left = reason === 'client namespace disconnect';
    const code: ErrorCode = !left ? 'BEAM_ERR_SIGNALING_LOST' : data.role === 'agent' ? 'BEAM_ERR_AGENT_UNREACHABLE' : 'BEAM_ERR_PEER_GONE';
    for (const id of [...(this.sessionsByConn.get(conn) ?? [])]) {
      const session = this.sessions.get(id);
      if (session) this.endSession(session, code, conn);
    }
    this.sessionsByConn.delete(conn);
    if (data.role !== 'agent') return;
    // An agent that closed on purpose (Ctrl+C, close()) frees its name at once; one that
    // dropped (network, crash) keeps it for the resume grace period.
    if (reason === 'client namespace disconnect') {
      for (const name of this.registry.namesOf(conn)) void this.registry.drop(conn, name);
    } else {
      void this.registry.release(conn);
    }
  }

  /** Another node opened a session with an agent connected here: know it, so the agent's signals and close pass. */
  remoteSession(session: Session, incoming: IncomingSession): void {
    if (typeof session?.id !== 'string' || this.sessions.has(session.id)) return;
    if (!this.wire.isHere(session.agent)) return;
    this.addSession(session);
    this.wire.emit(session.agent, 'session:incoming', incoming);
  }

  /** Another node ended a session. */
  remoteSessionEnd(sessionId: string): void {
    const session = this.sessions.get(sessionId);
    if (session) this.forgetSession(session);
  }

  /**
   * Redeems a side's relay token for a live session: true once per side, for
   * the token signaling handed out, and never again.
   */
  redeemRelayToken(sessionId: string, role: 'visitor' | 'agent', token: string): boolean | ErrorCode {
    const session = this.sessions.get(sessionId);
    const expected = session?.relayTokens[role];
    if (!session || !expected || !safeEqual(token, expected)) {
      // A side that arrives just after the session ended (the agent refused it) hears why, as signaling tells it.
      const ended = this.ended.get(sessionId);
      const unused = ended?.tokens[role];
      return ended && unused && safeEqual(token, unused) ? ended.code : false;
    }
    delete session.relayTokens[role];
    return true;
  }

  /** Who a live session's visitor is (the server's own gateway, a browser, a CLI); undefined when it has ended. */
  sessionKind(sessionId: string): VisitorKind | undefined {
    return this.sessions.get(sessionId)?.kind;
  }

  /** Whether a live share's visitors sign in (--oidc); false for an unknown name. */
  async signsIn(share: string): Promise<boolean> {
    return (await this.registry.agentOf(share))?.signIn === true;
  }

  /** Live shares, for metrics. */
  shareCount(): Promise<number> {
    return this.registry.liveCount();
  }

  /** Open sessions by visitor kind, for metrics. */
  sessionCounts(): Record<VisitorKind, number> {
    const counts: Record<VisitorKind, number> = { gateway: 0, browser: 0, cli: 0 };
    for (const s of this.sessions.values()) counts[s.kind]++;
    return counts;
  }

  /**
   * Graceful stop: every agent connected here is disconnected with its names
   * held for it, so it reconnects (to another node, behind a load balancer)
   * and takes them back with its resume token.
   */
  async moveAgents(): Promise<void> {
    for (const conn of this.wire.agentsHere()) {
      this.moving.add(conn);
      await this.registry.release(conn).catch(() => {});
      this.wire.disconnect(conn);
    }
  }

  close(): void {
    this.registry.close();
    this.sessions.clear();
    for (const timer of this.awaitingOffer.values()) clearTimeout(timer);
    this.awaitingOffer.clear();
  }

  private addSession(session: Session): void {
    this.sessions.set(session.id, session);
    for (const s of [session.agent, session.visitor]) {
      let set = this.sessionsByConn.get(s);
      if (!set) this.sessionsByConn.set(s, (set = new Set()));
      set.add(session.id);
    }
    if (session.kind === 'gateway') return;
    this.sessionsByShare.set(session.share, (this.sessionsByShare.get(session.share) ?? 0) + 1);
    const key = `${session.share}|${session.address ?? ''}`;
    this.sessionsByShareAddress.set(key, (this.sessionsByShareAddress.get(key) ?? 0) + 1);
  }

  /** The visitor offered (or asked for the relay): the session no longer waits on SESSION_OFFER_TIMEOUT_MS. */
  private progressed(sessionId: string): void {
    const timer = this.awaitingOffer.get(sessionId);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.awaitingOffer.delete(sessionId);
  }

  /** One less in a count map, deleting the key at zero. */
  private static decrement(map: Map<string, number>, key: string): void {
    const left = (map.get(key) ?? 1) - 1;
    if (left > 0) map.set(key, left);
    else map.delete(key);
  }

  /** Drops a session's record here, telling no one. */
  private forgetSession(session: Session): boolean {
    if (!this.sessions.delete(session.id)) return false;
    this.sessionsByConn.get(session.agent)?.delete(session.id);
    this.sessionsByConn.get(session.visitor)?.delete(session.id);
    this.progressed(session.id);
    if (session.kind !== 'gateway') {
      SignalingCore.decrement(this.sessionsByShare, session.share);
      SignalingCore.decrement(this.sessionsByShareAddress, `${session.share}|${session.address ?? ''}`);
    }
    this.options.onSessionEnd?.(session.id);
    return true;
  }

  /** Ends a session and tells the other side (`both`: the side `by` too, when the server ends it for them). */
  private endSession(session: Session, code: ErrorCode, by: string, both = false): void {
    if (!this.forgetSession(session)) return;
    if (both) this.wire.emit(by, 'session:closed', { sessionId: session.id, code });
    this.ended.set(session.id, { code, tokens: { ...session.relayTokens } });
    if (this.ended.size > ENDED_SESSIONS_KEPT) this.ended.delete(this.ended.keys().next().value as string);
    if (this.options.cluster) this.wire.toNodes({ type: 'session-end', sessionId: session.id });
    const other = by === session.agent ? session.visitor : session.agent;
    this.wire.emit(other, 'session:closed', { sessionId: session.id, code });
    this.log.info({ audit: 'session.closed', share: session.share, session: session.id, code }, 'session closed');
  }
}

/** The host part of a Host header, if it is a plain name or address (no port, nothing odd), for a stun: URL. */
export function stunHost(hostHeader: string): string | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.exec(hostHeader.trim());
  return m?.[1]?.toLowerCase();
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The audit-log kind of a refusal: who was kept out, or which limit was hit. */
export function auditOf(code: string): 'auth.refused' | 'limit.hit' | 'refused' {
  if (['BEAM_ERR_UNAUTHORIZED', 'BEAM_ERR_NAME_RESERVED', 'BEAM_ERR_NAME_TAKEN'].includes(code)) return 'auth.refused';
  if (['BEAM_ERR_RATE_LIMITED', 'BEAM_ERR_LIMIT_REACHED'].includes(code)) return 'limit.hit';
  return 'refused';
}
