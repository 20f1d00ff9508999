/**
 * The origin's side of an exchange over HTTP/2 (`--app-protocol http2`):
 * each admitted request is one stream on the agent's one connection to the
 * origin (OriginIo.session). What gRPC needs travels whole: trailers both
 * ways (framed bodies, shared/body-records.ts), a response that ends with
 * its headers (a gRPC "trailers-only" answer) as one that does, and a
 * visitor's reset as a cancelled stream (RST_STREAM CANCEL) at the origin.
 *
 *   waiting ──► responding   the origin's head went out; later failures reset the stream
 *           └─► error-sent   an error head (timeout, unreachable, bad framing): final
 */
import http2 from 'node:http2';
import type { Duplex, Readable } from 'node:stream';
import { BodyDeframer, BodyFramer, type HeaderPairList, trailerPairs } from '../shared/body-records.js';
import { BeamError, ERRORS, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { writeHead } from '../shared/http-head.js';
import { holdToLength } from './framing.js';
import type { HeaderPairs } from './inspect.js';
import { type Forwarded, type OriginIo, originFailure } from './origin-io.js';

/** Fields HTTP/2 forbids in a request (RFC 9113 section 8.2.2), or that become pseudo-headers. */
const NOT_IN_H2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host', 'http2-settings']);

/** The request's headers as an HTTP/2 header object: pseudo-headers first, names lower-case, repeats as arrays. */
export function h2RequestHeaders(io: OriginIo, method: string, target: string, headers: HeaderPairs, takesTrailers: boolean): http2.OutgoingHttpHeaders {
  const host = headers.find(([k]) => k.toLowerCase() === 'host')?.[1] ?? io.hostPort;
  const out: http2.OutgoingHttpHeaders = {
    ':method': method,
    ':path': target,
    ':scheme': io.scheme,
    ':authority': host,
  };
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    if (NOT_IN_H2.has(key)) continue;
    const had = out[key];
    out[key] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [String(had), value];
  }
  // TE is hop-by-hop, but "trailers" is the one value HTTP/2 allows, and gRPC servers look for it.
  if (takesTrailers) out.te = 'trailers';
  return out;
}

/** An HTTP/2 header object as pairs, without pseudo-headers. */
function pairsOf(headers: http2.IncomingHttpHeaders): HeaderPairList {
  const out: HeaderPairList = [];
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(':') || value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.push([name, v]);
    else out.push([name, String(value)]);
  }
  return out;
}

