/**
 * The origin's side of an exchange: one HTTP request to the share's origin
 * (and only there) for a stream the agent admitted, its response head and
 * body back onto the stream, or an upgrade spliced both ways. Admission,
 * header rewriting and the inspector's view are the forwarder's
 * (peer-agent/origin.ts); this module only moves bytes and says what failed.
 *
 *   waiting ──► responding   the origin's head went out; later failures reset the stream
 *           ├─► upgraded     a 101: raw bytes both ways
 *           └─► error-sent   an error head (timeout, unreachable, bad framing): final
 */
import http from 'node:http';
import type http2 from 'node:http2';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import type { Logger } from 'pino';
import { BodyDeframer, BodyFramer, type HeaderPairList, trailerPairs } from '../shared/body-records.js';
import { ORIGIN_IDLE_SOCKETS } from '../shared/constants.js';
import { BeamError, ERRORS, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { endToEndHeaders, writeHead } from '../shared/http-head.js';
import type { RequestPath } from '../shared/paths.js';
import type { Framing } from './framing.js';
import { holdToLength } from './framing.js';
import type { Capture, HeaderPairs } from './inspect.js';
import { Pool } from './undici-pool.js';

export interface Origin {
  host: string;
  port: number;
  /** Default 'http'. */
  scheme?: 'http' | 'https' | undefined;
}

/** How the agent talks to the origin. */
export interface OriginProtocol {
  /** --app-protocol: HTTP/1.1 (default), or HTTP/2 (h2c on http, h2 by ALPN on https). */
  appProtocol: 'http1' | 'http2';
  /** --origin-ca: the authorities an https origin's certificate is checked against, instead of the system's. */
  ca?: Buffer | undefined;
  /** --origin-insecure: an https origin's certificate is not checked at all. */
  insecure?: boolean | undefined;
}

export const UNREACHABLE: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT']);

/** OpenSSL's and Node's codes for a certificate that failed the check. */
export function isCertificateError(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('ERR_TLS_CERT') || /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|DEPTH_ZERO|HOSTNAME_MISMATCH/.test(code));
}

/** What a failed connection to the origin tells the visitor. */
export function originFailure(io: OriginIo, err: NodeJS.ErrnoException): { code: ErrorCode; detail: string } {
  if (io.scheme === 'https' && isCertificateError(err.code))
    return { code: 'BEAM_ERR_ORIGIN_TLS', detail: `${io.hostPort}: ${err.code}${err.message ? ` (${err.message.slice(0, 200)})` : ''}` };
  return {
    code: 'BEAM_ERR_ORIGIN_UNREACHABLE',
    detail: err.code && UNREACHABLE.has(err.code) ? `nothing answered on ${io.hostPort} (${err.code})` : `${io.hostPort}: ${err.code ?? err.message}`,
  };
}

/** The origin and the connections the agent keeps to it. */
export class OriginIo {
  readonly host: string;
  readonly port: number;
  readonly hostPort: string;
  /** How long to wait for the origin's response head once the request is there. */
  readonly timeoutMs: number;
  readonly log: Logger;
  /** The origin refused a connection: the CLI prints a line. */
  readonly onUnreachable: (err: NodeJS.ErrnoException) => void;
  readonly scheme: 'http' | 'https';
  readonly appProtocol: 'http1' | 'http2';
  /** The TLS options of every connection to an https origin. */
  readonly tls: { ca?: Buffer; rejectUnauthorized: boolean; servername?: string };
  /** Node's client: upgrades, bodies with trailers, the inspector's replays. */
  readonly agent: http.Agent;
  /** undici's pool: every other request (peer-agent/origin-pool.ts). */
  readonly pool: Pool;
  /** The one HTTP/2 connection to the origin (--app-protocol http2), made on first use and again after it closes. */
  private h2: http2.ClientHttp2Session | undefined;
  private h2Module: typeof http2 | undefined;

