/**
 * The stream multiplexer: many Duplex streams over one data channel, speaking
 * the frames of shared/frames.ts.
 *
 * Facts about node-datachannel 0.33 this design answers to:
 *  - sendMessageBinary returning false means queued, not failed, and that
 *    queue is unbounded: the mux stops handing frames to the channel once
 *    bufferedAmount passes CHANNEL_HIGH_WATER_BYTES and resumes on
 *    bufferedAmountLow.
 *  - the receive side has no backpressure: per-stream credit (WINDOW frames)
 *    bounds what a peer may have in flight, and credit is only returned once
 *    the consumer has taken the bytes.
 *  - a channel whose JS object is garbage-collected gets closed: the mux
 *    holds its channel for its whole life.
 *
 * The mux doesn't listen or dial: it is handed an open FrameChannel, so it
 * runs just as well over an in-memory pair in tests.
 */

import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import {
  CHANNEL_HIGH_WATER_BYTES,
  CHANNEL_LOW_WATER_BYTES,
  EARLY_STREAM_WINDOW,
  EARLY_WINDOW_RTT_MS,
  FIN_ACK_TIMEOUT_MS,
  GOAWAY_LINGER_MS,
  INITIAL_STREAM_WINDOW,
  LAZY_FLUSH_MS,
  MAX_CONNECTION_WINDOW_GROWTH,
  MAX_FRAME_PAYLOAD,
  MAX_MESSAGE_BYTES,
  MAX_STREAM_WINDOW,
  MAX_STREAMS_PER_PEER,
  MUX_QUEUE_HIGH_WATER_BYTES,
  PATH_DEAD_MS,
  PING_INTERVAL_MS,
  WINDOW_TARGET_MS,
} from './constants.js';
import { BeamError, type ErrorCode, errorCodeOf, isErrorCode } from './errors.js';
import { decodeMessage, encodedLength, encodeMessage, type Frame, FrameType, type StreamProtocol, writeFrame } from './frames.js';
import { SlotMap } from './slot-map.js';

/** What the mux needs of a data channel. Engines in transport/ provide it. */
export interface FrameChannel {
  send(message: Uint8Array): void;
  bufferedAmount(): number;
  setBufferedAmountLowThreshold(bytes: number): void;
  onBufferedAmountLow(cb: () => void): void;
  onMessage(cb: (message: Uint8Array) => void): void;
  /** `code`: why it closed, when the other end or the server said (the relay's cap, for one). */
  onClose(cb: (code?: ErrorCode) => void): void;
  close(): void;
  /**
   * The largest message this channel takes (default MAX_MESSAGE_BYTES, what
   * every SCTP stack takes). A channel that cuts whole frames out of what it
   * carries (the relay's, with Noise or without) takes up to a Noise write:
   * the multiplexer then packs a flush's frames into one message there, not
   * four the channel would join again.
   */
  readonly maxMessageBytes?: number;
  /**
   * The multiplexer that runs on this channel (called as it is made): an
   * in-process channel (transport/local.ts) finds the other end's with it.
   */
  attached?(mux: Mux): void;
  /**
   * Opens stream `id` as an object the other end's multiplexer is handed,
   * not as frames (an in-process channel that says so: transport/local.ts);
   * undefined: as frames.
   */
  openDirect?(mux: Mux, id: number, protocol: StreamProtocol): MuxStream | undefined;
}

/**
 * True in the browser page's build alone (browser-client/build.mjs defines
 * it): its minifier drops the branches under `!globalThis.__BEAM_PAGE__`,
 * what only Node runs (the in-memory path, UDP shares, the gateway's relay
 * link without Noise). A page visits HTTP shares, over the network.
 */
declare global {
  var __BEAM_PAGE__: true | undefined;
}

export interface MuxOptions {
  /** 'initiator' opens odd stream ids, 'responder' even ones. */
  role: 'initiator' | 'responder';
  /** Send PING frames to measure RTT. Default true. */
  ping?: boolean;
}

export interface MuxEvents {
  stream: [MuxStream];
  close: [ErrorCode | undefined];
  rtt: [number];
}

