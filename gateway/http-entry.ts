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
import https from 'node:https';
import type { Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import {
  GATEWAY_HEADERS_TIMEOUT_MS,
  GATEWAY_MAX_CONNECTIONS_PER_IP,
  HEADERS_TIMEOUT_CHECK_MS,
  MAX_CLIENT_HEADER_COUNT,
  MAX_HEADER_BYTES,
  SNI_CACHE_SIZE,
} from '../shared/constants.js';

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
    ? (https.createServer({ ...serverOptions, cert: options.tls.cert, key: options.tls.key, SNICallback: sniCallback(options.tls) }) as unknown as http.Server)
    : http.createServer(serverOptions);
  // One over the limit, so a request with too many headers is seen and refused (Node silently drops the rest).
  server.maxHeadersCount = MAX_CLIENT_HEADER_COUNT + 1;
  guardConnections(server, headersTimeout, options.maxConnectionsPerIp ?? GATEWAY_MAX_CONNECTIONS_PER_IP);
  return server;
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