/** Sends an admitted request to an HTTP/2 origin and its answer back on `stream`; never throws. */
export function forwardH2(stream: Duplex, io: OriginIo, request: Forwarded): void {
  const { method, target, headers, body: hasBody, framing, setCookie, browser, requestId, path, capture } = request;
  let state: 'waiting' | 'error-sent' | 'responding' = 'waiting';
  let h2req: http2.ClientHttp2Stream | undefined;
  let timer: NodeJS.Timeout | undefined;
  let retried = false;
  const fail = (code: ErrorCode, detail: string): void => {
    if (state !== 'waiting') return;
    state = 'error-sent';
    clearTimeout(timer);
    writeHead(stream, { kind: 'error', code, detail }, true);
    capture?.fail(code, ERRORS[code].status);
    io.log.info({ req: requestId, code, detail }, 'request failed');
  };

  let source: Readable = stream;
  let records: BodyDeframer | undefined;
  if (request.framed && hasBody && request.preread === undefined) {
    records = new BodyDeframer();
    records.on('error', (err) => stream.destroy(err));
    source = stream.pipe(records);
  }
  const sendsBody = request.preread !== undefined ? request.preread.byteLength > 0 : hasBody && !(framing.kind === 'length' && framing.length === 0);

  stream.on('error', (err) => {
    clearTimeout(timer);
    if (state === 'waiting') state = 'error-sent';
    io.log.debug({ code: errorCodeOf(err) }, 'stream ended early');
    capture?.fail(errorCodeOf(err) ?? 'BEAM_ERR_STREAM_RESET');
    // The visitor went away: the origin hears a cancelled stream (a gRPC call's CANCELLED).
    if (h2req && !h2req.destroyed) h2req.close(http2.constants.NGHTTP2_CANCEL);
  });

  const start = (session: http2.ClientHttp2Session): void => {
    if (state !== 'waiting' || stream.destroyed) return;
    const outgoing = h2RequestHeaders(io, method, target, headers, request.trailers);
    let r: http2.ClientHttp2Stream;
    try {
      // A framed body may end with trailers: the stream then stays open for them after the last DATA frame.
      r = session.request(outgoing, { endStream: !sendsBody, waitForTrailers: sendsBody && records !== undefined });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      fail('BEAM_ERR_ORIGIN_UNREACHABLE', `${io.hostPort}: ${e.code ?? e.message}`);
      return;
    }
    h2req = r;
    let trailers: HeaderPairList | undefined;
    if (records) {
      records.once('trailers', (pairs: HeaderPairList) => {
        trailers = trailerPairs(pairs.flat());
      });
      r.on('wantTrailers', () => {
        const t: http2.OutgoingHttpHeaders = {};
        for (const [k, v] of trailers ?? []) {
          const key = k.toLowerCase();
          const had = t[key];
          t[key] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [String(had), v];
        }
        r.sendTrailers(t);
      });
    }
    const armTimer = (): void => {
      if (state !== 'waiting') return;
      timer = setTimeout(() => {
        fail('BEAM_ERR_ORIGIN_TIMEOUT', `no response from ${io.hostPort} within ${io.timeoutMs} ms`);
        r.close(http2.constants.NGHTTP2_CANCEL);
      }, io.timeoutMs);
      timer.unref();
    };
    if (sendsBody) r.once('finish', armTimer);
    else armTimer();

    r.on('error', (err: NodeJS.ErrnoException) => {
      if (r !== h2req) return;
      clearTimeout(timer);
      if (state === 'error-sent') return;
      if (state === 'responding') {
        stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', err.code));
        capture?.fail('BEAM_ERR_ORIGIN_UNREACHABLE');
        return;
      }
      // The origin closed its connection (GOAWAY, REFUSED_STREAM) as the request left: a bodiless one goes again, once, on a new one.
      if (
        !retried &&
        !sendsBody &&
        (err.code === 'ERR_HTTP2_GOAWAY_SESSION' || err.code === 'ERR_HTTP2_STREAM_ERROR' || err.code === 'ERR_HTTP2_INVALID_SESSION')
      ) {
        retried = true;
        void io.session().then(start, (e: NodeJS.ErrnoException) => fail(originFailure(io, e).code, originFailure(io, e).detail));
        return;
      }
      if (err.code === 'ECONNREFUSED') io.onUnreachable(err);
      const failure = originFailure(io, err);
      fail(failure.code, failure.detail);
    });

    r.on('response', (responseHeaders, flags) => {
      clearTimeout(timer);
      if (state !== 'waiting') {
        r.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      state = 'responding';
      const status = Number(responseHeaders[':status'] ?? 502);
      io.log.debug({ req: requestId, path, method, target: target.split('?')[0], status }, 'forwarded');
      const originHeaders: HeaderPairs = pairsOf(responseHeaders);
      const rewritten = request.rewriteResponse ? request.rewriteResponse(originHeaders) : originHeaders;
      const out: HeaderPairs = setCookie ? [...rewritten, ['Set-Cookie', setCookie]] : [...rewritten];
      if (browser) out.push(['beam-origin', io.hostPort]);
      // HEADERS with END_STREAM: the whole response is its head (a gRPC trailers-only answer), and it goes on as one.
      const ended = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      const framed = request.trailers && !ended;
      writeHead(stream, { kind: 'response', status, headers: out, ...(framed ? { framed } : {}), ...(ended ? { end: true } : {}) });
      capture?.response(status, undefined, originHeaders);
      let responseTrailers: HeaderPairList | undefined;
      r.once('trailers', (t: http2.IncomingHttpHeaders) => {
        responseTrailers = trailerPairs(pairsOf(t).flat());
      });
      if (capture) {
        r.on('data', (chunk: Buffer) => capture.responseChunk(chunk));
        r.on('end', () => capture.finish());
      }
      if (framed) r.pipe(new BodyFramer(() => responseTrailers)).pipe(stream);
      else r.pipe(stream);
      r.on('aborted', () => {
        stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin reset the stream mid-response'));
        capture?.fail('BEAM_ERR_ORIGIN_UNREACHABLE');
      });
      r.on('close', () => {
        // A reset from the origin after its head (a gRPC server cancelling): the visitor's stream is reset too.
        if (r.rstCode !== undefined && r.rstCode !== http2.constants.NGHTTP2_NO_ERROR && !stream.destroyed && !stream.writableEnded) {
          stream.destroy(new BeamError('BEAM_ERR_STREAM_RESET', `origin reset the stream (${r.rstCode})`));
        }
      });
    });

    if (!sendsBody) {
      stream.resume();
      return;
    }
    if (request.preread !== undefined) {
      if (capture) capture.requestChunk(request.preread);
      r.end(request.preread);
      return;
    }
    if (capture) source.on('data', (chunk: Buffer) => capture.requestChunk(chunk));
    if (framing.kind === 'length') {
      holdToLength(source, r, framing.length, (err) => {
        fail('BEAM_ERR_BAD_FRAMING', err.detail ?? err.message);
        r.close(http2.constants.NGHTTP2_CANCEL);
        source.resume();
      });
    }
    source.pipe(r);
  };

  io.session().then(start, (err: NodeJS.ErrnoException) => {
    const failure = originFailure(io, err);
    fail(failure.code, failure.detail);
  });
}
