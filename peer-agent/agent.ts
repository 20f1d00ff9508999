/**
 * The agent: registers a share with the signaling server, answers each
 * visitor's session with a WebRTC peer connection, and serves the streams of
 * that connection from the configured origin only.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BackendListening, BackendPipe, BackendShare, BackendVisitors, NetworkBackend, SignaledHandlers, SignaledVisitor } from '../shared/backend.js';
import { DEFAULT_ORIGIN_TIMEOUT_MS, GATEWAY_LINK_WAIT_MS, HTTP_HEAD_VERSION, MAX_PENDING_HANDSHAKES, WARM_UP_WAIT_MS } from '../shared/constants.js';
import { encodeRecord, RecordReader } from '../shared/datagram.js';
import { BeamError, errorCodeOf } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import type { PathKind, SessionPath } from '../shared/paths.js';
import type { Registered, RelayMode, ShareKind, VisitorKind } from '../shared/signaling.js';
import type { AgentIdentity } from '../transport/agent-identity.js';
import type { Peer, WebRtcEngine } from '../transport/engine.js';
import type { Identity } from '../transport/identity.js';
import { type LocalLink, localChannelPair, serveLocally } from '../transport/local.js';
import { ServerBackend, type ServerListening } from '../transport/server-backend.js';
// The server backend's agent end loads with the agent, as its signaling client did before it moved there: loaded on
// demand at start(), every `beam http` printed its link ~25 ms later (its first visitor's answer came as much sooner).
import '../transport/server-listen.js';
import { type BasicCredentials, type IpRules, type RateLimit, VisitorLimit } from './access.js';
import { AgentSession, type AgentSessionContext, type IncomingSession, provesPerRequest } from './agent-session.js';
import type { HeaderRules } from './header-rules.js';
import type { Inspector } from './inspect.js';
import { type Origin, OriginForwarder, type ReplayEdits } from './origin.js';
import type { OriginProtocol } from './origin-io.js';
import type { PolicyRule } from './policy.js';
import type { SignIn } from './sign-in.js';
import { serveTcp } from './tcp.js';
import { UdpForwarder } from './udp.js';
import type { WebhookVerifier } from './webhooks.js';

/** How a visitor's traffic travels: a peer's own path, or through the server's gateway (shared/paths.ts). */
export type { SessionPath } from '../shared/paths.js';

export interface AgentOptions {
  /** The signaling server, e.g. http://127.0.0.1:7070; none when the share goes through a network backend (listenOn). */
  server?: string;
  origin: Origin;
  /** Requested share name; random when absent. */
  name?: string;
  /**
   * Load the key pair and Noise as soon as the share is up, so the first
   * visitor's handshake waits for no module loading. Default true; the
   * embedded default, whose gateway reaches it in memory, leaves it.
   */
  warmUp?: boolean;
  /** The resume token this machine kept for `name` (app/names.ts): takes the name back at once if the server holds it for us. */
  resumeToken?: string;
  /** Default 'rewrite'. */
  hostHeader?: 'rewrite' | 'preserve';
  /** --oidc (peer-agent/sign-in.ts): the agent tells the server, whose gateway then serves browsers itself (sign-in needs a top-level page). */
  signIn?: SignIn | undefined;
  /** The share's policy rules (peer-agent/policy.ts). */
  policy?: readonly PolicyRule[] | undefined;
  /** --verify-webhook (peer-agent/webhooks.ts). */
  webhook?: WebhookVerifier | undefined;
  /** --request-header-add/remove, --response-header-add/remove (peer-agent/header-rules.ts). */
  headerRules?: HeaderRules | undefined;
  /** How the agent talks to an HTTP origin: HTTP/1.1 or HTTP/2, and an https origin's certificate check. */
  originProtocol?: OriginProtocol | undefined;
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
  /** Join the pool of this name (--pool): one name, several agents. */
  pool?: boolean;
  /**
   * Makes the share private: `beam connect` visitors prove this secret in the
   * Noise handshake, gateway requests carry it (shared/constants.ts SECRET_*).
   */
  secret?: string;
}

