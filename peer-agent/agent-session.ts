/**
 * The agent's end of one visitor's session: it answers the visitor's offers
 * with peer connections, meets it at the relay when asked, checks the Noise
 * handshake on each path, and hands each verified stream to the agent to
 * serve. When a session waits, probes and ends is the path policy's call
 * (transport/path-policy.ts, role 'agent'); this class carries it out.
 *
 *   offer ─► answer (a peer connection; a retry runs beside one that carries a path)
 *   relay ─► meet the visitor at the server's relay with the session's token
 *   path up (handshake through) ─► streams served; 'session' / 'path' announced
 *   signaling lost ─► paths probed, the session ends with the last
 */
import type { Logger } from 'pino';
import type { Pipe } from '../shared/backend.js';
import {
  DATAGRAM_CHANNEL_LABEL,
  MAX_OFFERS_PER_SESSION_PER_MINUTE,
  MAX_PENDING_PEERS,
  NOISE_CHANNEL_LABEL,
  PATH_PROBE_MS,
  STREAM_CHANNEL_LABEL,
} from '../shared/constants.js';
import { decodeDatagram, encodeDatagram } from '../shared/datagram.js';
import { BeamError, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { withoutTurn } from '../shared/ice.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import { type PathKind, pathOrder } from '../shared/paths.js';
import { type IceServer, isPrivateLink, type RelayMode, type ShareKind, type Signal, type VisitorKind } from '../shared/signaling.js';
import type { Peer, WebRtcEngine } from '../transport/engine.js';
import type { Identity } from '../transport/identity.js';
import type { PathAction } from '../transport/path-policy.js';
import { type PathDown, PathPolicyRunner, PathSet } from '../transport/paths.js';
import { PipeFrameChannel } from '../transport/pipe-channel.js';
import { connectRelay, relayServerFor } from '../transport/relay.js';
import type { UdpForwarder } from './udp.js';

/** Noise loads with the first session that needs it: a share served in memory alone (the embedded default) never does. */
const loadSecure = (): Promise<typeof import('../transport/secure.js')> => import('../transport/secure.js');

/** `pipe`, calling `heard` as each message arrives on it. */
function noticing(pipe: Pipe, heard: () => void): Pipe {
  return {
    send: (bytes) => pipe.send(bytes),
    bufferedAmount: () => pipe.bufferedAmount(),
    onDrain: (cb) => pipe.onDrain(cb),
    onMessage: (cb) =>
      pipe.onMessage((bytes) => {
        heard();
        cb(bytes);
      }),
    onClose: (cb) => pipe.onClose(cb),
    closeCode: () => pipe.closeCode?.(),
    close: () => pipe.close(),
    ...(pipe.pause ? { pause: () => pipe.pause?.() } : {}),
    ...(pipe.resume ? { resume: () => pipe.resume?.() } : {}),
  };
}

/** Why a relay path can fail with no one refused: the relay, not a visitor, stood in the way. */
const NOT_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'BEAM_ERR_RELAY_REFUSED',
  'BEAM_ERR_RELAY_TIMEOUT',
  'BEAM_ERR_SERVER_UNREACHABLE',
  'BEAM_ERR_AGENT_UNREACHABLE',
  'BEAM_ERR_PEER_GONE',
]);

/**
 * Visitors who prove a private share's secret on every request rather than
 * in the Noise handshake: the server's gateway (for the clients behind it)
 * and, on HTTP shares, browser pages (whose direct path has no Noise). A
 * TCP or UDP stream has no requests to carry it, so there everyone else
 * proves it in the handshake.
 */
export function provesPerRequest(visitor: VisitorKind, kind: ShareKind): boolean {
  return visitor === 'gateway' || (visitor === 'browser' && kind === 'http');
}

/** A session as signaling brought it in (session:incoming). */
export interface IncomingSession {
  id: string;
  visitor: VisitorKind;
  iceServers: IceServer[];
  relayToken: string;
  /** The node whose relay the session uses (several nodes), as signaling named it. */
  relayUrl: string | undefined;
  /** Where the server saw a peer-to-peer visitor connect from (for IP rules on TURN and relay paths). */
  serverSeenAddress: string | undefined;
  /** The server's gateway in this process, in memory (transport/local.ts): signaling knows nothing of it. */
  local?: boolean;
  /** A network backend's visitor (transport/backend.ts, `--via libp2p`): one path, already verified, and no signaling. */
  dialed?: boolean;
  /** The visitor goes to the relay at once: so does the agent, without waiting for its `relay` signal. */
  relayFirst?: boolean;
  /** The visitor's new streams take the relay, direct standing by: this side ranks its paths alike, to report the one in use. */
  relayPreferred?: boolean;
  /** The server says its own gateway runs the relay link without Noise (SessionOpened.plainLink): see startRelay. */
  plainLink?: boolean;
}

