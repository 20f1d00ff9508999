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
import {
  AGENT_CONNECT_TIMEOUT_MS,
  DATAGRAM_CHANNEL_LABEL,
  DIRECT_PATH_TIMEOUT_MS,
  DIRECT_RETRY_MS,
  LINK_SETUP_ATTEMPTS,
  MAX_DIRECT_RETRY_MS,
  NOISE_CHANNEL_LABEL,
  PATH_PROBE_MS,
  PATH_WAIT_MS,
  STREAM_CHANNEL_LABEL,
} from '../shared/constants.js';
import { decodeDatagram, encodeDatagram, encodeRecord, RecordReader } from '../shared/datagram.js';
import { BeamError, type ErrorCode, isErrorCode } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import { withoutTurn } from '../shared/ice.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import type { PathKind } from '../shared/paths.js';
import type { Ack, ClientToServerEvents, RelayMode, ServerToClientEvents, SessionOpened, ShareKind, Signal } from '../shared/signaling.js';
import type { DataChannel, Peer, WebRtcEngine } from './engine.js';
import type { Identity } from './identity.js';
import { type PathDown, PathSet } from './paths.js';
import { connectRelay, relayServerFor } from './relay.js';

/**
 * Noise and the libp2p keys load when a path first needs them: a browser
 * page on the direct path never does, and keeps them out of its bundle
 * (browser-client/build.mjs splits them into a chunk of their own).
 */
const loadSecure = (): Promise<typeof import('./secure.js')> => import('./secure.js');
const loadIdentity = (): Promise<typeof import('./identity.js')> => import('./identity.js');

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
  socket: VisitorSocket;
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
  /** A path died while the session lives (a cut link, a peer gone); another is being set up. */
  'path-down': [PathKind, ErrorCode | undefined];
  close: [];
}

/** The wait before the next retry of direct once one failed: double, at most MAX_DIRECT_RETRY_MS. */
export function nextDirectRetryDelay(delayMs: number): number {
  return Math.min(delayMs * 2, MAX_DIRECT_RETRY_MS);
}

/** The relay policy of a session: 'always' or 'never' from either side wins over 'auto'. */
export function relayPolicy(visitor: RelayMode, agent: RelayMode): RelayMode {
  if (visitor === agent || agent === 'auto') return visitor;
  if (visitor === 'auto') return agent;
  throw new BeamError(
    'BEAM_ERR_RELAY_REFUSED',
    agent === 'never'
      ? 'the share allows no relay (--relay never) and this side asked for --relay always'
      : 'the share asks for --relay always and this side allows no relay',
  );
}

export class VisitorSession extends EventEmitter<VisitorSessionEvents> {
  readonly share: string;
  sessionId: string | undefined;
  /** Resolves once a first path is up; rejects with a BeamError. */
  readonly ready: Promise<void>;
  private readonly log: Logger;
  private readonly c: VisitorSessionComponents;
  private readonly options: VisitorSessionOptions;
  private readonly paths = new PathSet();
  private opened: SessionOpened | undefined;
  private expected: PeerId | undefined;
  private identityPromise: Promise<Identity> | undefined;
  private mode: RelayMode = 'auto';
  private peer: Peer | undefined;
  private offerSdp: string | undefined;
  private answerSdp: string | undefined;
  private directAttempts = 0;
  private directPending = false;
  /** The pending direct attempt left TURN out (the first one does, when the server offers TURN). */
  private directStunOnly = false;
  /** Peer connections whose stream channel carries a path now (a retry must not close them). */
  private readonly carrying = new Set<Peer>();
  private retryScheduled = false;
  /** The wait before the next retry of direct: doubles with each failed retry (MAX_DIRECT_RETRY_MS). */
  private retryDelay = DIRECT_RETRY_MS;
  private relayStarted = false;
  private relayPending = false;
  private timers = new Set<NodeJS.Timeout>();
  private closed = false;
  /** When signaling for this session went (the paths up carry on, no new one can be set up). */
  private detachedAt: number | undefined;
  private readonly startedAt = performance.now();
  private settle: { resolve: () => void; reject: (err: BeamError) => void } | undefined;
  private lastError: BeamError | undefined;
  /** UDP shares: the unreliable channel of the direct path, and the record stream of the relay. */
  private datagramChannel: DataChannel | undefined;
  private datagramStream: MuxStream | undefined;

