/**
 * Datagrams of UDP shares.
 *
 * On a WebRTC path they travel on their own data channel (DATAGRAM_CHANNEL_LABEL),
 * unordered with no retransmits, so a lost datagram is lost, as on UDP, and
 * never holds up the next: one message = `flow u32 BE | payload`.
 *
 * On the relay (a TCP path) there is no unreliable transport: they travel on
 * one stream (StreamProtocol.UDP) as records `length u16 BE | flow u32 BE |
 * payload`, where length counts flow and payload.
 *
 * A flow is one local client address on the `beam connect` side, and one
 * socket to the origin on the agent's side; the visitor numbers flows.
 */
import { MAX_DATAGRAM_BYTES } from './constants.js';
import { BeamError } from './errors.js';

export const FLOW_BYTES = 4;

export function encodeDatagram(flow: number, payload: Uint8Array): Buffer {
  if (payload.byteLength > MAX_DATAGRAM_BYTES)
    throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `datagram of ${payload.byteLength} bytes (limit ${MAX_DATAGRAM_BYTES})`);
  const out = Buffer.allocUnsafe(FLOW_BYTES + payload.byteLength);
  out.writeUInt32BE(flow >>> 0, 0);
  out.set(payload, FLOW_BYTES);
  return out;
}

export function decodeDatagram(message: Uint8Array): { flow: number; payload: Buffer } {
  const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  if (buf.length < FLOW_BYTES) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'datagram shorter than its flow id');
  if (buf.length - FLOW_BYTES > MAX_DATAGRAM_BYTES) throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `datagram of ${buf.length - FLOW_BYTES} bytes`);
  return { flow: buf.readUInt32BE(0), payload: buf.subarray(FLOW_BYTES) };
}

/** A datagram as a record on a stream (the relay path). */
export function encodeRecord(flow: number, payload: Uint8Array): Buffer {
  const body = encodeDatagram(flow, payload);
  const out = Buffer.allocUnsafe(2 + body.length);
  out.writeUInt16BE(body.length, 0);
  body.copy(out, 2);
  return out;
}

/** Cuts records out of a byte stream; keeps the incomplete tail. */
export class RecordReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer, onDatagram: (flow: number, payload: Buffer) => void): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) break;
      const { flow, payload } = decodeDatagram(buf.subarray(2, 2 + len));
      onDatagram(flow, Buffer.from(payload));
      buf = buf.subarray(2 + len);
    }
    this.pending = Buffer.from(buf);
  }
}
