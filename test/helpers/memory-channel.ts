/**
 * The in-memory channel pair of the in-process path (transport/local.ts),
 * with what tests need besides: every message a side sent, and raw bytes
 * delivered to a side as if its peer had sent them. Its semantics are those
 * of node-datachannel that matter: send() always queues, bufferedAmount
 * grows until the other side takes the message, and delivery is
 * asynchronous and ordered.
 */
import { LocalChannel } from '../../transport/local.js';

export class MemoryChannel extends LocalChannel {
  /** Every message this side sent, for tests that inspect the wire. */
  readonly sent: Uint8Array[] = [];

  override send(message: Uint8Array): void {
    super.send(message);
    this.sent.push(message.slice());
  }

  /** Delivers raw bytes to this side as if the peer had sent them. */
  inject(message: Uint8Array): void {
    this.deliver(message);
  }
}

export function channelPair(): [MemoryChannel, MemoryChannel] {
  const a = new MemoryChannel();
  const b = new MemoryChannel();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