export class Mux extends EventEmitter<MuxEvents> {
  private readonly channel: FrameChannel;
  /** Open streams by id: a SlotMap, so a hash table V8 replaced keeps none of them alive (shared/slot-map.ts). */
  private readonly streams = new SlotMap<number, MuxStream>();
  private nextLocalId: number;
  private lastRemoteId = 0;
  private readonly remoteParity: number;
  private readonly control: Frame[] = [];
  private readonly lazy: Frame[] = [];
  private lazyTimer: NodeJS.Timeout | undefined;
  private queue: Frame[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private waitingForChannel = false;
  private writableWaiters: Array<() => void> = [];
  private closed = false;
  private pingNonce: Uint8Array | undefined;
  private pingSentAt = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  /** closeWhenIdle was called: the last stream to go closes the mux. */
  private idleClose = false;
  /** goAway was called: why; streams the other side opens now are refused with it. */
  private goingAway: ErrorCode | undefined;
  private lastReceivedAt = performance.now();
  /** When the channel last drained from its high-water mark to its low one: the peer's transport took what was queued. */
  private lastDrainedAt = 0;
  /** Latest round-trip time measured with PING, in milliseconds. */
  rtt: number | undefined;
  /** Bytes of data-channel messages sent and received, frame headers included. */
  bytesSent = 0;
  bytesReceived = 0;
  /** Window growth granted beyond the initial window, over all open streams. */
  private windowGrowth = 0;

  constructor(channel: FrameChannel, options: MuxOptions) {
    super();
    this.channel = channel;
    this.nextLocalId = options.role === 'initiator' ? 1 : 2;
    this.remoteParity = options.role === 'initiator' ? 0 : 1;
    channel.setBufferedAmountLowThreshold(CHANNEL_LOW_WATER_BYTES);
    channel.onBufferedAmountLow(() => {
      if (this.waitingForChannel) {
        // From the high-water mark: the peer took hundreds of KiB (its transport acknowledged them).
        this.lastDrainedAt = performance.now();
        this.waitingForChannel = false;
        this.flush();
      }
    });
    channel.onMessage((message) => this.receive(message));
    channel.onClose((code) => this.close(code ?? this.goingAway ?? 'BEAM_ERR_PEER_GONE'));
    if (!globalThis.__BEAM_PAGE__) channel.attached?.(this);
    if (options.ping !== false) {
      this.pingTimer = setInterval(() => {
        // Judged after this loop turn's I/O (a timer runs ahead of it): after a stall of this
        // process, what the peer sent meanwhile is read first.
        setImmediate(() => {
          if (this.closed) return;
          // A path that has carried nothing, not even a PONG, for PATH_DEAD_MS is gone (a cut link).
          if (performance.now() - this.lastReceivedAt > PATH_DEAD_MS) {
            this.close('BEAM_ERR_PEER_GONE');
            return;
          }
          this.ping();
        });
      }, PING_INTERVAL_MS);
      this.pingTimer.unref();
      this.ping();
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Milliseconds since anything (a frame, a PONG) last came from the other side. */
  get silentMs(): number {
    return performance.now() - this.lastReceivedAt;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Opens a stream. Throws BEAM_ERR_TOO_MANY_STREAMS at MAX_STREAMS_PER_PEER, BEAM_ERR_PEER_GONE once closed. */
  openStream(protocol: StreamProtocol): MuxStream {
    if (this.closed) throw new BeamError('BEAM_ERR_PEER_GONE');
    if (this.streams.size >= MAX_STREAMS_PER_PEER) {
      throw new BeamError('BEAM_ERR_TOO_MANY_STREAMS', `${this.streams.size} open`);
    }
    const id = this.nextLocalId;
    this.nextLocalId += 2;
    if (!globalThis.__BEAM_PAGE__) {
      const direct = this.channel.openDirect?.(this, id, protocol);
      if (direct) {
        this.streams.set(id, direct);
        return direct;
      }
    }
    const stream = new MuxStream(this, id, protocol);
    this.streams.set(id, stream);
    this.enqueue({ type: FrameType.OPEN, streamId: id, protocol });
    // Its credit follows its OPEN in order (control frames would overtake it).
    stream.openEarlyWindow((f) => this.enqueue(f));
    return stream;
  }

  /** Sends a PING; the answer updates `rtt` and emits 'rtt'. */
  ping(): void {
    if (this.closed || this.pingNonce) return;
    // Web Crypto (a global in Node 20 and browsers): nothing to bundle for the browser.
    this.pingNonce = crypto.getRandomValues(new Uint8Array(8));
    this.pingSentAt = performance.now();
    this.control.push({ type: FrameType.PING, streamId: 0, nonce: this.pingNonce });
    this.scheduleFlush();
  }

  /**
   * Tells whether the peer is still there. Sends a fresh PING and resolves true
   * once its PONG arrives within `timeoutMs`. A peer in the middle of a large
   * send may not get its PONG through that fast: the PONG waits behind
   * megabytes in the SCTP send buffer. So the probe also resolves true, at the
   * deadline, if messages were still arriving in the second half of the window.
   * A process that is gone sends nothing, and what it sent before arrives
   * within a round trip. Likewise, a send queue that keeps draining in the
   * second half means the peer's transport is acknowledging what this side
   * sends (its SCTP stack runs off its JavaScript thread, so it does while
   * that thread is busy); a gone peer acknowledges nothing and the queue
   * stays full. It resolves false otherwise, or when the mux closes.
   * An answer to an earlier PING proves nothing about now, so it doesn't count.
   *
   * The verdict waits for what this process has not read yet: a timer runs
   * before the I/O of its loop turn, so after a stall of this process (a busy
   * machine) the PONG may be there unread. The verdict is taken after that I/O
   * (setImmediate), and a deadline this process reached late by more than a
   * quarter window opens one more half window: its own stall says nothing
   * about the peer.
   */
  probe(timeoutMs: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    this.pingNonce = undefined;
    this.ping();
    const started = performance.now();
    // Traffic read after this moment shows the peer alive now; what came earlier may have been in flight.
    let countsAfter = started + timeoutMs / 2;
    let deadline = started + timeoutMs;
    let extended = false;
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let immediate: NodeJS.Immediate | undefined;
      const done = (alive: boolean): void => {
        clearTimeout(timer);
        if (immediate) clearImmediate(immediate);
        this.off('rtt', onPong);
        this.off('close', onClose);
        resolve(alive);
      };
      const onPong = (): void => done(true);
      const onClose = (): void => done(false);
      const judge = (): void => {
        immediate = undefined;
        if (this.lastReceivedAt >= countsAfter || this.lastDrainedAt >= countsAfter) {
          done(true);
          return;
        }
        const now = performance.now();
        if (!extended && now - deadline > timeoutMs / 4) {
          // This process was stalled past the deadline: give the peer half a window it can be seen in.
          extended = true;
          countsAfter = now;
          deadline = now + timeoutMs / 2;
          arm();
          return;
        }
        done(false);
      };
      const arm = (): void => {
        // Judged after this loop turn's I/O, which a timer runs ahead of.
        timer = setTimeout(() => {
          immediate = setImmediate(judge);
        }, deadline - performance.now());
        timer.unref();
      };
      arm();
      this.on('rtt', onPong);
      this.on('close', onClose);
    });
  }

  /** Closes once no stream is open (now, if none is): a path being replaced lets its streams finish. */
  closeWhenIdle(): void {
    if (this.streams.size === 0) this.close();
    else this.idleClose = true;
  }

  /**
   * Ends the channel and tells the other side why: a GOAWAY frame with
   * `code`, ahead of anything queued. The other side closes on it; this
   * side closes when it does, or after GOAWAY_LINGER_MS at the latest (a
   * channel closed at once may drop what it had not sent yet).
   */
  goAway(code: ErrorCode): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = code;
    try {
      this.channel.send(encodeMessage([{ type: FrameType.GOAWAY, streamId: 0, reason: code }]));
    } catch {
      this.close(code);
      return;
    }
    setTimeout(() => this.close(code), GOAWAY_LINGER_MS).unref();
  }

  /** Closes every stream with `code` and the channel. Idempotent. */
  close(code?: ErrorCode): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    if (this.lazyTimer) clearTimeout(this.lazyTimer);
    this.lazy.length = 0;
    const err = new BeamError(code ?? 'BEAM_ERR_PEER_GONE');
    for (const stream of this.streams.values()) stream.abandon(err);
    this.streams.clear();
    this.control.length = 0;
    this.queue.length = 0;
    this.queuedBytes = 0;
    const waiters = this.writableWaiters;
    this.writableWaiters = [];
    for (const w of waiters) w();
    try {
      this.channel.close();
    } catch {
      // already closed
    }
    this.emit('close', code);
  }

