/** UDP datagram encoding: its limit and the relay's record framing. */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_DATAGRAM_BYTES } from '../shared/constants.js';
import { decodeDatagram, encodeDatagram, encodeRecord, RecordReader } from '../shared/datagram.js';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

describe('datagrams', () => {
  it(`carry up to MAX_DATAGRAM_BYTES (${MAX_DATAGRAM_BYTES}) and refuse more with BEAM_ERR_FRAME_TOO_LARGE`, () => {
    const max = Buffer.alloc(MAX_DATAGRAM_BYTES, 7);
    expect(decodeDatagram(encodeDatagram(42, max)).payload.equals(max)).toBe(true);
    expect(codeOf(() => encodeDatagram(1, Buffer.alloc(MAX_DATAGRAM_BYTES + 1)))).toBe('BEAM_ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => decodeDatagram(Buffer.alloc(4 + MAX_DATAGRAM_BYTES + 1)))).toBe('BEAM_ERR_FRAME_TOO_LARGE');
    expect(codeOf(() => decodeDatagram(Buffer.alloc(3)))).toBe('BEAM_ERR_FRAME_MALFORMED');
  });

  it('come out of the record stream whole and in order, however the bytes are cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 2000 })), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 10 }),
        (datagrams, cuts) => {
          const bytes = Buffer.concat(datagrams.map(([flow, p]) => encodeRecord(flow, p)));
          const reader = new RecordReader();
          const out: Array<[number, Buffer]> = [];
          let at = 0;
          let i = 0;
          while (at < bytes.length) {
            const n = cuts[i++ % cuts.length]!;
            reader.push(bytes.subarray(at, at + n), (flow, payload) => out.push([flow, payload]));
            at += n;
          }
          expect(out.map(([f, p]) => [f, Buffer.from(p).toString('hex')])).toEqual(datagrams.map(([f, p]) => [f >>> 0, Buffer.from(p).toString('hex')]));
        },
      ),
    );
  });
});
