/**
 * A browser page's WebSocket (a request head with `websocket: true`): the
 * agent opens it to the origin with the `ws` package and passes whole
 * messages over the stream (shared/ws-messages.ts). The page cannot speak
 * WebSocket framing on a data channel; this way it needs none.
 *
 * Access checks ran before (peer-agent/origin.ts serve()), as for any
 * request; the socket goes to the configured origin only. Backpressure: the
 * origin's socket is paused while the stream's buffer is full, and the
 * stream while the origin's socket has MAX_WS_MESSAGE_BYTES unsent.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { MAX_WS_MESSAGE_BYTES } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { writeHead } from '../shared/http-head.js';
import { decodeWsClose, encodeWsClose, encodeWsMessage, WsKind, WsMessageReader } from '../shared/ws-messages.js';
import type { Capture, HeaderPairs } from './inspect.js';

export interface WebSocketTarget {
  /** host:port of the origin, as URLs want it. */
  hostPort: string;
  /** An https origin's WebSockets are wss://, with its certificate checked as for its requests. */
  tls?: { ca?: Buffer; rejectUnauthorized: boolean; servername?: string } | undefined;
  /** How long the origin may take to answer the upgrade. */
  timeoutMs: number;
  log: Logger;
  onUnreachable(err: NodeJS.ErrnoException): void;
}

/** Headers ws sets itself, or that belong to the page's hop. */
const OWN = new Set([
  'connection',
  'upgrade',
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
  'content-length',
  'transfer-encoding',
]);

/** Codes an endpoint may send in a close frame (RFC 6455 section 7.4). */
const sendable = (code: number): boolean => code === 1000 || (code >= 3000 && code <= 4999);

export function serveWebSocket(
  stream: Duplex,
  target: string,
  headers: HeaderPairs,
  origin: WebSocketTarget,
  capture: Capture | undefined,
  requestId: string,
): void {
  const protocols = headers
    .filter(([k]) => k.toLowerCase() === 'sec-websocket-protocol')
    .flatMap(([, v]) => v.split(','))
    .map((p) => p.trim())
    .filter(Boolean);
  const forwarded: Record<string, string> = {};
  for (const [k, v] of headers) if (!OWN.has(k.toLowerCase())) forwarded[k] = forwarded[k] === undefined ? v : `${forwarded[k]}, ${v}`;
  const socket = new WebSocket(`${origin.tls ? 'wss' : 'ws'}://${origin.hostPort}${target}`, protocols, {
    ...origin.tls,
    headers: forwarded,
    perMessageDeflate: false,
    maxPayload: MAX_WS_MESSAGE_BYTES,
    handshakeTimeout: origin.timeoutMs,
    followRedirects: false,
  });
  let opened = false;
  let answered = false;
  const answer = (status: number, statusText: string, pairs: HeaderPairs): void => {
    answered = true;
    writeHead(stream, { kind: 'response', status, statusText, headers: pairs });
    capture?.response(status, statusText, pairs);
  };

  socket.on('upgrade', (res) => {
    const pairs: HeaderPairs = [];
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
      const k = res.rawHeaders[i] as string;
      if (k.toLowerCase() === 'sec-websocket-protocol' || k.toLowerCase() === 'set-cookie') pairs.push([k, res.rawHeaders[i + 1] as string]);
    }
    answer(101, 'Switching Protocols', pairs);
    capture?.finish();
  });
  socket.on('unexpected-response', (_req, res) => {
    // The origin refused the upgrade: the page gets its answer, as a browser would see it fail.
    const pairs: HeaderPairs = [];
    for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) pairs.push([res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string]);
    answer(
      res.statusCode ?? 502,
      res.statusMessage ?? '',
      pairs.filter(([k]) => !OWN.has(k.toLowerCase()) && k.toLowerCase() !== 'connection'),
    );
    capture?.finish();
    res.resume();
    stream.end();
  });
  socket.on('open', () => {
    opened = true;
  });
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    if (!stream.write(encodeWsMessage(isBinary ? WsKind.BINARY : WsKind.TEXT, data))) {
      socket.pause();
      stream.once('drain', () => socket.resume());
    }
  });
  socket.on('close', (code: number, reason: Buffer) => {
    if (opened && !stream.destroyed && stream.writable) {
      stream.write(encodeWsClose(code, reason.toString('utf8')));
      stream.end();
    }
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (answered) {
      if (!opened) stream.end();
      else stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin closed the WebSocket'));
      return;
    }
    answered = true;
    if (err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET') origin.onUnreachable(err);
    const detail = `WebSocket to ${origin.hostPort}: ${err.code ?? err.message}`;
    writeHead(stream, { kind: 'error', code: 'BEAM_ERR_ORIGIN_UNREACHABLE', detail }, true);
    capture?.fail('BEAM_ERR_ORIGIN_UNREACHABLE', 502);
    origin.log.info({ req: requestId, code: 'BEAM_ERR_ORIGIN_UNREACHABLE', detail }, 'request failed');
  });

  const reader = new WsMessageReader();
  stream.on('data', (chunk: Buffer) => {
    try {
      reader.push(chunk, (kind, payload) => {
        if (socket.readyState !== WebSocket.OPEN) return;
        if (kind === WsKind.CLOSE) {
          const { code, reason } = decodeWsClose(payload);
          socket.close(sendable(code) ? code : 1000, reason);
          return;
        }
        socket.send(kind === WsKind.TEXT ? payload.toString('utf8') : payload, { binary: kind === WsKind.BINARY }, () => {
          if (stream.isPaused() && socket.bufferedAmount <= MAX_WS_MESSAGE_BYTES / 2) stream.resume();
        });
        if (socket.bufferedAmount > MAX_WS_MESSAGE_BYTES) stream.pause();
      });
    } catch (err) {
      stream.destroy(err as Error);
      socket.terminate();
    }
  });
  stream.on('end', () => {
    if (socket.readyState === WebSocket.OPEN) socket.close(1000);
    else if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
  });
  stream.on('close', () => {
    if (socket.readyState !== WebSocket.CLOSED) socket.terminate();
  });
}
