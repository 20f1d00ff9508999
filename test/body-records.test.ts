/** Framed bodies (head codec version 2): records in, records out, trailers at the end, and what is refused. */
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BodyDeframer, BodyFramer, BodyRecord, takesTrailers, trailerObject, trailerPairs, trailersRecord } from '../shared/body-records.js';
import { MAX_BODY_RECORD_BYTES, MAX_HEAD_BYTES } from '../shared/constants.js';
import { errorCodeOf } from '../shared/errors.js';

async function roundTrip(
  chunks: Buffer[],
  trailers?: Array<[string, string]>,
): Promise<{ body: Buffer; trailers: Array<[string, string]> | undefined; records: number }> {
  const framer = new BodyFramer(() => trailers);
  const framed: Buffer[] = [];
  framer.on('data', (c: Buffer) => framed.push(c));
  const done = new Promise<void>((resolve) => framer.on('end', resolve));
  for (const c of chunks) framer.write(c);
  framer.end();
  await done;
  const wire = Buffer.concat(framed);
  const deframer = new BodyDeframer();
  const out: Buffer[] = [];
  let heard: Array<[string, string]> | undefined;
  deframer.on('trailers', (t: Array<[string, string]>) => {
    heard = t;
  });
  // Delivered in awkward pieces: every record header and payload split across writes.
  const pieces: Buffer[] = [];
  for (let i = 0; i < wire.byteLength; i += 7) pieces.push(wire.subarray(i, i + 7));
  for await (const c of Readable.from(pieces).pipe(deframer)) out.push(c as Buffer);
  let records = 0;
  for (let at = 0; at < wire.byteLength; at += 5 + wire.readUInt32BE(at + 1)) records++;
  return { body: Buffer.concat(out), trailers: heard, records };
}

function deframe(wire: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const d = new BodyDeframer();
    const out: Buffer[] = [];
    d.on('data', (c: Buffer) => out.push(c));
    d.on('end', () => resolve(Buffer.concat(out)));
    d.on('error', reject);
    d.end(wire);
  });
}

const record = (type: number, payload: Buffer): Buffer => {
  const h = Buffer.alloc(5);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(payload.byteLength, 1);
  return Buffer.concat([h, payload]);
};

describe('framed bodies', () => {
  it('carry any body byte-exact, in records of at most MAX_BODY_RECORD_BYTES, and the trailers after it', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 3000 }), { maxLength: 8 }),
        fc.option(fc.array(fc.tuple(fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/), fc.string({ maxLength: 40 })), { minLength: 1, maxLength: 5 }), {
          nil: undefined,
        }),
        async (parts, trailers) => {
          const chunks = parts.map((p) => Buffer.from(p));
          const got = await roundTrip(chunks, trailers);
          expect(got.body.equals(Buffer.concat(chunks))).toBe(true);
          expect(got.trailers).toEqual(trailers);
        },
      ),
      { numRuns: 100 },
    );
    const big = Buffer.alloc(3 * MAX_BODY_RECORD_BYTES + 1, 7);
    const got = await roundTrip([big]);
    expect(got.body.equals(big)).toBe(true);
    expect(got.records).toBe(4);
  });

  it('refuses what the protocol forbids with BEAM_ERR_BAD_MESSAGE (or HEAD_TOO_LARGE)', async () => {
    const cases: Array<[Buffer, string]> = [
      [record(BodyRecord.DATA, Buffer.alloc(0)), 'BEAM_ERR_BAD_MESSAGE'],
      [record(BodyRecord.DATA, Buffer.alloc(MAX_BODY_RECORD_BYTES + 1)), 'BEAM_ERR_BAD_MESSAGE'],
      [record(7, Buffer.from('x')), 'BEAM_ERR_BAD_MESSAGE'],
      [record(BodyRecord.TRAILERS, Buffer.from('not json')), 'BEAM_ERR_BAD_MESSAGE'],
      [record(BodyRecord.TRAILERS, Buffer.from('[["", "empty name"]]')), 'BEAM_ERR_BAD_MESSAGE'],
      [Buffer.concat([trailersRecord([['a', 'b']]), record(BodyRecord.DATA, Buffer.from('late'))]), 'BEAM_ERR_BAD_MESSAGE'],
      [record(BodyRecord.DATA, Buffer.from('cut')).subarray(0, 6), 'BEAM_ERR_BAD_MESSAGE'],
      [Buffer.from([BodyRecord.TRAILERS, 0xff, 0xff, 0xff, 0xff]), 'BEAM_ERR_HEAD_TOO_LARGE'],
    ];
    for (const [wire, code] of cases) {
      const err = await deframe(wire).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(errorCodeOf(err), wire.subarray(0, 12).toString('hex')).toBe(code);
    }
    expect(() => trailersRecord([['x', 'y'.repeat(MAX_HEAD_BYTES)]])).toThrow(/trailers of/);
  });

  it('trailers never carry framing, routing, auth or hop-by-hop fields, nor pseudo-headers', () => {
    const raw = [
      'grpc-status',
      '0',
      'Content-Length',
      '5',
      'host',
      'x',
      ':status',
      '200',
      'Authorization',
      'Basic x',
      'transfer-encoding',
      'chunked',
      'x-sum',
      'abc',
    ];
    expect(trailerPairs(raw)).toEqual([
      ['grpc-status', '0'],
      ['x-sum', 'abc'],
    ]);
    expect(
      trailerObject([
        ['X-A', '1'],
        ['x-a', '2'],
        ['set-cookie', 'a=1'],
      ]),
    ).toEqual({ 'x-a': ['1', '2'] });
    expect(trailerObject([['content-type', 'x']])).toBeUndefined();
  });

  it('TE: trailers is read as RFC 9110 says: a token in a list, with or without parameters', () => {
    expect(takesTrailers('trailers')).toBe(true);
    expect(takesTrailers('gzip, Trailers;q=1')).toBe(true);
    expect(takesTrailers(['deflate', 'trailers'])).toBe(true);
    expect(takesTrailers('gzip')).toBe(false);
    expect(takesTrailers('trailersx')).toBe(false);
    expect(takesTrailers(undefined)).toBe(false);
  });
});
