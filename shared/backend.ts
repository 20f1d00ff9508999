/**
 * Network backends, the types (transport/backend.ts has the code): how a
 * share is announced, how a visitor finds it, how signals are exchanged, and
 * which paths a session can take. `--via` picks a backend. Two live behind
 * this interface:
 *
 *   server  Beam's signaling server, the default (transport/server-backend.ts):
 *           it names shares and pairs each visitor with the agent as a
 *           signaled session, whose offers and candidates it carries; the
 *           session classes build the direct, TURN and relay paths from
 *           those signals and replace them as they fail
 *           (peer-agent/agent-session.ts, transport/session.ts).
 *   libp2p  no Beam server at all (transport/libp2p.ts). The agent reserves
 *           a slot on a circuit relay, the visitor dials through it, and the
 *           two punch a WebRTC connection; the backend hands over one
 *           finished path, a Pipe.
 *
 * So a visitor reaches an agent in one of two ways (BackendVisitors): a
 * pipe, on which Beam runs what it runs on its relay: Noise with the
 * agent's key (the visitor pins it; a private share's secret goes into the
 * prologue), the agent's verdict (shared/frames.ts GOAWAY), and the stream
 * multiplexer; or a signaled session, whose every path runs Noise the same
 * way (but a browser page's direct path, which DTLS alone protects). Either
 * way the agent's checks and the visitor's pin do not depend on what the
 * network proves. docs/backends.md says what Tor, I2P, Nym or Veilid would
 * need to fit.
 */
import type { PeerId, PrivateKey } from '@libp2p/interface';
import type { BACKEND_NAMES } from './constants.js';
import type { ErrorCode } from './errors.js';
import type { PathKind } from './paths.js';
import type { IceServer, SessionOpened, ShareKind, Signal, VisitorKind } from './signaling.js';

/** What the handshake and the secured stream need of a transport. */
export interface Pipe {
  /** Sends one message; false when the caller should wait for onDrain. */
  send(bytes: Uint8Array): boolean;
  /** Bytes accepted by send() and not yet handed to the network. */
  bufferedAmount(): number;
  /** Adds a listener for: send() may be called again. */
  onDrain(cb: () => void): void;
  onMessage(cb: (bytes: Uint8Array) => void): void;
  onClose(cb: () => void): void;
  /** Why the other end or the server closed it, when it said (the relay's cap): read once it has closed. */
  closeCode?(): ErrorCode | undefined;
  close(): void;
  pause?(): void;
  resume?(): void;
}

export type BackendName = (typeof BACKEND_NAMES)[number];

/** What the agent tells a backend about a share. Never its secret: that is proven inside Beam's Noise, on the pipe. */
export interface BackendShare {
  /** The name asked for; absent, the backend picks one (the server does; libp2p's caller always names one). */
  name: string | undefined;
  kind: ShareKind;
  private: boolean;
  /** The agent's peer ID, which its links pin. */
  peerId: string;
  /** The agent's key, loaded when a backend needs it: libp2p's own identity is the same key, so the link's pin names both. */
  key(): Promise<{ privateKey: PrivateKey; peerId: PeerId }>;
}

/**
 * A visitor a rendezvous paired with the agent (the server's session:incoming):
 * the paths come later, from the signals on its channel.
 */
export interface SignaledVisitor {
  id: string;
  visitor: VisitorKind;
  iceServers: IceServer[];
  /** The agent's one-time token for the relay. */
  relayToken: string;
  /** The node whose relay the session uses (several nodes). */
  relayUrl: string | undefined;
  /** Where the rendezvous saw the visitor connect from (for IP rules on TURN and relay paths). */
  serverSeenAddress: string | undefined;
  /** The visitor goes to the relay at once. */
  relayFirst?: boolean;
  /** The visitor's new streams take the relay, direct standing by: the agent ranks its paths alike. */
  relayPreferred?: boolean;
  /** The server's own gateway runs the relay link without Noise (SessionOpened.plainLink). */
  plainLink?: boolean;
  /** Sends a signal (an answer, a candidate) to the visitor. */
  signal(signal: Signal): void;
  /** Ends the session at the rendezvous; with a code, the visitor hears why (BEAM_ERR_MAX_VISITORS). */
  close(code?: ErrorCode): void;
}

