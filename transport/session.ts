/**
 * The visitor's end of a session with a share, over whichever paths come up:
 *
 *   direct  WebRTC, host or server-reflexive candidates (hole punched)
 *   turn    WebRTC through a TURN server
 *   relay   a WebSocket through the Beam server's relay, Noise-encrypted
 *
 * Direct WebRTC starts first. If no path is up within DIRECT_PATH_TIMEOUT_MS,
 * or the peer connection fails, the relay starts too (relay mode 'auto').
 * Each new stream takes the best path that is up (direct, then turn, then
 * relay), so when direct comes up late, or comes back, new streams move to
 * it; streams already open finish where they are. A path that dies is
 * replaced: the relay starts when direct dies, and direct is tried again
 * every DIRECT_RETRY_MS while the session rides TURN or the relay, in a new
 * peer connection beside the one that carries TURN. When it comes up, new
 * streams take it and the TURN path closes once its last stream is done.
 *
 * Every path authenticates the agent with Noise: the visitor names the peer
 * ID it expects (from signaling, or from a `beam connect` link) and a
 * mismatch ends the session with BEAM_ERR_PEER_MISMATCH, never a fallback.
 * The one exception is a browser page's direct path (`directNoise: false`),
 * which DTLS alone protects: see VisitorSessionOptions.directNoise.
 */
import { EventEmitter } from 'node:events';
import type { PeerId } from '@libp2p/interface';
import type { Logger } from 'pino';
import type { Socket } from 'socket.io-client';
import type { SignaledDial } from '../shared/backend.js';
import { HTTP_HEAD_VERSION, NOISE_CHANNEL_LABEL, PATH_PROBE_MS, PATH_WAIT_MS, STREAM_CHANNEL_LABEL } from '../shared/constants.js';
import { BeamError, type ErrorCode, isErrorCode } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import { withoutTurn } from '../shared/ice.js';
import { type FrameChannel, Mux, type MuxStream } from '../shared/mux.js';
import { type PathKind, pathOrder } from '../shared/paths.js';
import type { ClientToServerEvents, RelayMode, ServerToClientEvents, SessionOpened, ShareKind, Signal } from '../shared/signaling.js';
import type { Datagrams } from './datagrams.js';
import type { DataChannel, Peer, WebRtcEngine } from './engine.js';
import type { Identity } from './identity.js';
import type { LocalLink } from './local-agents.js';
import { type PathAction, type PathEvent, relayPolicy } from './path-policy.js';
import { type PathDown, PathPolicyRunner, PathSet } from './paths.js';
import type { ServerBackend } from './server-backend.js';

/**
 * Noise and the libp2p keys load when a path first needs them: a browser
 * page on the direct path never does, and keeps them out of its bundle
 * (browser-client/build.mjs splits them into a chunk of their own).
 */
const loadSecure = (): Promise<typeof import('./secure.js')> => import('./secure.js');

/** The relay client, likewise: only a session that falls back to the relay loads it. */
const loadRelay = (): Promise<typeof import('./relay.js')> => import('./relay.js');
const loadIdentity = (): Promise<typeof import('./identity.js')> => import('./identity.js');
const loadDatagrams = (): Promise<typeof import('./datagrams.js')> => import('./datagrams.js');

export type VisitorSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type { PathKind } from '../shared/paths.js';

export interface PathInfo {
  path: PathKind;
  rtt: number | undefined;
  /** Milliseconds from asking signaling for the session to this path coming up. */
  afterMs: number;
}

export interface VisitorSessionComponents {
  engine: WebRtcEngine;
  logger: Logger;
  /** The server that opens the session and carries its signals; none when every session is another backend's (`local` a promise). */
  server?: ServerBackend | undefined;
  /** This visitor's key for Noise, or how to make one when a path first needs it. */
  identity: Identity | (() => Promise<Identity>);
}

