/**
 * Network backends, the types (transport/backend.ts has the code): how a
 * share is announced, how a visitor finds it, and the pipe a visitor's path
 * comes as. `--via` picks a backend.
 *
 *   server  Beam's signaling server (the default): it names shares, pairs
 *           sessions, carries offers and candidates, and offers the direct,
 *           TURN and relay paths, which the session classes set up and
 *           replace themselves (transport/session.ts, peer-agent/agent-session.ts).
 *   libp2p  no Beam server at all (transport/libp2p.ts): implements
 *           NetworkBackend below. The agent reserves a slot on a circuit
 *           relay, the visitor dials through it, and the two punch a WebRTC
 *           connection; the backend hands over one finished path, a Pipe.
 *
 * On every pipe Beam runs what it runs on its relay: Noise with the agent's
 * key (the visitor pins it; a private share's secret goes into the
 * prologue), the agent's verdict (shared/frames.ts GOAWAY), and the stream
 * multiplexer. So the agent's checks and the visitor's pin do not depend on
 * what the network proves. docs/backends.md says what Tor, I2P, Nym or
 * Veilid would need to fit the same two calls.
 */
import type { PeerId, PrivateKey } from '@libp2p/interface';
import type { BACKEND_NAMES } from './constants.js';
import type { ErrorCode } from './errors.js';
import type { PathKind } from './paths.js';
import type { ShareKind } from './signaling.js';

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
  name: string;
  kind: ShareKind;
  private: boolean;
  /** The agent's key: the backend's own identity is the same peer ID, so the link's pin names both. */
  identity: { privateKey: PrivateKey; peerId: PeerId };
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
  /** Agent: makes `share` reachable; each visitor's pipe goes to `accept`. Rejects with a BeamError. */
  listen(share: BackendShare, accept: (incoming: BackendPipe) => void): Promise<BackendListening>;
  /** Visitor: reaches the share `target` names. Rejects with a BeamError that says what failed. */
  dial(target: BackendTarget, options?: { signal?: AbortSignal }): Promise<BackendPipe>;
  close(): Promise<void>;
}
