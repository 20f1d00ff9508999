/**
 * Network backends, the code: the visitor's end of a backend's pipe
 * (dialSecured, with the agent's verdict), the libp2p module on demand, and
 * `--via`. The types, and what each backend is, are in shared/backend.ts;
 * the agent's end is peer-agent/agent.ts listenOn.
 */
import type { PeerId } from '@libp2p/interface';
import type { BackendName, BackendPipe } from '../shared/backend.js';
import { VERDICT_TIMEOUT_MS } from '../shared/constants.js';
import { BeamError, isErrorCode } from '../shared/errors.js';
import { decodeMessage, FrameType } from '../shared/frames.js';
import type { FrameChannel } from '../shared/mux.js';
import type { PathKind } from '../shared/paths.js';
import type { Identity } from './identity.js';

export type { BackendListening, BackendName, BackendPipe, BackendShare, BackendTarget, NetworkBackend } from '../shared/backend.js';

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