export interface VisitorSessionOptions {
  share: string;
  /** Base URL of the Beam server (its relay lives at RELAY_PATH). */
  server: string;
  relay: RelayMode;
  /** The peer the agent must prove it is. Default: the peer ID signaling names. */
  expectPeer?: PeerId;
  /** Default DIRECT_PATH_TIMEOUT_MS. */
  directTimeoutMs?: number;
  /** Relay mode 'auto': the relay at once beside direct, the first request on whichever is up first (transport/path-policy.ts). Default false. */
  relayFirst?: boolean;
  /**
   * Relay mode 'auto': new streams take the relay and direct stands by,
   * taking them only once the relay is gone (the server's own gateway, whose
   * relay is in its process: shared/paths.ts RELAY_PREFERRED_ORDER). Implies relayFirst.
   * Default false.
   */
  relayPreferred?: boolean;
  /**
   * `relay` is a preference the agent's own 'always' or 'never' overrides,
   * instead of a demand that refuses it (the server's own gateway: its
   * relay runs in its process, so either path reaches the same machine).
   * Default false: a visitor's 'always' and an agent's 'never' refuse each
   * other with BEAM_ERR_RELAY_REFUSED.
   */
  relayYields?: boolean;
  /** A private share's secret (from the link), proven in the Noise handshake (or, with directNoise false, by the caller per request). */
  secret?: string;
  /** This visitor proves a private share's secret per request instead (the gateway, browser pages). */
  requestLevelAccess?: boolean;
  /**
   * False: the direct path runs on DTLS alone, without the Noise handshake
   * (a browser page, whose code the server serves anyway, so Noise could not
   * guard it against the server). Agents allow it only for browser visitors
   * to HTTP shares, who prove a private share's secret per request. The
   * relay path always runs Noise. Default true.
   */
  directNoise?: boolean;
  /**
   * The server's own gateway: its relay path runs without Noise when the
   * server says the agent agreed (SessionOpened.plainLink: both links private,
   * TLS or loopback). Default false.
   */
  plainRelay?: boolean;
  /**
   * The share's agent runs in this process (transport/local.ts), or a network
   * backend dialed it and Noise is through (a promise: transport/backend.ts,
   * `--via libp2p`): the session rides this channel alone, with no
   * signaling, and ends with it.
   */
  local?: LocalLink | Promise<LocalLink>;
  /** A pooled share: open the session with a member this visitor has none with yet (BEAM_ERR_POOL_COVERED if there is none). */
  spread?: boolean;
}

export interface VisitorSessionEvents {
  /** The path new streams take changed (or the first came up). */
  path: [PathInfo];
  /** A datagram from a UDP share's origin, for `flow`. */
  datagram: [number, Buffer];
  /** A direct (ICE) attempt failed; the session may go on over TURN or the relay. */
  'direct-failed': [BeamError];
  /** Signaling opened the session: its id, which signals for it carry. */
  opened: [string];
  /** The server says the agent lost it (BEAM_ERR_SIGNALING_LOST): the session was detached, and its paths are checked. */
  'agent-lost': [];
  /** A path died while the session lives (a cut link, a peer gone); another is being set up. */
  'path-down': [PathKind, ErrorCode | undefined];
  close: [];
}

export { nextDirectRetryDelay, relayPolicy } from './path-policy.js';

export class VisitorSession extends EventEmitter<VisitorSessionEvents> {
  readonly share: string;
  sessionId: string | undefined;
  /** Resolves once a first path is up; rejects with a BeamError. */
  readonly ready: Promise<void>;
  private readonly log: Logger;
  private readonly c: VisitorSessionComponents;
  private readonly options: VisitorSessionOptions;
  private readonly paths: PathSet;
  /** When to set up, retry and give up paths: a pure policy (transport/path-policy.ts); this class carries it out. */
  private readonly policy: PathPolicyRunner;
  private opened: SessionOpened | undefined;
  /** The server's session: its signal channel. */
  private dialed: SignaledDial | undefined;
  /** The channel `local` named, once there. */
  private link: LocalLink | undefined;
  private expected: PeerId | undefined;
  private identityPromise: Promise<Identity> | undefined;
  /** The latest direct attempt's peer connection. */
  private peer: Peer | undefined;
  private offerSdp: string | undefined;
  private answerSdp: string | undefined;
  /**
   * How far the latest direct attempt and the relay got, for the error of a
   * session that found no path in time: which step hung says what to check.
   */
  private readonly progress: { direct?: string; relay?: string } = {};
  /** Marks the latest direct attempt's progress (set by startDirect). */
  private directReached: ((step: string) => void) | undefined;
  /** Peer connections whose stream channel carries a path now (a retry must not close them). */
  private readonly carrying = new Set<Peer>();
  /** When signaling for this session went (the paths up carry on, no new one can be set up). */
  private detachedAt: number | undefined;
  /** Signaling went because the server says the agent lost it (not this side): the paths are probed. */
  private peerLost = false;
  private readonly startedAt = performance.now();
  private settle: { resolve: () => void; reject: (err: BeamError) => void } | undefined;
  /** UDP shares: the unreliable channel of the direct path, and the record stream of the relay. */
  private datagrams: Promise<Datagrams> | undefined;
  private datagramsReady: Datagrams | undefined;