/** What a session needs of its agent: the share's settings, signaling, and where verified streams go. */
export interface AgentSessionContext {
  engine: WebRtcEngine;
  /** The agent's key pair (loaded on first use). */
  identity: () => Promise<Identity>;
  logger: Logger;
  /** The signaling server (its relay, unless signaling names another node's). */
  server: string;
  relayMode: RelayMode;
  kind: ShareKind;
  secret: string | undefined;
  /** --allow-ip / --deny-ip, for a UDP share's datagram channel. */
  allowsAddress: (address: string | undefined) => boolean;
  /** Peer connections set up that carry no path yet, across sessions (MAX_PENDING_PEERS). */
  pendingPeers: Set<Peer>;
  /** An offer was dropped for a limit. */
  offerDropped: (session: AgentSession, limit: string) => void;
  /** Sends a signal to the visitor. */
  signal: (sessionId: string, signal: Signal) => void;
  /** Tells signaling the session ended (with why, when it was refused). */
  closed: (sessionId: string, code?: ErrorCode) => void;
  /** A verified stream arrived on one of the session's paths. */
  serve: (stream: MuxStream, session: AgentSession, address: string | undefined, via: PathKind) => void;
  /** This session's UDP flows, made on the first datagram. */
  udp: (session: AgentSession) => UdpForwarder;
  /** The first path is up (`first`), the best path changed, or its RTT was first measured. */
  announce: (session: AgentSession, first: boolean) => void;
  /** The session ended; `announced` when 'session' was said for it. */
  ended: (session: AgentSession, announced: boolean) => void;
}

export class AgentSession {
  readonly id: string;
  readonly visitor: VisitorKind;
  readonly serverSeenAddress: string | undefined;
  readonly paths: PathSet;
  /** A UDP share's flows, made on the first datagram. */
  udp: UdpForwarder | undefined;
  private readonly incoming: IncomingSession;
  private readonly c: AgentSessionContext;
  private readonly log: Logger;
  private readonly policy: PathPolicyRunner;
  /** The latest direct peer connection (a retry replaces it). */
  private peer: Peer | undefined;
  /** Which peer connection carries each WebRTC path. */
  private readonly peers = new Map<PathKind, Peer>();
  private relayStarted = false;
  /** The best path, as last announced. */
  private current: PathKind | undefined;
  /** The standby paths last announced (`standby`, joined). */
  private currentStandby = '';
  private announced = false;
  private rttAnnounced = false;
  /** When its recent offers came (MAX_OFFERS_PER_SESSION_PER_MINUTE). */
  private offerTimes: number[] = [];
  /** The agent or signaling ended it (not the policy's wait for a first path). */
  private ending = false;
  /** Signaling went because the server says the visitor lost it (not this side): the paths are probed. */
  private visitorLost = false;

  constructor(context: AgentSessionContext, incoming: IncomingSession) {
    this.c = context;
    this.incoming = incoming;
    this.id = incoming.id;
    this.visitor = incoming.visitor;
    this.serverSeenAddress = incoming.serverSeenAddress;
    this.log = context.logger;
    this.paths = new PathSet(pathOrder(incoming.relayPreferred));
    this.policy = new PathPolicyRunner({ role: 'agent' }, (action) => this.perform(action));
    this.paths.on('down', (down) => this.pathDown(down));
    // Signaling opens a session; a backend's comes with its one path, and ends with it (transport/path-policy.ts).
    if (!incoming.dialed) this.policy.dispatch({ type: 'open', mode: context.relayMode, turnOffered: false });
    if (incoming.relayFirst && context.relayMode !== 'never') this.startRelay();
  }

  get isClosed(): boolean {
    return this.policy.state.closed;
  }

  /** The best path and its RTT, and the paths standing by, as the agent announces them. */
  get best(): { via: PathKind; rtt: number | undefined; standby: PathKind[] } | undefined {
    const best = this.paths.best;
    // In memory there is no round trip worth a number.
    return best ? { via: best, rtt: best === 'local' ? undefined : this.paths.get(best)?.rtt, standby: this.standby } : undefined;
  }

  /** The paths up besides the best, best first: where new streams go should it close. */
  private get standby(): PathKind[] {
    return this.paths.order.filter((k) => k !== this.paths.best && this.paths.has(k));
  }

