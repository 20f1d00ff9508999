/**
 * The in-process path ('local'): when a Beam server's gateway and the agent
 * of a share run in one process (the embedded default of `npx beam 3000`, or
 * `serve()` and `share()` in one program), the gateway reaches the agent
 * through an in-memory channel pair, not WebRTC. Both ends are on the
 * sharer's machine already: DTLS and SCTP between two objects of one
 * process would cost a handshake and a thread hop per message for nothing.
 * Everything above the channel is as on any path: the multiplexer, and the
 * agent's checks on every request.
 *
 *   serveLocally(server, name, accept)  an agent offers its share to the gateway of `server` in this process
 *   localAgent(server, name)            the gateway asks for it; undefined: go through signaling
 *
 * Only the server's own gateway asks (transport/session-pool.ts, localLinks):
 * a `beam connect` in the same process proves the agent's identity and the
 * share's secret over Noise, and takes the network paths.
 */
import { BeamError, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { FrameChannelBase } from '../shared/frame-channel.js';
import type { StreamProtocol } from '../shared/frames.js';
import type { HeadPassing, RequestHead, ResponseHead } from '../shared/http-head.js';
import { adoptStream, type Mux, MuxStream } from '../shared/mux.js';

/**
 * One end of an in-memory channel. Messages are delivered in order, in
 * batches: a microtask carries every message sent since the last. The
 * multiplexer already coalesces its frames once per loop turn (setImmediate),
 * so a second macrotask here only made each message wait for another turn:
 * with a microtask the embedded default served 4-6% more 1 KiB requests a
 * second at 10 connections and 13% more at 100 (2026-12-05), and 100 MiB
 * ran as fast. bufferedAmount counts what the other end has not been handed
 * yet, so the multiplexer's backpressure works as on a data channel.
 */
export class LocalChannel extends FrameChannelBase {
  peer: LocalChannel | undefined;
  /** Streams pass to the other end's multiplexer as objects (DirectStream), frames carrying only PING and GOAWAY. */
  direct = false;
  /** The multiplexer on this end. */
  private mux: Mux | undefined;
  private queue: Uint8Array[] = [];
  private buffered = 0;
  private scheduled = false;

  send(message: Uint8Array): void {
    if (this.closed) throw new Error('the local channel is closed');
    // The sender may reuse its buffer once send returns.
    this.queue.push(message.slice());
    this.buffered += message.byteLength;
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const message of batch) {
      this.buffered -= message.byteLength;
      if (this.closed || !this.peer || this.peer.closed) continue;
      this.peer.deliver(message);
    }
    if (batch.length > 0) this.drained();
  }

  bufferedAmount(): number {
    return this.buffered;
  }

  attached(mux: Mux): void {
    this.mux = mux;
  }

  openDirect(mux: Mux, id: number, protocol: StreamProtocol): MuxStream | undefined {
    const far = this.peer?.mux;
    if (!this.direct || this.closed || !far) return undefined;
    const near = new DirectStream(mux, id, protocol);
    const other = new DirectStream(far, id, protocol);
    near.other = other;
    other.other = near;
    // Handed over as an OPEN frame would arrive: ahead of what the opener writes to it.
    deliver(() => {
      const refused = adoptStream(far, other);
      if (refused) near.resetBy(refused);
    });
    return near;
  }

  close(): void {
    if (this.closed) return;
    this.queue = [];
    this.buffered = 0;
    this.markClosed();
    this.peer?.close();
  }
}

/** `direct`: the two multiplexers hand each other their streams (DirectStream), not frames. */
export function localChannelPair(direct = false): [LocalChannel, LocalChannel] {
  const a = new LocalChannel();
  const b = new LocalChannel();
  a.peer = b;
  b.peer = a;
  a.direct = direct;
  b.direct = direct;
  return [a, b];
}

/**
 * What the direct streams of this process hand each other, delivered once a
 * loop turn (setImmediate), in order: a head, bytes, an end, a reset, a new
 * stream. Delivering each at once cost more than the frames it saved: every
 * response then went out to its visitor alone, and the kernel woke the
 * visitor's client once for each (the multiplexer's turn batching had
 * written a turn's responses back to back). Measured in docs/benchmarks.md.
 */
const deliveries: Array<() => void> = [];
let deliveryQueued = false;

function deliver(fn: () => void): void {
  deliveries.push(fn);
  if (deliveryQueued) return;
  deliveryQueued = true;
  setImmediate(deliverAll);
}

function deliverAll(): void {
  deliveryQueued = false;
  // What a delivery queues goes in the next turn.
  const batch = deliveries.splice(0);
  for (const fn of batch) fn();
}

