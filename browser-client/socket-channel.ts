/**
 * A FrameChannel over the browser's WebSocket, for the page's bridge to the
 * gateway (gateway/bridge.ts): one message a frame. The browser's WebSocket
 * has no "buffered amount low" event, so a writer past the threshold is told
 * by a short timer once the socket has sent enough.
 */
import type { FrameChannel } from '../shared/mux.js';

/** How often a writer waiting on the socket checks how much it still holds. */
const DRAIN_CHECK_MS = 5;

export class SocketChannel implements FrameChannel {
  private readonly ws: WebSocket;
  private low = 0;
  private lowCb: () => void = () => {};
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(ws: WebSocket) {
    this.ws = ws;
  }

  send(message: Uint8Array): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    // A copy: the caller may reuse its buffer.
    this.ws.send(new Uint8Array(message));
    if (this.timer === undefined && this.ws.bufferedAmount > this.low) {
      this.timer = setInterval(() => {
        if (this.ws.bufferedAmount > this.low && this.ws.readyState === WebSocket.OPEN) return;
        clearInterval(this.timer);
        this.timer = undefined;
        this.lowCb();
      }, DRAIN_CHECK_MS);
    }
  }

  bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  setBufferedAmountLowThreshold(bytes: number): void {
    this.low = bytes;
  }

  onBufferedAmountLow(cb: () => void): void {
    this.lowCb = cb;
  }

  onMessage(cb: (message: Uint8Array) => void): void {
    this.ws.addEventListener('message', (event: MessageEvent) => cb(Buffer.from(event.data as ArrayBuffer)));
  }

  onClose(cb: () => void): void {
    this.ws.addEventListener('close', () => {
      clearInterval(this.timer);
      cb();
    });
  }

  close(): void {
    this.ws.close();
  }
}