  constructor(components: VisitorSessionComponents, options: VisitorSessionOptions) {
    super();
    this.c = components;
    this.options = options;
    this.share = options.share;
    this.log = components.logger.child({ share: options.share });
    this.paths = new PathSet(pathOrder(options.relayPreferred));
    this.policy = new PathPolicyRunner(
      {
        role: 'visitor',
        relayFirst: options.relayFirst === true || options.relayPreferred === true,
        ...(options.directTimeoutMs !== undefined ? { directTimeoutMs: options.directTimeoutMs } : {}),
      },
      (action) => this.perform(action),
    );
    this.paths.on('change', (best) => {
      if (best) this.emit('path', { path: best, rtt: this.paths.get(best)?.rtt, afterMs: Math.round(performance.now() - this.startedAt) });
    });
    this.paths.on('down', (down) => this.pathDown(down));
    this.ready = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // A session nobody awaits any more must not crash the process when it fails.
    this.ready.catch(() => {});
    void this.connect();
  }

  private get closed(): boolean {
    return this.policy.state.closed;
  }

  /** What the share carries, once the session is open. */
  get kind(): ShareKind | undefined {
    return this.opened?.kind ?? this.link?.kind;
  }

  /** The HTTP head codec the agent speaks (1 until the session is open; an in-process agent is this build's). */
  get agentHttp(): number {
    return !globalThis.__BEAM_PAGE__ && this.options.local ? HTTP_HEAD_VERSION : (this.opened?.agentHttp ?? 1);
  }

  /** A pooled share (`--pool`): how many agents served it when this session opened; undefined for one agent's share. */
  get poolSize(): number | undefined {
    return this.opened?.pool;
  }

  /** The path new streams take now. */
  get path(): PathKind | undefined {
    return this.paths.best;
  }

  /** Whether a path of this kind is up. */
  hasPath(kind: PathKind): boolean {
    return this.paths.has(kind);
  }

  get rtt(): number | undefined {
    return this.paths.rtt;
  }

  /** Milliseconds since the path new streams take last heard from the agent (its PONGs come every PING_INTERVAL_MS). */
  get silentMs(): number | undefined {
    return this.paths.silentMs;
  }

  /** Bytes this session has sent and received so far, over all paths. */
  get bytes(): { sent: number; received: number } {
    return this.paths.bytes;
  }

  /**
   * Sends a datagram to a UDP share: on the direct path's unreliable channel
   * when it is open, else as a record on the relay. False when neither is up
   * (the datagram is dropped, as UDP may).
   */
  sendDatagram(flow: number, payload: Uint8Array): boolean {
    return this.datagramsReady?.send(flow, payload) ?? false;
  }

  /** The datagram channels of a UDP share (transport/datagrams.ts), loaded on first use. */
  private udp(): Promise<Datagrams> {
    this.datagrams ??= loadDatagrams().then(({ Datagrams }) => {
      this.datagramsReady = new Datagrams((flow, payload) => this.emit('datagram', flow, payload));
      return this.datagramsReady;
    });
    return this.datagrams;
  }

