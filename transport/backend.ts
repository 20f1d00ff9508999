/**
 * Network backends: how a share is announced, how a visitor finds it, how
 * the two exchange what sets a path up, and which paths result. `--via`
 * picks one; app/share.ts and app/connect.ts hold the choice.
 *
 *   server  Beam's signaling server (the default): it names shares, pairs
 *           sessions, carries offers and candidates, and offers the direct,
 *           TURN and relay paths, which the session classes set up and
 *           replace themselves (transport/session.ts, peer-agent/agent-session.ts).
 *   libp2p  no Beam server at all (transport/libp2p.ts): the agent reserves a
 *           slot on a circuit relay, the visitor dials through it, and the
 *           two punch a WebRTC connection; the backend hands over one
 *           finished path.
 *
 * A backend of the second kind implements NetworkBackend below: `listen`
 * makes a share reachable and hands the agent each visitor's pipe, `dial`
 * hands the visitor one. On every pipe Beam runs what it runs on its relay:
 * Noise with the agent's key (the visitor pins it; a private share's secret
 * goes into the prologue) and the stream multiplexer. So the agent's checks
 * and the visitor's pin do not depend on what the network proves.
 *
 * Overlay networks fit the same two calls, with no stub here until one is
 * built (docs/backends.md says what each needs): a Tor onion service or an
 * I2P destination is `listen` (publish the service, accept streams) and
 * `dial` (a stream through the overlay); Nym carries messages rather than
 * streams, so it needs a reliable, ordered pipe on top; Veilid's app calls
 * and private routes would carry the pipe's messages likewise.
 */
import type { PeerId } from '@libp2p/interface';
import type { BACKEND_NAMES } from '../shared/constants.js';
import { VERDICT_TIMEOUT_MS } from '../shared/constants.js';
import { BeamError, isErrorCode } from '../shared/errors.js';
import { decodeMessage, FrameType } from '../shared/frames.js';
import type { FrameChannel } from '../shared/mux.js';
import type { PathKind } from '../shared/paths.js';
import type { ShareKind } from '../shared/signaling.js';
import type { Identity } from './identity.js';
import type { Pipe } from './secure.js';

export type BackendName = (typeof BACKEND_NAMES)[number];

/** What the agent tells a backend about a share. Never its secret: that is proven inside Beam's Noise, on the pipe. */
export interface BackendShare {
  name: string;
  kind: ShareKind;
  private: boolean;
  /** The agent's key: the backend's own identity is the same peer ID, so the link's pin names both. */
  identity: Identity;
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

/**
 * The visitor's end of a backend's pipe: Noise as on the relay, the agent
 * pinned to `peer` and a private share's secret in the prologue. A prologue
 * that differs fails the first decryption: the agent asked for a secret the
 * link lacks, or has another (BEAM_ERR_PRIVATE).
 */
export async function dialSecured(
  dialed: BackendPipe,
  options: { identity: Identity; peer: PeerId; secret: string | undefined },
): Promise<{ channel: FrameChannel; path: PathKind }> {
  const { secure, SecureFrameChannel, withSecret } = await import('./secure.js');
  try {
    const secured = await secure(dialed.pipe, {
      role: 'initiator',
      identity: options.identity,
      remotePeer: options.peer,
      prologue: withSecret(new Uint8Array(0), options.secret),
    });
    return { channel: await verdict(new SecureFrameChannel(secured)), path: dialed.path };
  } catch (err) {
    if (err instanceof BeamError && err.code === 'BEAM_ERR_HANDSHAKE_FAILED' && /decrypt/i.test(err.message))
      throw new BeamError(
        'BEAM_ERR_PRIVATE',
        options.secret === undefined ? 'the share is private and the link has no #secret=' : "the link's secret is wrong",
      );
    throw err;
  }
}

/**
 * The agent speaks first after Noise, with its verdict on this visitor: a
 * GOAWAY refuses it and says why (BEAM_ERR_MAX_VISITORS); any other frame
 * (the first PING of its multiplexer) lets it in, and goes on to whoever
 * reads the channel next. Without this the visitor would only see the
 * channel close, with no code to tell its user.
 */
export async function verdict(channel: FrameChannel, timeoutMs = VERDICT_TIMEOUT_MS): Promise<FrameChannel> {
  const held: Uint8Array[] = [];
  let reader: ((message: Uint8Array) => void) | undefined;
  const first = new Promise<Uint8Array>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new BeamError('BEAM_ERR_HANDSHAKE_FAILED', `the agent said nothing within ${timeoutMs} ms of the handshake`)),
      timeoutMs,
    );
    channel.onMessage((message) => {
      if (reader) return reader(message);
      held.push(message);
      clearTimeout(timer);
      resolve(held[0] as Uint8Array);
    });
    channel.onClose((code) => {
      clearTimeout(timer);
      reject(new BeamError(code ?? 'BEAM_ERR_PEER_GONE', 'the agent hung up right after the handshake'));
    });
  });
  let frames: ReturnType<typeof decodeMessage>;
  try {
    frames = decodeMessage(await first);
  } catch (err) {
    channel.close();
    throw err;
  }
  const head = frames[0];
  if (head?.type === FrameType.GOAWAY) {
    channel.close();
    throw new BeamError(isErrorCode(head.reason) ? head.reason : 'BEAM_ERR_PEER_GONE', 'the agent turned this visitor away');
  }
  return {
    send: (message) => channel.send(message),
    bufferedAmount: () => channel.bufferedAmount(),
    setBufferedAmountLowThreshold: (bytes) => channel.setBufferedAmountLowThreshold(bytes),
    onBufferedAmountLow: (cb) => channel.onBufferedAmountLow(cb),
    onClose: (cb) => channel.onClose(cb),
    close: () => channel.close(),
    // What came before the reader: handed over first, in order, before anything newer.
    onMessage: (cb) =>
      queueMicrotask(() => {
        for (const message of held.splice(0)) cb(message);
        reader = cb;
      }),
  };
}

/**
 * The libp2p backend's module (transport/libp2p.ts), loaded on first use: a
 * share through a Beam server never loads libp2p. Its WebRTC runs on
 * node-datachannel's native module; where that failed to install, say so.
 */
export async function loadLibp2p(): Promise<typeof import('./libp2p.js')> {
  try {
    return await import('./libp2p.js');
  } catch (err) {
    throw new BeamError(
      'BEAM_ERR_BAD_OPTION',
      `the libp2p backend failed to load (${(err as Error).message}); its WebRTC needs node-datachannel's native module: reinstall Beam, or share through a Beam server (--via server)`,
      { cause: err },
    );
  }
}

/** `--via`'s value, checked. */
export function parseBackendName(text: string): BackendName {
  if (text === 'server' || text === 'libp2p') return text;
  throw new BeamError('BEAM_ERR_BAD_OPTION', `--via ${text}: a share goes through "server" (a Beam server: the default) or "libp2p" (no Beam server)`);
}