  /** Applies a signal from the visitor. */
  signal(signal: Signal): void {
    if (this.isClosed) return;
    if (signal.type === 'relay') {
      this.startRelay();
      return;
    }
    if (signal.type === 'offer') {
      this.answer(signal.sdp, signal.turn !== false);
      return;
    }
    if (signal.type === 'answer') return;
    this.peer?.signal(signal).catch((err: Error) => {
      this.log.debug({ session: this.id, err: err.message }, 'candidate from visitor not applied');
    });
  }

  /**
   * Signaling forgot the session (this side or the visitor lost the server).
   * Its paths carry on while the visitor answers on them: each must answer a
   * fresh PING within PATH_PROBE_MS or it closes. With no path left, the
   * session ends.
   */
  detach(visitorLost = false): void {
    // The in-memory path needs no signaling, nor does a backend's.
    if (this.incoming.local || this.incoming.dialed) return;
    this.visitorLost = visitorLost;
    this.policy.dispatch({ type: 'signaling-lost' });
  }

  /** The gateway in this process: the session's one path is this in-memory channel's multiplexer. */
  attachLocal(mux: Mux): void {
    this.addPath('local', mux, Promise.resolve());
  }

  /** A network backend's visitor: the session's one path, its Noise handshake already through. */
  attachDialed(kind: PathKind, mux: Mux): void {
    this.addPath(kind, mux, Promise.resolve());
  }

  end(): void {
    this.ending = true;
    this.policy.dispatch({ type: 'close' });
  }

  private perform(action: Exclude<PathAction, { type: 'arm' | 'disarm' }>): void {
    switch (action.type) {
      case 'abort-direct':
        // An attempt still being set up needs signaling to finish.
        if (this.peer && ![...this.peers.values()].includes(this.peer)) {
          this.closePeer(this.peer);
          this.peer = undefined;
        }
        return;
      case 'probe':
        // This side lost the server: the visitor most likely did not, and a path that went with the network
        // goes silent and closes at PATH_DEAD_MS. Only the server's word that the visitor lost it asks for a probe.
        if (!this.visitorLost) {
          this.log.info({ session: this.id, paths: this.paths.kinds() }, 'signaling lost; the paths up carry on');
          return;
        }
        this.log.info({ session: this.id, paths: this.paths.kinds() }, 'the visitor lost signaling; the paths up carry on while it answers');
        void this.paths.probe(PATH_PROBE_MS, (kind) => this.log.warn({ session: this.id, path: kind }, 'no answer on the path after signaling was lost'));
        return;
      case 'close':
        if (!this.announced && !this.ending && action.code === undefined) this.log.info({ session: this.id }, 'visitor never connected; session ended');
        this.log.debug({ session: this.id }, 'session ended');
        this.paths.close('BEAM_ERR_PEER_GONE');
        this.udp?.close();
        if (this.peer) this.closePeer(this.peer);
        for (const peer of this.peers.values()) this.closePeer(peer);
        if (!this.incoming.local && !this.incoming.dialed) this.c.closed(this.id);
        this.c.ended(this, this.announced);
        return;
      // The visitor leads: the agent's policy never starts a path, settles nothing, supersedes nothing.
      case 'start-direct':
      case 'start-relay':
      case 'supersede':
      case 'ready':
      case 'reject':
        return;
    }
  }

