/**
 * The stream protocol straight over a Pipe, with no Noise: the server's own
 * gateway's relay link to an agent whose link to the server is private (TLS or
 * loopback: SessionOpened.plainLink). The gateway terminates its visitors'
 * HTTP, so Noise between it and the agent hid nothing from the server, and
 * TLS hides the link from everyone else; what Noise cost there (a
 * ChaCha20-Poly1305 pass, a copy and its garbage per byte, both ends) was
 * most of the link's CPU. Measured in docs/benchmarks.md ("Noise on the
 * gateway's own link").
 *
 * As on the secure channel, a loop turn's frames leave together, as one
 * relay message of up to SECURE_WRITE_BYTES; frames are self-delimiting, so
 * each message is cut into whole frames again. A message that ends inside a
 * frame, or a frame past MAX_MESSAGE_BYTES, closes the channel (the
 * multiplexer gets its header to reject with its own code).
 *
 * A module of its own, loaded on demand: a browser page never runs it.
 */
import { FRAME_HEADER_BYTES, MAX_MESSAGE_BYTES, SECURE_WRITE_BYTES } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { FrameChannelBase } from '../shared/frame-channel.js';
import type { Pipe } from './secure.js';

/** Each end's first message on the link: it is there (the relay holds what one side sends until both are). Not a frame. */
const HELLO = Uint8Array.of(0x42);

export class PipeFrameChannel extends FrameChannelBase {
  private readonly pipe: Pipe;
  /** Messages sent this turn, joined into one relay message at its end. */
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private flushQueued = false;
  readonly maxMessageBytes = SECURE_WRITE_BYTES;
  /** Until the other end's HELLO arrives. */
  private waiting: { resolve: (channel: PipeFrameChannel) => void; reject: (err: BeamError) => void } | undefined;

  /**
   * Says HELLO, and resolves once the other end's HELLO came: both are on
   * the link, as a Noise handshake would tell them only once both had
   * spoken (neither end calls its path up, nor announces its session, while
   * the relay still waits for the other side). Neither waits an extra round
   * trip: each says HELLO as it joins. Rejects when the link closes first
   * (the relay's pairing timed out: the other side went to another node's
   * relay, or none), or when the first message is no HELLO.
   */
  static open(pipe: Pipe): Promise<PipeFrameChannel> {
    return new Promise((resolve, reject) => {
      new PipeFrameChannel(pipe, { resolve, reject });
      pipe.send(HELLO);
    });
  }

  private constructor(pipe: Pipe, waiting: PipeFrameChannel['waiting']) {
    super();
    this.pipe = pipe;
    // Set before the pipe is listened to: a pipe hands over what came early at once.
    this.waiting = waiting;
    pipe.onMessage((bytes) => this.receive(bytes));
    pipe.onClose(() => {
      this.waiting?.reject(new BeamError(pipe.closeCode?.() ?? 'BEAM_ERR_AGENT_UNREACHABLE', 'the relay link closed before the other side was on it'));
      this.waiting = undefined;
      this.markClosed(pipe.closeCode?.());
    });
    pipe.onDrain(() => this.drained());
  }

  private receive(bytes: Uint8Array): void {
    if (this.waiting) {
      const { resolve, reject } = this.waiting;
      this.waiting = undefined;
      if (bytes.byteLength === 1 && bytes[0] === HELLO[0]) resolve(this);
      else {
        reject(new BeamError('BEAM_ERR_HANDSHAKE_FAILED', 'the relay link did not start with a hello'));
        this.close();
      }
      return;
    }
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let start = 0;
    while (start < buf.length) {
      const left = buf.length - start;
      const total = left < FRAME_HEADER_BYTES ? Number.POSITIVE_INFINITY : FRAME_HEADER_BYTES + buf.readUInt32BE(start + 5);
      if (total > MAX_MESSAGE_BYTES || total > left) {
        // Cut short, or too long: the multiplexer rejects what is there with its own code, and the channel closes.
        this.deliver(buf.subarray(start, start + Math.min(left, FRAME_HEADER_BYTES)));
        this.close();
        return;
      }
      this.deliver(buf.subarray(start, start + total));
      start += total;
    }
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

  /** Sends this turn's frames as one message (one copy, where Noise's seal made one too). */
  private write(): void {
    if (this.out.length === 0 || this.closed) return;
    const data = this.out.length === 1 ? (this.out[0] as Uint8Array) : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.pipe.send(data);
  }

  bufferedAmount(): number {
    return this.outBytes + this.pipe.bufferedAmount();
  }

  close(): void {
    if (this.closed) return;
    this.write();
    this.pipe.close();
    this.markClosed(this.pipe.closeCode?.());
  }
}
