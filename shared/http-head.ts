/**
 * HTTP over a stream (protocol StreamProtocol.HTTP), head codec version 2
 * (HTTP_HEAD_VERSION): version 1 plus trailers, in framed bodies.
 *
 * Protocol flow
 *   visitor -> agent: request head, then the request body, then FIN
 *   agent -> visitor: response head, then the response body, then FIN
 *   For an upgrade (WebSocket), a 101 response head is followed by raw bytes
 *   both ways until either side sends FIN or RESET.
 *   For `websocket: true` (a browser page), a 101 response head is followed
 *   by WebSocket messages both ways (shared/ws-messages.ts).
 *
 * A head is a u32 BE length followed by that many bytes of UTF-8 JSON,
 * validated by the schemas below. Headers travel as [name, value] pairs so
 * repeated headers (Set-Cookie) survive.
 */
import type { Duplex, Readable, Writable } from 'node:stream';
// valibot: the same checks, and a few hundred bytes in the browser bundle (browser-client/).
import * as v from 'valibot';
import { MAX_HEAD_BYTES, MAX_HEADER_COUNT } from './constants.js';
import { decode } from './decode.js';
import { BeamError, ERROR_CODES, type ErrorCode } from './errors.js';

const headerPairs = v.pipe(
  v.array(v.strictTuple([v.pipe(v.string(), v.minLength(1), v.maxLength(256)), v.pipe(v.string(), v.maxLength(MAX_HEAD_BYTES))])),
  v.maxLength(MAX_HEADER_COUNT),
);

export const RequestHeadSchema = v.object({
  method: v.pipe(v.string(), v.regex(/^[A-Z][A-Z0-9_-]{0,31}$/)),
  /** origin-form request target: starts with "/" */
  target: v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_HEAD_BYTES), v.startsWith('/')),
  headers: headerPairs,
  /** The visitor's address as the gateway saw it. */
  remoteAddress: v.optional(v.pipe(v.string(), v.maxLength(64))),
  /** The request asks to switch protocols (WebSocket). */
  upgrade: v.boolean(),
  /** A body follows the head. When false the stream carries nothing more, and the agent sends the request at once. */
  body: v.boolean(),
  /**
   * A browser page's WebSocket: the agent opens it to the origin itself and
   * the stream carries whole messages both ways (shared/ws-messages.ts),
   * after a 101 response head (or the origin's refusal, as a response).
   */
  websocket: v.optional(v.boolean()),
  /**
   * Version 2. The visitor takes trailers (its client sent `TE: trailers`):
   * the agent may send the response body framed (ResponseHead.framed), with
   * the origin's trailer fields at its end.
   */
  trailers: v.optional(v.boolean()),
  /** Version 2. The request body is framed (shared/body-records.ts); sent only to an agent that speaks version 2. */
  framed: v.optional(v.boolean()),
});
export type RequestHead = v.InferOutput<typeof RequestHeadSchema>;

export const ResponseHeadSchema = v.variant('kind', [
  v.object({
    kind: v.literal('response'),
    status: v.pipe(v.number(), v.integer(), v.minValue(100), v.maxValue(599)),
    statusText: v.optional(v.pipe(v.string(), v.maxLength(256))),
    headers: headerPairs,
    /** Version 2: the body is framed (shared/body-records.ts); only when the request head said `trailers`. */
    framed: v.optional(v.boolean()),
    /**
     * Version 2: the response is its head, with no body (HTTP/2's END_STREAM
     * on HEADERS, as in a gRPC "trailers-only" answer); an HTTP/2 visitor
     * gets it the same way. The stream carries nothing more.
     */
    end: v.optional(v.boolean()),
  }),
  v.object({
    kind: v.literal('error'),
    code: v.picklist(ERROR_CODES as readonly ErrorCode[]),
    detail: v.optional(v.pipe(v.string(), v.maxLength(1024))),
  }),
]);
export type ResponseHead = v.InferOutput<typeof ResponseHeadSchema>;

/**
 * A new request id: 16 hex digits, 64 random bits, cut from a Web Crypto
 * UUID (Node pools the UUIDs' entropy: ~0.3 us a call where randomBytes(8)
 * takes ~5 us, once per request on each side). Unique, not secret.
 */