/**
 * One end of a stream between two multiplexers of one process: what one end
 * writes is pushed into the other's readable side as it is, with no frame,
 * no copy and no credit. Backpressure is the reader's own buffer: a write
 * waits while what is on its way and unread there reaches its high-water
 * mark. Otherwise it behaves as a stream over frames does: its end is the
 * other's end, a reset (destroy before both ways ended) destroys the other
 * with the same code, and the multiplexer counts it, caps it and closes it
 * with the path. Heads pass as objects (shared/http-head.ts, HeadPassing).
 */
export class DirectStream extends MuxStream implements HeadPassing {
  other!: DirectStream;
  passesHeads = false;
  /** The head the other end passed, not taken yet. */
  private headIn: RequestHead | ResponseHead | undefined;
  /** receiveHead waiting for the other end's first word: a head, bytes, its end. */
  private headWaiter: { resolve: (head: RequestHead | ResponseHead | undefined) => void; reject: (err: Error) => void } | undefined;
  /** The other end's first word came (a head as an object or as bytes, or its end). */
  private spoke = false;
  private readonly owner: Mux;
  /** Bytes written here and not yet pushed into the other end. */
  private onTheWay = 0;
  /** A write held back while the other end holds enough: its callback. */
  private blocked: (() => void) | undefined;
  private sentFin = false;
  private gotFin = false;
  /** The other end reset the stream (or the multiplexer closed): nothing goes back. */
  private resetHere = false;

  constructor(mux: Mux, id: number, protocol: StreamProtocol) {
    super(mux, id, protocol);
    this.owner = mux;
  }

  passHead(head: RequestHead | ResponseHead): void {
    this.passesHeads = true;
    const other = this.other;
    other.passesHeads = true;
    deliver(() => other.heard(head));
  }

  receiveHead(): Promise<RequestHead | ResponseHead | undefined> {
    if (this.destroyed) return Promise.reject(new BeamError(this.resetCode ?? 'BEAM_ERR_PEER_GONE', 'stream closed before its head'));
    const head = this.headIn;
    this.headIn = undefined;
    if (head || this.spoke) return Promise.resolve(head);
    return new Promise((resolve, reject) => {
      this.headWaiter = { resolve, reject };
    });
  }

  /** The other end's first word: a head as an object, or (undefined) bytes or its end, a head if any in the bytes. */
  private heard(head?: RequestHead | ResponseHead): void {
    if (this.spoke || this.destroyed) return;
    this.spoke = true;
    const waiter = this.headWaiter;
    this.headWaiter = undefined;
    if (waiter) waiter.resolve(head);
    else this.headIn = head;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    const other = this.other;
    const n = chunk.byteLength;
    this.onTheWay += n;
    this.owner.bytesSent += n;
    deliver(() => {
      this.onTheWay -= n;
      other.heard();
      // Bytes for an end that went are dropped, as frames in flight to a reset stream are.
      if (other.destroyed || other.readableEnded) return;
      other.owner.bytesReceived += n;
      other.push(chunk);
      this.release();
    });
    if (this.onTheWay + other.readableLength < other.readableHighWaterMark) cb();
    else this.blocked = cb;
  }

  /**
   * A held write goes on once the other end holds less than its high-water
   * mark, or went, or (`asked`) reads: Node asks for more (_read) before it
   * takes what it reads out of the buffer, so the buffer still looks full
   * then, and it asks no more until something is pushed.
   */
  private release(asked = false): void {
    const cb = this.blocked;
    const other = this.other;
    if (!cb || (!asked && !other.destroyed && this.onTheWay + other.readableLength >= other.readableHighWaterMark)) return;
    this.blocked = undefined;
    cb();
  }

  override _read(): void {
    this.other.release(true);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.sentFin = true;
    const other = this.other;
    deliver(() => {
      if (other.destroyed) return;
      other.heard();
      other.gotFin = true;
      other.push(null);
    });
    cb();
  }

  /** @internal The other end refused or reset the stream with `code`. */
  resetBy(code: ErrorCode): void {
    if (this.destroyed) return;
    this.resetHere = true;
    this.resetCode = code;
    this.destroy(new BeamError(code));
  }

  override abandon(err: BeamError): void {
    if (this.sentFin && this.gotFin) {
      this.destroy();
      return;
    }
    this.resetBy(err.code);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.blocked = undefined;
    this.headIn = undefined;
    const waiter = this.headWaiter;
    this.headWaiter = undefined;
    waiter?.reject(err ?? new BeamError(this.resetCode ?? 'BEAM_ERR_PEER_GONE', 'stream closed before its head'));
    const other = this.other;
    if (!this.resetHere && !(this.sentFin && this.gotFin)) {
      const code = errorCodeOf(err) ?? 'BEAM_ERR_STREAM_RESET';
      this.resetCode = code;
      deliver(() => other.resetBy(code));
    }
    // A write of the other end's held back for this one's buffer goes on: its bytes are dropped.
    other.release();
    this.owner.forget(this.id);
    cb(err);
  }
}

export { type LocalAccept, type LocalLink, localAgent, serveLocally } from './local-agents.js';
