/** Layer 1: the stream frame codec fed raw bytes. */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FRAME_HEADER_BYTES, MAX_FRAME_PAYLOAD, MAX_MESSAGE_BYTES } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { decodeMessage, encodeMessage, type Frame, FrameType, StreamProtocol } from '../shared/frames.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof BeamError ? err.code : `untyped: ${String(err)}`;
  }
  return undefined;
}

function header(type: number, streamId: number, length: number): Uint8Array {
  const b = new Uint8Array(FRAME_HEADER_BYTES);
  const v = new DataView(b.buffer);
  v.setUint8(0, type);
  v.setUint32(1, streamId);
  v.setUint32(5, length);
  return b;
}

describe('stream frames', () => {
  it('pins the type tags (they are the wire format)', () => {
    expect(FrameType).toEqual({ OPEN: 1, DATA: 2, WINDOW: 3, FIN: 4, FIN_ACK: 5, RESET: 6, PING: 7, PONG: 8, GOAWAY: 9 });
    expect(StreamProtocol).toEqual({ HTTP: 1, TCP: 2, UDP: 3 });
  });

  it('round-trips every frame type, several per message', () => {
    const frames: Frame[] = [
      { type: FrameType.OPEN, streamId: 1, protocol: StreamProtocol.HTTP },
      { type: FrameType.DATA, streamId: 1, data: new Uint8Array([1, 2, 3]) },
      { type: FrameType.WINDOW, streamId: 3, credit: 65536 },
      { type: FrameType.FIN, streamId: 5 },
      { type: FrameType.FIN_ACK, streamId: 5 },
      { type: FrameType.RESET, streamId: 7, reason: 'BEAM_ERR_STREAM_RESET' },
      { type: FrameType.PING, streamId: 0, nonce: new Uint8Array(8).fill(9) },
      { type: FrameType.PONG, streamId: 0, nonce: new Uint8Array(8).fill(4) },
      { type: FrameType.GOAWAY, streamId: 0, reason: 'BEAM_ERR_MAX_VISITORS' },
    ];
    const decoded = decodeMessage(encodeMessage(frames));
    expect(decoded.map((f) => ({ ...f, ...('data' in f ? { data: [...f.data] } : {}), ...('nonce' in f ? { nonce: [...f.nonce] } : {}) }))).toEqual(
      frames.map((f) => ({ ...f, ...('data' in f ? { data: [...f.data] } : {}), ...('nonce' in f ? { nonce: [...f.nonce] } : {}) })),
    );
  });

  it('round-trips a DATA frame of the largest payload', () => {
    const data = new Uint8Array(MAX_FRAME_PAYLOAD).map((_, i) => i & 0xff);
    const msg = encodeMessage([{ type: FrameType.DATA, streamId: 9, data }]);
    expect(msg.byteLength).toBe(MAX_MESSAGE_BYTES);
    const [f] = decodeMessage(msg);
    expect(f?.type === FrameType.DATA && Buffer.compare(f.data, data)).toBe(0);
  });

  it('refuses to encode or decode oversize frames and messages with BEAM_ERR_FRAME_TOO_LARGE', () => {
    expect(codeOf(() => encodeMessage([{ type: FrameType.DATA, streamId: 1, data: new Uint8Array(MAX_FRAME_PAYLOAD + 1) }]))).toBe('BEAM_ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => decodeMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1)))).toBe('BEAM_ERR_FRAME_TOO_LARGE');
    // A length prefix that claims more than the limit is refused before anything is read.
    expect(codeOf(() => decodeMessage(header(FrameType.DATA, 1, MAX_FRAME_PAYLOAD + 1)))).toBe('BEAM_ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => decodeMessage(header(FrameType.DATA, 1, 0xffffffff)))).toBe('BEAM_ERR_FRAME_TOO_LARGE');
  });

  it('rejects unknown frame types with BEAM_ERR_FRAME_UNKNOWN', () => {
    expect(codeOf(() => decodeMessage(header(0, 1, 0)))).toBe('BEAM_ERR_FRAME_UNKNOWN');
    expect(codeOf(() => decodeMessage(header(99, 1, 0)))).toBe('BEAM_ERR_FRAME_UNKNOWN');
  });

  it('rejects truncated and malformed frames with BEAM_ERR_FRAME_MALFORMED', () => {
    expect(codeOf(() => decodeMessage(new Uint8Array(0)))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(new Uint8Array(5)))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(header(FrameType.DATA, 1, 10)))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(header(FrameType.DATA, 1, 0)))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(header(FrameType.OPEN, 0, 0)))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(Buffer.concat([header(FrameType.OPEN, 1, 1), Buffer.from([77])])))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(Buffer.concat([header(FrameType.WINDOW, 1, 4), Buffer.alloc(4)])))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(Buffer.concat([header(FrameType.RESET, 1, 3), Buffer.from('a b')])))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(Buffer.concat([header(FrameType.PING, 3, 8), Buffer.alloc(8)])))).toBe('BEAM_ERR_FRAME_MALFORMED');
    // GOAWAY ends the whole channel: stream 0 only, with a reason in the error codes' alphabet.
    expect(codeOf(() => decodeMessage(Buffer.concat([header(FrameType.GOAWAY, 1, 4), Buffer.from('BEAM')])))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(Buffer.concat([header(FrameType.GOAWAY, 0, 3), Buffer.from('a b')])))).toBe('BEAM_ERR_FRAME_MALFORMED');
    expect(codeOf(() => decodeMessage(header(FrameType.GOAWAY, 0, 0)))).toBe('BEAM_ERR_FRAME_MALFORMED');
  });

  it('never throws anything but a coded BeamError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        const code = codeOf(() => decodeMessage(bytes));
        return code === undefined || code.startsWith('BEAM_ERR_FRAME_');
      }),
      { numRuns: 5000 },
    );
  });
});
