/**
 * A framed body (HTTP head codec version 2): a body that may end with
 * trailer fields travels as records, so the trailers can follow the last
 * byte on the same stream.
 *
 *   record   = type u8 | length u32 BE | payload
 *   DATA     type 0, payload: body bytes (1 to MAX_BODY_RECORD_BYTES)
 *   TRAILERS type 1, payload: UTF-8 JSON [name, value] pairs, validated as a
 *            head's headers are; the last record, at most one
 *
 * The stream's FIN ends the body. A body is framed only when its head says so
 * (RequestHead.framed, ResponseHead.framed).
 */
import { Transform, type TransformCallback } from 'node:stream';
import * as v from 'valibot';
import { MAX_BODY_RECORD_BYTES, MAX_HEAD_BYTES, MAX_HEADER_COUNT } from './constants.js';
import { decode } from './decode.js';
import { BeamError } from './errors.js';

export const BodyRecord = { DATA: 0, TRAILERS: 1 } as const;
const RECORD_HEADER_BYTES = 5;

export type HeaderPairList = Array<[string, string]>;

const TrailersSchema = v.pipe(
  v.array(v.strictTuple([v.pipe(v.string(), v.minLength(1), v.maxLength(256)), v.pipe(v.string(), v.maxLength(MAX_HEAD_BYTES))])),
  v.maxLength(MAX_HEADER_COUNT),
);

function recordHeader(type: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(length, 1);
  return header;
}

/** The TRAILERS record for `pairs`; BEAM_ERR_HEAD_TOO_LARGE past MAX_HEAD_BYTES. */
export function trailersRecord(pairs: HeaderPairList): Buffer {
  const json = Buffer.from(JSON.stringify(pairs), 'utf8');
  if (json.byteLength > MAX_HEAD_BYTES) throw new BeamError('BEAM_ERR_HEAD_TOO_LARGE', `trailers of ${json.byteLength} bytes`);
  return Buffer.concat([recordHeader(BodyRecord.TRAILERS, json.byteLength), json]);
}

/**
 * Body bytes in, records out. When the body ends, `trailers()` is asked for
 * the trailer fields (none: no TRAILERS record).
 */
export class BodyFramer extends Transform {
  private readonly trailers: () => HeaderPairList | undefined;

  constructor(trailers: () => HeaderPairList | undefined = () => undefined) {
    super();
    this.trailers = trailers;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (let at = 0; at < chunk.byteLength; at += MAX_BODY_RECORD_BYTES) {
      const part = chunk.subarray(at, at + MAX_BODY_RECORD_BYTES);
      this.push(recordHeader(BodyRecord.DATA, part.byteLength));
      this.push(part);
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const pairs = this.trailers();
    if (pairs && pairs.length > 0) {
      try {
        this.push(trailersRecord(pairs));
      } catch (err) {
        callback(err as Error);
        return;
      }
    }
    callback();
  }
}

/**
 * Records in, body bytes out; the trailers, when a TRAILERS record came, are
 * emitted as 'trailers' (pairs) before 'end', and kept in `trailers`. A
 * malformed record, a record after TRAILERS or a body cut inside a record is
 * BEAM_ERR_BAD_MESSAGE.
 */
export class BodyDeframer extends Transform {
  trailers: HeaderPairList | undefined;
  private buffered: Buffer = Buffer.alloc(0);

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.buffered = this.buffered.byteLength === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    try {
      while (this.buffered.byteLength >= RECORD_HEADER_BYTES) {
        const type = this.buffered.readUInt8(0);
        const length = this.buffered.readUInt32BE(1);
        if (this.trailers !== undefined) throw new BeamError('BEAM_ERR_BAD_MESSAGE', 'a body record after the trailers');
        if (type === BodyRecord.DATA) {
          if (length === 0 || length > MAX_BODY_RECORD_BYTES) throw new BeamError('BEAM_ERR_BAD_MESSAGE', `a body record of ${length} bytes`);
        } else if (type === BodyRecord.TRAILERS) {
          if (length > MAX_HEAD_BYTES) throw new BeamError('BEAM_ERR_HEAD_TOO_LARGE', `trailers of ${length} bytes`);
        } else {
          throw new BeamError('BEAM_ERR_BAD_MESSAGE', `unknown body record type ${type}`);
        }
        if (this.buffered.byteLength < RECORD_HEADER_BYTES + length) break;
        const payload = this.buffered.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + length);
        this.buffered = this.buffered.subarray(RECORD_HEADER_BYTES + length);
        if (type === BodyRecord.DATA) {
          this.push(payload);
        } else {
          let value: unknown;
          try {
            value = JSON.parse(payload.toString('utf8'));
          } catch {
            throw new BeamError('BEAM_ERR_BAD_MESSAGE', 'trailers are not JSON');
          }
          this.trailers = decode(TrailersSchema, value, 'trailers');
        }
      }
    } catch (err) {
      callback(err as Error);
      return;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.buffered.byteLength > 0) {
      callback(new BeamError('BEAM_ERR_BAD_MESSAGE', 'the body ended inside a record'));
      return;
    }
    if (this.trailers) this.emit('trailers', this.trailers);
    callback();
  }
}

/**
 * Fields a trailer section may not carry (RFC 9110 section 6.5.1): framing,
 * routing, authentication, the content's own metadata and hop-by-hop fields.
 * They are dropped wherever trailers cross a hop, as pseudo-headers are.
 */
const NOT_IN_TRAILERS: ReadonlySet<string> = new Set([
  'authorization',
  'connection',
  'content-encoding',
  'content-length',
  'content-range',
  'content-type',
  'cookie',
  'host',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'set-cookie',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Node's flat rawTrailers as pairs, without the fields a trailer section may not carry. */
export function trailerPairs(raw: readonly string[]): HeaderPairList {
  const out: HeaderPairList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (lower.startsWith(':') || NOT_IN_TRAILERS.has(lower)) continue;
    out.push([name, raw[i + 1] as string]);
  }
  return out;
}

/** Pairs as the object Node's addTrailers takes, lower-case names, repeated ones as arrays; undefined when empty. */
export function trailerObject(pairs: ReadonlyArray<readonly [string, string]>): Record<string, string | string[]> | undefined {
  const out: Record<string, string | string[]> = {};
  let any = false;
  for (const [name, value] of trailerPairs(pairs.flat())) {
    const key = name.toLowerCase();
    const had = out[key];
    out[key] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
    any = true;
  }
  return any ? out : undefined;
}

/** The visitor's TE header names "trailers" (RFC 9110 section 10.1.4): it takes a trailer section. */
export function takesTrailers(te: string | string[] | undefined): boolean {
  const value = Array.isArray(te) ? te.join(',') : (te ?? '');
  return value.split(',').some((t) => t.split(';')[0]?.trim().toLowerCase() === 'trailers');
}
