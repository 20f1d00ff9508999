/**
 * The HTTP server a gateway listens with (the server's public entry, and
 * `beam connect`'s local one): Node's strict parser, which answers request
 * smuggling probes (CL+TE, duplicate Content-Length, obfuscated
 * Transfer-Encoding) with 400 before any handler runs, plus Beam's limits on
 * header bytes, header count and how long a client may take over its head.
 */
import http from 'node:http';
import https from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { GATEWAY_HEADERS_TIMEOUT_MS, HEADERS_TIMEOUT_CHECK_MS, MAX_CLIENT_HEADER_COUNT, MAX_HEADER_BYTES, SNI_CACHE_SIZE } from '../shared/constants.js';

export interface HttpEntryOptions {
  /** How long a client may take to send its request head (slowloris). Default GATEWAY_HEADERS_TIMEOUT_MS. */
  headersTimeoutMs?: number | undefined;
  /** Serve https with this certificate chain and key (PEM). */
  tls?: TlsOptions | undefined;
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
    ctx.then((c) => cb(null, c), (err: Error) => cb(err));
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
  return server;
}

/** More header lines than MAX_CLIENT_HEADER_COUNT: answer 431. */
export function tooManyHeaders(req: http.IncomingMessage): boolean {
  return req.rawHeaders.length / 2 > MAX_CLIENT_HEADER_COUNT;
}