/** What the agent does as the rendezvous hears of a signaled session. */
export interface SignaledHandlers {
  signal(signal: Signal): void;
  /** The rendezvous forgot the session (this side or, `visitorLost`, the visitor lost it): it goes on over the paths that are up. */
  detach(visitorLost: boolean): void;
  /** The visitor closed it. */
  end(): void;
}

/** How visitors arrive at a listening agent: a backend calls the one its sessions are. */
export interface BackendVisitors {
  /** A finished path (libp2p). */
  pipe(incoming: BackendPipe): void;
  /** A signaled session (a Beam server); undefined when the agent turned it away (it said why with `visitor.close`). */
  signaled(visitor: SignaledVisitor): SignaledHandlers | undefined;
}

/** What a visitor's session does as the rendezvous hears of it. */
export interface VisitorHandlers {
  signal(signal: Signal): void;
  /** This side lost the rendezvous, which forgets its sessions: the session goes on over the paths that are up. */
  detach(): void;
  /** The rendezvous ended the session, with its code (BEAM_ERR_SIGNALING_LOST: the agent lost it, and the paths are checked instead). */
  closed(code: string): void;
}

export interface BackendDialOptions {
  signal?: AbortSignal;
  /** A signaled backend's visitor (required there): where the session's signals and its end go. */
  handlers?: VisitorHandlers;
  /** A signaled session goes to the relay at once: the agent does too, with the session. */
  relayFirst?: boolean;
  /** A signaled session's new streams take the relay, direct standing by (tells the agent). */
  relayPreferred?: boolean;
  /** A pooled share: a member this visitor has no session with yet. */
  spread?: boolean;
}

/** A visitor's signaled session as a rendezvous opened it: what it says of the agent, and the session's signal channel. */
export interface SignaledDial {
  opened: SessionOpened;
  /** Sends a signal (an offer, a candidate, `relay`) to the agent. */
  signal(signal: Signal): void;
  /** Ends the session at the rendezvous. */
  close(): void;
}

/** A visitor's pipe as a backend hands it over: a finished path, before Beam's Noise runs on it. */
export interface BackendPipe {
  pipe: Pipe;
  path: PathKind;
  /** The other end's address on that path, as the network saw it (for --allow-ip and logs). */
  address: string | undefined;
}

export interface BackendListening {
  /** The `beam connect` link, without a private share's secret (the caller adds it). */
  link: string;
  /** Where visitors reach the share now, in the backend's own terms (libp2p: the agent's relayed multiaddr). */
  address: string;
  /** `cb` hears each new address the share moves to (libp2p: a reservation on another relay, once the first is lost): its link changes with it. */
  onAddress(cb: (address: string) => void): void;
  /** Where the share can be reached, in the backend's own terms (libp2p: multiaddrs). */
  addresses: string[];
  close(): Promise<void>;
}

/** What a backend's link names: the share, how to reach its agent, and the agent's peer ID, which it must prove. */
export interface BackendTarget {
  share: string;
  /** The backend's address of the agent (libp2p: its relayed multiaddr). */
  address: string;
  peer: string;
  secret: string | undefined;
  /** What the share carries, as the link says. */
  kind: ShareKind;
}

export interface NetworkBackend {
  readonly name: BackendName;
  /** The paths its sessions can take. */
  readonly paths: readonly PathKind[];
  /** Agent: makes `share` reachable; each visitor goes to `visitors`. Rejects with a BeamError. */
  listen(share: BackendShare, visitors: BackendVisitors): Promise<BackendListening>;
  /**
   * Visitor: reaches the share `target` names, as a finished pipe (libp2p)
   * or a signaled session (a server). Rejects with a BeamError that says
   * what failed.
   */
  dial(target: BackendTarget, options?: BackendDialOptions): Promise<BackendPipe | SignaledDial>;
  close(): Promise<void>;
}
