/**
 * Noise (XX, @chainsafe/libp2p-noise) between a visitor and an agent, over
 * any message pipe: a relay WebSocket or a WebRTC data channel.
 *
 * - On the relay path the secured stream carries the stream protocol, so the
 *   relay only ever sees ciphertext.
 * - On the direct path DTLS already encrypts; there the handshake runs on its
 *   own data channel with a prologue naming both DTLS fingerprints
 *   (`directPrologue`), as libp2p's webrtc-direct spec does. Each side's
 *   fingerprints come from the SDP it sent and received, so a signaling server
 *   that swapped in its own DTLS endpoints makes the prologues differ and the
 *   handshake fail.
 *
 * The visitor is the initiator and names the peer ID it expects; a different
 * key fails the handshake with BEAM_ERR_PEER_MISMATCH.
 */
import './polyfill.js';
import { createHash } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import type { MessageStream, PeerId, Upgrader } from '@libp2p/interface';
import { defaultLogger, logger } from '@libp2p/logger';
import { AbstractMessageStream, type SendResult } from '@libp2p/utils';
import { Uint8ArrayList } from 'uint8arraylist';
import type { Pipe } from '../shared/backend.js';
import { FRAME_HEADER_BYTES, HANDSHAKE_TIMEOUT_MS, MAX_MESSAGE_BYTES, SECURE_PIPE_MESSAGE_BYTES, SECURE_WRITE_BYTES } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { FrameChannelBase } from '../shared/frame-channel.js';
import type { FrameChannel } from '../shared/mux.js';
import type { Identity } from './identity.js';
import { noiseCrypto } from './noise-crypto.js';

export type { Pipe };

const noiseLog = logger('beam:noise');

/** A libp2p MessageStream over a Pipe: what the Noise encrypter reads and writes. */
class PipeStream extends AbstractMessageStream {
  private readonly pipe: Pipe;

  constructor(pipe: Pipe, direction: 'inbound' | 'outbound') {
    // What queued while the pipe was full leaves in pieces the relay (and a data channel) accepts.
    super({ log: noiseLog, direction, inactivityTimeout: 0, maxMessageSize: SECURE_PIPE_MESSAGE_BYTES });
    this.pipe = pipe;
    pipe.onMessage((bytes) => this.onData(bytes));
    pipe.onClose(() => this.onTransportClosed());
    pipe.onDrain(() => this.safeDispatchEvent('drain'));
  }

  sendData(data: Parameters<AbstractMessageStream['sendData']>[0]): SendResult {
    // One message per write, never an empty one: SCTP stacks differ on empty messages.
    if (data.byteLength === 0) return { sentBytes: 0, canSendMore: true };
    return { sentBytes: data.byteLength, canSendMore: this.pipe.send(data.subarray()) };
  }

  sendReset(): void {
    this.pipe.close();
  }

  sendPause(): void {
    this.pipe.pause?.();
  }

  sendResume(): void {
    this.pipe.resume?.();
  }

  async close(): Promise<void> {
    this.pipe.close();
    this.onTransportClosed();
  }
}

export interface SecureOptions {
  role: 'initiator' | 'responder';
  identity: Identity;
  /** The peer the initiator expects; a different key fails with BEAM_ERR_PEER_MISMATCH. */
  remotePeer?: PeerId;
  prologue?: Uint8Array;
  /** Default HANDSHAKE_TIMEOUT_MS. */
  timeoutMs?: number;
}

export interface Secured {
  stream: MessageStream;
  remotePeer: PeerId;
  pipe: Pipe;
}

/** A 2-byte big-endian length prefix; past anything a buffer under 2 bytes holds when the prefix is not all in. */
export function lengthOrMore(data: Uint8Array | { byteLength: number; getUint16(offset: number): number }): number {
  if (data.byteLength < 2) return 0xffff;
  return data instanceof Uint8Array ? (data[0]! << 8) | data[1]! : data.getUint16(0);
}

