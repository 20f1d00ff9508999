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
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { BeamError, ERRORS, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { encodeHead, endToEndHeaders } from '../shared/http-head.js';
import type { RequestPath } from '../shared/paths.js';
import type { Framing } from './framing.js';
import { holdToLength } from './framing.js';
import type { Capture, HeaderPairs } from './inspect.js';

export interface Origin {
  host: string;
  port: number;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT']);

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
  // `localhost` may be ::1 or 127.0.0.1: Node tries both, but gives each only
  // 250 ms by default, too little for a busy machine.
  readonly agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64, autoSelectFamilyAttemptTimeout: 2_000 } as http.AgentOptions);

  constructor(origin: Origin, options: { timeoutMs: number; log: Logger; onUnreachable: (err: NodeJS.ErrnoException) => void }) {
    this.host = origin.host;
    this.port = origin.port;
    this.hostPort = `${origin.host.includes(':') ? `[${origin.host}]` : origin.host}:${origin.port}`;
    this.timeoutMs = options.timeoutMs;
    this.log = options.log;
    this.onUnreachable = options.onUnreachable;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** A request to the origin, on a pooled connection (`pooled`) or a fresh one (an upgrade keeps its own). */
export function originRequest(io: OriginIo, method: string, target: string, headers: HeaderPairs, pooled: boolean): http.ClientRequest {
  return http.request({
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
  framing: Framing;
  /** A cookie Beam adds to the response (a private share's secret, proven by a link). */
  setCookie: string | undefined;
  /** Tell a browser page the origin's address (beam-origin). */
  browser: boolean;
  requestId: string;
  path: RequestPath;
  capture: Capture | undefined;
}

/** Sends an admitted request to the origin and its answer back on `stream`; never throws. */
export function forward(stream: Duplex, io: OriginIo, request: Forwarded): void {
  const { method, target, headers, upgrade, body: hasBody, framing, setCookie, browser, requestId, path, capture } = request;
  const open = (): http.ClientRequest => originRequest(io, method, target, headers, !upgrade);
  let req = open();
  // waiting -> (error-sent | responding | upgraded): once an answer went out, later
  // failures can only reset the stream, and an error head is final.
  let state: 'waiting' | 'error-sent' | 'responding' | 'upgraded' = 'waiting';
  const fail = (code: ErrorCode, detail: string): void => {
    if (state !== 'waiting') return;
    state = 'error-sent';
    stream.end(encodeHead({ kind: 'error', code, detail }));
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
      fail(
        'BEAM_ERR_ORIGIN_UNREACHABLE',
        err.code && UNREACHABLE.has(err.code) ? `nothing answered on ${io.hostPort} (${err.code})` : `${io.hostPort}: ${err.code ?? err.message}`,
      );
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
      const responseHeaders: HeaderPairs = setCookie ? [...originHeaders, ['Set-Cookie', setCookie]] : [...originHeaders];
      if (browser) responseHeaders.push(['beam-origin', io.hostPort]);
      stream.write(encodeHead({ kind: 'response', status: res.statusCode ?? 502, statusText: res.statusMessage, headers: responseHeaders }));
      if (capture) {
        capture.response(res.statusCode ?? 502, res.statusMessage, originHeaders);
        res.on('data', (chunk: Buffer) => capture.responseChunk(chunk));
        res.on('end', () => capture.finish());
      }
      res.pipe(stream);
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
      stream.write(encodeHead({ kind: 'response', status: 101, statusText: res.statusMessage, headers: pairs }));
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
  } else if (framing.kind === 'chunked' || (framing.kind === 'length' && hasBody)) {
    // (A length of 0 with a body flag is held to it too: a byte after the head is refused, not dropped.)
    // The rest of the stream is the request body; the head goes out now.
    req.flushHeaders();
    if (capture) stream.on('data', (chunk: Buffer) => capture.requestChunk(chunk));
    if (framing.kind === 'chunked') {
      stream.pipe(req);
    } else {
      // Exactly the announced bytes reach the origin: a byte more would be read there as the start of another request.
      holdToLength(stream, req, framing.length, (err) => {
        fail('BEAM_ERR_BAD_FRAMING', err.detail ?? err.message);
        stream.resume();
      });
      stream.pipe(req);
    }
  } else {
    req.end();
    stream.resume();
  }
}