export function newRequestId(): string {
  const u = crypto.randomUUID();
  // xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx: skip the dashes, the version and the variant digit.
  return u.slice(0, 8) + u.slice(9, 13) + u.slice(15, 18) + u.slice(24, 25);
}

export function encodeHead(head: RequestHead | ResponseHead): Buffer {
  const json = JSON.stringify(head);
  const length = Buffer.byteLength(json, 'utf8');
  if (length > MAX_HEAD_BYTES) throw new BeamError('BEAM_ERR_HEAD_TOO_LARGE', `${length} bytes`);
  const out = Buffer.allocUnsafe(4 + length);
  out.writeUInt32BE(length, 0);
  out.write(json, 4, 'utf8');
  return out;
}

export function decodeRequestHead(bytes: Buffer): RequestHead {
  return parseWith(RequestHeadSchema, bytes);
}

export function decodeResponseHead(bytes: Buffer): ResponseHead {
  return parseWith(ResponseHeadSchema, bytes);
}

/**
 * A stream whose other end is in this process (transport/local.ts,
 * DirectStream): the head its opener sends passes as an object, checked by
 * the same schema as a decoded one and held to the same size, with no JSON
 * between the two ends; the answer's head then passes the same way. A
 * stream whose opener writes its head as bytes (the gateway's bridge, which
 * relays a page's bytes as they are) is answered in bytes.
 */
export interface HeadPassing {
  /** The opener passed its head as an object: the answer's goes so too. */
  readonly passesHeads: boolean;
  passHead(head: RequestHead | ResponseHead): void;
  /** The head the other end passed; undefined when it wrote its head as bytes. Rejects when the stream goes first. */
  receiveHead(): Promise<unknown>;
}

function passing(stream: object): stream is HeadPassing {
  return 'passHead' in stream;
}

/**
 * A head as an object is held to what encodeHead allows: its JSON is at most
 * 6 bytes a character (an escaped control character), so only a head whose
 * strings come within a sixth of MAX_HEAD_BYTES needs encoding to tell.
 */
function checkSize(head: RequestHead | ResponseHead): void {
  let n = 256;
  if ('target' in head) n += head.target.length;
  if ('headers' in head) for (const [k, v] of head.headers) n += k.length + v.length + 8;
  if ('detail' in head && head.detail) n += head.detail.length;
  if ('statusText' in head && head.statusText) n += head.statusText.length;
  if (n * 6 > MAX_HEAD_BYTES) encodeHead(head);
}

/** Writes a head first on `stream` (and ends it, with `end`): as an object where the stream passes heads so, else encoded. */
export function writeHead(stream: Writable, head: RequestHead | ResponseHead, end = false): void {
  if (!globalThis.__BEAM_PAGE__ && passing(stream) && stream.passesHeads) {
    checkSize(head);
    stream.passHead(head);
    if (end) stream.end();
    return;
  }
  const bytes = encodeHead(head);
  if (end) stream.end(bytes);
  else stream.write(bytes);
}

async function receive<T>(stream: Readable, schema: v.GenericSchema<unknown, T>): Promise<T> {
  if (!globalThis.__BEAM_PAGE__ && passing(stream)) {
    const head = await stream.receiveHead();
    if (head !== undefined) return decode(schema, head, 'head');
  }
  return parseWith(schema, await readHead(stream));
}

/** Reads the request head at the start of `stream` (the agent's side), in whichever form it came. */
export function readRequestHead(stream: Readable): Promise<RequestHead> {
  return receive(stream, RequestHeadSchema);
}

/** Reads the response head at the start of `stream` (the visitor's side), in whichever form it came. */
export function readResponseHead(stream: Readable): Promise<ResponseHead> {
  return receive(stream, ResponseHeadSchema);
}

function parseWith<T>(schema: v.GenericSchema<unknown, T>, bytes: Buffer): T {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new BeamError('BEAM_ERR_BAD_MESSAGE', 'head is not JSON');
  }
  // "head at headers.3.0: Invalid length: …", so a refusal names the field.
  return decode(schema, value, 'head');
}

/**
 * Reads one length-prefixed head from the start of `stream`, leaving whatever
 * follows it unread. Rejects with BEAM_ERR_HEAD_TOO_LARGE past `max` bytes,
 * BEAM_ERR_BAD_MESSAGE if the stream ends first, or the stream's own error.
 */
