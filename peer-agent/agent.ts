/**
 * The agent: registers a share with the signaling server, answers each
 * visitor's session with a WebRTC peer connection, and serves the streams of
 * that connection from the configured origin only.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  AGENT_CONNECT_TIMEOUT_MS,
  DATAGRAM_CHANNEL_LABEL,
  DEFAULT_ORIGIN_TIMEOUT_MS,
  MAX_OFFERS_PER_SESSION_PER_MINUTE,
  MAX_PENDING_PEERS,
  NOISE_CHANNEL_LABEL,
  PATH_PROBE_MS,
  SHARE_CLOSE_TIMEOUT_MS,
  SIGNALING_PROTOCOL_VERSION,
  STREAM_CHANNEL_LABEL,
} from '../shared/constants.js';
import { decodeDatagram, encodeDatagram, encodeRecord, RecordReader } from '../shared/datagram.js';
import { BeamError, errorCodeOf, isErrorCode } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import { withoutTurn } from '../shared/ice.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import type { PathKind, SessionPath } from '../shared/paths.js';
import {
  type Ack,
  decode,
  type IceServer,
  IncomingSessionSchema,
  type Registered,
  type RelayMode,
  SessionClosedSchema,
  SessionSignalSchema,
  type ShareKind,
  type Signal,
  type VisitorKind,
} from '../shared/signaling.js';
import type { Peer, WebRtcEngine } from '../transport/engine.js';
import type { Identity } from '../transport/identity.js';
import { type PathDown, PathSet } from '../transport/paths.js';
import { connectRelay, relayServerFor } from '../transport/relay.js';
import { channelPipe, directPrologue, SecureFrameChannel, secure, withSecret } from '../transport/secure.js';
import { connectSignaling, type SignalingSocket } from '../transport/signaling-client.js';
import { type BasicCredentials, type IpRules, type RateLimit, VisitorLimit } from './access.js';
import type { Inspector } from './inspect.js';
import { type Origin, OriginForwarder, type ReplayEdits } from './origin.js';
import { serveTcp } from './tcp.js';
import { UdpForwarder } from './udp.js';

/** Attempts at the first connection before `start` gives up; later drops retry forever. */
const FIRST_CONNECT_ATTEMPTS = 4;

/**
 * Visitors who prove a private share's secret on every request rather than
 * in the Noise handshake: the server's gateway (for the clients behind it)
 * and, on HTTP shares, browser pages (whose direct path has no Noise). A
 * TCP or UDP stream has no requests to carry it, so there everyone else
 * proves it in the handshake.
 */
function provesPerRequest(visitor: VisitorKind, kind: ShareKind): boolean {
  return visitor === 'gateway' || (visitor === 'browser' && kind === 'http');
}

/** How a visitor's traffic travels: a peer's own path, or through the server's gateway (shared/paths.ts). */
export type { SessionPath } from '../shared/paths.js';

export interface AgentOptions {
  /** The signaling server, e.g. http://127.0.0.1:7070 */
  server: string;
  origin: Origin;
  /** Requested share name; random when absent. */
  name?: string;
  /** Default 'rewrite'. */
  hostHeader?: 'rewrite' | 'preserve';
  /** Default DEFAULT_ORIGIN_TIMEOUT_MS. */
  originTimeoutMs?: number;
  /** 'never': direct WebRTC only; 'always': the relay only. Default 'auto'. */
  relay?: RelayMode;
  /** What the share carries. Default 'http'. */
  kind?: ShareKind;
  /** --auth: HTTP basic auth for every visitor of an HTTP share, checked here on every path. */
  basicAuth?: BasicCredentials;
  /** --allow-ip / --deny-ip: checked per request on the gateway path, per path for peer-to-peer visitors. */
  ipRules?: IpRules;
  /** --rate-limit: requests (TCP: connections) per visitor. */
  rateLimit?: RateLimit;
  /** --max-visitors: visitors at once, on every path. */
  maxVisitors?: number;
  /** The server's agent token, for a server with --token-file. */
  token?: string;
  /**
   * Makes the share private: `beam connect` visitors prove this secret in the
   * Noise handshake, gateway requests carry it (shared/constants.ts SECRET_*).
   */
  secret?: string;
}