  /**
   * Opens a stream on the best path, waiting up to `waitMs` for one while the
   * session is replacing a path that died: a request that arrives during a
   * reconnect is carried, not refused.
   */
  async stream(protocol: StreamProtocol, waitMs = PATH_WAIT_MS): Promise<MuxStream> {
    if (this.paths.best === undefined && !this.closed) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.off('path', done);
          this.off('close', done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        timer.unref();
        this.on('path', done);
        this.on('close', done);
      });
    }
    if (this.paths.best === undefined)
      throw new BeamError('BEAM_ERR_PEER_GONE', this.closed ? 'the session ended' : `no path to the agent within ${waitMs} ms`);
    return this.openStream(protocol);
  }

  /** Opens a stream on the best path that is up. */
  openStream(protocol: StreamProtocol): MuxStream {
    const kind = this.paths.best;
    const mux = kind && this.paths.get(kind);
    if (!mux) throw new BeamError('BEAM_ERR_PEER_GONE', 'no path to the agent');
    return mux.openStream(protocol);
  }

  // ------------------------------------------------------------ the policy's shell

  private dispatch(event: PathEvent): void {
    this.policy.dispatch(event);
  }

  private perform(action: Exclude<PathAction, { type: 'arm' | 'disarm' }>): void {
    switch (action.type) {
      case 'start-direct':
        if (action.reason) this.log.info({ session: this.sessionId, path: this.paths.best }, action.reason);
        this.startDirect(action.attempt, action.stunOnly);
        return;
      case 'abort-direct':
        if (this.peer && !this.carrying.has(this.peer)) this.peer.close();
        return;
      case 'start-relay':
        if (action.reason) this.log.info({ session: this.sessionId }, action.reason);
        this.startRelay();
        return;
      case 'supersede':
        this.paths.supersede(action.kind);
        return;
      case 'probe':
        // This side lost the server: the agent most likely did not, and a path that went with the network
        // goes silent and closes at PATH_DEAD_MS. Only the server's word that the agent lost it asks for a probe.
        if (!this.peerLost) {
          this.log.info({ session: this.sessionId, paths: this.paths.kinds() }, 'signaling lost; the paths up carry on');
          return;
        }
        this.log.info({ session: this.sessionId, paths: this.paths.kinds() }, 'the agent lost signaling; the paths up carry on while it answers');
        void this.paths.probe(PATH_PROBE_MS, (kind) =>
          this.log.warn({ session: this.sessionId, path: kind }, 'no answer on the path after signaling was lost'),
        );
        return;
      case 'ready':
        this.settle?.resolve();
        this.settle = undefined;
        return;
      case 'reject':
        this.settle?.reject(this.withProgress(action.error));
        this.settle = undefined;
        return;
      case 'close':
        this.paths.close('BEAM_ERR_PEER_GONE');
        this.peer?.close();
        this.dialed?.close();
        this.emit('close');
        return;
    }
  }

  private async connect(): Promise<void> {
    let opened: SessionOpened;
    let mode: RelayMode;
    try {
      if (!globalThis.__BEAM_PAGE__ && this.options.local) {
        // In memory, or a backend's path already through Noise: nothing to signal.
        // (A turn later at least, so that whoever made the session hears its first 'path'.)
        const link = await this.options.local;
        this.link = link;
        const mux = new Mux(link.channel, { role: 'initiator' });
        // A UDP share's datagrams ride records on a stream, as on the relay: a backend's pipe is reliable.
        if (link.kind === 'udp') (await this.udp()).useStream(mux.openStream(StreamProtocol.UDP));
        this.addPath(link.path ?? 'local', mux, () => link.channel.close());
        return;
      }
      opened = await this.open();
      this.opened = opened;
      this.sessionId = opened.sessionId;
      this.emit('opened', opened.sessionId);
      if (opened.private && this.options.secret === undefined && !this.options.requestLevelAccess) {
        throw new BeamError('BEAM_ERR_PRIVATE', 'the link has no #secret=');
      }
      if (this.options.directNoise === false && opened.kind !== 'http') {
        throw new BeamError('BEAM_ERR_SHARE_KIND', `"${this.share}" is a ${opened.kind} share: open it with beam connect`);
      }
      mode = this.options.relayYields && opened.agentRelay !== 'auto' ? opened.agentRelay : relayPolicy(this.options.relay, opened.agentRelay);
      // A link naming a bad peer ID fails here, before any path, wherever Noise runs first.
      if (this.options.directNoise !== false || mode === 'always') await this.expectedPeer();
    } catch (err) {
      this.settle?.reject(err instanceof BeamError ? err : new BeamError('BEAM_ERR_INTERNAL', (err as Error).message));
      this.settle = undefined;
      this.dispatch({ type: 'close' });
      return;
    }
    if (this.closed) return;
    // The first attempt leaves TURN out on both sides (the offer says so): libjuice keeps the
    // first pair that works, which may be a TURN pair even where a direct one exists.
    this.dispatch({ type: 'open', mode, turnOffered: withoutTurn(opened.iceServers).length !== opened.iceServers.length });
  }

  /** The peer the agent must prove it is in Noise: the link's, else the one signaling names. */
  private async expectedPeer(): Promise<PeerId> {
    if (!this.expected) this.expected = this.options.expectPeer ?? (await loadIdentity()).parsePeerId(this.opened?.agentPeerId ?? '');
    return this.expected;
  }

  /** The secret Noise proves: none for visitors who prove it per request (directNoise false). */
  private handshakeSecret(): string | undefined {
    return this.options.directNoise === false ? undefined : this.options.secret;
  }

  private ownIdentity(): Promise<Identity> {
    const id = this.c.identity;
    this.identityPromise ??= typeof id === 'function' ? id() : Promise.resolve(id);
    return this.identityPromise;
  }

  private async open(): Promise<SessionOpened> {
    const server = this.c.server;
    if (!server) throw new BeamError('BEAM_ERR_INTERNAL', 'a session with no server to open it');
    // Relay first (or only): the agent may go to the relay with the session, not a signal later.
    const relayFirst =
      this.options.relay === 'always' || ((this.options.relayFirst === true || this.options.relayPreferred === true) && this.options.relay !== 'never');
    const relayPreferred = this.options.relayPreferred === true && this.options.relay === 'auto';
    this.dialed = await server.dial(
      { share: this.share },
      {
        ...(this.options.spread ? { spread: true } : {}),
        ...(relayFirst ? { relayFirst: true } : {}),
        ...(relayPreferred ? { relayPreferred: true } : {}),
        handlers: {
          signal: (signal) => this.signal(signal),
          detach: () => this.detach(),
          closed: (code) => {
            if (code !== 'BEAM_ERR_SIGNALING_LOST') return this.close(isErrorCode(code) ? code : undefined);
            // The agent lost the server, not necessarily the session: its paths are checked instead.
            this.detach(true);
            this.emit('agent-lost');
          },
        },
      },
    );
    if (this.closed) this.dialed.close();
    return this.dialed.opened;
  }

  private emitSignal(signal: Signal): void {
    this.dialed?.signal(signal);
  }

  // ------------------------------------------------------------ direct

  /** Sets up direct attempt `attempt`: a new peer connection (TURN left out when `stunOnly`). */
  private startDirect(attempt: number, stunOnly: boolean): void {
    const opened = this.opened;
    if (!opened) return;
    // A retry runs beside the peer connection that carries TURN; an attempt that never came up goes.
    if (this.peer && !this.carrying.has(this.peer)) this.peer.close();
    this.offerSdp = undefined;
    this.answerSdp = undefined;
    const all = opened.iceServers;
    const peer = this.c.engine.createPeer({ iceServers: stunOnly ? withoutTurn(all) : all });
    this.peer = peer;
    const reached = (step: string): void => {
      if (this.peer === peer) this.progress.direct = `attempt ${attempt} ${step}`;
    };
    this.directReached = reached;
    reached('sent its offer; no answer from the agent');
    let up = false;
    const failed = (err: BeamError): void => {
      if (this.peer !== peer || up) return;
      peer.close();
      this.directFailed(attempt, err);
    };
    peer.onSignal((signal) => {
      if (this.peer !== peer) return;
      if (signal.type === 'offer') {
        this.offerSdp = signal.sdp;
        this.emitSignal(stunOnly ? { ...signal, turn: false } : signal);
        return;
      }
      this.emitSignal(signal);
    });
    peer.onStateChange((state) => {
      if (state === 'connected') reached('connected (ICE, DTLS, SCTP); no channel open');
      if (state !== 'failed' && state !== 'closed') return;
      if (!up) failed(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `peer connection ${state}`));
    });
    /**
     * A channel on this attempt's peer connection, or undefined when the
     * connection refuses one (libdatachannel throws when its SCTP transport
     * was reset under it): the attempt fails, and the process goes on.
     */
    const channel = (label: string): DataChannel | undefined => {
      try {
        return peer.createDataChannel(label);
      } catch (err) {
        failed(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `channel refused: ${(err as Error).message}`));
        return undefined;
      }
    };
    const openStreams = (): void => {
      if (this.peer !== peer || this.closed) return;
      const streams = channel(STREAM_CHANNEL_LABEL);
      if (!streams) return;
      reached('opening its stream channel');
      streams.onOpen(() => {
        if (this.peer !== peer || this.closed) return;
        up = true;
        const mux = new Mux(streams, { role: 'initiator' });
        const pathUp = (): void => {
          const kind: PathKind = peer.selectedCandidateKind() === 'relay' ? 'turn' : 'direct';
          this.carrying.add(peer);
          this.addPath(kind, mux, () => {
            this.carrying.delete(peer);
            if (this.peer === peer) this.peer = undefined;
            peer.close();
          });
          peer.onStateChange((state) => {
            if (state === 'failed' || state === 'closed' || state === 'disconnected') mux.close('BEAM_ERR_PEER_GONE');
          });
        };
        // A UDP share's path is up once its datagram channel is: the first datagram must not find it closed.
        if (!globalThis.__BEAM_PAGE__ && this.opened?.kind === 'udp') {
          void this.udp()
            .then((d) => d.openChannel(peer, pathUp))
            .catch(() => {
              // The datagram channel was refused (a reset connection): this attempt carries nothing.
              mux.close('BEAM_ERR_PEER_GONE');
              if (this.peer === peer) this.peer = undefined;
              peer.close();
            });
        } else pathUp();
      });
    };
    if (this.options.directNoise === false) {
      openStreams();
      return;
    }
    const noiseChannel = channel(NOISE_CHANNEL_LABEL);
    if (!noiseChannel) return;
    noiseChannel.onOpen(() => {
      reached('in its Noise handshake');
      void (async () => {
        try {
          if (!this.offerSdp || !this.answerSdp) throw new BeamError('BEAM_ERR_HANDSHAKE_FAILED', 'channel open before the descriptions were exchanged');
          const { channelPipe, directPrologue, secure, withSecret } = await loadSecure();
          await secure(channelPipe(noiseChannel), {
            role: 'initiator',
            identity: await this.ownIdentity(),
            remotePeer: await this.expectedPeer(),
            prologue: withSecret(directPrologue(this.offerSdp, this.answerSdp), this.handshakeSecret()),
          });
        } catch (err) {
          failed(err instanceof BeamError ? err : new BeamError('BEAM_ERR_HANDSHAKE_FAILED', (err as Error).message));
          return;
        }
        openStreams();
      })();
    });
  }

  /** A session that found no path says how far each attempt got: which step hung, or failed. */
  private withProgress(err: BeamError): BeamError {
    const { direct, relay } = this.progress;
    if (err.code !== 'BEAM_ERR_AGENT_UNREACHABLE' || (!direct && !relay)) return err;
    const steps = [direct && `direct ${direct}`, relay && `relay ${relay}`].filter(Boolean).join('; ');
    return new BeamError(err.code, `${err.detail} (${steps})`);
  }

  /** On a private share, a handshake that fails means (most likely) a wrong secret: say so. */
  private explain(err: BeamError): BeamError {
    if (err.code === 'BEAM_ERR_HANDSHAKE_FAILED' && this.opened?.private && this.handshakeSecret() !== undefined) {
      return new BeamError('BEAM_ERR_PRIVATE', "the handshake failed: the link's secret is wrong (or someone is in the middle)");
    }
    return err;
  }

  private directFailed(attempt: number, cause: BeamError): void {
    const err = this.explain(cause);
    this.log.info({ session: this.sessionId, attempt, code: err.code, err: err.detail }, 'direct path failed');
    this.emit('direct-failed', err);
    this.dispatch({ type: 'direct-failed', attempt, error: err });
  }

  // ------------------------------------------------------------ relay

  private startRelay(): void {
    const opened = this.opened;
    if (!opened) return;
    this.emitSignal({ type: 'relay' });
    this.progress.relay = 'connecting to the relay';
    void (async () => {
      try {
        // The server's own gateway is on the node that set the session up; anyone else goes where signaling says.
        const { connectRelay, relayServerFor } = await loadRelay();
        const server = this.options.requestLevelAccess ? this.options.server : relayServerFor(this.options.server, opened.relayUrl);
        const pipe = await connectRelay(server, { sessionId: opened.sessionId, role: 'visitor', token: opened.relayToken });
        if (this.closed) {
          pipe.close();
          return;
        }
        let channel: FrameChannel;
        // The server's own gateway, to an agent that agreed (SessionOpened.plainLink): the stream protocol inside TLS alone.
        if (!globalThis.__BEAM_PAGE__ && opened.plainLink && this.options.plainRelay) {
          this.progress.relay = 'waiting for the agent at the relay';
          channel = await (await import('./pipe-channel.js')).PipeFrameChannel.open(pipe);
        } else {
          const { secure, SecureFrameChannel, withSecret } = await loadSecure();
          this.progress.relay = 'in its Noise handshake over the relay';
          const secured = await secure(pipe, {
            role: 'initiator',
            identity: await this.ownIdentity(),
            remotePeer: await this.expectedPeer(),
            prologue: withSecret(new Uint8Array(0), this.handshakeSecret()),
          });
          if (this.closed) {
            pipe.close();
            return;
          }
          channel = new SecureFrameChannel(secured);
        }
        const mux = new Mux(channel, { role: 'initiator' });
        if (!globalThis.__BEAM_PAGE__ && opened.kind === 'udp') (await this.udp()).useStream(mux.openStream(StreamProtocol.UDP));
        this.addPath('relay', mux, () => {});
      } catch (err) {
        const beamErr = this.explain(err instanceof BeamError ? err : new BeamError('BEAM_ERR_AGENT_UNREACHABLE', (err as Error).message));
        this.log.info({ session: this.sessionId, code: beamErr.code, err: beamErr.detail }, 'relay path failed');
        this.dispatch({ type: 'relay-failed', error: beamErr });
      }
    })();
  }

  // ------------------------------------------------------------ paths

  /** A path is up: `onClose` releases what it holds (its peer connection) when it closes. */
  private addPath(kind: PathKind, mux: Mux, onClose: () => void): void {
    if (this.closed) {
      mux.close('BEAM_ERR_PEER_GONE');
      onClose();
      return;
    }
    this.log.debug({ session: this.sessionId, path: kind }, 'path up');
    mux.on('close', onClose);
    this.paths.add(kind, mux);
    this.dispatch({ type: 'up', kind });
  }

  /** A path closed: the policy replaces it, or ends a detached session with its last. */
  private pathDown({ kind, code, replaced }: PathDown): void {
    if (replaced) this.log.debug({ session: this.sessionId, path: kind }, 'replaced path closed');
    else if (!this.closed) {
      // The in-memory path goes when the agent of this process stops: that is no network failure.
      this.log[kind === 'local' ? 'debug' : 'warn']({ session: this.sessionId, path: kind, code }, 'path down');
      this.emit('path-down', kind, code);
    }
    this.dispatch({ type: 'down', kind, replaced, code });
  }

  /**
   * Signaling for this session is gone: this side lost the server, or the
   * server says the agent did (BEAM_ERR_SIGNALING_LOST). The paths that are up
   * carry on while the agent answers on them: each must answer a fresh PING
   * within PATH_PROBE_MS, or it closes (the agent's process is gone). No new
   * path can be set up without signaling, so the session ends with its last
   * path, and the next request starts a new one.
   */
  detach(peerLost = false): void {
    // The in-memory path needs no signaling.
    if (this.closed || this.detachedAt !== undefined || this.options.local) return;
    this.detachedAt = performance.now();
    this.peerLost = peerLost;
    this.dispatch({ type: 'signaling-lost' });
  }

  /** Milliseconds since signaling for this session went; undefined while it is there. */
  get detachedMs(): number | undefined {
    return this.detachedAt === undefined ? undefined : performance.now() - this.detachedAt;
  }

  /** Takes no new streams: each path closes once its streams are done, and the session with the last. */
  retire(): void {
    if (this.closed) return;
    this.detach();
    for (const [, mux] of this.paths.entries()) mux.closeWhenIdle();
  }

  /** Applies a signal from the agent. */
  signal(signal: Signal): void {
    if (signal.type === 'relay' || signal.type === 'offer') return;
    if (signal.type === 'answer') {
      this.answerSdp = signal.sdp;
      this.directReached?.('has the answer; ICE, DTLS and SCTP not connected');
    }
    // A signal can land just after the peer failed; the state change, not
    // this error, decides what happens to the path.
    this.peer?.signal(signal).catch((err: Error) => this.log.debug({ err: err.message }, 'signal from agent not applied'));
  }

  /** `code`: why the other side or the server ended it, for whoever still waits on `ready`. */
  close(code?: ErrorCode): void {
    this.dispatch(code === undefined ? { type: 'close' } : { type: 'close', code });
  }
}
