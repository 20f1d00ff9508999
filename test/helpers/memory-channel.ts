/**
 * An in-memory FrameChannel pair with the node-datachannel semantics that
 * matter: send() always queues, bufferedAmount grows until the other side
 * takes the message, and delivery is asynchronous and ordered.
 */
import type { FrameChannel } from '../../shared/mux.js';

export class MemoryChannel implements FrameChannel {
  peer: MemoryChannel | undefined;
  private buffered = 0;
  private lowThreshold = 0;
  private lowCb: () => void = () => {};
  private messageCb: (m: Uint8Array) => void = () => {};
  private closeCbs: Array<() => void> = [];
  private closed = false;
  /** Every message this side sent, for tests that inspect the wire. */
  readonly sent: Uint8Array[] = [];

  send(message: Uint8Array): void {
    if (this.closed) throw new Error('closed');
    this.sent.push(message);
    this.buffered += message.byteLength;
    const copy = message.slice();
    setImmediate(() => {
      this.buffered -= copy.byteLength;
      if (this.buffered <= this.lowThreshold) this.lowCb();
      if (!this.peer?.closed) this.peer?.messageCb(copy);
    });
  }
  /** Delivers raw bytes to this side as if the peer had sent them. */
  inject(message: Uint8Array): void {
    this.messageCb(message);
  }
  bufferedAmount(): number {
    return this.buffered;
  }
  setBufferedAmountLowThreshold(bytes: number): void {
    this.lowThreshold = bytes;
  }
  onBufferedAmountLow(cb: () => void): void {
    this.lowCb = cb;
  }
  onMessage(cb: (message: Uint8Array) => void): void {
    this.messageCb = cb;
  }
  onClose(cb: () => void): void {
    this.closeCbs.push(cb);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const cb of this.closeCbs) cb();
    this.peer?.close();
  }
}

export function channelPair(): [MemoryChannel, MemoryChannel] {
  const a = new MemoryChannel();
  const b = new MemoryChannel();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