  // ------------------------------------------------------------ sending

  /** @internal Queues a frame in order with the stream's other frames. */
  enqueue(frame: Frame): void {
    if (this.closed) return;
    this.queue.push(frame);
    this.queuedBytes += encodedLength(frame);
    this.scheduleFlush();
  }

  /**
   * @internal A stream whose OPEN is still queued goes away unheard: its
   * queued frames are dropped and true is returned, so no RESET is sent for
   * it. (Control frames leave ahead of queued data: a RESET would otherwise
   * reach the peer before the OPEN it refers to, a stream the peer never
   * opened, and the peer rightly closes the path for it. A client that
   * opens and cancels requests at once made that happen.)
   */
  unsend(id: number): boolean {
    const at = this.queue.findIndex((f) => f.type === FrameType.OPEN && f.streamId === id);
    if (at < 0) return false;
    const kept: Frame[] = [];
    for (const f of this.queue) {
      if (f.streamId === id) this.queuedBytes -= encodedLength(f);
      else kept.push(f);
    }
    this.queue = kept;
    return true;
  }

  /** @internal Queues a small control frame ahead of data (credit must not wait behind bulk data). */
  enqueueControl(frame: Frame): void {
    if (this.closed) return;
    this.control.push(frame);
    this.scheduleFlush();
  }

