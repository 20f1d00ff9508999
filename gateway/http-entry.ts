/**
 * The HTTP server a gateway listens with (the server's public entry, and
 * `beam connect`'s local one): Node's strict parser, which answers request
 * smuggling probes (CL+TE, duplicate Content-Length, obfuscated
 * Transfer-Encoding) with 400 before any handler runs, plus Beam's limits on
 * header bytes, header count, how long a client may take over its head
 * (counted from accept: Node's own clock starts at the first byte, so a
 * connection that never sent one was never closed), and how many
 * connections one address may hold at once.
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import {
  GATEWAY_HEADERS_TIMEOUT_MS,
  GATEWAY_MAX_CONNECTIONS_PER_IP,
  H2_IDLE_TIMEOUT_MS,
  H2_MAX_CONCURRENT_STREAMS,
  H2_MAX_INVALID_FRAMES,
  H2_MAX_REJECTED_STREAMS,
  H2_MAX_RESETS_PER_WINDOW,
  H2_MAX_SETTINGS_PER_WINDOW,
  H2_RESET_WINDOW_MS,
  HEADERS_TIMEOUT_CHECK_MS,
  MAX_CLIENT_HEADER_COUNT,
  MAX_HEADER_BYTES,
  SNI_CACHE_SIZE,
} from '../shared/constants.js';
import { sendError } from './error-page.js';

export interface HttpEntryOptions {
  /** How long a client may take to send its request head (slowloris). Default GATEWAY_HEADERS_TIMEOUT_MS. */
  headersTimeoutMs?: number | undefined;
  /** Serve https with this certificate chain and key (PEM). */
  tls?: TlsOptions | undefined;
  /** Concurrent TCP connections one client address may hold; 0 for no cap. Default GATEWAY_MAX_CONNECTIONS_PER_IP. */
  maxConnectionsPerIp?: number | undefined;
}

export interface TlsOptions {
  cert: Buffer;
  key: Buffer;
  /**
   * A certificate for a name a client asks for (SNI) that `cert` does not
   * cover; undefined to use `cert`. Made once per name (SNI_CACHE_SIZE kept).
   */
  certFor?: ((servername: string) => Promise<{ cert: Buffer; key: Buffer }> | undefined) | undefined;
}

/** The SNICallback of `tls`: contexts made by certFor, cached by name. */
function sniCallback(tls: TlsOptions): ((servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void) | undefined {
  const certFor = tls.certFor;
  if (!certFor) return undefined;
  const cache = new Map<string, Promise<SecureContext | undefined>>();
  return (servername, cb) => {
    const name = servername.toLowerCase();
    let ctx = cache.get(name);
    if (!ctx) {
      ctx = (certFor(name) ?? Promise.resolve(undefined)).then((made) => (made ? createSecureContext(made) : undefined));
      cache.set(name, ctx);
      if (cache.size > SNI_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      ctx.catch(() => cache.delete(name));
    }
    ctx.then(
      (c) => cb(null, c),
      (err: Error) => cb(err),
    );
  };
}

export function createHttpEntry(options: HttpEntryOptions = {}): http.Server {
  const headersTimeout = options.headersTimeoutMs ?? GATEWAY_HEADERS_TIMEOUT_MS;
  const serverOptions = {
    maxHeaderSize: MAX_HEADER_BYTES,
    // Node wants requestTimeout >= headersTimeout; a slow upload is not slowloris, so the body has no clock here.
    headersTimeout,
    requestTimeout: 0,
    // How often Node looks for clients past their time; its default (30 s) would let them linger.
    connectionsCheckingInterval: Math.min(HEADERS_TIMEOUT_CHECK_MS, headersTimeout),
    insecureHTTPParser: false,
  };
  // An https.Server is an http.Server on TLS sockets: same events, same limits.
  const server = options.tls
    ? (https.createServer({
        ...serverOptions,
        cert: options.tls.cert,
        key: options.tls.key,
        SNICallback: sniCallback(options.tls),
        ALPNProtocols: ['h2', 'http/1.1'],
      }) as unknown as http.Server)
    : http.createServer(serverOptions);
  // One over the limit, so a request with too many headers is seen and refused (Node silently drops the rest).
  server.maxHeadersCount = MAX_CLIENT_HEADER_COUNT + 1;
  attachHttp2(server, options.tls !== undefined);
  guardConnections(server, headersTimeout, options.maxConnectionsPerIp ?? GATEWAY_MAX_CONNECTIONS_PER_IP);
  return server;
}

/** The client connection preface of HTTP/2 (RFC 9113 section 3.4): how an h2c client with prior knowledge starts. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * HTTP/2 beside HTTP/1.1 on the same port: by ALPN (`h2`) on TLS, by the
 * client's preface (h2c with prior knowledge) on a plain listener. Every
 * HTTP/2 request reaches the server's 'request' listeners as Node's
 * compatibility objects (Http2ServerRequest, Http2ServerResponse), so one
 * handler serves both. HTTP/2 upgrades from HTTP/1.1 (h2c Upgrade) are not
 * offered: browsers never use them and curl falls back to HTTP/1.1.
 *
 * Limits, beyond nghttp2's own (which already caps CONTINUATION frames per
 * header block): SETTINGS_MAX_CONCURRENT_STREAMS, the header list's size and
 * line count as for HTTP/1.1, invalid frames and refused streams, streams
 * the client resets (rapid reset), SETTINGS frames (a flood of ACKs to
 * queue) and an idle timeout; a client past one is sent GOAWAY
 * (ENHANCE_YOUR_CALM) and cut off, and the others keep being served.
 */
function attachHttp2(server: http.Server, tls: boolean): void {
  const h2 = http2.createServer({
    maxSessionInvalidFrames: H2_MAX_INVALID_FRAMES,
    maxSessionRejectedStreams: H2_MAX_REJECTED_STREAMS,
    // Lines past MAX_CLIENT_HEADER_COUNT are answered 431 by the gateway, as for HTTP/1.1; the pseudo-headers come on top.
    maxHeaderListPairs: MAX_CLIENT_HEADER_COUNT + 8,
    settings: { maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS, maxHeaderListSize: MAX_HEADER_BYTES, enablePush: false },
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    // :authority is HTTP/2's Host (RFC 9113 section 8.3.1): handlers route by `host`, so it is put there.
    const authority = req.headers[':authority'];
    const host = req.headers.host;
    if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase()) {
      sendError(req.headers, res as unknown as http.ServerResponse, 'BEAM_ERR_BAD_REQUEST', 'the Host header and :authority disagree');
      return;
    }
    if (authority === undefined && host === undefined) {
      sendError(req.headers, res as unknown as http.ServerResponse, 'BEAM_ERR_BAD_REQUEST', 'no :authority and no Host header');
      return;
    }
    if (authority !== undefined) req.headers.host = authority;
    server.emit('request', req, res);
  });
  h2.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => session.destroy());
    guardSession(session);
  });
  // A connection quiet for H2_IDLE_TIMEOUT_MS: GOAWAY, and close once its streams (if any) are done.
  h2.setTimeout(H2_IDLE_TIMEOUT_MS);
  h2.on('timeout', (session: http2.ServerHttp2Session) => session.close());

  const event = tls ? 'secureConnection' : 'connection';
  const http1 = server.listeners(event) as Array<(socket: Socket) => void>;
  server.removeAllListeners(event);
  const toHttp1 = (socket: Socket, first?: Buffer): void => {
    for (const listener of http1) listener.call(server, socket);
    // The bytes read to tell the protocols apart, ahead of anything read from now on (nothing can be before this returns).
    if (first) socket.emit('data', first);
  };
  server.on(event, (socket: Socket) => {
    if (tls) {
      if ((socket as TLSSocket).alpnProtocol === 'h2') h2.emit('connection', socket);
      else toHttp1(socket);
      return;
    }
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      seen = seen.byteLength === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.byteLength, H2_PREFACE.byteLength);
      const isPrefix = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isPrefix && n < H2_PREFACE.byteLength) return;
      socket.off('data', onData);
      if (isPrefix) {
        socket.pause();
        socket.unshift(seen);
        h2.emit('connection', socket);
      } else {
        toHttp1(socket, seen);
      }
    };
    socket.on('data', onData);
  });

  // The server's own ways to close connections reach HTTP/2 sessions too.
  const closeIdle = server.closeIdleConnections.bind(server);
  const closeAll = server.closeAllConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    for (const session of sessions) session.close();
  };
  server.closeAllConnections = () => {
    closeAll();
    for (const session of sessions) session.destroy();
  };
}

