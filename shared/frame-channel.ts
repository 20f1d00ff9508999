/** A FrameChannel's callback plumbing, shared by Beam's own channels (shared/mux.ts has the interface). Not in the browser page's bundle: the page's channels are the browser's. */
import type { ErrorCode } from './errors.js';
import type { FrameChannel } from './mux.js';

/**
 * The callback plumbing every FrameChannel of Beam's own shares (the relay's
 * secure channel, the in-process channel): subclasses send, report
 * bufferedAmount, and call deliver / drained / closed as things happen.
 */
export abstract class FrameChannelBase implements FrameChannel {
  protected lowThreshold = 0;
  protected closed = false;
  private lowCb: () => void = () => {};
  private messageCb: (message: Uint8Array) => void = () => {};
  private readonly closeCbs: Array<(code?: ErrorCode) => void> = [];

  abstract send(message: Uint8Array): void;
  abstract bufferedAmount(): number;
  abstract close(): void;

  setBufferedAmountLowThreshold(bytes: number): void {
    this.lowThreshold = bytes;
  }

  onBufferedAmountLow(cb: () => void): void {
    this.lowCb = cb;
  }

  onMessage(cb: (message: Uint8Array) => void): void {
    this.messageCb = cb;
  }

  onClose(cb: (code?: ErrorCode) => void): void {
    this.closeCbs.push(cb);
  }

  /** A message arrived for whoever reads this channel. */
  protected deliver(message: Uint8Array): void {
    this.messageCb(message);
  }

  /** What was queued went out: tell the writer if it is at or below its threshold now. */
  protected drained(): void {
    if (!this.closed && this.bufferedAmount() <= this.lowThreshold) this.lowCb();
  }

  /** The channel is closed (once); `code`: why, when the other end or the server said. */
  protected markClosed(code?: ErrorCode): void {
    if (this.closed) return;
    this.closed = true;
    for (const cb of this.closeCbs.splice(0)) cb(code);
  }
}