  /** @internal Queues a control frame that may wait for other traffic, up to LAZY_FLUSH_MS. */
  enqueueLazy(frame: Frame): void {
    if (this.closed) return;
    this.lazy.push(frame);
    if (!this.lazyTimer) {
      this.lazyTimer = setTimeout(() => {
        this.lazyTimer = undefined;
        this.scheduleFlush();
      }, LAZY_FLUSH_MS);
      this.lazyTimer.unref();
    }
  }

  /** @internal Calls `cb` once the mux queue is below its high-water mark. */
  whenWritable(cb: () => void): void {
    if (this.closed || this.queuedBytes < MUX_QUEUE_HIGH_WATER_BYTES) cb();
    else this.writableWaiters.push(cb);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.waitingForChannel) return;
    this.flushScheduled = true;
    // setImmediate, not a microtask: frames written by every I/O callback of
    // this loop turn are coalesced into as few messages as possible.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed) return;
    try {
      if (this.lazy.length > 0 && (this.control.length > 0 || this.queue.length > 0 || !this.lazyTimer)) {
        // Lazy frames leave with whatever else goes out now, or alone once their timer ran.
        this.control.unshift(...this.lazy.splice(0));
        if (this.lazyTimer) clearTimeout(this.lazyTimer);
        this.lazyTimer = undefined;
      }
      while (this.control.length > 0 || this.queue.length > 0) {
        if (this.channel.bufferedAmount() >= CHANNEL_HIGH_WATER_BYTES) {
          this.waitingForChannel = true;
          break;
        }
        const message = this.pack();
        this.bytesSent += message.byteLength;
        this.channel.send(message);
      }
    } catch (err) {
      this.close(errorCodeOf(err) ?? 'BEAM_ERR_PEER_GONE');
      return;
    }
    if (this.queuedBytes < MUX_QUEUE_HIGH_WATER_BYTES && this.writableWaiters.length > 0) {
      const waiters = this.writableWaiters;
      this.writableWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Takes whole frames (control first) for one message of at most the channel's maxMessageBytes. */
  private pack(): Uint8Array {
    const taken: Frame[] = [];
    const max = this.channel.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    let size = 0;
    while (this.control.length > 0) {
      const f = this.control[0] as Frame;
      const n = encodedLength(f);
      if (size + n > max) break;
      taken.push(f);
      size += n;
      this.control.shift();
    }
    while (this.queue.length > 0) {
      const f = this.queue[0] as Frame;
      const n = encodedLength(f);
      if (size + n > max) break;
      taken.push(f);
      size += n;
      this.queuedBytes -= n;
      this.queue.shift();
    }
    // Every byte is written below: no need to zero-fill first.
    const out = Buffer.allocUnsafe(size);
    let offset = 0;
    for (const f of taken) offset = writeFrame(f, out, offset);
    return out;
  }

  // ------------------------------------------------------------ receiving

  private receive(message: Uint8Array): void {
    if (this.closed) return;
    this.bytesReceived += message.byteLength;
    this.lastReceivedAt = performance.now();
    let frames: Frame[];
    try {
      frames = decodeMessage(message);
    } catch (err) {
      // A peer that sends what the protocol forbids is not trusted further.
      this.close(errorCodeOf(err) ?? 'BEAM_ERR_FRAME_MALFORMED');
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      this.dispatch(frame);
    }
  }

  private dispatch(frame: Frame): void {
    switch (frame.type) {
      case FrameType.PING:
        this.enqueueControl({ type: FrameType.PONG, streamId: 0, nonce: frame.nonce.slice() });
        return;
      case FrameType.PONG:
        if (this.pingNonce && Buffer.compare(this.pingNonce, frame.nonce) === 0) {
          this.rtt = performance.now() - this.pingSentAt;
          this.pingNonce = undefined;
          this.emit('rtt', this.rtt);
        }
        return;
      case FrameType.OPEN:
        this.accept(frame.streamId, frame.protocol);
        return;
      case FrameType.GOAWAY:
        // The other side ends the channel, and says why.
        this.close(isErrorCode(frame.reason) ? frame.reason : 'BEAM_ERR_PEER_GONE');
        return;
      default: {
        const stream = this.streams.get(frame.streamId);
        // Frames for a stream already closed here (e.g. after a RESET crossed
        // in flight) are dropped; frames for a stream never opened are a
        // protocol violation.
        if (!stream) {
          if (!this.wasOpened(frame.streamId)) this.close('BEAM_ERR_FRAME_MALFORMED');
          return;
        }
        stream.onFrame(frame);
      }
    }
  }

  private wasOpened(id: number): boolean {
    return id % 2 === this.remoteParity ? id <= this.lastRemoteId : id < this.nextLocalId;
  }

  private accept(id: number, protocol: StreamProtocol): void {
    if (id % 2 !== this.remoteParity || id <= this.lastRemoteId) {
      this.close('BEAM_ERR_FRAME_MALFORMED');
      return;
    }
    this.lastRemoteId = id;
    if (this.goingAway) {
      this.enqueueControl({ type: FrameType.RESET, streamId: id, reason: this.goingAway });
      return;
    }
    if (this.streams.size >= MAX_STREAMS_PER_PEER) {
      this.enqueueControl({ type: FrameType.RESET, streamId: id, reason: 'BEAM_ERR_TOO_MANY_STREAMS' });
      return;
    }
    const stream = new MuxStream(this, id, protocol);
    this.streams.set(id, stream);
    stream.openEarlyWindow((f) => this.enqueueControl(f));
    this.emit('stream', stream);
  }

  /** @internal */
  forget(id: number): void {
    const stream = this.streams.get(id);
    if (stream) this.windowGrowth -= stream.windowGrowth;
    this.streams.delete(id);
    if (this.idleClose && this.streams.size === 0) setImmediate(() => this.close());
  }

  /** @internal Takes up to `want` bytes of window growth from the connection's budget. */
  takeWindowGrowth(want: number): number {
    const n = Math.max(0, Math.min(want, MAX_CONNECTION_WINDOW_GROWTH - this.windowGrowth));
    this.windowGrowth += n;
    return n;
  }
}

/**
 * One stream: a Duplex whose writes wait for credit and for room in the mux,
 * and whose reads return credit to the peer only once consumed.
 */
export class MuxStream extends Duplex {
  readonly id: number;
  readonly protocol: StreamProtocol;
  private readonly mux: Mux;
  private sendCredit = INITIAL_STREAM_WINDOW;
  private recvAllowed = INITIAL_STREAM_WINDOW;
  private ungranted = 0;
  private held = 0;
  /** The receive window: grows while the consumer keeps up (see MAX_STREAM_WINDOW). */
  private window = INITIAL_STREAM_WINDOW;
  private lastGrantAt = 0;
  /** @internal Bytes this stream's window grew beyond the initial one. */
  windowGrowth = 0;
  private pending: { chunk: Buffer; offset: number; cb: (err?: Error | null) => void } | undefined;
  private finalCb: ((err?: Error | null) => void) | undefined;
  private finAckTimer: NodeJS.Timeout | undefined;
  private finSent = false;
  private finReceived = false;
  private finAcked = false;
  private resetByPeer = false;
  /** The code this stream was reset with, by either side. */
  resetCode: ErrorCode | undefined;