/** Counts what a client does that costs the server and not the client; past a limit, GOAWAY and close. */
function guardSession(session: http2.ServerHttp2Session): void {
  let resets = 0;
  let settings = 0;
  let windowStart = performance.now();
  const count = (): void => {
    const now = performance.now();
    if (now - windowStart > H2_RESET_WINDOW_MS) {
      windowStart = now;
      resets = 0;
      settings = 0;
    }
  };
  const calm = (): void => {
    if (session.destroyed) return;
    // The final GOAWAY says why (destroy's code), then the connection closes.
    session.destroy(new Error('HTTP/2 client past a limit'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  };
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    // 'aborted': the client reset the stream before the response was done.
    stream.once('aborted', () => {
      count();
      if (++resets > H2_MAX_RESETS_PER_WINDOW) calm();
    });
  });
  session.on('remoteSettings', () => {
    count();
    if (++settings > H2_MAX_SETTINGS_PER_WINDOW) calm();
  });
}

/**
 * Closes a connection whose first request head is not complete within
 * `headersTimeoutMs` of accept, and refuses connections past `perAddress`
 * from one address. (A TLS connection's request arrives on the TLS socket,
 * not the TCP one accepted: both share the peer's address and port.)
 */
function guardConnections(server: http.Server, headersTimeoutMs: number, perAddress: number): void {
  const open = new Map<string, number>();
  const waiting = new Map<string, NodeJS.Timeout>();
  const keyOf = (socket: Socket): string => `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    if (perAddress > 0) {
      const n = open.get(address) ?? 0;
      if (n >= perAddress) {
        socket.destroy();
        return;
      }
      open.set(address, n + 1);
    }
    const key = keyOf(socket);
    const timer = setTimeout(() => socket.destroy(), headersTimeoutMs);
    timer.unref();
    waiting.set(key, timer);
    socket.once('close', () => {
      clearTimeout(timer);
      if (waiting.get(key) === timer) waiting.delete(key);
      if (perAddress > 0) {
        const left = (open.get(address) ?? 1) - 1;
        if (left > 0) open.set(address, left);
        else open.delete(address);
      }
    });
  });
  const arrived = (req: http.IncomingMessage): void => {
    const key = keyOf(req.socket);
    const timer = waiting.get(key);
    if (timer === undefined) return;
    clearTimeout(timer);
    waiting.delete(key);
  };
  // Listeners run in order: these come before any handler the caller adds.
  server.on('request', arrived);
  server.on('upgrade', arrived);
}

/** More header lines than MAX_CLIENT_HEADER_COUNT: answer 431. */
export function tooManyHeaders(req: http.IncomingMessage): boolean {
  return req.rawHeaders.length / 2 > MAX_CLIENT_HEADER_COUNT;
}