export interface AgentComponents {
  engine: WebRtcEngine;
  logger: Logger;
  /** The agent's persistent key (transport/identity.ts), or its peer ID with the key to load when a handshake needs it; visitors verify it. */
  identity: Identity | AgentIdentity;
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
  /** The session's other paths up, best first: new streams take them should `via` close (the server's gateway keeps direct standing by beside the relay). */
  standby?: PathKind[];
}

export interface AgentEvents {
  /** The share is registered (again, after a reconnect: `resumed` is true). */
  ready: [Registered];
  session: [SessionInfo];
  /** A session's path changed (a better one came up, or the one in use died), a standby path came or went, or its RTT was first measured. */
  path: [SessionInfo];
  'session-closed': [{ id: string }];
  'origin-unreachable': [{ origin: string; code: string }];
  /** Lost the signaling server; reconnecting. */
  disconnected: [{ reason: string }];
  error: [BeamError];
}

export class Agent extends EventEmitter<AgentEvents> {
  private readonly engine: WebRtcEngine;
  /** The peer ID signaling and links name. */
  private readonly peerIdText: string;
  /** The key pair, loaded when a handshake first needs it. */
  private readonly keyPair: () => Promise<Identity>;
  private readonly relayMode: RelayMode;
  private readonly log: Logger;
  private readonly options: AgentOptions;
  private readonly forwarder: OriginForwarder;
  private readonly visitorLimit: VisitorLimit | undefined;
  private readonly sessions = new Map<string, AgentSession>();
  /** The share on its signaling server (start), which carries its sessions' signals. */
  private server: ServerListening | undefined;
  private registered: Registered | undefined;
  private closed = false;
  private lastUnreachableAt = 0;
  /** When an offer was last dropped for a limit, so a flood is one log line a second. */
  private lastDropLogAt = 0;
  private readonly sessionContext: AgentSessionContext;
  /** Takes back the offer of this share to a gateway in this process. */
  private withdrawLocal: (() => void) | undefined;
  /** The network backend the share is served through (the server's too). */
  private listening: BackendListening | undefined;
  /** A backend's visitors whose handshake is under way (MAX_PENDING_HANDSHAKES). */
  private handshaking = 0;

