/**
 * Stream protocol, version 1: the frames that carry many streams over one
 * reliable, ordered WebRTC data channel.
 *
 * Protocol flow
 *   - The offerer of the peer connection opens the channel labelled
 *     STREAM_CHANNEL_LABEL. Streams opened by the offerer have odd ids, those
 *     opened by the answerer even ids; ids are never reused.
 *   - A stream starts with OPEN, carries DATA both ways, and ends when each
 *     side has sent FIN and had it acknowledged with FIN_ACK, or when either
 *     side sends RESET.
 *   - A sender may have at most the credit the receiver granted in flight:
 *     INITIAL_STREAM_WINDOW to start, plus every WINDOW increment since.
 *     node-datachannel's receive side has no backpressure, so this is the
 *     only thing bounding a receiver's memory.
 *   - PING/PONG on stream 0 measure RTT.
 *   - GOAWAY on stream 0 ends the whole channel and says why (an error
 *     code); its sender closes once the other side hangs up. An agent
 *     reached through a network backend speaks first after Noise: a GOAWAY
 *     refuses the visitor (--max-visitors), its first PING lets it in.
 *
 * One data-channel message carries one or more whole frames (small frames are
 * coalesced to save per-message cost); a frame never spans two messages.
 *
 * Frame layout: type u8 | stream id u32 BE | payload length u32 BE | payload
 */
import { FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD, MAX_MESSAGE_BYTES, MAX_RESET_REASON_BYTES } from './constants.js';
import { BeamError } from './errors.js';

export const FrameType = {
  /** payload: protocol u8 (see StreamProtocol) */
  OPEN: 1,
  /** payload: bytes */
  DATA: 2,
  /** payload: credit increment u32 BE */
  WINDOW: 3,
  /** payload: empty. The sender will write no more. */
  FIN: 4,
  /** payload: empty. The FIN with this stream id was received. */
  FIN_ACK: 5,
  /** payload: reason, an error code in ASCII (<= MAX_RESET_REASON_BYTES) */
  RESET: 6,
  /** payload: 8 opaque bytes, echoed by PONG. Stream id 0. */
  PING: 7,
  /** payload: the 8 bytes of the PING it answers. Stream id 0. */
  PONG: 8,
  /** payload: why the channel ends, an error code in ASCII (<= MAX_RESET_REASON_BYTES). Stream id 0. */
  GOAWAY: 9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** What an OPEN frame asks the other side to do with the stream. */
export const StreamProtocol = {
  /** An HTTP exchange: request head, body; response head, body (shared/http-head.ts). */
  HTTP: 1,
  /** Raw bytes to and from the share's TCP origin. */
  TCP: 2,
  /** A UDP share's datagrams as records, on paths with no unreliable channel (shared/datagram.ts). */
  UDP: 3,
} as const;
export type StreamProtocol = (typeof StreamProtocol)[keyof typeof StreamProtocol];

export type Frame =
  | { type: typeof FrameType.OPEN; streamId: number; protocol: StreamProtocol }
  | { type: typeof FrameType.DATA; streamId: number; data: Uint8Array }
  | { type: typeof FrameType.WINDOW; streamId: number; credit: number }
  | { type: typeof FrameType.FIN; streamId: number }
  | { type: typeof FrameType.FIN_ACK; streamId: number }
  | { type: typeof FrameType.RESET; streamId: number; reason: string }
  | { type: typeof FrameType.PING; streamId: 0; nonce: Uint8Array }
  | { type: typeof FrameType.PONG; streamId: 0; nonce: Uint8Array }
  | { type: typeof FrameType.GOAWAY; streamId: 0; reason: string };

const PROTOCOLS = new Set<number>(Object.values(StreamProtocol));
const REASON = /^[A-Z0-9_]{1,64}$/;

function payloadLength(frame: Frame): number {
  switch (frame.type) {
    case FrameType.OPEN:
      return 1;
    case FrameType.DATA:
      return frame.data.byteLength;
    case FrameType.WINDOW:
      return 4;
    case FrameType.FIN:
    case FrameType.FIN_ACK:
      return 0;
    case FrameType.RESET:
    case FrameType.GOAWAY:
      return frame.reason.length;
    case FrameType.PING:
    case FrameType.PONG:
      return 8;
  }
}

/** Size of the frame once encoded. */
export function encodedLength(frame: Frame): number {
  return FRAME_HEADER_BYTES + payloadLength(frame);
}

/**
 * Writes `frame` into `out` at `offset` and returns the new offset. Checks
 * the same limits the decoder checks, so Beam never sends what it would refuse.
 */
export function writeFrame(frame: Frame, out: Uint8Array, offset: number): number {
  const length = payloadLength(frame);
  if (length > MAX_FRAME_PAYLOAD) throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `payload of ${length} bytes`);
  if (!Number.isInteger(frame.streamId) || frame.streamId < 0 || frame.streamId > 0xffffffff) {
    throw new BeamError('BEAM_ERR_FRAME_MALFORMED', `stream id ${frame.streamId}`);
  }
  const view = new DataView(out.buffer, out.byteOffset + offset, FRAME_HEADER_BYTES + length);
  view.setUint8(0, frame.type);
  view.setUint32(1, frame.streamId);
  view.setUint32(5, length);
  const p = offset + FRAME_HEADER_BYTES;
  switch (frame.type) {
    case FrameType.OPEN:
      out[p] = frame.protocol;
      break;
    case FrameType.DATA:
      out.set(frame.data, p);
      break;
    case FrameType.WINDOW:
      if (!Number.isInteger(frame.credit) || frame.credit <= 0 || frame.credit > 0xffffffff) {
        throw new BeamError('BEAM_ERR_FRAME_MALFORMED', `credit ${frame.credit}`);
      }
      view.setUint32(FRAME_HEADER_BYTES, frame.credit);
      break;
    case FrameType.RESET:
    case FrameType.GOAWAY:
      if (!REASON.test(frame.reason)) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'reset reason');
      for (let i = 0; i < frame.reason.length; i++) out[p + i] = frame.reason.charCodeAt(i);
      break;
    case FrameType.PING:
    case FrameType.PONG:
      if (frame.nonce.byteLength !== 8) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'nonce');
      out.set(frame.nonce, p);
      break;
    default:
      break;
  }
  return p + length;
}

