/**
 * A UDP share's datagrams on the visitor's side: on the direct path's
 * unreliable data channel when it is open, else as records on a stream of
 * the relay (shared/datagram.ts). Loaded by a session only for UDP shares,
 * so a browser page (HTTP only) never carries it.
 */
import { DATAGRAM_CHANNEL_LABEL } from '../shared/constants.js';
import { decodeDatagram, encodeDatagram, encodeRecord, RecordReader } from '../shared/datagram.js';
import type { MuxStream } from '../shared/mux.js';
import type { DataChannel, Peer } from './engine.js';

export class Datagrams {
  private channel: DataChannel | undefined;
  private stream: MuxStream | undefined;

  /** `deliver`: a datagram from the share's origin, for a flow. */
  constructor(private readonly deliver: (flow: number, payload: Buffer) => void) {}

  /** Sends a datagram; false when no path carries datagrams now (it is dropped, as UDP may). */
  send(flow: number, payload: Uint8Array): boolean {
    if (this.channel?.isOpen()) {
      this.channel.send(encodeDatagram(flow, payload));
      return true;
    }
    if (this.stream && !this.stream.destroyed) {
      this.stream.write(encodeRecord(flow, payload));
      return true;
    }
    return false;
  }

  /** Opens the direct path's unreliable channel; `onOpen` once it is (the path counts as up then). */
  openChannel(peer: Peer, onOpen: () => void): void {
    const channel = peer.createDataChannel(DATAGRAM_CHANNEL_LABEL, { unreliable: true });
    channel.onOpen(onOpen);
    channel.onMessage((message) => {
      try {
        const d = decodeDatagram(message);
        this.deliver(d.flow, d.payload);
      } catch {
        // malformed: dropped, as UDP would
      }
    });
    channel.onClose(() => {
      if (this.channel === channel) this.channel = undefined;
    });
    this.channel = channel;
  }

  /** Carries datagrams on the relay path's UDP stream (StreamProtocol.UDP). */
  useStream(stream: MuxStream): void {
    const reader = new RecordReader();
    stream.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, this.deliver);
      } catch (err) {
        stream.destroy(err as Error);
      }
    });
    stream.on('error', () => {});
    stream.on('close', () => {
      if (this.stream === stream) this.stream = undefined;
    });
    this.stream = stream;
  }
}