/**
 * libp2p-noise's frame decoder (@libp2p/utils' LengthPrefixedDecoder) learns
 * that the next message's 2-byte length is not in yet from a RangeError its
 * length decoder throws, so it builds an error with a stack trace at the end of
 * every chunk it is handed: 6-12 % of a relaying server's CPU. Its loop waits
 * for more bytes just the same when the length it is told is past what it
 * holds, which is what `lengthOrMore` answers instead. Only the secured
 * stream's decoder is swapped; the handshake's reader keeps the library's. A
 * library whose decoder looks different is left as it is.
 */
function quietLengths(stream: MessageStream): void {
  const decoder = (stream as unknown as { decoder?: { lengthDecoder?: unknown } }).decoder;
  if (decoder !== undefined && typeof decoder.lengthDecoder === 'function') decoder.lengthDecoder = lengthOrMore;
}

/** Runs the Noise XX handshake over `pipe`. Rejects with a BeamError; the pipe is closed then. */
export async function secure(pipe: Pipe, options: SecureOptions): Promise<Secured> {
  const stream = new PipeStream(pipe, options.role === 'initiator' ? 'outbound' : 'inbound');
  const encrypter = noise({ prologueBytes: options.prologue, crypto: noiseCrypto })({
    peerId: options.identity.peerId,
    privateKey: options.identity.privateKey,
    logger: defaultLogger(),
    // Only consulted for early muxer negotiation, which Beam skips.
    upgrader: undefined as unknown as Upgrader,
  });
  const signal = AbortSignal.timeout(options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS);
  try {
    const conn =
      options.role === 'initiator'
        ? await encrypter.secureOutbound(stream, { remotePeer: options.remotePeer, skipStreamMuxerNegotiation: true, signal })
        : await encrypter.secureInbound(stream, { skipStreamMuxerNegotiation: true, signal });
    quietLengths(conn.connection);
    return { stream: conn.connection, remotePeer: conn.remotePeer, pipe };
  } catch (err) {
    pipe.close();
    const name = (err as Error).name;
    if (name === 'UnexpectedPeerError') throw new BeamError('BEAM_ERR_PEER_MISMATCH', (err as Error).message, { cause: err });
    if (signal.aborted) throw new BeamError('BEAM_ERR_HANDSHAKE_FAILED', `no handshake within ${options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS} ms`);
    throw new BeamError('BEAM_ERR_HANDSHAKE_FAILED', (err as Error).message, { cause: err });
  }
}

/** `a=fingerprint:<hash> <hex>` of an SDP, normalised; BEAM_ERR_BAD_MESSAGE if it has none. */
export function sdpFingerprint(sdp: string): string {
  const m = /^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$/m.exec(sdp);
  if (!m) throw new BeamError('BEAM_ERR_BAD_MESSAGE', 'description has no DTLS fingerprint');
  return `${m[1]!.toLowerCase()} ${m[2]!.toUpperCase()}`;
}

/**
 * Binds a private share's secret into a prologue: both ends mix in its hash,
 * so a visitor without the secret (or with a wrong one) fails the handshake
 * and never gets a stream to the agent.
 */
export function withSecret(prologue: Uint8Array, secret: string | undefined): Uint8Array {
  if (secret === undefined) return prologue;
  const digest = createHash('sha256').update(`beam-share-secret:${secret}`).digest('hex');
  return Buffer.concat([prologue, Buffer.from(`|secret:${digest}`)]);
}

/** The prologue both ends of a direct path compute from the offer's and the answer's fingerprints. */
export function directPrologue(offerSdp: string, answerSdp: string): Uint8Array {
  return new TextEncoder().encode(`beam-webrtc-noise:${sdpFingerprint(offerSdp)}|${sdpFingerprint(answerSdp)}`);
}