/** Encodes frames into one message; their total must fit MAX_MESSAGE_BYTES. */
export function encodeMessage(frames: readonly Frame[]): Uint8Array {
  let total = 0;
  for (const f of frames) total += encodedLength(f);
  if (total > MAX_MESSAGE_BYTES) throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `message of ${total} bytes`);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const f of frames) offset = writeFrame(f, out, offset);
  return out;
}

/**
 * Decodes one data-channel message into its frames. Throws a BeamError with
 * BEAM_ERR_FRAME_TOO_LARGE, BEAM_ERR_FRAME_UNKNOWN or BEAM_ERR_FRAME_MALFORMED;
 * never anything else. DATA payloads are views into `message`, not copies.
 */
export function decodeMessage(message: Uint8Array): Frame[] {
  if (message.byteLength > MAX_MESSAGE_BYTES) {
    throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `message of ${message.byteLength} bytes`);
  }
  if (message.byteLength === 0) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'empty message');
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const frames: Frame[] = [];
  let offset = 0;
  while (offset < message.byteLength) {
    if (message.byteLength - offset < FRAME_HEADER_BYTES) {
      throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'truncated header');
    }
    const type = view.getUint8(offset);
    const streamId = view.getUint32(offset + 1);
    const length = view.getUint32(offset + 5);
    if (length > MAX_FRAME_PAYLOAD) throw new BeamError('BEAM_ERR_FRAME_TOO_LARGE', `payload of ${length} bytes`);
    const p = offset + FRAME_HEADER_BYTES;
    if (p + length > message.byteLength) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'truncated payload');
    const payload = message.subarray(p, p + length);
    frames.push(decodeFrame(type, streamId, payload));
    offset = p + length;
  }
  return frames;
}

function expectLength(payload: Uint8Array, n: number, what: string): void {
  if (payload.byteLength !== n) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', `${what} payload of ${payload.byteLength} bytes`);
}

function decodeFrame(type: number, streamId: number, payload: Uint8Array): Frame {
  const control = type === FrameType.PING || type === FrameType.PONG;
  if (!control && streamId === 0 && type >= FrameType.OPEN && type <= FrameType.RESET) {
    throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'stream id 0 is reserved');
  }
  switch (type) {
    case FrameType.OPEN: {
      expectLength(payload, 1, 'OPEN');
      const protocol = payload[0] as number;
      if (!PROTOCOLS.has(protocol)) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', `protocol ${protocol}`);
      return { type, streamId, protocol: protocol as StreamProtocol };
    }
    case FrameType.DATA:
      if (payload.byteLength === 0) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'empty DATA');
      return { type, streamId, data: payload };
    case FrameType.WINDOW: {
      expectLength(payload, 4, 'WINDOW');
      const credit = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0);
      if (credit === 0) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'zero credit');
      return { type, streamId, credit };
    }
    case FrameType.FIN:
    case FrameType.FIN_ACK:
      expectLength(payload, 0, type === FrameType.FIN ? 'FIN' : 'FIN_ACK');
      return { type, streamId };
    case FrameType.RESET:
    case FrameType.GOAWAY: {
      if (payload.byteLength > MAX_RESET_REASON_BYTES) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'reset reason too long');
      const reason = String.fromCharCode(...payload);
      if (!REASON.test(reason)) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'reset reason');
      if (type === FrameType.RESET) return { type, streamId, reason };
      if (streamId !== 0) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'GOAWAY on a stream');
      return { type, streamId: 0, reason };
    }
    case FrameType.PING:
    case FrameType.PONG:
      expectLength(payload, 8, 'PING');
      if (streamId !== 0) throw new BeamError('BEAM_ERR_FRAME_MALFORMED', 'PING on a stream');
      return { type, streamId: 0, nonce: payload };
    default:
      throw new BeamError('BEAM_ERR_FRAME_UNKNOWN', `type ${type}`);
  }
}