  constructor(mux: Mux, id: number, protocol: StreamProtocol) {
    // autoDestroy (Node's default, spelled out for the browser's readable-stream 3): 'close' follows a clean end both ways.
    super({ allowHalfOpen: true, autoDestroy: true });
    this.mux = mux;
    this.id = id;
    this.protocol = protocol;
  }

  /** @internal On a long path, opens the receive window to EARLY_STREAM_WINDOW at once (see there); `send` queues the credit. */
  openEarlyWindow(send: (frame: Frame) => void): void {
    const rtt = this.mux.rtt;
    if (rtt === undefined || rtt < EARLY_WINDOW_RTT_MS) return;
    const extra = this.mux.takeWindowGrowth(EARLY_STREAM_WINDOW - this.window);
    if (extra <= 0) return;
    this.window += extra;
    this.windowGrowth += extra;
    this.recvAllowed += extra;
    send({ type: FrameType.WINDOW, streamId: this.id, credit: extra });
  }

  // ---------------------------------------------------------- writable side

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (chunk.byteLength === 0) {
      cb();
      return;
    }
    this.pending = { chunk, offset: 0, cb };
    this.pump();
  }

  private pump(): void {
    const p = this.pending;
    if (!p) return;
    while (this.sendCredit > 0 && p.offset < p.chunk.byteLength) {
      const n = Math.min(this.sendCredit, MAX_FRAME_PAYLOAD, p.chunk.byteLength - p.offset);
      this.mux.enqueue({ type: FrameType.DATA, streamId: this.id, data: p.chunk.subarray(p.offset, p.offset + n) });
      this.sendCredit -= n;
      p.offset += n;
    }
    if (p.offset === p.chunk.byteLength) {
      this.pending = undefined;
      this.mux.whenWritable(() => p.cb());
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finSent = true;
    this.mux.enqueue({ type: FrameType.FIN, streamId: this.id });
    if (this.mux.isClosed) {
      cb(new BeamError('BEAM_ERR_PEER_GONE'));
      return;
    }
    this.finalCb = cb;
    this.finAckTimer = setTimeout(() => this.finishFinal(), FIN_ACK_TIMEOUT_MS);
    this.finAckTimer.unref();
  }

  private finishFinal(err?: Error): void {
    if (this.finAckTimer) clearTimeout(this.finAckTimer);
    this.finAckTimer = undefined;
    const cb = this.finalCb;
    this.finalCb = undefined;
    cb?.(err);
  }

  // ---------------------------------------------------------- readable side

  override _read(): void {
    if (this.held > 0) {
      const n = this.held;
      this.held = 0;
      this.grant(n, false);
    }
  }

  private grant(n: number, consumerKeepsUp: boolean): void {
    this.ungranted += n;
    // Batch credit: a WINDOW per quarter window keeps the peer's credit
    // above 3/4 of the window while costing few frames.
    if (this.ungranted < this.window / 4 || this.finReceived) return;
    let credit = this.ungranted;
    const now = performance.now();
    if (consumerKeepsUp && this.lastGrantAt > 0 && this.window < MAX_STREAM_WINDOW) {
      // Rate over the last quarter window; a window should cover the path's
      // time in flight at that rate. Only a consumer that keeps up earns growth,
      // so a stalled reader never pins more than the initial window.
      const rate = this.ungranted / Math.max(now - this.lastGrantAt, 0.001);
      const target = rate * Math.max(2 * (this.mux.rtt ?? 0), WINDOW_TARGET_MS);
      if (target > this.window) {
        const extra = this.mux.takeWindowGrowth(Math.min(this.window, MAX_STREAM_WINDOW - this.window));
        this.window += extra;
        this.windowGrowth += extra;
        credit += extra;
      }
    }
    this.lastGrantAt = now;
    this.recvAllowed += credit;
    this.mux.enqueueControl({ type: FrameType.WINDOW, streamId: this.id, credit });
    this.ungranted = 0;
  }

  /** @internal */
  onFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.DATA: {
        const n = frame.data.byteLength;
        if (this.finReceived || n > this.recvAllowed) {
          this.destroy(new BeamError(this.finReceived ? 'BEAM_ERR_FRAME_MALFORMED' : 'BEAM_ERR_FLOW_CONTROL'));
          return;
        }
        this.recvAllowed -= n;
        if (this.destroyed || this.readableEnded) return;
        const data = Buffer.from(frame.data.buffer, frame.data.byteOffset, n);
        if (this.push(data)) this.grant(n, this.held === 0);
        else this.held += n;
        return;
      }
      case FrameType.WINDOW:
        this.sendCredit += frame.credit;
        this.pump();
        return;
      case FrameType.FIN:
        if (this.finReceived) return;
        this.finReceived = true;
        this.mux.enqueueLazy({ type: FrameType.FIN_ACK, streamId: this.id });
        this.push(null);
        this.maybeForget();
        return;
      case FrameType.FIN_ACK:
        this.finAcked = true;
        this.finishFinal();
        this.maybeForget();
        return;
      case FrameType.RESET:
        this.resetByPeer = true;
        this.resetCode = isErrorCode(frame.reason) ? frame.reason : 'BEAM_ERR_STREAM_RESET';
        this.destroy(new BeamError(this.resetCode));
        return;
      default:
        return;
    }
  }

  private maybeForget(): void {
    if (this.finReceived && this.finAcked) this.mux.forget(this.id);
  }

  /** @internal The mux closed underneath: fail without sending anything. */
  abandon(err: BeamError): void {
    this.resetByPeer = true;
    if (this.finSent && this.finReceived) {
      // Both directions already ended cleanly; only the last FIN_ACK was in flight.
      this.finishFinal();
      this.destroy();
      return;
    }
    this.resetCode = err.code;
    this.finishFinal(err);
    this.destroy(err);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.pending = undefined;
    const clean = this.finSent && this.finReceived;
    if (!this.resetByPeer && !clean) {
      const code = errorCodeOf(err) ?? 'BEAM_ERR_STREAM_RESET';
      this.resetCode = code;
      if (!this.mux.unsend(this.id)) this.mux.enqueueControl({ type: FrameType.RESET, streamId: this.id, reason: code });
    }
    if (this.finalCb) this.finishFinal(err ?? new BeamError('BEAM_ERR_STREAM_RESET'));
    this.mux.forget(this.id);
    cb(err);
  }
}

/**
 * A stream the other end opened in this process (FrameChannel.openDirect):
 * `mux` takes it as an OPEN frame would be taken, or refuses it with the code
 * a RESET would carry. A function of this module, not a method, so that the
 * browser page's bundle, which never runs it, leaves it out.
 */
export function adoptStream(mux: Mux, stream: MuxStream): ErrorCode | undefined {
  if (mux.isClosed) return 'BEAM_ERR_PEER_GONE';
  const goingAway = mux['goingAway'];
  if (goingAway) return goingAway;
  if (mux.streamCount >= MAX_STREAMS_PER_PEER) return 'BEAM_ERR_TOO_MANY_STREAMS';
  mux['lastRemoteId'] = stream.id;
  mux['streams'].set(stream.id, stream);
  mux.emit('stream', stream);
  return undefined;
}
