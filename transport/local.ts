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
import { FrameChannelBase } from '../shared/frame-channel.js';

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

  close(): void {
    if (this.closed) return;
    this.queue = [];
    this.buffered = 0;
    this.markClosed();
    this.peer?.close();
  }
}

export function localChannelPair(): [LocalChannel, LocalChannel] {
  const a = new LocalChannel();
  const b = new LocalChannel();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

export { type LocalAccept, type LocalLink, localAgent, serveLocally } from './local-agents.js';
