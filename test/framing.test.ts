/**
 * The agent's framing of request bodies to the origin (peer-agent/framing.ts),
 * property-tested with fast-check: whatever headers and body flag a visitor
 * sends, the origin hop carries exactly one explicit framing or none, a
 * Content-Length is honoured to the byte, and anything ambiguous is
 * BEAM_ERR_BAD_FRAMING.
 */
import { PassThrough, Writable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { framedHeaders, holdToLength, requestFraming } from '../peer-agent/framing.js';
import { BeamError } from '../shared/errors.js';

const headerName = fc.constantFrom('Content-Length', 'content-length', 'CONTENT-LENGTH', 'Transfer-Encoding', 'Host', 'X-A', 'Connection');
const headerValue = fc.oneof(
  fc.nat({ max: 1_000_000 }).map(String),
  fc.constantFrom('chunked', '5, 5', '5, 6', '+5', '-1', '0x10', ' 7 ', '', 'content-length'),
  fc.string({ maxLength: 12 }),
);
const headers = fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 });

describe('requestFraming and framedHeaders', () => {
  it('give the origin hop at most one framing header, and never both kinds', () => {
    fc.assert(
      fc.property(headers, fc.boolean(), fc.boolean(), (hs, body, upgrade) => {
        let framing;
        try {
          framing = requestFraming(hs, body, upgrade);
        } catch (err) {
          expect(err).toBeInstanceOf(BeamError);
          expect((err as BeamError).code).toBe('BEAM_ERR_BAD_FRAMING');
          return;
        }
        const out = framedHeaders(hs, framing);
        const lengths = out.filter(([k]) => k.toLowerCase() === 'content-length');
        const encodings = out.filter(([k]) => k.toLowerCase() === 'transfer-encoding');
        expect(lengths.length + encodings.length).toBeLessThanOrEqual(1);
        if (framing.kind === 'chunked') expect(encodings).toEqual([['Transfer-Encoding', 'chunked']]);
        if (framing.kind === 'length') expect(lengths).toEqual([['Content-Length', String(framing.length)]]);
        if (framing.kind === 'none') expect(lengths.length + encodings.length).toBe(0);
        // A body is framed whenever the head says one follows (an upgrade's bytes belong to the new protocol).
        if (body && !upgrade) expect(framing.kind).not.toBe('none');
        if (!body || upgrade) expect(framing.kind === 'chunked' || (framing.kind === 'length' && framing.length > 0)).toBe(false);
        // Everything else passes as it was, in order.
        expect(out.filter(([k]) => !/^(content-length|transfer-encoding)$/i.test(k))).toEqual(
          hs.filter(([k]) => !/^(content-length|transfer-encoding)$/i.test(k)),
        );
      }),
      { numRuns: 2_000 },
    );
  });

  it('takes one Content-Length, or a list of one value repeated, and refuses any other', () => {
    expect(requestFraming([['Content-Length', '5']], true, false)).toEqual({ kind: 'length', length: 5 });
    expect(
      requestFraming(
        [
          ['Content-Length', '5, 5'],
          ['content-length', '5'],
        ],
        true,
        false,
      ),
    ).toEqual({ kind: 'length', length: 5 });
    expect(requestFraming([], true, false)).toEqual({ kind: 'chunked' });
    expect(requestFraming([['Content-Length', '0']], false, false)).toEqual({ kind: 'length', length: 0 });
    expect(requestFraming([], false, false)).toEqual({ kind: 'none' });
    for (const bad of [
      [
        ['Content-Length', '5'],
        ['Content-Length', '6'],
      ],
      [['Content-Length', '5,6']],
      [['Content-Length', '']],
      [['Content-Length', '1e3']],
      [['Content-Length', '9'.repeat(16)]],
    ] as Array<Array<[string, string]>>) {
      expect(() => requestFraming(bad, true, false)).toThrow(expect.objectContaining({ code: 'BEAM_ERR_BAD_FRAMING' }));
    }
    expect(() => requestFraming([['Content-Length', '3']], false, false)).toThrow(expect.objectContaining({ code: 'BEAM_ERR_BAD_FRAMING' }));
    expect(() => requestFraming([['Content-Length', '3']], false, true)).toThrow(expect.objectContaining({ code: 'BEAM_ERR_BAD_FRAMING' }));
  });
});

describe('holdToLength', () => {
  /** Pipes `chunks` into a sink held to `length`; resolves with what the sink got, and the error's code if any. */
  function run(length: number, chunks: Buffer[]): Promise<{ out: Buffer; code?: string }> {
    return new Promise((resolve) => {
      const source = new PassThrough();
      const out: Buffer[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _encoding, cb) {
          out.push(chunk);
          cb();
        },
      });
      let code: string | undefined;
      holdToLength(source, sink, length, (err) => {
        code = err.code;
      });
      source.pipe(sink);
      sink.on('finish', () => resolve({ out: Buffer.concat(out), code }));
      sink.on('close', () => resolve({ out: Buffer.concat(out), code }));
      for (const c of chunks) source.write(c);
      source.end();
    });
  }

  it('lets exactly `length` bytes into the sink however they are chunked, and never a byte past it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.nat({ max: 300 }), async (parts, length) => {
        const chunks = parts.map((p) => Buffer.from(p));
        const total = chunks.reduce((n, c) => n + c.byteLength, 0);
        const { out, code } = await run(length, chunks);
        expect(out.byteLength).toBeLessThanOrEqual(length);
        expect(Buffer.concat(chunks).subarray(0, out.byteLength).equals(out)).toBe(true);
        if (total === length) expect(code).toBeUndefined();
        else expect(code).toBe('BEAM_ERR_BAD_FRAMING');
      }),
      { numRuns: 500 },
    );
  });
});