export function readHead(stream: Readable, max = MAX_HEAD_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const fail = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) {
        buffered = buffered.byteLength === 0 ? chunk : Buffer.concat([buffered, chunk]);
        if (buffered.byteLength < 4) continue;
        const length = buffered.readUInt32BE(0);
        if (length > max) {
          fail(new BeamError('BEAM_ERR_HEAD_TOO_LARGE', `${length} bytes`));
          return;
        }
        if (buffered.byteLength >= 4 + length) {
          cleanup();
          const rest = buffered.subarray(4 + length);
          if (rest.byteLength > 0) stream.unshift(rest);
          resolve(buffered.subarray(4, 4 + length));
          return;
        }
      }
    };
    const onEnd = (): void => fail(new BeamError('BEAM_ERR_BAD_MESSAGE', 'stream ended before its head'));
    const onError = (err: Error): void => fail(err);
    const onClose = (): void => fail(new BeamError('BEAM_ERR_PEER_GONE', 'stream closed before its head'));
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

/**
 * The visitor's side of one exchange (the gateway's, `beam connect`'s and
 * the browser page's alike): sends the request head and its body, and
 * resolves with the response head; the response body follows on the stream.
 *
 *   no body     OPEN, head and FIN leave in one message
 *   bytes       written after the head, then FIN
 *   a Readable  piped after the head (its end is the FIN)
 *
 * `end: false` leaves the stream open after the head (and bytes): an upgrade
 * whose bytes follow both ways, or a body the caller writes as it comes.
 */
export async function exchange(stream: Duplex, head: RequestHead, body?: Uint8Array | Readable, options: { end?: boolean } = {}): Promise<ResponseHead> {
  const end = options.end ?? true;
  if (!globalThis.__BEAM_PAGE__ && passing(stream)) {
    checkSize(head);
    stream.passHead(head);
    if (body === undefined) {
      if (end) stream.end();
    } else if (body instanceof Uint8Array) {
      if (end) stream.end(body);
      else if (body.byteLength > 0) stream.write(body);
    } else body.pipe(stream, { end });
    return readResponseHead(stream);
  }
  const encoded = encodeHead(head);
  if (body === undefined) {
    if (end) stream.end(encoded);
    else stream.write(encoded);
  } else if (body instanceof Uint8Array) {
    stream.write(encoded);
    if (end) stream.end(body);
    else if (body.byteLength > 0) stream.write(body);
  } else {
    stream.write(encoded);
    body.pipe(stream, { end });
  }
  return decodeResponseHead(await readHead(stream));
}

/**
 * Headers that claim where a request came from. The gateway replaces them
 * with what it saw itself; the agent believes them only from the gateway.
 */
export const FORWARDING_HEADERS: ReadonlySet<string> = new Set([
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'forwarded',
  'x-real-ip',
]);

/** Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Headers a Connection header can never remove (RFC 9110 section 7.6.1 lets
 * it name any header): dropping Content-Length or Transfer-Encoding would
 * strip a body's framing, so the next hop would read the body as a second
 * request; dropping Host would leave the request with no target host.
 */
const NEVER_CONNECTION_OPTION: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/**
 * Turns Node's rawHeaders into pairs without hop-by-hop headers, nor any
 * header the Connection header names (except NEVER_CONNECTION_OPTION).
 */
export function endToEndHeaders(rawHeaders: readonly string[], drop: ReadonlySet<string> = NONE): Array<[string, string]> {
  let named: Set<string> | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === 'connection') {
      for (const token of (rawHeaders[i + 1] as string).split(',')) {
        const t = token.trim().toLowerCase();
        if (t && !NEVER_CONNECTION_OPTION.has(t)) (named ??= new Set()).add(t);
      }
    }
  }
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || drop.has(lower)) continue;
    out.push([name, rawHeaders[i + 1] as string]);
  }
  return out;
}

const NONE: ReadonlySet<string> = new Set();

/** Same as endToEndHeaders, for pairs. */
export function endToEndPairs(pairs: ReadonlyArray<readonly [string, string]>, drop?: ReadonlySet<string>): Array<[string, string]> {
  return endToEndHeaders(pairs.flat(), drop);
}