  constructor(components: AgentComponents, options: AgentOptions) {
    super();
    this.engine = components.engine;
    const id = components.identity;
    if ('peerIdText' in id) {
      this.peerIdText = id.peerIdText;
      this.keyPair = () => id.load();
    } else {
      this.peerIdText = id.peerId.toString();
      this.keyPair = () => Promise.resolve(id);
    }
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
        protocol: options.originProtocol,
        headerRules: options.headerRules,
        webhook: options.webhook,
        policy: options.policy,
        signIn: options.signIn,
      },
    );
    this.sessionContext = this.makeSessionContext();
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

  /**
   * Serves the share through its signaling server (transport/server-backend.ts):
   * connects and registers; resolves with the first registration or rejects
   * with a BeamError. After a drop it registers again under the same name
   * ('ready' with `resumed`). When the server's gateway opens its link to the
   * share as it registers (`gatewayLink`), resolves once that link is up (or
   * after GATEWAY_LINK_WAIT_MS): the link is announced when a visitor can
   * use it at once.
   */
  async start(): Promise<Registered> {
    const server = this.options.server;
    if (server === undefined) throw new BeamError('BEAM_ERR_INTERNAL', 'an agent with no server to register with');
    const gatewayLink = this.gatewayLinkUp();
    // While signaling connects (a TLS handshake and round trips to a server across the internet).
    const warm = this.options.warmUp !== false ? this.warmUp() : undefined;
    const backend = new ServerBackend({
      server,
      logger: this.log,
      agent: {
        relay: this.relayMode,
        http: HTTP_HEAD_VERSION,
        signIn: this.options.signIn !== undefined,
        pool: this.options.pool === true,
        token: this.options.token,
        resumeToken: this.options.resumeToken,
        registerAfter: warm,
      },
    });
    try {
      const listening = await backend.listen(this.backendShare(this.options.name), this.visitors(backend.name), (l) => {
        this.server = l;
        l.on('ready', (r) => {
          this.registered = r;
          this.offerLocally(r.name);
          this.log.info({ audit: 'share.registered', share: r.name, resumed: r.resumed }, 'share registered');
          this.emit('ready', r);
        });
        l.on('disconnected', (e) => {
          if (this.closed) return;
          this.emit('disconnected', e);
          // The name may move while this side is away: the gateway in this process asks signaling until it is back.
          this.withdrawLocal?.();
        });
        l.on('error', (err) => this.emit('error', err));
      });
      this.listening = listening;
      if (this.closed) throw new BeamError('BEAM_ERR_INTERNAL', 'the agent closed while it registered');
      if (listening.first.gatewayLink === true) await gatewayLink.wait(GATEWAY_LINK_WAIT_MS);
      if (this.closed) throw new BeamError('BEAM_ERR_INTERNAL', 'the agent closed while it registered');
      return listening.first;
    } catch (err) {
      await this.close();
      throw err;
    } finally {
      gatewayLink.stop();
    }
  }

  /** Hears of the first session of the server's gateway with a path up (its 'session' event). */
  private gatewayLinkUp(): { wait(ms: number): Promise<void>; stop(): void } {
    let up = false;
    let done: () => void = () => {};
    const onSession = (s: SessionInfo): void => {
      if (s.visitor !== 'gateway') return;
      up = true;
      done();
    };
    this.on('session', onSession);
    return {
      wait: (ms) =>
        new Promise<void>((resolve) => {
          if (up) return resolve();
          const timer = setTimeout(resolve, ms);
          timer.unref();
          done = () => {
            clearTimeout(timer);
            resolve();
          };
        }),
      stop: () => {
        this.off('session', onSession);
      },
    };
  }

  /**
   * Loads what a visitor's first path will need (the key pair and Noise)
   * while signaling connects, and registers only once it has, or after
   * WARM_UP_WAIT_MS: the server's gateway opens its link to the share as it
   * registers, so a handshake that ran beside the loading made the visitor
   * who came the moment the link printed wait for it. Against a server
   * across the internet the loading fits inside the connection's own round
   * trips; on loopback the link prints a few ms later, and its first visitor
   * waits that much less. Resolves, never rejects.
   */
  private warmUp(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, WARM_UP_WAIT_MS);
      timer.unref();
      setImmediate(() => {
        if (this.closed) return resolve();
        void Promise.allSettled([this.keyPair(), import('../transport/secure.js')]).then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    });
  }

  /** Offers the share to the server's gateway if it runs in this process (transport/local.ts): it then reaches this agent in memory. */
  private offerLocally(name: string): void {
    this.withdrawLocal?.();
    if (this.options.server !== undefined) this.withdrawLocal = serveLocally(this.options.server, name, () => this.acceptLocal());
  }

  /**
   * Serves the share as `name` through a network backend instead of a
   * server (`--via libp2p`, transport/backend.ts): the backend announces it
   * and hands in each visitor's pipe. Resolves with where visitors find it.
   */
  async listenOn(backend: NetworkBackend, name: string): Promise<BackendListening> {
    const listening = await backend.listen(this.backendShare(name), this.visitors(backend.name));
    if (this.closed) {
      await listening.close();
      throw new BeamError('BEAM_ERR_INTERNAL', 'the agent closed while the backend started');
    }
    this.listening = listening;
    this.log.info({ audit: 'share.registered', share: name, via: backend.name }, 'share listening');
    return listening;
  }

  /** What a backend learns of the share: never its secret, which is proven inside Beam's Noise. */
  private backendShare(name: string | undefined): BackendShare {
    return { name, kind: this.options.kind ?? 'http', private: this.options.secret !== undefined, peerId: this.peerIdText, key: this.keyPair };
  }

  /** Where a backend's visitors go: a pipe to its Noise handshake, a signaled session to its paths. */
  private visitors(via: string): BackendVisitors {
    return { pipe: (incoming) => this.acceptDialed(incoming, via), signaled: (visitor) => this.acceptSignaled(visitor) };
  }

  /**
   * A backend's visitor: Noise on its pipe first (the agent's key; a private
   * share's secret in the prologue, as on the relay), then a session whose
   * one path it is. A visitor over --max-visitors, or who fails the
   * handshake, gets nothing.
   */
  private acceptDialed(incoming: BackendPipe, via: string): void {
    const id = `${via}-${randomBytes(9).toString('base64url')}`;
    const key = `session:${id}`;
    if (this.closed) {
      incoming.pipe.close();
      return;
    }
    if (this.handshaking >= MAX_PENDING_HANDSHAKES) {
      const now = Date.now();
      if (now - this.lastDropLogAt >= 1_000) {
        this.lastDropLogAt = now;
        this.log.warn({ audit: 'limit.hit', code: 'BEAM_ERR_LIMIT_REACHED', via, limit: `${MAX_PENDING_HANDSHAKES} handshakes at once` }, 'visitor dropped');
      }
      incoming.pipe.close();
      return;
    }
    // Over --max-visitors: turned away after Noise, with a GOAWAY that says why (an unauthenticated close would say nothing).
    const refused = this.visitorLimit !== undefined && !this.visitorLimit.enter(key, true);
    this.handshaking++;
    void (async () => {
      try {
        const { SecureFrameChannel, secure, withSecret } = await import('../transport/secure.js');
        const secured = await secure(incoming.pipe, {
          role: 'responder',
          identity: await this.keyPair(),
          prologue: withSecret(new Uint8Array(0), this.options.secret),
        });
        if (refused) {
          this.log.info(
            { audit: 'limit.hit', code: 'BEAM_ERR_MAX_VISITORS', session: id, via, max: this.visitorLimit?.max },
            'visitor refused: --max-visitors',
          );
          new Mux(new SecureFrameChannel(secured), { role: 'responder', ping: false }).goAway('BEAM_ERR_MAX_VISITORS');
          return;
        }
        if (this.closed) {
          incoming.pipe.close();
          this.visitorLimit?.leave(key);
          return;
        }
        const session = new AgentSession(this.sessionContext, {
          id,
          visitor: 'cli',
          iceServers: [],
          relayToken: '',
          relayUrl: undefined,
          serverSeenAddress: incoming.address,
          dialed: true,
        });
        this.sessions.set(id, session);
        session.attachDialed(incoming.path, new Mux(new SecureFrameChannel(secured), { role: 'responder' }));
      } catch (err) {
        if (!refused) this.visitorLimit?.leave(key);
        this.log.warn(
          { audit: 'auth.refused', code: errorCodeOf(err) ?? 'BEAM_ERR_HANDSHAKE_FAILED', session: id, path: incoming.path, via, err: (err as Error).message },
          'handshake failed',
        );
      } finally {
        this.handshaking--;
      }
    })();
  }

  /** A session for the gateway in this process: the agent's end of an in-memory channel, with every check as on any path. */
  private acceptLocal(): LocalLink {
    const [gatewayEnd, agentEnd] = localChannelPair(true);
    const incoming: IncomingSession = {
      id: `local-${randomBytes(9).toString('base64url')}`,
      visitor: 'gateway',
      iceServers: [],
      relayToken: '',
      relayUrl: undefined,
      serverSeenAddress: undefined,
      local: true,
    };
    const session = new AgentSession(this.sessionContext, incoming);
    this.sessions.set(incoming.id, session);
    session.attachLocal(new Mux(agentEnd, { role: 'responder' }));
    return { channel: gatewayEnd, kind: this.options.kind ?? 'http' };
  }

  /** A session the server paired with this agent: its paths come from the signals on its channel. */
  private acceptSignaled(visitor: SignaledVisitor): SignaledHandlers | undefined {
    const incoming: IncomingSession = {
      id: visitor.id,
      visitor: visitor.visitor,
      iceServers: visitor.iceServers,
      relayToken: visitor.relayToken,
      relayUrl: visitor.relayUrl,
      serverSeenAddress: visitor.serverSeenAddress,
      ...(visitor.relayFirst === true ? { relayFirst: true } : {}),
      ...(visitor.relayPreferred === true ? { relayPreferred: true } : {}),
      ...(visitor.plainLink === true ? { plainLink: true } : {}),
    };
    // The server's own gateway is not a visitor: the clients behind it are, one by one.
    if (incoming.visitor !== 'gateway' && this.visitorLimit && !this.visitorLimit.enter(`session:${incoming.id}`, true)) {
      this.log.info(
        { audit: 'limit.hit', code: 'BEAM_ERR_MAX_VISITORS', session: incoming.id, address: incoming.serverSeenAddress, max: this.visitorLimit.max },
        'visitor refused: --max-visitors',
      );
      visitor.close('BEAM_ERR_MAX_VISITORS');
      return undefined;
    }
    const session = new AgentSession(this.sessionContext, incoming);
    this.sessions.set(incoming.id, session);
    return { signal: (signal) => session.signal(signal), detach: (visitorLost) => session.detach(visitorLost), end: () => session.end() };
  }

  /** What every session needs of the agent (peer-agent/agent-session.ts). */
  private makeSessionContext(): AgentSessionContext {
    return {
      engine: this.engine,
      identity: this.keyPair,
      logger: this.log,
      server: this.options.server ?? '',
      relayMode: this.relayMode,
      kind: this.options.kind ?? 'http',
      secret: this.options.secret,
      allowsAddress: (address) => !this.options.ipRules || this.options.ipRules.allows(address),
      pendingPeers: new Set<Peer>(),
      offerDropped: (session, limit) => {
        const now = Date.now();
        if (now - this.lastDropLogAt < 1_000) return;
        this.lastDropLogAt = now;
        this.log.warn({ audit: 'limit.hit', code: 'BEAM_ERR_LIMIT_REACHED', session: session.id, address: session.serverSeenAddress, limit }, 'offer dropped');
      },
      signal: (sessionId, signal) => this.server?.signal(sessionId, signal),
      closed: (sessionId, code) => this.server?.closeSession(sessionId, code),
      serve: (stream, session, address, via) => this.onStream(stream, session, address, via),
      udp: (session) => {
        session.udp ??= new UdpForwarder(this.options.origin, (err) => this.reportUnreachable(err));
        return session.udp;
      },
      announce: (session, first) => {
        const best = session.best;
        if (!best) return;
        const info: SessionInfo = { id: session.id, visitor: session.visitor, path: session.visitor === 'gateway' ? 'gateway' : best.via, ...best };
        this.emit(first ? 'session' : 'path', info);
      },
      ended: (session, announced) => {
        if (this.sessions.get(session.id) !== session) return;
        this.sessions.delete(session.id);
        this.visitorLimit?.leave(`session:${session.id}`);
        // Only sessions announced with 'session' are announced as closed.
        if (announced) this.emit('session-closed', { id: session.id });
      },
    };
  }

  private onStream(stream: MuxStream, session: AgentSession, address: string | undefined, via: PathKind): void {
    const visitor = session.visitor;
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
      const forwarder = this.sessionContext.udp(session);
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

  private endSession(id: string): void {
    this.sessions.get(id)?.end();
  }

  /** Sends a recorded request to the origin again (the inspector's Replay); resolves with the replay's id. */
  replay(id: string, edits?: ReplayEdits): Promise<string> {
    return this.forwarder.replay(id, edits);
  }

  /**
   * Closes every session and leaves the backend: a server frees the share's
   * name at once (a dropped connection would keep it for the resume grace),
   * once it confirmed or after SHARE_CLOSE_TIMEOUT_MS.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.withdrawLocal?.();
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    this.forwarder.close();
    await (this.listening ?? this.server)?.close();
  }
}
