/**
 * The origin's side of an ordinary exchange on undici's connection pool: one
 * HTTP/1.1 request (no body, a body of known length, a chunked body without
 * records, or a body already read) and its answer, with no Node stream and no
 * http.ClientRequest per request. undici's `dispatch` hands the response head
 * and body to callbacks; each goes straight onto the stream. A Node http
 * client in front of the same origin cost the embedded default about a
 * third of its requests a second (docs/benchmarks.md).
 *
 * What needs Node's client stays on it (peer-agent/origin-io.ts, `forward`):
 * upgrades, a visitor's body in records (it may end with trailers, which
 * undici cannot send), an `Expect` header (undici refuses it), and a head
 * undici refuses as invalid. Both keep the same states, errors and clock:
 *
 *   waiting ──► responding   the origin's head went out; later failures reset the stream
 *           └─► error-sent   an error head (timeout, unreachable, bad framing): final
 */
import { Duplex, PassThrough } from 'node:stream';
import type { Dispatcher } from 'undici';
import { BodyFramer, trailerPairs } from '../shared/body-records.js';
import { BeamError, ERRORS, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { endToEndHeaders, writeHead } from '../shared/http-head.js';
import { holdToLength } from './framing.js';
import type { HeaderPairs } from './inspect.js';
import { type Forwarded, forward, type OriginIo, originFailure, UNREACHABLE } from './origin-io.js';
import { Pool } from './undici-pool.js';

/** undici's words for what Node's client calls a reset or a timed-out connect. */
const NODE_CODE: Record<string, string> = {
  UND_ERR_SOCKET: 'ECONNRESET',
  UND_ERR_CONNECT_TIMEOUT: 'ETIMEDOUT',
};

function nodeError(err: Error): NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException;
  const code = e.code && NODE_CODE[e.code];
  if (!code) return e;
  return Object.assign(new Error(e.message), { code });
}

let warming: Promise<void> | undefined;

/**
 * One exchange on an in-memory socket, once a process: undici compiles its
 * HTTP parser (llhttp, WebAssembly) on its first connection, which made a
 * new share's first response 7-14 ms slower (2026-12-06). Called as the
 * agent starts, so the compile happens then, not for the first visitor. No
 * byte of it reaches the origin or the network.
 */
export function warmPool(): Promise<void> {
  warming ??= new Promise<void>((resolve) => {
    let asked = '';
    const socket = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        asked += chunk.toString('latin1');
        if (asked.includes('\r\n\r\n')) this.push('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
        callback();
      },
    });
    // undici takes its connection a tick later, as a real connect would come; a connector that called back at
    // once left the request waiting for good.
    const client = new Pool('http://warm.invalid', { connect: (_options, callback) => process.nextTick(() => callback(null, socket as never)) });
    const done = (): void => {
      client.destroy().catch(() => undefined);
      resolve();
    };
    client.dispatch(
      { method: 'GET', path: '/', headers: [] },
      {
        onRequestStart() {},
        onResponseStart(c) {
          rawStrings(c.rawHeaders);
        },
        onResponseData() {},
        onResponseEnd: done,
        onResponseError: done,
      },
    );
  });
  return warming;
}

/** Whether undici's pool can carry this request; else it goes on Node's client. */
export function poolCarries(request: Forwarded, io: OriginIo): boolean {
  if (request.upgrade) return false;
  // A body in records may end with trailers for the origin: only Node's client sends request trailers.
  if (request.framed && request.body && request.preread === undefined) return false;
  let host: string | undefined;
  for (const [name, value] of request.headers) {
    if (name.length === 6 && name.toLowerCase() === 'expect') return false;
    if (name.length === 4 && name.toLowerCase() === 'host') host = value;
  }
  // undici takes an https origin's name (SNI, and the certificate's check) from the request's Host unless told
  // one. A name it is told (forwardPooled); an address has none to tell, so the Host must be that address, as
  // when the agent rewrites it: a preserved visitor's Host would be checked against the origin's certificate.
  if (io.scheme === 'https' && io.tls.servername === undefined && hostname(host) !== io.host) return false;
  return true;
}