export interface AgentComponents {
  engine: WebRtcEngine;
  logger: Logger;
  /** The agent's persistent key (transport/identity.ts); visitors verify it. */
  identity: Identity;
  /** Records every HTTP exchange for the inspector; none when absent (--no-inspect). */
  inspector?: Inspector | undefined;
}

export interface SessionInfo {
  id: string;
  visitor: VisitorKind;
  /** How the visitor's traffic travels: through the gateway's HTTP entry, or straight from the visitor. */
  path: SessionPath;
  /** How the agent and the visitor (the gateway, for gateway visitors) are connected. */
  via: PathKind;
  /** Round-trip time on that path, in ms, once measured. */
  rtt: number | undefined;
}

export interface AgentEvents {
  /** The share is registered (again, after a reconnect: `resumed` is true). */
  ready: [Registered];
  session: [SessionInfo];
  /** A session's path changed (a better one came up, or the one in use died), or its RTT was first measured. */
  path: [SessionInfo];
  'session-closed': [{ id: string }];
  'origin-unreachable': [{ origin: string; code: string }];
  /** Lost the signaling server; reconnecting. */
  disconnected: [{ reason: string }];
  error: [BeamError];
}

interface AgentSession {
  id: string;
  visitor: VisitorKind;
  iceServers: IceServer[];
  relayToken: string;
  /** The node whose relay the session uses (several nodes), as signaling named it. */
  relayUrl: string | undefined;
  /** The latest direct peer connection (a retry replaces it). */
  peer: Peer | undefined;
  /** Which peer connection carries each WebRTC path. */
  peers: Map<PathKind, Peer>;
  relayStarted: boolean;
  paths: PathSet;
  /** The best path, as last announced. */
  current: PathKind | undefined;
  announced: boolean;
  rttAnnounced: boolean;
  /** Ends a session that has no path for AGENT_CONNECT_TIMEOUT_MS. */
  setupTimer: NodeJS.Timeout | undefined;
  /** A UDP share's flows, made on the first datagram. */
  udp?: UdpForwarder;
  /** Where the server saw a peer-to-peer visitor connect from (for IP rules on TURN and relay paths). */
  serverSeenAddress: string | undefined;
  /** Signaling forgot the session (a side lost the server): its paths carry on, and it ends with the last. */
  detached: boolean;
  /** When its recent offers came (MAX_OFFERS_PER_SESSION_PER_MINUTE). */
  offerTimes: number[];
}

export class Agent extends EventEmitter<AgentEvents> {
  private readonly engine: WebRtcEngine;
  private readonly identity: Identity;
  private readonly relayMode: RelayMode;
  private readonly log: Logger;
  private readonly options: AgentOptions;
  private readonly forwarder: OriginForwarder;
  private readonly visitorLimit: VisitorLimit | undefined;
  private readonly sessions = new Map<string, AgentSession>();
  private socket: SignalingSocket | undefined;
  private registered: Registered | undefined;
  private closed = false;
  private lastUnreachableAt = 0;
  /** Peer connections set up that carry no path yet (MAX_PENDING_PEERS). */
  private readonly pendingPeers = new Set<Peer>();
  /** When an offer was last dropped for a limit, so a flood is one log line a second. */
  private lastDropLogAt = 0;

  constructor(components: AgentComponents, options: AgentOptions) {
    super();
    this.engine = components.engine;
    this.identity = components.identity;
    this.relayMode = options.relay ?? 'auto';
    this.log = components.logger.child({ component: 'agent' });
    this.options = options;
    this.visitorLimit = options.maxVisitors !== undefined ? new VisitorLimit(options.maxVisitors) : undefined;
    this.forwarder = new OriginForwarder(
      {
        logger: this.log,
        events: {
          onUnreachable: (err) => this.reportUnreachable(err),
        },
        inspector: components.inspector,
      },
      options.origin,
      {
        hostHeader: options.hostHeader ?? 'rewrite',
        timeoutMs: options.originTimeoutMs ?? DEFAULT_ORIGIN_TIMEOUT_MS,
        basicAuth: options.basicAuth,
        ipRules: options.ipRules,
        rateLimit: options.rateLimit,
        visitorLimit: this.visitorLimit,
        privateShare: options.secret !== undefined,
      },
    );
  }