  constructor(
    origin: Origin,
    options: { timeoutMs: number; log: Logger; onUnreachable: (err: NodeJS.ErrnoException) => void; protocol?: OriginProtocol | undefined },
  ) {
    this.host = origin.host;
    this.port = origin.port;
    this.scheme = origin.scheme ?? 'http';
    this.hostPort = `${origin.host.includes(':') ? `[${origin.host}]` : origin.host}:${origin.port}`;
    this.timeoutMs = options.timeoutMs;
    this.log = options.log;
    this.onUnreachable = options.onUnreachable;
    this.appProtocol = options.protocol?.appProtocol ?? 'http1';
    this.tls = {
      rejectUnauthorized: options.protocol?.insecure !== true,
      ...(options.protocol?.ca ? { ca: options.protocol.ca } : {}),
      // SNI names a host, never an address (RFC 6066 section 3).
      ...(isIP(origin.host) === 0 ? { servername: origin.host } : {}),
    };
    // `localhost` may be ::1 or 127.0.0.1: Node tries both, but gives each only
    // 250 ms by default, too little for a busy machine.
    const agentOptions = { keepAlive: true, maxFreeSockets: ORIGIN_IDLE_SOCKETS, autoSelectFamilyAttemptTimeout: 2_000 } as http.AgentOptions;
    this.agent = this.scheme === 'https' ? new https.Agent({ ...agentOptions, ...this.tls }) : new http.Agent(agentOptions);
    // No clocks of undici's own: the agent's runs from the moment the request is at the origin.
    this.pool = new Pool(this.url, {
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { ...this.tls, autoSelectFamily: true, autoSelectFamilyAttemptTimeout: 2_000 },
    });
  }

  /** The origin's URL base: `http://host:port`. */
  get url(): string {
    return `${this.scheme}://${this.hostPort}`;
  }

  /** The HTTP/2 connection to the origin; a closed or closing one is replaced. */
  async session(): Promise<http2.ClientHttp2Session> {
    const current = this.h2;
    if (current && !current.closed && !current.destroyed) return current;
    this.h2Module ??= (await import('node:http2')).default;
    const again = this.h2;
    if (again && !again.closed && !again.destroyed) return again;
    const session = this.h2Module.connect(this.url, {
      ...this.tls,
      autoSelectFamilyAttemptTimeout: 2_000,
      settings: { enablePush: false },
    } as http2.SecureClientSessionOptions);
    session.on('error', (err: NodeJS.ErrnoException) => this.log.debug({ code: err.code }, 'origin HTTP/2 connection failed'));
    // A GOAWAY from the origin: streams it took finish; new ones go on a new connection.
    session.on('goaway', () => {
      if (this.h2 === session) this.h2 = undefined;
    });
    session.on('close', () => {
      if (this.h2 === session) this.h2 = undefined;
    });
    session.unref();
    this.h2 = session;
    return session;
  }

  close(): void {
    this.agent.destroy();
    this.pool.destroy().catch(() => {});
    this.h2?.destroy();
    this.h2 = undefined;
  }
}

/** A request to the origin, on a pooled connection (`pooled`) or a fresh one (an upgrade keeps its own). */
export function originRequest(io: OriginIo, method: string, target: string, headers: HeaderPairs, pooled: boolean): http.ClientRequest {
  return (io.scheme === 'https' ? https : http).request({
    ...(io.scheme === 'https' && !pooled ? io.tls : {}),
    host: io.host,
    port: io.port,
    method,
    path: target,
    headers: headers.flat(),
    agent: pooled ? io.agent : false,
    setHost: false,
    autoSelectFamilyAttemptTimeout: 2_000,
  } as http.RequestOptions);
}