/**
 * The stream protocol over a secured stream. Noise delivers bytes in its own
 * chunks; frames are self-delimiting (shared/frames.ts), so whole frames are
 * cut out again and handed to the multiplexer as messages.
 */
export class SecureFrameChannel extends FrameChannelBase {
  private readonly secured: Secured;
  private pending: Buffer = Buffer.alloc(0);
  /** Messages sent this turn, written to Noise together (SECURE_WRITE_BYTES) at its end. */
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private flushQueued = false;
  /** Frames are cut out again on arrival: a message may be as long as one Noise write. */
  readonly maxMessageBytes = SECURE_WRITE_BYTES;

  constructor(secured: Secured) {
    super();
    this.secured = secured;
    const { stream, pipe } = secured;
    stream.addEventListener('message', (evt) => {
      const data = evt.data;
      this.receive(data instanceof Uint8Array ? data : data.subarray());
    });
    stream.addEventListener('close', () => this.onClosed());
    // The encrypter resumes its own queue on drain (in a microtask); look after that.
    pipe.onDrain(() => {
      setImmediate(() => this.drained());
    });
  }

  private receive(bytes: Uint8Array): void {
    const buf = this.pending.length ? Buffer.concat([this.pending, bytes]) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let start = 0;
    while (buf.length - start >= FRAME_HEADER_BYTES) {
      const total = FRAME_HEADER_BYTES + buf.readUInt32BE(start + 5);
      if (total > MAX_MESSAGE_BYTES) {
        // Let the multiplexer reject it with its own code and close.
        this.deliver(buf.subarray(start, start + FRAME_HEADER_BYTES));
        this.close();
        return;
      }
      if (buf.length - start < total) break;
      this.deliver(buf.subarray(start, start + total));
      start += total;
    }
    // Copy the tail: the multiplexer may keep views of what it was handed.
    this.pending = Buffer.from(buf.subarray(start));
  }

  private onClosed(): void {
    this.markClosed(this.secured.pipe.closeCode?.());
  }

  send(message: Uint8Array): void {
    if (this.closed) return;
    if (this.outBytes + message.byteLength > SECURE_WRITE_BYTES) this.write();
    this.out.push(message);
    this.outBytes += message.byteLength;
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      this.write();
    });
  }

  /** Hands what this turn sent to Noise as one write (one frame: frames are self-delimiting inside). */
  private write(): void {
    if (this.out.length === 0 || this.closed) return;
    // A list, not a copy: Noise seals it part by part (transport/noise-crypto.ts).
    const data = this.out.length === 1 ? (this.out[0] as Uint8Array) : new Uint8ArrayList(...this.out);
    this.out = [];
    this.outBytes = 0;
    try {
      this.secured.stream.send(data);
    } catch {
      this.close();
    }
  }

  bufferedAmount(): number {
    return this.outBytes + this.secured.stream.writeBufferLength + this.secured.pipe.bufferedAmount();
  }

  close(): void {
    if (this.closed) return;
    // What was sent before the close (a GOAWAY, a last RESET) still leaves.
    this.write();
    void this.secured.stream.close().catch(() => {});
    this.secured.pipe.close();
    this.onClosed();
  }
}

/** A Pipe over a data channel, for the direct path's handshake. */
export function channelPipe(channel: FrameChannel): Pipe {
  const drainCbs: Array<() => void> = [];
  channel.setBufferedAmountLowThreshold(0);
  channel.onBufferedAmountLow(() => {
    for (const cb of drainCbs) cb();
  });
  return {
    send(bytes) {
      channel.send(bytes);
      return channel.bufferedAmount() < MAX_MESSAGE_BYTES * 4;
    },
    bufferedAmount: () => channel.bufferedAmount(),
    onDrain: (cb) => drainCbs.push(cb),
    onMessage: (cb) => channel.onMessage(cb),
    onClose: (cb) => channel.onClose(cb),
    close: () => channel.close(),
  };
}