  /**
   * Answers an offer with a new peer connection. A second offer is a retry:
   * it replaces an attempt that never came up, and runs beside one that
   * carries a path (a visitor on TURN trying for a direct pair).
   */
  private answer(offerSdp: string, turn: boolean): void {
    this.log.debug({ session: this.id, turn }, 'offer from the visitor');
    if (this.c.relayMode === 'always') {
      this.log.info({ session: this.id }, 'offer ignored: --relay always');
      return;
    }
    const now = Date.now();
    this.offerTimes = this.offerTimes.filter((t) => now - t < 60_000);
    const refusal =
      this.offerTimes.length >= MAX_OFFERS_PER_SESSION_PER_MINUTE
        ? `${MAX_OFFERS_PER_SESSION_PER_MINUTE} offers a minute per session`
        : this.c.pendingPeers.size >= MAX_PENDING_PEERS
          ? `${MAX_PENDING_PEERS} peer connections being set up`
          : undefined;
    if (refusal) {
      this.c.offerDropped(this, refusal);
      return;
    }
    this.offerTimes.push(now);
    const old = this.peer;
    if (old && !(['direct', 'turn'] as const).some((kind) => this.peers.get(kind) === old && this.paths.has(kind))) {
      this.log.debug({ session: this.id }, 'a new offer replaces the direct peer connection');
      this.closePeer(old);
    }
    // A first attempt without TURN on both sides forms a direct pair if one exists; the visitor's next attempt brings TURN.
    const ice = this.incoming.iceServers;
    const peer = this.c.engine.createPeer({ iceServers: turn ? ice : withoutTurn(ice) });
    this.c.pendingPeers.add(peer);
    this.peer = peer;
    let answerSdp: string | undefined;
    let verified: Promise<void> | undefined;
    peer.onSignal((signal) => {
      if (signal.type === 'answer') answerSdp = signal.sdp;
      this.c.signal(this.id, signal);
    });
    peer.onStateChange((state) => {
      if (state === 'connected' || state === 'failed' || state === 'closed') this.c.pendingPeers.delete(peer);
      if (state === 'failed' || state === 'closed') {
        for (const kind of ['direct', 'turn'] as const) if (this.peers.get(kind) === peer) this.paths.get(kind)?.close('BEAM_ERR_PEER_GONE');
        if (this.peer === peer) this.peer = undefined;
      }
    });
    peer.onDataChannel((channel) => {
      if (channel.label === NOISE_CHANNEL_LABEL && !verified) {
        verified = (async () => {
          await new Promise<void>((resolve) => (channel.isOpen() ? resolve() : channel.onOpen(resolve)));
          if (!answerSdp) throw new BeamError('BEAM_ERR_HANDSHAKE_FAILED', 'no local answer');
          const { channelPipe, directPrologue, secure, withSecret } = await loadSecure();
          await secure(channelPipe(channel), {
            role: 'responder',
            identity: await this.c.identity(),
            prologue: withSecret(directPrologue(offerSdp, answerSdp), this.handshakeSecret()),
          });
          // The responder reads the last handshake message, so it is the one to close the channel.
          channel.close();
        })();
        verified.catch((err: Error) => {
          this.log.warn(
            { audit: 'auth.refused', code: errorCodeOf(err) ?? 'BEAM_ERR_HANDSHAKE_FAILED', session: this.id, path: 'direct', err: err.message },
            'direct handshake failed',
          );
          this.closePeer(peer);
        });
        return;
      }
      if (channel.label === DATAGRAM_CHANNEL_LABEL && verified && this.c.kind === 'udp') {
        if (!this.c.allowsAddress(peer.remoteAddress() ?? this.serverSeenAddress)) {
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
          this.c.udp(this).receive(d.flow, d.payload, (flow, payload) => channel.send(encodeDatagram(flow, payload)));
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
      if (channel.label === STREAM_CHANNEL_LABEL && !verified && this.visitor === 'browser' && this.c.kind === 'http') {
        this.log.debug({ session: this.id }, 'browser visitor: direct path on DTLS alone');
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
        this.peers.set(kind, peer);
        // Streams open only once the handshake is through: the visitor opens none before.
        this.addPath(kind, mux, handshake);
      };
      if (channel.isOpen()) start();
      else channel.onOpen(start);
    });
    peer.signal({ type: 'offer', sdp: offerSdp }).catch((err: Error) => {
      this.log.warn({ session: this.id, err: err.message }, 'bad offer from visitor');
      this.closePeer(peer);
    });
  }

  /** Meets the visitor at the relay with this session's one-time token. */
  private startRelay(): void {
    if (this.relayStarted) return;
    if (this.c.relayMode === 'never') {
      this.log.info({ session: this.id }, 'relay request ignored: --relay never');
      return;
    }
    this.relayStarted = true;
    const server = relayServerFor(this.c.server, this.incoming.relayUrl);
    // Without Noise only for the server's own gateway, and only where TLS or loopback already hides the link.
    const plain = this.incoming.plainLink === true;
    if (plain && (this.visitor !== 'gateway' || !isPrivateLink(server))) {
      this.log.warn(
        { audit: 'auth.refused', code: 'BEAM_ERR_HANDSHAKE_FAILED', session: this.id, path: 'relay', visitor: this.visitor },
        'relay path refused: the server asked for it without Noise, which only its own gateway over TLS or loopback may',
      );
      return;
    }
    /** The visitor's side said something on the relay: a handshake that fails after that refused someone. */
    let heard = false;
    void (async () => {
      try {
        const pipe = noticing(
          await connectRelay(server, {
            sessionId: this.id,
            role: 'agent',
            token: this.incoming.relayToken,
          }),
          () => {
            heard = true;
          },
        );
        if (plain) {
          this.log.debug({ session: this.id }, "the gateway's relay link: the stream protocol inside TLS, no Noise");
          this.addPath('relay', new Mux(await PipeFrameChannel.open(pipe), { role: 'responder' }), Promise.resolve());
          return;
        }
        const { SecureFrameChannel, secure, withSecret } = await loadSecure();
        const secured = await secure(pipe, {
          role: 'responder',
          identity: await this.c.identity(),
          prologue: withSecret(new Uint8Array(0), this.handshakeSecret()),
        });
        if (this.isClosed) {
          pipe.close();
          return;
        }
        this.addPath('relay', new Mux(new SecureFrameChannel(secured), { role: 'responder' }), Promise.resolve());
      } catch (err) {
        let code = errorCodeOf(err) ?? 'BEAM_ERR_HANDSHAKE_FAILED';
        // Not a byte from the other side before the handshake gave up: the visitor never came to this relay
        // (it went to another node's, or away), as when the relay itself ends a pairing that waited too long.
        if (code === 'BEAM_ERR_HANDSHAKE_FAILED' && !heard) code = 'BEAM_ERR_RELAY_TIMEOUT';
        const line = { code, session: this.id, path: 'relay', err: (err as Error).message };
        // A handshake that failed is an audit line: someone was refused. A relay that never paired the two
        // sides (it refused the agent's ticket, timed out, or was out of reach) refused no one.
        if (NOT_REFUSALS.has(code)) this.log.info(line, 'relay path failed');
        else this.log.warn({ audit: 'auth.refused', ...line }, 'relay path failed');
      }
    })();
  }

  private addPath(kind: PathKind, mux: Mux, verified: Promise<void>): void {
    if (this.isClosed) {
      mux.close('BEAM_ERR_PEER_GONE');
      return;
    }
    this.paths.add(kind, mux);
    this.policy.dispatch({ type: 'up', kind });
    // The visitor's address on this path: the direct peer's own, else (TURN, relay) where the server saw it.
    const address = kind === 'direct' ? (this.peers.get('direct')?.remoteAddress() ?? this.serverSeenAddress) : this.serverSeenAddress;
    mux.on('stream', (stream) => {
      stream.on('error', () => {
        // Reset by the visitor or the connection: whoever serves it cleans up.
      });
      verified.then(
        () => {
          // The gateway in this process opens its session ahead of anyone: it is announced with its first request.
          if (kind === 'local') this.announce();
          this.c.serve(stream, this, address, kind);
        },
        () => stream.destroy(new BeamError('BEAM_ERR_HANDSHAKE_FAILED')),
      );
    });
    mux.on('rtt', () => {
      // In memory there is no network to time.
      if (kind !== 'local' && this.current === kind && !this.rttAnnounced) {
        this.rttAnnounced = true;
        this.announce(true);
      }
    });
    verified.then(
      () => {
        if (kind !== 'local') this.announce();
      },
      () => mux.close('BEAM_ERR_HANDSHAKE_FAILED'),
    );
  }

  /** A path closed: release its peer connection; the policy decides whether the session waits or ends. */
  private pathDown(down: PathDown): void {
    const { kind, code, replaced } = down;
    // Its peer connection carries nothing else (a TURN path the visitor replaced with direct ends here).
    if (kind !== 'relay') {
      const peer = this.peers.get(kind);
      this.peers.delete(kind);
      if (peer && peer !== this.peer) this.closePeer(peer);
    }
    // A path that dies while its session lives is worth a line: say why. At info: from here a visitor that
    // quit (Ctrl+C) looks the same until signaling says so, and that is no trouble of the sharer's.
    if (!this.isClosed && !replaced) this.log.info({ session: this.id, path: kind, code }, 'path down');
    this.policy.dispatch({ type: 'down', kind, replaced });
    this.announce();
  }

  /** Announces the session's first path, and the best path or the standby paths when they change. */
  private announce(force = false): void {
    if (this.isClosed) return;
    const best = this.paths.best;
    const standby = this.standby.join(',');
    if (!best || (best === this.current && standby === this.currentStandby && !force)) return;
    if (best !== this.current) this.rttAnnounced = false;
    this.current = best;
    this.currentStandby = standby;
    const first = !this.announced;
    this.announced = true;
    this.c.announce(this, first);
  }

  /** The secret a visitor must prove in the handshake: a private share's, for every visitor but those who prove it per request. */
  private handshakeSecret(): string | undefined {
    return provesPerRequest(this.visitor, this.c.kind) ? undefined : this.c.secret;
  }

  /** Closes a peer connection, which then no longer counts as being set up. */
  private closePeer(peer: Peer): void {
    this.c.pendingPeers.delete(peer);
    peer.close();
  }
}