/** An admitted request, as it goes to the origin. */
export interface Forwarded {
  method: string;
  /** The origin-form target, as admitted. */
  target: string;
  /** The headers the origin gets. */
  headers: HeaderPairs;
  upgrade: boolean;
  /** The visitor said a body follows the head. */
  body: boolean;
  /** The body comes framed, and may end with trailers (head codec version 2). */
  framed: boolean;
  /** The visitor takes trailers: a response that may carry them goes back framed. */
  trailers: boolean;
  framing: Framing;
  /** A cookie Beam adds to the response (a private share's secret, proven by a link). */
  setCookie: string | undefined;
  /** Tell a browser page the origin's address (beam-origin). */
  browser: boolean;
  requestId: string;
  path: RequestPath;
  capture: Capture | undefined;
  /** The body, already read whole (to check a webhook's signature): it goes to the origin as it is, the stream carries no more of it. */
  preread?: Buffer | undefined;
  /** The share's response header rules (peer-agent/header-rules.ts), if any. */
  rewriteResponse?: ((headers: HeaderPairs) => HeaderPairs) | undefined;
}

/** Sends an admitted request to the origin and its answer back on `stream`; never throws. */
export function forward(stream: Duplex, io: OriginIo, request: Forwarded): void {
  const { method, target, headers, upgrade, body: hasBody, framing, setCookie, browser, requestId, path, capture } = request;
  // The request body as the origin gets it: the stream's bytes, or the records' data with their trailers kept aside.
  let source: Readable = stream;
  let records: BodyDeframer | undefined;
  if (request.framed && hasBody && !upgrade && request.preread === undefined) {
    records = new BodyDeframer();
    records.on('error', (err) => stream.destroy(err));
    source = stream.pipe(records);
  }
  const open = (): http.ClientRequest => originRequest(io, method, target, headers, !upgrade);
  let req = open();
  // waiting -> (error-sent | responding | upgraded): once an answer went out, later
  // failures can only reset the stream, and an error head is final.
  let state: 'waiting' | 'error-sent' | 'responding' | 'upgraded' = 'waiting';
  const fail = (code: ErrorCode, detail: string): void => {
    if (state !== 'waiting') return;
    state = 'error-sent';
    writeHead(stream, { kind: 'error', code, detail }, true);
    capture?.fail(code, ERRORS[code].status);
    io.log.info({ req: requestId, code, detail }, 'request failed');
  };
  // The clock runs from the moment the whole request is at the origin: a
  // long upload is not a slow origin.
  let timer: NodeJS.Timeout | undefined;
  let retried = false;
  const wire = (r: http.ClientRequest): void => {
    r.on('finish', () => {
      if (state !== 'waiting') return;
      timer = setTimeout(() => {
        fail('BEAM_ERR_ORIGIN_TIMEOUT', `no response from ${io.hostPort} within ${io.timeoutMs} ms`);
        req.destroy();
      }, io.timeoutMs);
      timer.unref();
    });

    r.on('error', (err: NodeJS.ErrnoException) => {
      if (r !== req) return; // the stale request a retry replaced
      clearTimeout(timer);
      // Beam already answered (and destroyed the request itself, as for a body past its Content-Length): the origin is not to blame.
      if (state === 'error-sent') return;
      if (state === 'responding' || state === 'upgraded') {
        stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', err.code));
        capture?.fail('BEAM_ERR_ORIGIN_UNREACHABLE');
        return;
      }
      // A pooled socket the origin closed while the request was on its way:
      // a request without a body goes again, once, on a fresh connection
      // (what Node's docs advise). One with a body was partly consumed.
      if (state === 'waiting' && !retried && !hasBody && !upgrade && r.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        retried = true;
        io.log.debug({ req: requestId, code: err.code }, 'pooled origin socket was closed; retrying on a new one');
        req = open();
        wire(req);
        req.end();
        return;
      }
      if (err.code && UNREACHABLE.has(err.code)) io.onUnreachable(err);
      const failure = originFailure(io, err);
      fail(failure.code, failure.detail);
    });

    r.on('response', (res) => {
      clearTimeout(timer);
      if (state !== 'waiting') {
        res.destroy();
        return;
      }
      state = 'responding';
      io.log.debug({ req: requestId, path: path, method: method, target: target.split('?')[0], status: res.statusCode }, 'forwarded');
      // What the origin said is what the inspector shows; Beam's own headers (its secret cookie above all) never are.
      const originHeaders: HeaderPairs = endToEndHeaders(res.rawHeaders);
      const rewritten = request.rewriteResponse ? request.rewriteResponse(originHeaders) : originHeaders;
      const responseHeaders: HeaderPairs = setCookie ? [...rewritten, ['Set-Cookie', setCookie]] : [...rewritten];
      if (browser) responseHeaders.push(['beam-origin', io.hostPort]);
      // A chunked response may end with trailers: to a visitor that takes them, it goes framed.
      const framed = request.trailers && res.headers['content-length'] === undefined && res.headers['transfer-encoding'] !== undefined;
      writeHead(stream, {
        kind: 'response',
        status: res.statusCode ?? 502,
        statusText: res.statusMessage,
        headers: responseHeaders,
        ...(framed ? { framed } : {}),
      });
      if (capture) {
        capture.response(res.statusCode ?? 502, res.statusMessage, originHeaders);
        res.on('data', (chunk: Buffer) => capture.responseChunk(chunk));
        res.on('end', () => capture.finish());
      }
      if (framed) res.pipe(new BodyFramer(() => trailerPairs(res.rawTrailers))).pipe(stream);
      else res.pipe(stream);
      const broke = (): void => {
        stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin closed mid-response'));
        capture?.fail('BEAM_ERR_ORIGIN_UNREACHABLE');
      };
      res.on('error', broke);
      res.on('aborted', broke);
    });

    r.on('upgrade', (res, socket, rest) => {
      clearTimeout(timer);
      if (state !== 'waiting') {
        socket.destroy();
        return;
      }
      state = 'upgraded';
      // A 101 keeps its Upgrade and Connection headers: they are what it means.
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) pairs.push([res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string]);
      writeHead(stream, { kind: 'response', status: 101, statusText: res.statusMessage, headers: pairs });
      // What follows is the upgraded protocol's, not HTTP: the exchange ends at the 101.
      capture?.response(101, res.statusMessage, pairs);
      capture?.finish();
      if (rest.byteLength > 0) stream.write(rest);
      socket.pipe(stream);
      stream.pipe(socket);
      socket.on('error', () => stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin closed the upgraded connection')));
      stream.on('error', () => socket.destroy());
      stream.on('close', () => socket.destroy());
    });
  };
  wire(req);

  stream.on('error', (err) => {
    clearTimeout(timer);
    state = state === 'waiting' ? 'error-sent' : state;
    io.log.debug({ code: errorCodeOf(err) }, 'stream ended early');
    capture?.fail(errorCodeOf(err) ?? 'BEAM_ERR_STREAM_RESET');
    req.destroy();
  });
  if (upgrade) {
    // An upgrade request has no body: what follows on the stream belongs to
    // the upgraded connection and is spliced once the origin says 101.
    req.end();
  } else if (request.preread !== undefined) {
    if (capture) capture.requestChunk(request.preread);
    req.end(request.preread.byteLength > 0 ? request.preread : undefined);
  } else if (framing.kind === 'chunked' || (framing.kind === 'length' && hasBody)) {
    // (A length of 0 with a body flag is held to it too: a byte after the head is refused, not dropped.)
    // The rest of the stream is the request body; the head goes out now.
    req.flushHeaders();
    if (capture) source.on('data', (chunk: Buffer) => capture.requestChunk(chunk));
    // The visitor's trailers reach an origin that is sent a chunked body (a length-framed one has no room for them).
    if (records && framing.kind === 'chunked') {
      records.once('trailers', (pairs: HeaderPairList) => {
        const trailers = trailerPairs(pairs.flat());
        if (trailers.length > 0) req.addTrailers(trailers);
      });
    }
    if (framing.kind === 'chunked') {
      source.pipe(req);
    } else {
      // Exactly the announced bytes reach the origin: a byte more would be read there as the start of another request.
      holdToLength(source, req, framing.length, (err) => {
        fail('BEAM_ERR_BAD_FRAMING', err.detail ?? err.message);
        source.resume();
      });
      source.pipe(req);
    }
  } else {
    req.end();
    stream.resume();
  }
}
