/**
 * WebSocket messages over a stream, version 1: what a browser page
 * (browser-client/) and the agent say once the agent has opened a WebSocket
 * to the origin for it (a request head with `websocket: true`,
 * shared/http-head.ts). The page cannot speak WebSocket framing on a data
 * channel, and needs none: the agent speaks it to the origin (the `ws`
 * package) and both sides here exchange whole messages.
 *
 *   record = kind u8 | length u32 BE | payload
 *   kind 1 text (UTF-8), 2 binary, 8 close (payload: code u16 BE | reason UTF-8)
 *
 * A record over MAX_WS_MESSAGE_BYTES is refused with BEAM_ERR_FRAME_TOO_LARGE.
 */
import { MAX_WS_MESSAGE_BYTES } from './constants.js';
import { BeamError } from './errors.js';

export const WsKind = { TEXT: 1, BINARY: 2, CLOSE: 8 } as const;
export type WsKind = (typeof WsKind)[keyof typeof WsKind];

const HEADER = 5;

export function encodeWsMessage(kind: WsKind, payload: Uint8Array): Buffer {
  if (payload.byteLength > MAX_WS_MESSAGE_BYTES)
    throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `WebSocket message of ${payload.byteLength} bytes (limit ${MAX_WS_MESSAGE_BYTES})`);
  const out = Buffer.allocUnsafe(HEADER + payload.byteLength);
  out.writeUInt8(kind, 0);
  out.writeUInt32BE(payload.byteLength, 1);
  out.set(payload, HEADER);
  return out;
}

export function encodeWsClose(code: number, reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, 123);
  const payload = Buffer.allocUnsafe(2 + text.byteLength);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return encodeWsMessage(WsKind.CLOSE, payload);
}

export function decodeWsClose(payload: Buffer): { code: number; reason: string } {
  if (payload.byteLength < 2) return { code: 1005, reason: '' };
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') };
}

/** Cuts messages out of a stream's bytes; keeps the incomplete tail. Throws BeamError on a bad kind or size. */
export class WsMessageReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer, onMessage: (kind: WsKind, payload: Buffer) => void): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (buf.length >= HEADER) {
      const kind = buf.readUInt8(0);
      const length = buf.readUInt32BE(1);
      if (kind !== WsKind.TEXT && kind !== WsKind.BINARY && kind !== WsKind.CLOSE)
        throw new BeamError('BEAM_ERR_BAD_MESSAGE', `WebSocket record of kind ${kind}`);
      if (length > MAX_WS_MESSAGE_BYTES)
        throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `WebSocket message of ${length} bytes (limit ${MAX_WS_MESSAGE_BYTES})`);
      if (buf.length < HEADER + length) break;
      onMessage(kind, Buffer.from(buf.subarray(HEADER, HEADER + length)));
      buf = buf.subarray(HEADER + length);
    }
    this.pending = Buffer.from(buf);
  }
}