  /** Tells the user the origin refused a connection: one line per burst, not one per request. */
  private reportUnreachable(err: NodeJS.ErrnoException): void {
    const now = Date.now();
    if (now - this.lastUnreachableAt < 5_000) return;
    this.lastUnreachableAt = now;
    this.emit('origin-unreachable', { origin: this.forwarder.hostPort, code: err.code ?? 'ECONNREFUSED' });
  }

  get share(): Registered | undefined {
    return this.registered;
  }

  /** Connects and registers; resolves with the first registration or rejects with a BeamError. */
  start(): Promise<Registered> {
    return new Promise((resolve, reject) => {
      let first = true;
      let failures = 0;
      const socket = connectSignaling(
        this.options.server,
        {
          protocol: SIGNALING_PROTOCOL_VERSION,
          role: 'agent',
          peerId: this.identity.peerId.toString(),
          relay: this.relayMode,
          kind: this.options.kind ?? 'http',
          private: this.options.secret !== undefined,
          ...(this.options.token !== undefined ? { token: this.options.token } : {}),
        },
        'agent',
      );
      this.socket = socket;

      socket.on('connect', () => {
        const req = this.registered
          ? { name: this.registered.name, resumeToken: this.registered.resumeToken }
          : this.options.name !== undefined
            ? { name: this.options.name }
            : {};
        socket.emit('share:register', req, (res: Ack<Registered>) => {
          if (res.ok) {
            this.registered = res.value;
            this.log.info({ audit: 'share.registered', share: res.value.name, resumed: res.value.resumed }, 'share registered');
            this.emit('ready', res.value);
            if (first) {
              first = false;
              resolve(res.value);
            }
            return;
          }
          const err = new BeamError(isErrorCode(res.error.code) ? res.error.code : 'BEAM_ERR_BAD_MESSAGE', res.error.detail);
          if (first) {
            first = false;
            this.close();
            reject(err);
          } else {
            this.emit('error', err);
          }
        });
      });
      socket.on('connect_error', (err) => {
        const data = (err as Error & { data?: { code?: string; detail?: string } }).data;
        if (first && data?.code && isErrorCode(data.code)) {
          first = false;
          this.close();
          reject(new BeamError(data.code, data.detail));
          return;
        }
        failures++;
        if (first && (!socket.active || failures >= FIRST_CONNECT_ATTEMPTS)) {
          first = false;
          this.close();
          reject(new BeamError('BEAM_ERR_SERVER_UNREACHABLE', `${this.options.server}: ${err.message}`));
          return;
        }
        this.log.debug({ err: err.message }, 'signaling connect failed; retrying');
      });
      socket.on('disconnect', (reason) => {
        if (this.closed) return;
        this.log.warn({ reason, sessions: this.sessions.size }, 'lost the signaling server; reconnecting (sessions carry on over the paths that are up)');
        this.emit('disconnected', { reason });
        // A drop makes the server forget this side's sessions: each goes on over its paths while the
        // visitor answers. A server that sends its agents to another node keeps them there.
        if (reason !== 'io server disconnect') for (const id of [...this.sessions.keys()]) this.detachSession(id);
        // A server that sends its agents away (it is draining) expects them back elsewhere; socket.io
        // does not reconnect on its own then. Jitter, so a node's agents don't all land at once.
        if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 200 + Math.random() * 800).unref();
      });
      socket.on('session:incoming', (raw) => this.onIncoming(raw));
      socket.on('session:signal', (raw) => {
        try {
          const msg = decode(SessionSignalSchema, raw, 'session:signal');
          const session = this.sessions.get(msg.sessionId);
          if (session) this.onSignal(session, msg.signal);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'dropped a malformed signal');
        }
      });
      socket.on('session:closed', (raw) => {
        try {
          const msg = decode(SessionClosedSchema, raw, 'session:closed');
          // The visitor lost the server, not necessarily the session: its paths are checked instead.
          if (msg.code === 'BEAM_ERR_SIGNALING_LOST') this.detachSession(msg.sessionId);
          else this.endSession(msg.sessionId);
        } catch {
          // malformed: nothing to close
        }
      });
      socket.on('protocol:error', (err) => this.log.warn({ code: err.code }, err.message));
    });
  }

  private onIncoming(raw: unknown): void {
    let msg;
    try {
      msg = decode(IncomingSessionSchema, raw, 'session:incoming');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'dropped a malformed session');
      return;
    }
    const session: AgentSession = {
      id: msg.sessionId,
      visitor: msg.visitor.kind,
      iceServers: msg.iceServers,
      relayToken: msg.relayToken,
      relayUrl: msg.relayUrl,
      serverSeenAddress: msg.visitor.address,
      peer: undefined,
      peers: new Map(),
      relayStarted: false,
      rttAnnounced: false,
      paths: new PathSet(),
      current: undefined,
      announced: false,
      setupTimer: undefined,
      detached: false,
      offerTimes: [],
    };
    // The server's own gateway is not a visitor: the clients behind it are, one by one.
    if (session.visitor !== 'gateway' && this.visitorLimit && !this.visitorLimit.enter(`session:${session.id}`, true)) {
      this.log.info(
        { audit: 'limit.hit', code: 'BEAM_ERR_MAX_VISITORS', session: session.id, address: session.serverSeenAddress, max: this.visitorLimit.max },
        'visitor refused: --max-visitors',
      );
      this.socket?.emit('session:close', { sessionId: session.id, code: 'BEAM_ERR_MAX_VISITORS' });
      return;
    }
    session.paths.on('down', (down) => this.pathDown(session, down));
    this.sessions.set(session.id, session);
    this.armSetupTimer(session);
  }

  /** Ends a session that has no path for AGENT_CONNECT_TIMEOUT_MS (a visitor that asked and went quiet). */
  private armSetupTimer(session: AgentSession): void {
    clearTimeout(session.setupTimer);
    session.setupTimer = setTimeout(() => {
      if (session.paths.size > 0) return;
      this.log.info({ session: session.id }, 'visitor never connected; session ended');
      this.endSession(session.id);
    }, AGENT_CONNECT_TIMEOUT_MS);
    session.setupTimer.unref();
  }

  private onSignal(session: AgentSession, signal: Signal): void {
    if (signal.type === 'relay') {
      this.startRelay(session);
      return;
    }
    if (signal.type === 'offer') {
      this.startDirect(session, signal.sdp, signal.turn !== false);
      return;
    }
    if (signal.type === 'answer') return;
    session.peer?.signal(signal).catch((err: Error) => {
      this.log.debug({ session: session.id, err: err.message }, 'candidate from visitor not applied');
    });
  }

  /**
   * Answers an offer with a new peer connection. A second offer is a retry:
   * it replaces an attempt that never came up, and runs beside one that
   * carries a path (a visitor on TURN trying for a direct pair).
   */
  private startDirect(session: AgentSession, offerSdp: string, turn: boolean): void {
    if (this.relayMode === 'always') {
      this.log.info({ session: session.id }, 'offer ignored: --relay always');
      return;
    }
    const now = Date.now();
    session.offerTimes = session.offerTimes.filter((t) => now - t < 60_000);
    const refusal =
      session.offerTimes.length >= MAX_OFFERS_PER_SESSION_PER_MINUTE
        ? `${MAX_OFFERS_PER_SESSION_PER_MINUTE} offers a minute per session`
        : this.pendingPeers.size >= MAX_PENDING_PEERS
          ? `${MAX_PENDING_PEERS} peer connections being set up`
          : undefined;
    if (refusal) {
      if (now - this.lastDropLogAt >= 1_000) {
        this.lastDropLogAt = now;
        this.log.warn(
          { audit: 'limit.hit', code: 'BEAM_ERR_LIMIT_REACHED', session: session.id, address: session.serverSeenAddress, limit: refusal },
          'offer dropped',
        );
      }
      return;
    }
    session.offerTimes.push(now);
    const old = session.peer;
    if (old && !(['direct', 'turn'] as const).some((kind) => session.peers.get(kind) === old && session.paths.has(kind))) {
      this.log.debug({ session: session.id }, 'a new offer replaces the direct peer connection');
      this.closePeer(old);
    }
    // A first attempt without TURN on both sides forms a direct pair if one exists; the visitor's next attempt brings TURN.
    const peer = this.engine.createPeer({ iceServers: turn ? session.iceServers : withoutTurn(session.iceServers) });
    this.pendingPeers.add(peer);
    session.peer = peer;
    let answerSdp: string | undefined;
    let verified: Promise<void> | undefined;
    peer.onSignal((signal) => {
      if (signal.type === 'answer') answerSdp = signal.sdp;
      this.socket?.emit('session:signal', { sessionId: session.id, signal });
    });
    peer.onStateChange((state) => {
      if (state === 'connected' || state === 'failed' || state === 'closed') this.pendingPeers.delete(peer);
      if (state === 'failed' || state === 'closed') {
        for (const kind of ['direct', 'turn'] as const) if (session.peers.get(kind) === peer) session.paths.get(kind)?.close('BEAM_ERR_PEER_GONE');
        if (session.peer === peer) session.peer = undefined;
      }
    });
    peer.onDataChannel((channel) => {
      if (channel.label === NOISE_CHANNEL_LABEL && !verified) {
        verified = (async () => {
          await new Promise<void>((resolve) => (channel.isOpen() ? resolve() : channel.onOpen(resolve)));
          if (!answerSdp) throw new BeamError('BEAM_ERR_HANDSHAKE_FAILED', 'no local answer');
          await secure(channelPipe(channel), {
            role: 'responder',
            identity: this.identity,
            prologue: withSecret(directPrologue(offerSdp, answerSdp), this.handshakeSecret(session)),
          });
          // The responder reads the last handshake message, so it is the one to close the channel.
          channel.close();
        })();
        verified.catch((err: Error) => {
          this.log.warn(
            { audit: 'auth.refused', code: errorCodeOf(err) ?? 'BEAM_ERR_HANDSHAKE_FAILED', session: session.id, path: 'direct', err: err.message },
            'direct handshake failed',
          );
          this.closePeer(peer);
        });
        return;
      }
      if (channel.label === DATAGRAM_CHANNEL_LABEL && verified && (this.options.kind ?? 'http') === 'udp') {
        if (this.options.ipRules && !this.options.ipRules.allows(peer.remoteAddress() ?? session.serverSeenAddress)) {
          channel.close();
          return;
        }
        // Datagrams are served once the handshake is through; until then a few are held.
        let held: Uint8Array[] | undefined = [];
        const serve = (message: Uint8Array): void => {
          let d;
          try {
            d = decodeDatagram(message);
          } catch {
            return; // a malformed datagram is dropped, as UDP would
          }
          this.udpFor(session).receive(d.flow, d.payload, (flow, payload) => channel.send(encodeDatagram(flow, payload)));
        };
        channel.onMessage((message) => {
          if (!held) serve(message);
          else if (held.length < 64) held.push(message);
        });
        verified.then(
          () => {
            for (const m of held ?? []) serve(m);
            held = undefined;
          },
          () => channel.close(),
        );
        return;
      }
      // A browser page's direct path runs on DTLS alone (transport/session.ts, directNoise): HTTP shares only, secret per request.
      if (channel.label === STREAM_CHANNEL_LABEL && !verified && session.visitor === 'browser' && (this.options.kind ?? 'http') === 'http') {
        this.log.debug({ session: session.id }, 'browser visitor: direct path on DTLS alone');
        verified = Promise.resolve();
      }
      if (channel.label !== STREAM_CHANNEL_LABEL || !verified) {
        channel.close();
        return;
      }
      const handshake = verified;
      const start = (): void => {
        const mux = new Mux(channel, { role: 'responder' });
        const kind: 'direct' | 'turn' = peer.selectedCandidateKind() === 'relay' ? 'turn' : 'direct';
        session.peers.set(kind, peer);
        // Streams open only once the handshake is through: the visitor opens none before.
        this.addPath(session, kind, mux, handshake);
      };
      if (channel.isOpen()) start();
      else channel.onOpen(start);
    });
    peer.signal({ type: 'offer', sdp: offerSdp }).catch((err: Error) => {
      this.log.warn({ session: session.id, err: err.message }, 'bad offer from visitor');
      this.closePeer(peer);
    });
  }

  /** Meets the visitor at the relay with this session's one-time token. */
  private startRelay(session: AgentSession): void {
    if (session.relayStarted) return;
    if (this.relayMode === 'never') {
      this.log.info({ session: session.id }, 'relay request ignored: --relay never');
      return;
    }
    session.relayStarted = true;
    void (async () => {
      try {
        const pipe = await connectRelay(relayServerFor(this.options.server, session.relayUrl), {
          sessionId: session.id,
          role: 'agent',
          token: session.relayToken,
        });
        const secured = await secure(pipe, {
          role: 'responder',
          identity: this.identity,
          prologue: withSecret(new Uint8Array(0), this.handshakeSecret(session)),
        });
        if (!this.sessions.has(session.id)) {
          pipe.close();
          return;
        }
        this.addPath(session, 'relay', new Mux(new SecureFrameChannel(secured), { role: 'responder' }), Promise.resolve());
      } catch (err) {
        this.log.warn(
          { audit: 'auth.refused', code: errorCodeOf(err) ?? 'BEAM_ERR_HANDSHAKE_FAILED', session: session.id, path: 'relay', err: (err as Error).message },
          'relay path failed',
        );
      }
    })();
  }

  private addPath(session: AgentSession, kind: PathKind, mux: Mux, verified: Promise<void>): void {
    if (!this.sessions.has(session.id)) {
      mux.close('BEAM_ERR_PEER_GONE');
      return;
    }
    session.paths.add(kind, mux);
    clearTimeout(session.setupTimer);
    // The visitor's address on this path: the direct peer's own, else (TURN, relay) where the server saw it.
    const address = kind === 'direct' ? (session.peers.get('direct')?.remoteAddress() ?? session.serverSeenAddress) : session.serverSeenAddress;
    mux.on('stream', (stream) => {
      stream.on('error', () => {
        // Reset by the visitor or the connection: whoever serves it cleans up.
      });
      verified.then(
        () => this.onStream(stream, session.visitor, session, address, kind),
        () => stream.destroy(new BeamError('BEAM_ERR_HANDSHAKE_FAILED')),
      );
    });
    mux.on('rtt', () => {
      if (session.current === kind && !session.rttAnnounced) {
        session.rttAnnounced = true;
        this.announce(session, true);
      }
    });
    verified.then(
      () => this.announce(session),
      () => mux.close('BEAM_ERR_HANDSHAKE_FAILED'),
    );
  }

  /** A path of a session closed: release its peer connection; a session left with none waits for another, or ends when detached. */
  private pathDown(session: AgentSession, { kind, code, replaced }: PathDown): void {
    // Its peer connection carries nothing else (a TURN path the visitor replaced with direct ends here).
    if (kind !== 'relay') {
      const peer = session.peers.get(kind);
      session.peers.delete(kind);
      if (peer && peer !== session.peer) this.closePeer(peer);
    }
    // A path that dies while its session lives is worth a line (at warn when it was the last): say why.
    if (this.sessions.has(session.id) && !replaced)
      this.log[session.paths.size === 0 ? 'warn' : 'info']({ session: session.id, path: kind, code }, 'path down');
    if (session.paths.size === 0) {
      // A detached session cannot get a new path: it ends with its last one.
      if (session.detached) {
        this.endSession(session.id);
        return;
      }
      this.armSetupTimer(session);
    }
    this.announce(session);
  }

  /** Emits 'session' for a session's first path and 'path' when the best path changes. */
  private announce(session: AgentSession, force = false): void {
    if (!this.sessions.has(session.id)) return;
    const best = session.paths.best;
    if (!best || (best === session.current && !force)) return;
    if (best !== session.current) session.rttAnnounced = false;
    session.current = best;
    const info: SessionInfo = {
      id: session.id,
      visitor: session.visitor,
      path: session.visitor === 'gateway' ? 'gateway' : best,
      via: best,
      rtt: session.paths.get(best)?.rtt,
    };
    if (!session.announced) {
      session.announced = true;
      this.emit('session', info);
    } else {
      this.emit('path', info);
    }
  }

  /**
   * The secret a visitor must prove in the handshake: a private share's, for
   * every visitor but those who prove it per request.
   */
  private handshakeSecret(session: AgentSession): string | undefined {
    return provesPerRequest(session.visitor, this.options.kind ?? 'http') ? undefined : this.options.secret;
  }

  private udpFor(session: AgentSession): UdpForwarder {
    if (!session.udp) session.udp = new UdpForwarder(this.options.origin, (err) => this.reportUnreachable(err));
    return session.udp;
  }

  private onStream(stream: MuxStream, visitor: VisitorKind, session: AgentSession, address: string | undefined, via: PathKind): void {
    stream.on('error', () => {
      // Reset by the visitor or the connection: the forwarder already cleaned up.
    });
    const kind = this.options.kind ?? 'http';
    if (stream.protocol === StreamProtocol.HTTP && kind === 'http') {
      // Gateway and browser requests prove a private share's secret one by one; others did in the handshake.
      void this.forwarder.serve(stream, {
        trustForwarded: visitor === 'gateway',
        secret: provesPerRequest(visitor, kind) ? this.options.secret : undefined,
        visitorAddress: address,
        visitorKey: `session:${session.id}`,
        path: visitor === 'gateway' ? 'gateway' : via,
        browser: visitor === 'browser',
      });
      return;
    }
    // TCP and UDP visitors are all peer to peer: their path's address decides.
    if (this.options.ipRules && !this.options.ipRules.allows(address)) {
      stream.destroy(new BeamError('BEAM_ERR_FORBIDDEN', address));
      return;
    }
    if (stream.protocol === StreamProtocol.TCP && kind === 'tcp') {
      const limit = this.options.rateLimit;
      if (!limit) {
        serveTcp(stream, this.options.origin, (err) => this.reportUnreachable(err));
        return;
      }
      void limit.take(`session:${session.id}`).then((waitMs) => {
        if (waitMs > 0) stream.destroy(new BeamError('BEAM_ERR_RATE_LIMITED', `retry in ${Math.ceil(waitMs / 1000)} s`));
        else serveTcp(stream, this.options.origin, (err) => this.reportUnreachable(err));
      });
      return;
    }
    if (stream.protocol === StreamProtocol.UDP && kind === 'udp') {
      // The relay path: datagrams as records on one stream.
      const reader = new RecordReader();
      const forwarder = this.udpFor(session);
      stream.on('data', (chunk: Buffer) => {
        try {
          reader.push(chunk, (flow, payload) => forwarder.receive(flow, payload, (f, p) => stream.write(encodeRecord(f, p))));
        } catch (err) {
          stream.destroy(err as Error);
        }
      });
      return;
    }
    stream.destroy(new BeamError('BEAM_ERR_SHARE_KIND', `this share carries ${kind}`));
  }

  /**
   * Signaling forgot a session (this side or the visitor lost the server).
   * Its paths carry on while the visitor answers on them: each must answer a
   * fresh PING within PATH_PROBE_MS or it closes. With no path left, the
   * session ends.
   */
  private detachSession(id: string): void {
    const session = this.sessions.get(id);
    if (!session || session.detached) return;
    session.detached = true;
    clearTimeout(session.setupTimer);
    // An attempt still being set up needs signaling to finish.
    if (session.peer && ![...session.peers.values()].includes(session.peer)) {
      this.closePeer(session.peer);
      session.peer = undefined;
    }
    if (session.paths.size === 0) {
      this.endSession(id);
      return;
    }
    this.log.info({ session: id, paths: session.paths.kinds() }, 'signaling lost; the paths up carry on while the visitor answers');
    void session.paths.probe(PATH_PROBE_MS, (kind) => this.log.warn({ session: id, path: kind }, 'no answer on the path after signaling was lost'));
  }

  private endSession(id: string): void {
    const session = this.sessions.get(id);
    if (!session) return;
    this.log.debug({ session: id }, 'session ended');
    this.sessions.delete(id);
    this.visitorLimit?.leave(`session:${id}`);
    clearTimeout(session.setupTimer);
    session.paths.close('BEAM_ERR_PEER_GONE');
    session.udp?.close();
    if (session.peer) this.closePeer(session.peer);
    for (const peer of session.peers.values()) this.closePeer(peer);
    this.socket?.emit('session:close', { sessionId: id });
    // Only sessions announced with 'session' are announced as closed.
    if (session.announced) this.emit('session-closed', { id });
  }

  /** Closes a peer connection, which then no longer counts as being set up. */
  private closePeer(peer: Peer): void {
    this.pendingPeers.delete(peer);
    peer.close();
  }

  /** Sends a recorded request to the origin again (the inspector's Replay); resolves with the replay's id. */
  replay(id: string, edits?: ReplayEdits): Promise<string> {
    return this.forwarder.replay(id, edits);
  }

  /**
   * Closes every session and leaves the signaling server, freeing the share's
   * name at once (a dropped connection would keep it for the resume grace).
   * Resolves once the server confirmed, or after SHARE_CLOSE_TIMEOUT_MS.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    this.forwarder.close();
    const socket = this.socket;
    if (socket?.connected && this.registered) {
      await new Promise<void>((resolve) => socket.timeout(SHARE_CLOSE_TIMEOUT_MS).emit('share:close', {}, () => resolve()));
    }
    socket?.disconnect();
  }
}