  constructor(components: VisitorSessionComponents, options: VisitorSessionOptions) {
    super();
    this.c = components;
    this.options = options;
    this.share = options.share;
    this.log = components.logger.child({ share: options.share });
    this.paths.on('change', (best) => {
      if (best) this.emit('path', { path: best, rtt: this.paths.get(best)?.rtt, afterMs: Math.round(performance.now() - this.startedAt) });
    });
    this.paths.on('down', (down) => this.pathDown(down));
    this.ready = this.connect();
    // A session nobody awaits any more must not crash the process when it fails.
    this.ready.catch(() => {});
  }

  /** What the share carries, once the session is open. */
  get kind(): ShareKind | undefined {
    return this.opened?.kind;
  }

  /** The path new streams take now. */
  get path(): PathKind | undefined {
    return this.paths.best;
  }

  get rtt(): number | undefined {
    return this.paths.rtt;
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
    if (this.datagramChannel?.isOpen()) {
      this.datagramChannel.send(encodeDatagram(flow, payload));
      return true;
    }
    if (this.datagramStream && !this.datagramStream.destroyed) {
      this.datagramStream.write(encodeRecord(flow, payload));
      return true;
    }
    return false;
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

  private async connect(): Promise<void> {
    const opened = await this.open();
    this.opened = opened;
    this.sessionId = opened.sessionId;
    this.emit('opened', opened.sessionId);
    try {
      if (opened.private && this.options.secret === undefined && !this.options.requestLevelAccess) {
        throw new BeamError('BEAM_ERR_PRIVATE', 'the link has no #secret=');
      }
      if (this.options.directNoise === false && opened.kind !== 'http') {
        throw new BeamError('BEAM_ERR_SHARE_KIND', `"${this.share}" is a ${opened.kind} share: open it with beam connect`);
      }
      this.mode = relayPolicy(this.options.relay, opened.agentRelay);
      // A link naming a bad peer ID fails here, before any path, wherever Noise runs first.
      if (this.options.directNoise !== false || this.mode === 'always') await this.expectedPeer();
    } catch (err) {
      this.close();
      throw err;
    }
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      this.after(AGENT_CONNECT_TIMEOUT_MS, () => {
        if (this.paths.size === 0)
          this.fail(this.lastError ?? new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `no path to the agent within ${AGENT_CONNECT_TIMEOUT_MS} ms`));
      });
      if (this.mode === 'always') {
        this.startRelay();
        return;
      }
      this.startDirect();
      this.after(this.options.directTimeoutMs ?? DIRECT_PATH_TIMEOUT_MS, () => {
        if (this.paths.has('direct') || this.paths.has('turn')) return;
        // The first attempt left TURN out so that a direct pair would win; now TURN may carry it.
        if (this.directPending && this.directStunOnly) {
          this.log.info({ session: this.sessionId }, 'no direct pair yet; trying again with TURN');
          this.directPending = false;
          this.startDirect();
        }
        if (this.mode === 'auto') {
          this.log.info({ session: this.sessionId }, `no direct path within ${this.options.directTimeoutMs ?? DIRECT_PATH_TIMEOUT_MS} ms; adding the relay`);
          this.startRelay();
        }
      });
    });
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

  private open(): Promise<SessionOpened> {
    return new Promise<SessionOpened>((resolve, reject) => {
      this.c.socket.timeout(AGENT_CONNECT_TIMEOUT_MS).emit('session:open', { share: this.share }, (err: Error | null, res: Ack<SessionOpened>) => {
        if (err) reject(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'signaling did not answer'));
        else if (res.ok) resolve(res.value);
        else reject(new BeamError(isErrorCode(res.error.code) ? res.error.code : 'BEAM_ERR_AGENT_UNREACHABLE', res.error.detail));
      });
    });
  }

  private after(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) fn();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private emitSignal(signal: Signal): void {
    if (this.sessionId && this.c.socket.connected) this.c.socket.emit('session:signal', { sessionId: this.sessionId, signal });
  }

  // ------------------------------------------------------------ direct

  /** `stunOnly`: leave TURN out (default: on the first attempt only, when the server offers TURN). */
  private startDirect(stunOnly?: boolean): void {
    if (this.closed || this.detachedAt !== undefined || this.directPending || !this.opened) return;
    this.directPending = true;
    this.directAttempts++;
    // A retry runs beside the peer connection that carries TURN; an attempt that never came up goes.
    if (this.peer && !this.carrying.has(this.peer)) this.peer.close();
    this.offerSdp = undefined;
    this.answerSdp = undefined;
    // The first attempt leaves TURN out on both sides (the offer says so): libjuice keeps the
    // first pair that works, which may be a TURN pair even where a direct one exists.
    const all = this.opened.iceServers;
    if (withoutTurn(all).length === all.length) stunOnly = false;
    stunOnly ??= this.directAttempts === 1;
    this.directStunOnly = stunOnly;
    const peer = this.c.engine.createPeer({ iceServers: stunOnly ? withoutTurn(all) : all });
    this.peer = peer;
    let up = false;
    const failed = (err: BeamError): void => {
      if (this.peer !== peer || up) return;
      peer.close();
      this.directFailed(err);
    };
    // A retry beside a working path has its own deadline: ICE alone may take long to give up.
    if (this.paths.size > 0)
      this.after(AGENT_CONNECT_TIMEOUT_MS, () => failed(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `no direct pair within ${AGENT_CONNECT_TIMEOUT_MS} ms`)));
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
      if (state !== 'failed' && state !== 'closed') return;
      if (!up) failed(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `peer connection ${state}`));
    });
    const openStreams = (): void => {
      if (this.peer !== peer || this.closed) return;
      const channel = peer.createDataChannel(STREAM_CHANNEL_LABEL);
      channel.onOpen(() => {
        if (this.peer !== peer || this.closed) return;
        up = true;
        this.directPending = false;
        const mux = new Mux(channel, { role: 'initiator' });
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
        if (this.opened?.kind === 'udp') this.openDatagramChannel(peer, pathUp);
        else pathUp();
      });
    };
    if (this.options.directNoise === false) {
      openStreams();
      return;
    }
    const noiseChannel = peer.createDataChannel(NOISE_CHANNEL_LABEL);
    noiseChannel.onOpen(() => {
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

  /** On a private share, a handshake that fails means (most likely) a wrong secret: say so. */
  private explain(err: BeamError): BeamError {
    if (err.code === 'BEAM_ERR_HANDSHAKE_FAILED' && this.opened?.private && this.handshakeSecret() !== undefined) {
      return new BeamError('BEAM_ERR_PRIVATE', "the handshake failed: the link's secret is wrong (or someone is in the middle)");
    }
    return err;
  }

  private directFailed(cause: BeamError): void {
    const err = this.explain(cause);
    this.directPending = false;
    this.lastError = err;
    this.log.info({ session: this.sessionId, attempt: this.directAttempts, code: err.code, err: err.detail }, 'direct path failed');
    this.emit('direct-failed', err);
    if (err.code === 'BEAM_ERR_PEER_MISMATCH' || err.code === 'BEAM_ERR_PRIVATE') {
      this.fail(err);
      return;
    }
    const hasPath = this.paths.size > 0;
    if (this.mode === 'auto' && !hasPath) this.startRelay();
    // One failed DTLS handshake (seen under load) should not cost the direct path.
    if (!hasPath && this.directAttempts < LINK_SETUP_ATTEMPTS) {
      this.startDirect();
      return;
    }
    if (hasPath || this.relayPending) {
      if (hasPath) this.retryDelay = nextDirectRetryDelay(this.retryDelay);
      this.scheduleDirectRetry();
      return;
    }
    this.maybeGiveUp();
  }

  /**
   * While the session rides TURN or the relay, tries direct again after
   * retryDelay: DIRECT_RETRY_MS, doubled by each failed retry up to
   * MAX_DIRECT_RETRY_MS (NAT mappings and firewalls change; iroh and
   * Tailscale keep probing too). From TURN the retry leaves TURN out, so only
   * a direct pair can win it; from the relay it may bring TURN.
   */
  private scheduleDirectRetry(): void {
    if (this.closed || this.detachedAt !== undefined || this.retryScheduled || this.mode === 'always' || this.paths.best === 'direct') return;
    this.retryScheduled = true;
    this.after(this.retryDelay, () => {
      this.retryScheduled = false;
      if (this.paths.best === 'direct' || this.directPending) return;
      this.log.debug({ session: this.sessionId, path: this.paths.best }, 'trying direct again');
      this.startDirect(this.paths.best === 'turn');
    });
  }

  // ------------------------------------------------------------ relay

  private startRelay(): void {
    if (this.closed || this.detachedAt !== undefined || this.relayStarted || !this.opened || this.mode === 'never') return;
    this.relayStarted = true;
    this.relayPending = true;
    const opened = this.opened;
    this.emitSignal({ type: 'relay' });
    void (async () => {
      try {
        // The server's own gateway is on the node that set the session up; anyone else goes where signaling says.
        const server = this.options.requestLevelAccess ? this.options.server : relayServerFor(this.options.server, opened.relayUrl);
        const pipe = await connectRelay(server, { sessionId: opened.sessionId, role: 'visitor', token: opened.relayToken });
        if (this.closed) {
          pipe.close();
          return;
        }
        const { secure, SecureFrameChannel, withSecret } = await loadSecure();
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
        this.relayPending = false;
        const mux = new Mux(new SecureFrameChannel(secured), { role: 'initiator' });
        if (opened.kind === 'udp') this.openDatagramStream(mux);
        this.addPath('relay', mux, () => {});
      } catch (err) {
        this.relayPending = false;
        const beamErr = this.explain(err instanceof BeamError ? err : new BeamError('BEAM_ERR_AGENT_UNREACHABLE', (err as Error).message));
        this.lastError = beamErr;
        this.log.info({ session: this.sessionId, code: beamErr.code, err: beamErr.detail }, 'relay path failed');
        if (beamErr.code === 'BEAM_ERR_PEER_MISMATCH' || beamErr.code === 'BEAM_ERR_PRIVATE') this.fail(beamErr);
        else this.maybeGiveUp();
      }
    })();
  }

  // ------------------------------------------------------------ datagrams (UDP shares)

  private openDatagramChannel(peer: Peer, onOpen: () => void): void {
    const channel = peer.createDataChannel(DATAGRAM_CHANNEL_LABEL, { unreliable: true });
    channel.onOpen(onOpen);
    channel.onMessage((message) => {
      try {
        const d = decodeDatagram(message);
        this.emit('datagram', d.flow, d.payload);
      } catch {
        // malformed: dropped, as UDP would
      }
    });
    channel.onClose(() => {
      if (this.datagramChannel === channel) this.datagramChannel = undefined;
    });
    this.datagramChannel = channel;
  }

  private openDatagramStream(mux: Mux): void {
    const stream = mux.openStream(StreamProtocol.UDP);
    const reader = new RecordReader();
    stream.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, (flow, payload) => this.emit('datagram', flow, payload));
      } catch (err) {
        stream.destroy(err as Error);
      }
    });
    stream.on('error', () => {});
    stream.on('close', () => {
      if (this.datagramStream === stream) this.datagramStream = undefined;
    });
    this.datagramStream = stream;
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
    if (this.settle) {
      this.settle.resolve();
      this.settle = undefined;
    }
    if (kind === 'direct') this.retryDelay = DIRECT_RETRY_MS;
    // TURN once direct is up: its streams finish there, then it closes (it holds a TURN allocation).
    if (this.paths.has('direct') && this.paths.has('turn')) this.paths.supersede('turn');
    if (this.paths.best !== 'direct') this.scheduleDirectRetry();
  }

  /** A path closed: replace it (the relay at once in 'auto', direct again), or end a detached session with its last. */
  private pathDown({ kind, code, replaced }: PathDown): void {
    if (replaced) {
      this.log.debug({ session: this.sessionId, path: kind }, 'replaced path closed');
      return;
    }
    if (!this.closed) {
      this.log.warn({ session: this.sessionId, path: kind, code }, 'path down');
      this.emit('path-down', kind, code);
    }
    if (this.detachedAt !== undefined) {
      // No signaling to set up another: the session ends with its last path.
      if (this.paths.size === 0) this.close('BEAM_ERR_SIGNALING_LOST');
      return;
    }
    if (this.closed) return;
    if (kind !== 'relay' && this.mode === 'auto') this.startRelay();
    if (kind !== 'relay' && this.mode !== 'always') {
      this.after(this.paths.size ? DIRECT_RETRY_MS : 0, () => {
        if (!this.paths.has('direct') && !this.paths.has('turn')) this.startDirect();
      });
    }
    this.maybeGiveUp();
  }

  /** Ends the session when no path is up and none is being tried. */
  private maybeGiveUp(): void {
    if (this.closed || this.paths.size > 0 || this.directPending || this.relayPending) return;
    if (this.timers.size > 0 && this.settle === undefined) return;
    this.fail(this.lastError ?? new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'no path to the agent'));
  }

  private fail(err: BeamError): void {
    if (this.settle) {
      this.settle.reject(err);
      this.settle = undefined;
    }
    this.close();
  }

  /**
   * Signaling for this session is gone: this side lost the server, or the
   * server says the agent did (BEAM_ERR_SIGNALING_LOST). The paths that are up
   * carry on while the agent answers on them: each must answer a fresh PING
   * within PATH_PROBE_MS, or it closes (the agent's process is gone). No new
   * path can be set up without signaling, so the session ends with its last
   * path, and the next request starts a new one.
   */
  detach(): void {
    if (this.closed || this.detachedAt !== undefined) return;
    this.detachedAt = performance.now();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.retryScheduled = false;
    // An attempt still being set up needs signaling to finish.
    if (this.peer && !this.carrying.has(this.peer)) this.peer.close();
    this.directPending = false;
    if (this.paths.size === 0) {
      this.close('BEAM_ERR_SIGNALING_LOST');
      return;
    }
    this.log.info({ session: this.sessionId, paths: this.paths.kinds() }, 'signaling lost; the paths up carry on while the agent answers');
    void this.paths.probe(PATH_PROBE_MS, (kind) => this.log.warn({ session: this.sessionId, path: kind }, 'no answer on the path after signaling was lost'));
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
    if (signal.type === 'answer') this.answerSdp = signal.sdp;
    // A signal can land just after the peer failed; the state change, not
    // this error, decides what happens to the path.
    this.peer?.signal(signal).catch((err: Error) => this.log.debug({ err: err.message }, 'signal from agent not applied'));
  }

  /** `code`: why the other side or the server ended it, for whoever still waits on `ready`. */
  close(code?: ErrorCode): void {
    if (this.closed) return;
    this.closed = true;
    if (code !== undefined && !this.lastError) this.lastError = new BeamError(code);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.paths.close('BEAM_ERR_PEER_GONE');
    this.peer?.close();
    if (this.sessionId && this.c.socket.connected) this.c.socket.emit('session:close', { sessionId: this.sessionId });
    if (this.settle) {
      this.settle.reject(this.lastError ?? new BeamError('BEAM_ERR_PEER_GONE'));
      this.settle = undefined;
    }
    this.emit('close');
  }
}
