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
import type { FrameChannel } from '../shared/mux.js';
import type { ShareKind } from '../shared/signaling.js';

/**
 * One end of an in-memory channel. Messages are delivered in order, in
 * batches: one macrotask (setImmediate) carries every message sent since the
 * last, so a burst costs one turn of the event loop and I/O still gets its
 * turn between batches. bufferedAmount counts what the other end has not
 * been handed yet, so the multiplexer's backpressure works as on a data channel.
 */
export class LocalChannel implements FrameChannel {
  peer: LocalChannel | undefined;
  private queue: Uint8Array[] = [];
  private buffered = 0;
  private lowThreshold = 0;
  private scheduled = false;
  private lowCb: () => void = () => {};
  private messageCb: (message: Uint8Array) => void = () => {};
  private readonly closeCbs: Array<() => void> = [];
  private closed = false;

  send(message: Uint8Array): void {
    if (this.closed) throw new Error('the local channel is closed');
    // The sender may reuse its buffer once send returns.
    this.queue.push(message.slice());
    this.buffered += message.byteLength;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const message of batch) {
      this.buffered -= message.byteLength;
      if (this.closed || !this.peer || this.peer.closed) continue;
      this.peer.messageCb(message);
    }
    if (batch.length > 0 && this.buffered <= this.lowThreshold) this.lowCb();
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
    this.queue = [];
    this.buffered = 0;
    for (const cb of this.closeCbs) cb();
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

/** What an agent hands the gateway for a new session: the gateway's end of the channel, and what the share carries. */
export interface LocalLink {
  channel: FrameChannel;
  kind: ShareKind;
}

export type LocalAccept = () => LocalLink;

const agents = new Map<string, LocalAccept>();

/** The key of a share on a server: the server's origin (scheme, host, port) and the name. */
function keyOf(server: string, share: string): string | undefined {
  try {
    return `${new URL(server).origin}\n${share.toLowerCase()}`;
  } catch {
    return undefined;
  }
}

/** An agent in this process serves `share` on `server`: the gateway there may reach it in memory. Returns the undo. */
export function serveLocally(server: string, share: string, accept: LocalAccept): () => void {
  const key = keyOf(server, share);
  if (key === undefined) return () => {};
  agents.set(key, accept);
  return () => {
    if (agents.get(key) === accept) agents.delete(key);
  };
}

/** The agent serving `share` on `server` in this process, if there is one. */
export function localAgent(server: string, share: string): LocalAccept | undefined {
  const key = keyOf(server, share);
  return key === undefined ? undefined : agents.get(key);
}