/** A Host header's name, without its port or an IPv6 address's brackets. */
function hostname(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

/** Raw header buffers as Node's rawHeaders strings. */
function rawStrings(raw: Dispatcher.DispatchController['rawHeaders']): string[] {
  const out: string[] = [];
  if (Array.isArray(raw)) for (const b of raw) out.push(typeof b === 'string' ? b : b.toString('latin1'));
  return out;
}

/** Sends an admitted request to the origin on undici's pool and its answer back on `stream`; never throws. */
export function forwardPooled(stream: Duplex, io: OriginIo, request: Forwarded): void {
  const { method, target, headers, body: hasBody, framing, setCookie, browser, requestId, path, capture } = request;
  let state: 'waiting' | 'error-sent' | 'responding' = 'waiting';
  let timer: NodeJS.Timeout | undefined;
  let controller: Dispatcher.DispatchController | undefined;
  /** The visitor's side failed before undici started the request: it is aborted as it starts. */
  let abortWith: Error | undefined;
  let retried = false;
  const fail = (code: ErrorCode, detail: string): void => {
    if (state !== 'waiting') return;
    state = 'error-sent';
    writeHead(stream, { kind: 'error', code, detail }, true);
    capture?.fail(code, ERRORS[code].status);
    io.log.info({ req: requestId, code, detail }, 'request failed');
  };
  const abort = (err: Error): void => {
    if (controller) controller.abort(err);
    else abortWith = err;
  };

  // The request body as the origin gets it: none, the bytes read already, or the stream's, through a
  // PassThrough of its own (undici destroys a body it gives up on; the stream still carries the answer).
  const streamed = request.preread === undefined && (framing.kind === 'chunked' || (framing.kind === 'length' && hasBody));
  const held = streamed ? new PassThrough() : undefined;
  const body = held ?? (request.preread !== undefined && request.preread.byteLength > 0 ? request.preread : null);

  /** The response body goes on the stream as it comes, in records when it may end with trailers. */
  let sink: { write(chunk: Buffer): boolean; end(): void; once(event: 'drain', cb: () => void): unknown } = stream;
  let rawTrailers: string[] = [];

  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(c) {
      controller = c;
      if (abortWith) c.abort(abortWith);
    },
    onRequestSent() {
      // The clock runs from the moment the whole request is at the origin: a long upload is not a slow origin.
      if (state !== 'waiting') return;
      timer = setTimeout(() => {
        fail('BEAM_ERR_ORIGIN_TIMEOUT', `no response from ${io.hostPort} within ${io.timeoutMs} ms`);
        abort(new BeamError('BEAM_ERR_ORIGIN_TIMEOUT'));
      }, io.timeoutMs);
      timer.unref();
    },
    onResponseStart(c, status, parsed, statusText) {
      // 1xx (103 Early Hints) are not passed on, as Node's client does not.
      if (status < 200) return;
      clearTimeout(timer);
      if (state !== 'waiting') {
        c.abort(new BeamError('BEAM_ERR_STREAM_RESET'));
        return;
      }
      state = 'responding';
      io.log.debug({ req: requestId, path, method, target: target.split('?')[0], status }, 'forwarded');
      // What the origin said is what the inspector shows; Beam's own headers (its secret cookie above all) never are.
      const originHeaders: HeaderPairs = endToEndHeaders(rawStrings(c.rawHeaders));
      const rewritten = request.rewriteResponse ? request.rewriteResponse(originHeaders) : originHeaders;
      const responseHeaders: HeaderPairs = setCookie ? [...rewritten, ['Set-Cookie', setCookie]] : [...rewritten];
      if (browser) responseHeaders.push(['beam-origin', io.hostPort]);
      // A chunked response may end with trailers: to a visitor that takes them, it goes framed.
      const framed = request.trailers && parsed['content-length'] === undefined && parsed['transfer-encoding'] !== undefined;
      writeHead(stream, { kind: 'response', status, statusText, headers: responseHeaders, ...(framed ? { framed } : {}) });
      capture?.response(status, statusText, originHeaders);
      if (framed) {
        const framer = new BodyFramer(() => trailerPairs(rawTrailers));
        framer.pipe(stream);
        sink = framer;
      }
    },
    onResponseData(c, chunk) {
      if (state !== 'responding') return;
      capture?.responseChunk(chunk);
      if (!sink.write(chunk)) {
        c.pause();
        sink.once('drain', () => c.resume());
      }
    },
    onResponseEnd(c) {
      if (state !== 'responding') return;
      rawTrailers = rawStrings(c.rawTrailers);
      capture?.finish();
      sink.end();
    },
    onResponseError(_c, err) {
      clearTimeout(timer);
      // Beam already answered (a timeout, a body past its Content-Length): the origin is not to blame.
      if (state === 'error-sent') return;
      if (state === 'responding') {
        stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin closed mid-response'));
        capture?.fail('BEAM_ERR_ORIGIN_UNREACHABLE');
        return;
      }
      const e = nodeError(err);
      // A pooled connection the origin closed as the request went: a request without a body goes again,
      // once, on another connection (what Node's docs advise for its own client). One with a body was
      // partly consumed.
      if (!retried && !hasBody && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
        retried = true;
        controller = undefined;
        io.log.debug({ req: requestId, code: e.code }, 'pooled origin connection was closed; retrying on another');
        start();
        return;
      }
      if (e.code && UNREACHABLE.has(e.code)) io.onUnreachable(e);
      const failure = originFailure(io, e);
      fail(failure.code, failure.detail);
    },
  };

  // The framing header the agent made explicit (peer-agent/framing.ts) is undici's to write: Content-Length
  // as it is, a chunked body as chunks (a body read already goes with its length).
  const flat: string[] = [];
  for (const [name, value] of headers) if (name.length !== 17 || name.toLowerCase() !== 'transfer-encoding') flat.push(name, value);
  const start = (): void => {
    io.pool.dispatch({ method, path: target, headers: flat, body, ...(io.tls.servername ? { servername: io.tls.servername } : {}) }, handler);
  };

  try {
    start();
  } catch {
    // A head undici refuses (it checks names and values more strictly than Node's client): Node's client takes
    // it, as before. Nothing was sent, and nothing listens on the stream yet.
    forward(stream, io, request);
    return;
  }
  stream.on('error', (err) => {
    clearTimeout(timer);
    if (state === 'waiting') state = 'error-sent';
    io.log.debug({ code: errorCodeOf(err) }, 'stream ended early');
    capture?.fail(errorCodeOf(err) ?? 'BEAM_ERR_STREAM_RESET');
    abort(err);
  });
  if (request.preread !== undefined) {
    capture?.requestChunk(request.preread);
  } else if (held) {
    if (capture) stream.on('data', (chunk: Buffer) => capture.requestChunk(chunk));
    if (framing.kind === 'length') {
      // Exactly the announced bytes reach the origin: a byte more would be read there as the start of another request.
      holdToLength(stream, held, framing.length, (err) => {
        fail('BEAM_ERR_BAD_FRAMING', err.detail ?? err.message);
        abort(err);
        stream.resume();
      });
    }
    stream.pipe(held);
  } else {
    stream.resume();
  }
}
