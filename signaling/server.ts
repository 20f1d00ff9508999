/**
 * The signaling core: pairs agents with visitors and forwards offers, answers
 * and candidates between the two parties of a session, nothing else. It
 * doesn't listen: it is attached to a socket.io Server that somebody else
 * bound (see gateway/server.ts), so tests can attach it to any server.
 */

import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import type { Server, Socket } from 'socket.io';
import {
  ENDED_SESSIONS_KEPT,
  MAX_CONNECTIONS_PER_IP,
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
import {
  type Ack,
  type ClientToServerEvents,
  decode,
  HandshakeSchema,
  type IceServer,
  type IncomingSession,
  OpenSessionRequestSchema,
  RegisterRequestSchema,
  type RelayMode,
  type ServerToClientEvents,
  SessionCloseSchema,
  SessionSignalSchema,
  type ShareKind,
  type VisitorKind,
  wireError,
} from '../shared/signaling.js';
import { MemoryShareRegistry, type ShareRegistry } from './registry.js';
import type { AgentTokens } from './tokens.js';

/**
 * Between server nodes (with --redis, through the socket.io adapter): the
 * node where a visitor opens a session tells the others, so the node holding
 * the agent's connection knows the session too; and an ended session is
 * forgotten everywhere.
 */
interface NodeToNodeEvents {
  'beam:session': (session: Session, incoming: IncomingSession) => void;
  'beam:session-end': (sessionId: string) => void;
}

export type SignalingIo = Server<ClientToServerEvents, ServerToClientEvents, NodeToNodeEvents>;
type BeamSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

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

interface Session {
  id: string;
  share: string;
  agent: string;
  visitor: string;
  kind: VisitorKind;
  /** The visitor's address (not kept for the server's own gateway, which carries everyone). */
  address?: string | undefined;
  /** One-time relay tokens; a redeemed one is deleted. */
  relayTokens: Partial<Record<'visitor' | 'agent', string>>;
}

interface SocketData {
  role: 'agent' | 'visitor';
  kind: VisitorKind | undefined;
  peerId: string | undefined;
  relay: RelayMode;
  /** What an agent's shares carry. */
  shareKind: ShareKind;
  private: boolean;
  /** The client's address (the proxy's view of it with trustProxy). */
  address: string;
  /** With --token-file: the id of the agent's token. */
  tokenId: string | undefined;
}

export class SignalingServer {
  private readonly log: Logger;
  private readonly registry: ShareRegistry;
  private readonly options: SignalingOptions;
  private readonly sessions = new Map<string, Session>();
  /** Why the last ENDED_SESSIONS_KEPT sessions ended, with their unused relay tokens (see redeemRelayToken). */
  private readonly ended = new Map<string, { code: ErrorCode; tokens: Session['relayTokens'] }>();
  private readonly sessionsBySocket = new Map<string, Set<string>>();
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
  private readonly warnedAt = new WeakMap<BeamSocket, number>();
  /** Agents told to move (drain): their sessions' peer connections carry on while requests in flight finish. */
  private readonly moving = new Set<string>();
  private io: SignalingIo | undefined;
  private readonly limits: AddressLimits;
  private readonly connectionsByAddress = new Map<string, number>();
  private readonly registrations: RateLimiterMemory;
  private readonly sessionOpens: RateLimiterMemory;

  constructor(components: SignalingComponents, options: SignalingOptions) {
    this.log = components.logger.child({ component: 'signaling' });
    this.registry = components.registry ?? new MemoryShareRegistry();
    this.options = options;
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

  /** The client's address: the socket's own, or with trustProxy the last X-Forwarded-For entry (what the proxy saw). */
  private addressOf(socket: BeamSocket): string {
    if (this.options.trustProxy) {
      const forwarded = socket.handshake.headers['x-forwarded-for'];
      const last = (Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? ''))
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .at(-1);
      if (last) return last;
    }
    return socket.handshake.address;
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

  attach(io: SignalingIo): void {
    this.io = io;
    io.use((socket, next) => {
      try {
        const hs = decode(HandshakeSchema, socket.handshake.auth, 'handshake');
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
              hs.token === undefined
                ? 'this server takes agents with a token only: pass --token (or BEAM_TOKEN)'
                : 'this agent token is not one the server knows',
            );
          }
        }
        const address = this.addressOf(socket);
        // The server's own gateway carries every web visitor: it is not one client.
        if (kind !== 'gateway') {
          const open = this.connectionsByAddress.get(address) ?? 0;
          if (open >= this.limits.connections) throw new BeamError('BEAM_ERR_RATE_LIMITED', `${this.limits.connections} connections at once from one address`);
          this.connectionsByAddress.set(address, open + 1);
          socket.once('disconnect', () => {
            const left = (this.connectionsByAddress.get(address) ?? 1) - 1;
            if (left > 0) this.connectionsByAddress.set(address, left);
            else this.connectionsByAddress.delete(address);
          });
        }
        (socket.data as SocketData) = {
          role: hs.role,
          kind,
          peerId: hs.peerId,
          relay: hs.relay ?? 'auto',
          shareKind: hs.kind ?? 'http',
          private: hs.private ?? false,
          address,
          tokenId,
        };
        if (tokenId !== undefined) this.log.info({ audit: 'auth.accepted', token: tokenId, address }, 'agent token accepted');
        next();
      } catch (err) {
        const wire = wireError(err);
        const rejection = new Error(wire.message) as Error & { data: unknown };
        rejection.data = wire;
        this.log.warn({ audit: auditOf(wire.code), code: wire.code, address: socket.handshake.address }, 'handshake refused');
        next(rejection);
      }
    });
    io.on('connection', (socket) => this.onConnection(socket));
    // Another node opened a session with an agent connected here: know it, so the agent's signals and close pass.
    io.on('beam:session', (session: Session, incoming: IncomingSession) => {
      if (typeof session?.id !== 'string' || this.sessions.has(session.id)) return;
      const agent = io.sockets.sockets.get(session.agent);
      if (!agent) return;
      this.addSession(session);
      agent.emit('session:incoming', incoming);
    });
    io.on('beam:session-end', (sessionId: string) => {
      const session = this.sessions.get(sessionId);
      if (session) this.forgetSession(session);
    });
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
    for (const socket of this.io?.sockets.sockets.values() ?? []) {
      if ((socket.data as SocketData).role !== 'agent') continue;
      this.moving.add(socket.id);
      await this.registry.release(socket.id).catch(() => {});
      socket.disconnect(true);
    }
  }

  close(): void {
    this.registry.close();
    this.sessions.clear();
    for (const timer of this.awaitingOffer.values()) clearTimeout(timer);
    this.awaitingOffer.clear();
  }

  private onConnection(socket: BeamSocket): void {
    const data = socket.data as SocketData;
    this.log.debug({ socket: socket.id, role: data.role }, 'connected');

    socket.on('share:register', (raw, ack) =>
      this.answer(socket, ack, 'share:register', async () => {
        if (data.role !== 'agent') throw new BeamError('BEAM_ERR_UNAUTHORIZED', 'only agents register shares');
        const req = decode(RegisterRequestSchema, raw, 'share:register');
        if (this.registry.namesOf(socket.id).length >= MAX_SHARES_PER_CONNECTION) {
          throw new BeamError('BEAM_ERR_LIMIT_REACHED', `${MAX_SHARES_PER_CONNECTION} shares per connection`);
        }
        await this.spend(this.registrations, data.address, 'registrations', this.limits.registrationsPerMinute);
        const tokens = this.options.tokens;
        if (req.name !== undefined && tokens) {
          const owner = tokens.reservedBy(req.name);
          if (owner !== undefined && owner !== data.tokenId) throw new BeamError('BEAM_ERR_NAME_RESERVED', `"${req.name.toLowerCase()}"`);
        }
        const agentInfo = { peerId: data.peerId ?? '', relay: data.relay, kind: data.shareKind, private: data.private };
        let claim = await this.registry.claim(socket.id, req.name, req.resumeToken, agentInfo);
        // A random name that happens to be reserved goes back, and another is drawn.
        for (let i = 0; req.name === undefined && tokens?.reservedBy(claim.name) !== undefined && i < 8; i++) {
          await this.registry.drop(socket.id, claim.name);
          claim = await this.registry.claim(socket.id, undefined, undefined, agentInfo);
        }
        this.log.info(
          { audit: 'share.registered', share: claim.name, resumed: claim.resumed, socket: socket.id, address: data.address, token: data.tokenId },
          'share registered',
        );
        return { name: claim.name, url: this.options.shareUrl(claim.name), resumeToken: claim.resumeToken, resumed: claim.resumed };
      }),
    );

    socket.on('share:close', (_raw, ack) =>
      this.answer(socket, ack, 'share:close', async () => {
        if (data.role !== 'agent') throw new BeamError('BEAM_ERR_UNAUTHORIZED', 'only agents close shares');
        const released = this.registry.namesOf(socket.id);
        for (const name of released) await this.registry.drop(socket.id, name);
        this.log.info({ audit: 'share.closed', shares: released, socket: socket.id, address: data.address }, 'shares closed');
        return { released };
      }),
    );

    socket.on('session:open', (raw, ack) =>
      this.answer(socket, ack, 'session:open', async () => {
        if (data.role !== 'visitor') throw new BeamError('BEAM_ERR_UNAUTHORIZED', 'only visitors open sessions');
        const req = decode(OpenSessionRequestSchema, raw, 'session:open');
        if (data.kind !== 'gateway') await this.spend(this.sessionOpens, data.address, 'sessions', this.limits.sessionsPerMinute);
        const share = req.share.toLowerCase();
        const agent = await this.registry.ownerOf(share);
        const here = agent !== undefined && this.io?.sockets.sockets.has(agent) === true;
        // Alone, an agent is here or nowhere; in a cluster, the registry's word (kept alive by its node's heartbeat) stands.
        if (!agent || (!here && !this.options.cluster)) {
          if (await this.registry.isHeld(share)) throw new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `"${share}" lost its connection and may come back`);
          throw new BeamError('BEAM_ERR_SHARE_NOT_FOUND', `"${share}"`);
        }
        const agentData = await this.registry.agentOf(share);
        if (!agentData) throw new BeamError('BEAM_ERR_SHARE_NOT_FOUND', `"${share}"`);
        // Counted after the last await, right before the session is added: opens that race each other can't all pass.
        if ((this.sessionsBySocket.get(socket.id)?.size ?? 0) >= MAX_SESSIONS_PER_VISITOR) {
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
          visitor: socket.id,
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
        const incoming: IncomingSession = {
          sessionId: session.id,
          share,
          visitor: { kind: data.kind ?? 'cli', ...(data.kind !== 'gateway' ? { address: data.address } : {}) },
          iceServers,
          relayToken: relayTokens.agent,
          ...(this.options.nodeUrl ? { relayUrl: this.options.nodeUrl } : {}),
        };
        // An agent on another node hears of the session from that node, in one message with its record:
        // its answer can then never arrive before the node knows the session.
        if (here) this.io?.to(agent).emit('session:incoming', incoming);
        else this.io?.serverSideEmit('beam:session', session, incoming);
        this.log.info(
          { audit: 'session.opened', share, session: session.id, visitor: data.kind, address: data.kind === 'gateway' ? undefined : data.address },
          'session opened',
        );
        return {
          sessionId: session.id,
          iceServers,
          agentPeerId: agentData.peerId,
          agentRelay: agentData.relay,
          kind: agentData.kind,
          private: agentData.private,
          relayToken: relayTokens.visitor,
          ...(this.options.nodeUrl ? { relayUrl: this.options.nodeUrl } : {}),
        };
      }),
    );

    socket.on('session:signal', (raw) => {
      try {
        const msg = decode(SessionSignalSchema, raw, 'session:signal');
        const session = this.sessions.get(msg.sessionId);
        if (!session || (session.agent !== socket.id && session.visitor !== socket.id)) {
          throw new BeamError('BEAM_ERR_SESSION_NOT_FOUND');
        }
        const fromAgent = session.agent === socket.id;
        if ((msg.signal.type === 'offer' && fromAgent) || (msg.signal.type === 'relay' && fromAgent) || (msg.signal.type === 'answer' && !fromAgent)) {
          throw new BeamError('BEAM_ERR_BAD_MESSAGE', `${msg.signal.type} from the wrong party`);
        }
        // Budgets: per connection (the gateway's is unlimited: it is every web visitor), and per share from all its visitors.
        const budgets: Array<Promise<unknown>> = [];
        if (fromAgent) budgets.push(this.agentSignals.consume(socket.id));
        else if (data.kind !== 'gateway') budgets.push(this.visitorSignals.consume(socket.id), this.shareSignals.consume(session.share));
        // Each budget answers at once: signals pass in the order they came.
        Promise.all(budgets).then(
          () => {
            if (!fromAgent && (msg.signal.type === 'offer' || msg.signal.type === 'relay')) this.progressed(session.id);
            this.io?.to(fromAgent ? session.visitor : session.agent).emit('session:signal', msg);
          },
          () => {
            // One word a second to the sender, not one per dropped signal.
            const now = Date.now();
            if (now - (this.warnedAt.get(socket) ?? 0) < 1_000) return;
            this.warnedAt.set(socket, now);
            this.log.warn(
              { audit: 'limit.hit', code: 'BEAM_ERR_RATE_LIMITED', socket: socket.id, address: data.address, share: session.share, limit: 'signals' },
              'signals dropped',
            );
            socket.emit('protocol:error', wireError(new BeamError('BEAM_ERR_RATE_LIMITED', 'too many signals a second; they were dropped')));
          },
        );
      } catch (err) {
        this.reject(socket, 'session:signal', err);
      }
    });

    socket.on('session:close', (raw) => {
      try {
        const msg = decode(SessionCloseSchema, raw, 'session:close');
        const session = this.sessions.get(msg.sessionId);
        if (!session || (session.agent !== socket.id && session.visitor !== socket.id)) return;
        this.endSession(session, msg.code ?? 'BEAM_ERR_PEER_GONE', socket.id);
      } catch (err) {
        this.reject(socket, 'session:close', err);
      }
    });

    socket.on('disconnect', (reason) => {
      const live = this.sessionsBySocket.get(socket.id)?.size ?? 0;
      // A drop with live sessions is worth a line: at warn for an agent or a gateway (a browser tab closing is routine).
      if (live > 0 && reason !== 'client namespace disconnect' && !this.moving.has(socket.id)) {
        this.log[data.role === 'agent' || data.kind === 'gateway' ? 'warn' : 'info'](
          { socket: socket.id, role: data.role, kind: data.kind, reason, sessions: live },
          'lost a peer with live sessions',
        );
      } else {
        this.log.debug({ socket: socket.id, reason }, 'disconnected');
      }
      if (this.moving.delete(socket.id)) {
        this.sessionsBySocket.delete(socket.id);
        return;
      }
      // A party that left on purpose ends its sessions. One that dropped (a
      // network blip, a crash: signaling can't tell) may still be there on
      // the sessions' own paths: the other side checks them (PATH_PROBE_MS).
      const left = reason === 'client namespace disconnect';
      const code: ErrorCode = !left ? 'BEAM_ERR_SIGNALING_LOST' : data.role === 'agent' ? 'BEAM_ERR_AGENT_UNREACHABLE' : 'BEAM_ERR_PEER_GONE';
      for (const id of [...(this.sessionsBySocket.get(socket.id) ?? [])]) {
        const session = this.sessions.get(id);
        if (session) this.endSession(session, code, socket.id);
      }
      this.sessionsBySocket.delete(socket.id);
      if (data.role !== 'agent') return;
      // An agent that closed on purpose (Ctrl+C, close()) frees its name at once; one that
      // dropped (network, crash) keeps it for the resume grace period.
      if (reason === 'client namespace disconnect') {
        for (const name of this.registry.namesOf(socket.id)) void this.registry.drop(socket.id, name);
      } else {
        void this.registry.release(socket.id);
      }
    });
  }

  /** Runs an acked request: a typed value or a coded error, and never a throw into socket.io. */
  private answer<T>(socket: BeamSocket, ack: unknown, event: string, run: () => Promise<T>): void {
    if (typeof ack !== 'function') {
      this.reject(socket, event, new BeamError('BEAM_ERR_BAD_MESSAGE', `${event} needs an acknowledgement`));
      return;
    }
    const reply = ack as (res: Ack<T>) => void;
    run().then(
      (value) => reply({ ok: true, value }),
      (err: unknown) => {
        const wire = wireError(err);
        this.log.info(
          { audit: auditOf(wire.code), event, code: wire.code, socket: socket.id, address: (socket.data as SocketData | undefined)?.address },
          'request refused',
        );
        reply({ ok: false, error: wire });
      },
    );
  }

  private reject(socket: BeamSocket, event: string, err: unknown): void {
    const wire = wireError(err);
    this.log.info({ event, code: wire.code, socket: socket.id }, 'message refused');
    socket.emit('protocol:error', wire);
  }

  private addSession(session: Session): void {
    this.sessions.set(session.id, session);
    for (const s of [session.agent, session.visitor]) {
      let set = this.sessionsBySocket.get(s);
      if (!set) this.sessionsBySocket.set(s, (set = new Set()));
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
    this.sessionsBySocket.get(session.agent)?.delete(session.id);
    this.sessionsBySocket.get(session.visitor)?.delete(session.id);
    this.progressed(session.id);
    if (session.kind !== 'gateway') {
      SignalingServer.decrement(this.sessionsByShare, session.share);
      SignalingServer.decrement(this.sessionsByShareAddress, `${session.share}|${session.address ?? ''}`);
    }
    this.options.onSessionEnd?.(session.id);
    return true;
  }

  /** Ends a session and tells the other side (`both`: the side `by` too, when the server ends it for them). */
  private endSession(session: Session, code: ErrorCode, by: string, both = false): void {
    if (!this.forgetSession(session)) return;
    if (both) this.io?.to(by).emit('session:closed', { sessionId: session.id, code });
    this.ended.set(session.id, { code, tokens: { ...session.relayTokens } });
    if (this.ended.size > ENDED_SESSIONS_KEPT) this.ended.delete(this.ended.keys().next().value as string);
    if (this.options.cluster) this.io?.serverSideEmit('beam:session-end', session.id);
    const other = by === session.agent ? session.visitor : session.agent;
    this.io?.to(other).emit('session:closed', { sessionId: session.id, code });
    this.log.info({ audit: 'session.closed', share: session.share, session: session.id, code }, 'session closed');
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The audit-log kind of a refusal: who was kept out, or which limit was hit. */
function auditOf(code: string): 'auth.refused' | 'limit.hit' | 'refused' {
  if (['BEAM_ERR_UNAUTHORIZED', 'BEAM_ERR_NAME_RESERVED', 'BEAM_ERR_NAME_TAKEN'].includes(code)) return 'auth.refused';
  if (['BEAM_ERR_RATE_LIMITED', 'BEAM_ERR_LIMIT_REACHED'].includes(code)) return 'limit.hit';
  return 'refused';
}
