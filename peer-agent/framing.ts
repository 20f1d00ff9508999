/**
 * How the agent frames a request body on its way to the origin. The head
 * says whether a body follows (`body`) and may carry a Content-Length; the
 * agent, never the visitor, decides what the origin hop's framing is, and
 * the origin reads exactly the bytes of this one request.
 *
 * Why: Node's http client frames a GET, HEAD, DELETE or OPTIONS body with
 * nothing at all when no header asks for it. A body on such a request then
 * reached the origin unframed, and the origin read it as a second request
 * on a pooled keep-alive socket: request smuggling past every check the
 * agent makes, with the response handed to the next visitor.
 */
import type { Readable, Writable } from 'node:stream';
import { BeamError } from '../shared/errors.js';
import type { HeaderPairs } from './inspect.js';

export type Framing =
  /** No body, and none announced. */
  | { kind: 'none' }
  /** Exactly `length` bytes: the visitor's Content-Length, enforced (holdToLength). */
  | { kind: 'length'; length: number }
  /** A body of unknown length: chunked on the origin hop. */
  | { kind: 'chunked' };

/** Content-Length is a non-negative decimal integer (RFC 9110 section 8.6); 15 digits keep it a safe integer. */
const DIGITS = /^\d{1,15}$/;

/**
 * The origin hop's framing for a request head, or BEAM_ERR_BAD_FRAMING when
 * the head is ambiguous: Content-Length values that are not numbers or
 * disagree, a length on a request that says no body follows, or a body on
 * an upgrade (whose bytes after the head belong to the new protocol).
 */
export function requestFraming(headers: HeaderPairs, body: boolean, upgrade: boolean): Framing {
  let length: number | undefined;
  for (const [name, value] of headers) {
    if (name.toLowerCase() !== 'content-length') continue;
    // "5, 5" is one value repeated (RFC 9110 section 8.6); anything else is refused.
    for (const part of value.split(',')) {
      const token = part.trim();
      if (!DIGITS.test(token)) throw new BeamError('BEAM_ERR_BAD_FRAMING', `Content-Length "${value.slice(0, 40)}" is not a number`);
      const n = Number(token);
      if (length !== undefined && n !== length) throw new BeamError('BEAM_ERR_BAD_FRAMING', `Content-Length values ${length} and ${n} disagree`);
      length = n;
    }
  }
  if (upgrade || !body) {
    if (length !== undefined && length > 0)
      throw new BeamError('BEAM_ERR_BAD_FRAMING', `Content-Length ${length} on a request ${upgrade ? 'that upgrades' : 'whose head says no body follows'}`);
    return length === 0 && !upgrade ? { kind: 'length', length: 0 } : { kind: 'none' };
  }
  return length === undefined ? { kind: 'chunked' } : { kind: 'length', length };
}

/**
 * The headers with the framing made explicit: every Content-Length and
 * Transfer-Encoding the visitor sent is dropped, and one header the agent
 * chose stands in their place.
 */
export function framedHeaders(headers: HeaderPairs, framing: Framing): HeaderPairs {
  const out: HeaderPairs = headers.filter(([name]) => {
    const lower = name.toLowerCase();
    return lower !== 'content-length' && lower !== 'transfer-encoding';
  });
  if (framing.kind === 'length') out.push(['Content-Length', String(framing.length)]);
  else if (framing.kind === 'chunked') out.push(['Transfer-Encoding', 'chunked']);
  return out;
}

/**
 * Holds `source` to exactly `length` bytes on its way into `sink`, with no
 * stream in between (an extra Transform per upload cost the agent memory
 * under a 1 GiB upload). Call it before `source.pipe(sink)`: its listeners
 * then run before the pipe's, so a chunk that would pass the length, or an
 * end that comes short of it, destroys `sink` before the pipe writes to it
 * or ends it, and no byte past the length is ever sent. `onError` hears
 * BEAM_ERR_BAD_FRAMING once.
 */
export function holdToLength(source: Readable, sink: Writable, length: number, onError: (err: BeamError) => void): void {
  let left = length;
  let failed = false;
  const fail = (detail: string): void => {
    if (failed) return;
    failed = true;
    sink.destroy();
    source.unpipe(sink);
    onError(new BeamError('BEAM_ERR_BAD_FRAMING', detail));
  };
  source.on('data', (chunk: Buffer) => {
    if (chunk.byteLength > left) fail('the body is longer than its Content-Length');
    else left -= chunk.byteLength;
  });
  source.once('end', () => {
    if (left !== 0) fail(`the body ended ${left} bytes short of its Content-Length`);
  });
}

/**
 * Reads a request body whole, as its framing says (none: empty), up to
 * `limit` bytes: BEAM_ERR_BODY_TOO_LARGE past it (a Content-Length over the
 * limit is refused before a byte is read), BEAM_ERR_BAD_FRAMING when a
 * length-framed body ends short of its length or runs past it.
 */
export function readWhole(source: Readable, framing: Framing, limit: number): Promise<Buffer> {
  if (framing.kind === 'none' || (framing.kind === 'length' && framing.length === 0)) return Promise.resolve(Buffer.alloc(0));
  if (framing.kind === 'length' && framing.length > limit)
    return Promise.reject(new BeamError('BEAM_ERR_BODY_TOO_LARGE', `Content-Length ${framing.length} is over ${limit} bytes`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (err?: BeamError): void => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, total));
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.byteLength;
      if (total > limit) done(new BeamError('BEAM_ERR_BODY_TOO_LARGE', `over ${limit} bytes`));
      else if (framing.kind === 'length' && total > framing.length) done(new BeamError('BEAM_ERR_BAD_FRAMING', 'the body is longer than its Content-Length'));
      else chunks.push(chunk);
    };
    const onEnd = (): void => {
      if (framing.kind === 'length' && total !== framing.length)
        done(new BeamError('BEAM_ERR_BAD_FRAMING', `the body ended ${framing.length - total} bytes short of its Content-Length`));
      else done();
    };
    const onError = (err: Error): void => done(err instanceof BeamError ? err : new BeamError('BEAM_ERR_STREAM_RESET', err.message));
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
  });
}
