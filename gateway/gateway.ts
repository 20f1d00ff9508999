/**
 * The gateway: public HTTP in, one stream per request over the share's peer
 * connection out. Routes by Host (`<name>.<domain>`). Bodies stream both ways
 * with backpressure (pipe + the mux's credit), so neither side buffers more
 * than a window per request.
 */
import { type IncomingMessage, ServerResponse, validateHeaderName, validateHeaderValue } from 'node:http';
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { Duplex, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import { BodyDeframer, BodyFramer, type HeaderPairList, takesTrailers, trailerObject, trailerPairs } from '../shared/body-records.js';
import { BRIDGE_HEADER, BRIDGE_MAX_MESSAGE_BYTES, BRIDGE_MAX_STREAMS, HTTP_HEAD_VERSION, MAX_CLIENT_HEADER_COUNT, POOL_RETRIES } from '../shared/constants.js';
import { scopeSetCookies } from '../shared/cookies.js';
import { BeamError, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { frameableHeaders } from '../shared/frame-headers.js';
import { StreamProtocol } from '../shared/frames.js';
import { endToEndHeaders, exchange, FORWARDING_HEADERS, newRequestId, type RequestHead, type ResponseHead } from '../shared/http-head.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import { localForms, offShare } from '../shared/rewrite.js';
import type { PathKind, VisitorSession } from '../transport/session.js';
import type { SessionPool } from '../transport/session-pool.js';
import { bridgeClient, bridgeStream, SocketChannel } from './bridge.js';
import { BEAM_COOKIES, inBeamFrame, isFrameDocument, PAGE_MARKER, withoutBeamCookie } from './browser.js';
import { chooseEncoding, compressedHeaders, compressor } from './compress.js';
import { sendError, sendRawError } from './error-page.js';
import { FirstDocument, type FirstStage, FirstStages, rewritable } from './first-stage.js';
import { tooManyHeaders } from './http-entry.js';

export interface GatewayOptions {
  /**
   * This is the Beam server's own gateway (its sessions carry its token): it
   * logs each request, says `gateway; via=<path>` in beam-path, and passes each
   * request's secret on. Otherwise it is a visitor of its own: `beam connect`.
   */
  serverGateway?: boolean;
  /** Serve this one share whatever the Host (`beam connect`). */
  fixedShare?: string;
  /** Shares are `<name>.<domain>`. */
  domain: string;
  /** Requests whose Host is no share (a bare IP, the domain itself) go to this share, if any: the embedded default. */
  defaultShare?: () => string | undefined;
  /**
   * `<name>.local` (a share announced by mDNS, `--lan`) names the share `name`
   * where no default share takes every Host (`beam start`). Default false.
   */
  lanNames?: boolean;
  /** Compress text responses for clients that accept it (gateway/compress.ts). Default false. */
  compress?: boolean;
  /**
   * A reverse proxy in front terminates the clients' connections: take the
   * client's address from the last X-Forwarded-For entry and the scheme from
   * X-Forwarded-Proto, as the proxy set them. Default false: both are the gateway's own view.
   */
  trustProxy?: boolean;
}

/**
 * The path and query of a request target. An absolute-form target
 * (`GET http://elsewhere:22/ HTTP/1.1`) keeps only its path: the visitor never
 * chooses where the agent connects.
 */
export function originForm(url: string | undefined): string {
  if (!url || url === '*') return '/';
  if (url.startsWith('/')) return url;
  try {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  } catch {
    return '/';
  }
}

/** What the gateway knows of a stream it opened to an agent. */
interface StreamFacts {
  /** The session it runs in (a pool's retries go to another). */
  session: VisitorSession;
  /** The path it took in its session (a retry goes to the path that took over when it died). */
  kind: PathKind | undefined;
  /** Its agent speaks HTTP_HEAD_VERSION (framed bodies, trailers). */
  framing: boolean;
  /** The `beam-path` header value of its response. */
  beamPath: string;
}

/** The server's own gateway's `beam-path` values, made once rather than per request. */
const GATEWAY_VIA: Record<PathKind, string> = {
  local: 'gateway; via=local',
  direct: 'gateway; via=direct',
  turn: 'gateway; via=turn',
  relay: 'gateway; via=relay',
};

/** Methods a pool may send to another member after one failed before answering (RFC 9110 section 9.2.2's idempotent methods), when they carry no body. */
const RETRYABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export class Gateway {
  private readonly log: Logger;
  private readonly options: GatewayOptions;
  /** The sessions with shares (transport/session-pool.ts). */
  readonly pool: SessionPool;
  /**
   * What the gateway knows of each stream it opened. One entry a stream: each
   * insertion into a WeakMap cost about 0.3 % of the embedded default's CPU
   * under load (four a request, 1.2 %, when each fact had a map of its own).
   */
  private readonly streamFacts = new WeakMap<MuxStream, StreamFacts>();
  private inFlight = 0;
  /** The pages' bridges (gateway/bridge.ts). */
  private readonly bridges = new WebSocketServer({ noServer: true, maxPayload: BRIDGE_MAX_MESSAGE_BYTES, perMessageDeflate: false });
  /** Bridges open now, and streams they carried, ever (for metrics). */
  bridgesOpen = 0;
  bridgeStreams = 0;
  /**
   * Browser pages' first stages (gateway/first-stage.ts), when the server
   * serves the browser client: the stages, and the script that goes first
   * into the app's first document (browser-client/app-shim.ts). `loader`:
   * with `--browser-first-load top`, what goes before it in a new visitor's
   * top-level first document (browser-client/loader.ts).
   */
  firstStage: { stages: FirstStages; shim: string; loader?: string } | undefined;
  /** Requests carried for pages in their first stage, ever (for metrics; not in onRequestDone's count). */
  pageRequests = 0;
  private idleWaiters: Array<() => void> = [];
  /** Called when a request ends, with its status and duration (for metrics). */
  onRequestDone: ((status: number, seconds: number) => void) | undefined;

  constructor(components: { logger: Logger; pool: SessionPool }, options: GatewayOptions) {
    this.pool = components.pool;
    this.log = components.logger.child({ component: 'gateway' });
    this.options = options;
  }

  /** Requests (and upgraded connections) being served right now. */
  get requestsInFlight(): number {
    return this.inFlight;
  }

  /** Resolves once no request is in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private track(res: { once(event: 'close', cb: () => void): unknown; statusCode?: number }, req?: IncomingMessage, firstStage = false): void {
    this.inFlight++;
    const started = performance.now();
    res.once('close', () => {
      const seconds = (performance.now() - started) / 1000;
      // A page's first stage is the page's own loading, counted apart: the app's requests are what onRequestDone counts.
      if (firstStage) this.pageRequests++;
      else this.onRequestDone?.(res.statusCode ?? 101, seconds);
      // The access log: one line a request, with the id the agent logs too. The path only: a query may hold secrets.
      if (req && this.options.serverGateway) {
        this.log.info(
          {
            req: requestIdOf(req),
            share: this.route(req.headers.host),
            method: req.method,
            target: (req.url ?? '/').split('?')[0],
            status: res.statusCode,
            ms: Math.round(seconds * 10_000) / 10,
            ...(firstStage ? { firstStage } : {}),
          },
          'request',
        );
      }
      if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  /**
   * A browser is loading `share`'s page: its first requests reach this
   * gateway within moments (the page's first stage, or its bridge). Its
   * session with the agent starts now, while the page loads, unless one is up
   * or on its way. (A share's link is often warm already: --warm-links.)
   */
  warm(share: string): void {
    this.pool.open(share);
  }

  /** The share a Host header names, if any. */
  route(hostHeader: string | undefined): string | undefined {
    if (this.options.fixedShare) return this.options.fixedShare;
    const host = (hostHeader ?? '').toLowerCase().replace(/:\d+$/, '');
    const suffix = `.${this.options.domain}`;
    if (host.endsWith(suffix)) {
      const label = host.slice(0, -suffix.length);
      if (label && !label.includes('.')) return label;
    }
    const fallback = this.options.defaultShare?.();
    if (fallback === undefined && this.options.lanNames && host.endsWith('.local')) {
      const label = host.slice(0, -'.local'.length);
      if (label && !label.includes('.')) return label;
    }
    return fallback;
  }

  /**
   * A stream to the share's agent (for a pool, the next member's). A pooled
   * share's session that can't open a stream gives way to another member's:
   * nothing was sent yet.
   */
  private async openStream(share: string): Promise<MuxStream> {
    const session = await this.pool.connect(share);
    try {
      return await this.streamOn(share, session);
    } catch (err) {
      const other = this.pool.open(share, session);
      if (!other) throw err;
      await other.ready;
      return this.streamOn(share, other);
    }
  }

  /**
   * A request whose stream failed before any answer came: a stream on the
   * path of the same session that took over from the one that died (the
   * direct path that stood by beside the gateway's relay link, when the
   * agent's connection dropped), else to a pooled share's other member, or
   * undefined. Only a request that can be sent twice without harm goes again
   * (an idempotent method with no body), as a reverse proxy retries its next
   * upstream.
   */
  private async failover(share: string, failed: MuxStream, head: RequestHead): Promise<MuxStream | undefined> {
    const facts = this.streamFacts.get(failed);
    if (!facts || head.body || !RETRYABLE_METHODS.has(head.method)) return undefined;
    const { session, kind: took } = facts;
    if (took !== undefined && session.path !== undefined && session.path !== took && !session.hasPath(took)) {
      try {
        return await this.streamOn(share, session);
      } catch {
        // The session is going too: another member's, if there is one.
      }
    }
    const other = this.pool.open(share, session);
    if (!other) return undefined;
    try {
      await other.ready;
      return await this.streamOn(share, other);
    } catch {
      return undefined;
    }
  }

  private async streamOn(share: string, session: VisitorSession): Promise<MuxStream> {
    if (session.kind !== 'http') throw new BeamError('BEAM_ERR_SHARE_KIND', `"${share}" is a ${session.kind ?? 'non-HTTP'} share`);
    const stream = await session.stream(StreamProtocol.HTTP);
    const path = session.path ?? 'direct';
    this.streamFacts.set(stream, {
      session,
      kind: session.path,
      framing: session.agentHttp >= HTTP_HEAD_VERSION,
      // The server's own gateway is the visitor's path; `beam connect` goes straight to the agent.
      beamPath: this.options.serverGateway ? GATEWAY_VIA[path] : path,
    });
    return stream;
  }

  private requestHead(req: IncomingMessage, upgrade: boolean, firstDocument = false): RequestHead {
    let headers = endToEndHeaders(clientRawHeaders(req), FORWARDING_HEADERS);
    // The bootstrap's own cookies are Beam's, not the app's.
    if (headers.some(([k, v]) => k.toLowerCase() === 'cookie' && BEAM_COOKIES.some((name) => v.includes(name)))) {
      headers = headers.flatMap(([k, v]): Array<[string, string]> => {
        if (k.toLowerCase() !== 'cookie') return [[k, v]];
        const kept = withoutBeamCookie(v);
        return kept === undefined ? [] : [[k, kept]];
      });
    }
    let remote = req.socket.remoteAddress ?? '';
    const proto = this.visitorScheme(req);
    if (this.options.trustProxy) {
      const forwarded = (req.headers['x-forwarded-for'] ?? '')
        .toString()
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .at(-1);
      if (forwarded && isIP(forwarded)) remote = forwarded;
    }
    headers.push(['X-Forwarded-For', remote], ['X-Forwarded-Proto', proto]);
    if (req.headers.host) headers.push(['X-Forwarded-Host', req.headers.host]);
    // One id follows the request: the gateway's log, the agent's, the origin (X-Request-Id), the response.
    // Every X-Request-Id the client sent goes: a second one must not ride along beside the gateway's.
    const id = requestIdOf(req);
    // Only the gateway's bridge says a request is a page's.
    headers = headers.filter(([k]) => k.toLowerCase() !== 'x-request-id' && k.toLowerCase() !== BRIDGE_HEADER);
    headers.push(['X-Request-Id', id]);
    if (firstDocument) {
      // The app's first document in a page's first stage: the agent answers it as a page's (it tells the
      // origin's address), and the gateway puts the page's script in it, so it asks for the HTML as it is.
      headers = headers.filter(([k]) => k.toLowerCase() !== 'accept-encoding');
      headers.push([BRIDGE_HEADER, '1'], ['Accept-Encoding', 'identity']);
    }
    if (upgrade && req.headers.upgrade) headers.push(['Upgrade', req.headers.upgrade]);
    const body = !upgrade && hasBody(req);
    const head: RequestHead = { method: req.method ?? 'GET', target: originForm(req.url), headers, remoteAddress: remote, upgrade, body };
    if (!upgrade && takesTrailers(req.headers.te)) head.trailers = true;
    return head;
  }

  /** The scheme the visitor used: the connection's, or behind a trusted proxy the one it says. */
  private visitorScheme(req: IncomingMessage): 'http' | 'https' {
    if (this.options.trustProxy) {
      const scheme = req.headers['x-forwarded-proto']?.toString().split(',').at(-1)?.trim().toLowerCase();
      if (scheme === 'https' || scheme === 'http') return scheme;
    }
    return 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
  }

  /** The stream for a request's share, or the error a visitor gets instead. */
  private async streamFor(req: IncomingMessage): Promise<MuxStream | { code: ErrorCode; detail?: string }> {
    if (tooManyHeaders(req)) return { code: 'BEAM_ERR_HEAD_TOO_LARGE', detail: `more than ${MAX_CLIENT_HEADER_COUNT} header lines` };
    // RFC 9112 section 3.2: more than one Host is answered 400 (Node keeps the first; the origin might read the other).
    if (countHeader(req.rawHeaders, 'host') > 1) return { code: 'BEAM_ERR_BAD_REQUEST', detail: 'more than one Host header' };
    const share = this.route(req.headers.host);
    if (!share) return { code: 'BEAM_ERR_SHARE_NOT_FOUND', detail: `no share for host "${req.headers.host ?? ''}"` };
    try {
      return await this.openStream(share);
    } catch (err) {
      return this.failure(req, err);
    }
  }

  /**
   * Handles one public HTTP request. `top`: a new visitor's navigation, which
   * gets the app's first document top-level with the page's loader in it
   * (`--browser-first-load top`), opening this first stage.
   */
  async handleRequest(req: IncomingMessage, res: ServerResponse, top?: FirstStage): Promise<void> {
    const stage = top ?? this.firstStage?.stages.of(req.headers.cookie);
    this.track(res, req, stage !== undefined);
    const firstDocument = top !== undefined || (stage !== undefined && isFrameDocument(req));
    const answered = stage ? this.watchFirstStage(stage, req, res, firstDocument) : undefined;
    const opened = await this.streamFor(req);
    if (!(opened instanceof Duplex)) {
      this.sendError(req, res, opened.code, opened.detail);
      return;
    }
    // The client went while the session was looked up: Node's parser refused the rest of the request
    // (and answered 400 itself), or the client hung up. Nothing of it may reach the agent. Its socket
    // says so at once; its 'close' comes a loop phase after the multiplexer would have sent the head.
    if (clientGone(req, res)) {
      opened.destroy();
      return;
    }
    let stream = opened;
    // Until the response head is in, a failure is the exchange's to answer (or to send again to a pool's other member).
    let headIn = false;
    const watch = (s: MuxStream): void => {
      s.on('error', (err) => {
        req.unpipe(s);
        if (!headIn) return;
        if (!res.headersSent) this.answerFailure(req, res, err);
        else res.destroy();
      });
    };
    watch(stream);
    res.on('close', () => {
      // The client went away before the response ended: stop the agent's work too.
      if (clientLeft(res)) stream.destroy(new BeamError('BEAM_ERR_STREAM_RESET', 'client closed'));
    });
    const requestHead = this.requestHead(req, false, firstDocument);
    // A body that may end with trailers (any HTTP/2 body; an HTTP/1.1 one that announces them) goes framed to an agent that reads it so.
    let body: Readable | undefined = requestHead.body ? req : undefined;
    if (body && this.streamFacts.get(stream)?.framing === true && (req.httpVersionMajor === 2 || req.headers.trailer !== undefined)) {
      requestHead.framed = true;
      body = req.pipe(new BodyFramer(() => trailerPairs(req.rawTrailers)));
    }
    if (!requestHead.body) req.resume();
    let head: ResponseHead;
    for (let retries = 0; ; retries++) {
      try {
        head = await exchange(stream, requestHead, body);
        break;
      } catch (err) {
        const failed = stream;
        req.unpipe(failed);
        const share = this.route(req.headers.host);
        const next = share && retries < POOL_RETRIES && !res.headersSent && !res.destroyed ? await this.failover(share, failed, requestHead) : undefined;
        failed.destroy();
        if (!next) {
          if (!res.headersSent) this.answerFailure(req, res, err);
          return;
        }
        this.log.debug({ req: requestIdOf(req), share }, 'the request failed before an answer; sent again (on the path that took over, or to a pool member)');
        stream = next;
        watch(stream);
      }
    }
    headIn = true;
    if (head.kind === 'error') {
      this.sendError(req, res, head.code, head.detail);
      stream.resume();
      return;
    }
    // beam-path is Beam's to set: an origin's own is dropped.
    let pairs = endToEndHeaders(head.headers.flat()).filter(([k]) => k.toLowerCase() !== 'beam-path');
    // An app's cookies stay on its own host: a Domain wider than the share's would reach every other share.
    pairs = scopeSetCookies(pairs, req.headers.host ?? '');
    // The app in the frame of the share's own bootstrap page (browser-client/): framing by the share itself is allowed.
    if (inBeamFrame(req)) pairs = frameableHeaders(pairs);
    let firstDocumentText: { locals: string[]; origin: string } | undefined;
    if (stage) {
      const origin = firstDocument ? pairs.find(([k]) => k.toLowerCase() === 'beam-origin')?.[1] : undefined;
      if (firstDocument) pairs = pairs.filter(([k]) => k.toLowerCase() !== 'beam-origin');
      const setCookie = pairs.filter(([k]) => k.toLowerCase() === 'set-cookie').map(([, v]) => v);
      this.firstStage?.stages.answered(
        stage,
        requestHead.target,
        setCookie,
        firstDocument ? { status: head.status, ...(origin ? { origin } : {}) } : undefined,
      );
      answered?.();
      // The stage's later requests carry its cookie: the document's, and the next hop of a redirect (which keeps the stage).
      if (top) pairs.push(['Set-Cookie', FirstStages.cookie(top)]);
      if (firstDocument) {
        const shareOrigin = `${this.visitorScheme(req)}://${req.headers.host ?? ''}`;
        const locals = origin ? localForms(origin) : [];
        // Top-level, a redirect off the share is the browser's to follow, as it is.
        const away = top ? undefined : offShare(head.status, pairs, new URL(requestHead.target, shareOrigin), shareOrigin, locals);
        if (away) {
          // The app sends the browser to another site (a sign-in's provider, whose pages refuse frames): the
          // whole tab goes there, as the page sends it for the app's later navigations.
          leaveShare(res, pairs, away);
          stream.resume();
          return;
        }
        if (rewritable(req, head.status, pairs)) {
          firstDocumentText = { locals, origin: shareOrigin };
          pairs = pairs.filter(([k]) => k.toLowerCase() !== 'content-length');
          // The loader goes in: the browser's next navigations get the bootstrap.
          if (top) pairs.push(['Set-Cookie', PAGE_MARKER]);
        }
      }
    }
    const encoding = this.options.compress ? chooseEncoding(req.method ?? 'GET', req.headers, head.status, pairs) : undefined;
    if (encoding) pairs = compressedHeaders(pairs, encoding);
    const flat = pairs.flat();
    flat.push('beam-path', this.streamFacts.get(stream)?.beamPath ?? 'unknown');
    if (!pairs.some(([k]) => k.toLowerCase() === 'x-request-id')) flat.push('X-Request-Id', requestIdOf(req));
    if (head.end && req.httpVersionMajor === 2) {
      // A response that is its head (gRPC's trailers-only answer) ends with its HEADERS frame here too.
      try {
        endWithHead(res, head.status, flat);
      } catch (err) {
        this.sendError(req, res, 'BEAM_ERR_BAD_MESSAGE', (err as Error).message);
      }
      stream.resume();
      return;
    }
    try {
      // HTTP/2 has no reason phrase.
      if (req.httpVersionMajor === 2) res.writeHead(head.status, flat);
      else res.writeHead(head.status, head.statusText, flat);
    } catch (err) {
      // A header the agent sent that Node refuses to write (invalid characters).
      this.sendError(req, res, 'BEAM_ERR_BAD_MESSAGE', (err as Error).message);
      stream.destroy();
      return;
    }
    // A streaming response (SSE) must not wait for its first body chunk: send
    // the head now unless body bytes are already here to go out with it.
    if (stream.readableLength === 0 && !stream.readableEnded) res.flushHeaders();
    let source: Readable = stream;
    if (head.framed) {
      // The body's records; the trailers go out after its last byte.
      const records = new BodyDeframer();
      records.once('trailers', (pairs: HeaderPairList) => {
        const trailers = trailerObject(pairs);
        if (!trailers) return;
        try {
          res.addTrailers(trailers);
        } catch {
          // A trailer Node refuses to write (invalid characters) is dropped, not sent raw.
        }
      });
      records.on('error', () => {
        res.destroy();
        stream.destroy();
      });
      source = stream.pipe(records);
    }
    if (firstDocumentText && this.firstStage) {
      const script = top && this.firstStage.loader ? `${this.firstStage.loader}\n${this.firstStage.shim}` : this.firstStage.shim;
      const rewrite = new FirstDocument(script, firstDocumentText.locals, firstDocumentText.origin);
      rewrite.on('error', () => res.destroy());
      source = source.pipe(rewrite);
    }
    if (!encoding) {
      source.pipe(res);
      return;
    }
    const compress = compressor(encoding);
    compress.on('error', () => res.destroy());
    source.pipe(compress).pipe(res);
  }

  /**
   * A share's browser page opens its bridge (gateway/bridge.ts): its
   * multiplexer on this WebSocket, each of its streams carried to the agent.
   * Only the share's own page (its Origin) gets one.
   */
  handleBridge(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const share = this.route(req.headers.host);
    const client = bridgeClient(req, 'encrypted' in req.socket && req.socket.encrypted === true, this.options.trustProxy ?? false);
    socket.on('error', () => socket.destroy());
    if (!share || !client) {
      sendRawError(req.headers, socket, 'BEAM_ERR_FORBIDDEN', "the bridge is for the share's own page");
      return;
    }
    this.bridges.handleUpgrade(req, socket, head, (ws) => {
      this.bridgesOpen++;
      const mux = new Mux(new SocketChannel(ws), { role: 'responder' });
      let open = 0;
      mux.on('stream', (stream) => {
        if (open >= BRIDGE_MAX_STREAMS) {
          stream.on('error', () => {});
          stream.destroy(new BeamError('BEAM_ERR_TOO_MANY_STREAMS', `${BRIDGE_MAX_STREAMS} streams at once on one bridge`));
          return;
        }
        open++;
        // Free once the request and its response have ended (the page may still be reading the tail), or it closed.
        let held = true;
        const release = (): void => {
          if (held) open--;
          held = false;
        };
        stream.once('close', release);
        this.bridgeStreams++;
        void bridgeStream(stream, client, newRequestId(), () => this.openStream(share), release);
      });
      mux.on('close', () => ws.close());
      ws.once('close', () => {
        this.bridgesOpen--;
        mux.close();
      });
    });
  }

  /** Handles an upgrade request (WebSocket) by splicing the client's socket to a stream. */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, rest: Buffer): Promise<void> {
    if (
      String(req.headers.upgrade ?? '')
        .trim()
        .toLowerCase() === 'h2c'
    ) {
      this.declineH2cUpgrade(req, socket);
      return;
    }
    // A WebSocket the app's first document opens before its page carries it is the page's first stage too.
    this.track(socket, undefined, this.firstStage?.stages.of(req.headers.cookie) !== undefined);
    socket.on('error', () => socket.destroy());
    const opened = await this.streamFor(req);
    if (!(opened instanceof Duplex)) {
      sendRawError(req.headers, socket, opened.code, opened.detail);
      return;
    }
    const stream = opened;
    stream.on('error', () => socket.destroy());
    socket.on('close', () => stream.destroy());
    let head: ResponseHead;
    try {
      head = await exchange(stream, this.requestHead(req, true), rest, { end: false });
    } catch (err) {
      const { code, detail } = this.failure(req, err);
      sendRawError(req.headers, socket, code, detail);
      stream.destroy();
      return;
    }
    if (head.kind === 'error') {
      sendRawError(req.headers, socket, head.code, head.detail);
      return;
    }
    const headers = scopeSetCookies(head.status === 101 ? head.headers : endToEndHeaders(head.headers.flat()), req.headers.host ?? '');
    // The agent's words go out raw here, so each is checked as Node checks a response it writes itself:
    // a CR or LF from a malicious agent would add headers, or a response, of its choosing.
    const invalid = rawResponseProblem(head.statusText, headers);
    if (invalid) {
      sendRawError(req.headers, socket, 'BEAM_ERR_BAD_MESSAGE', invalid);
      stream.destroy();
      return;
    }
    let text = `HTTP/1.1 ${head.status} ${head.statusText ?? ''}\r\n`;
    for (const [k, v] of headers) text += `${k}: ${v}\r\n`;
    if (head.status !== 101) text += 'connection: close\r\n';
    socket.write(`${text}\r\n`);
    stream.pipe(socket);
    if (head.status === 101) socket.pipe(stream);
  }

  /**
   * `Upgrade: h2c` (what `curl --http2` sends on http://) is answered over
   * HTTP/1.1 as if the upgrade had not been asked: RFC 9113 deprecates it,
   * and HTTP/2 on a plain port is offered by prior knowledge instead. The
   * request is served whole, on a response of its own on the socket Node
   * handed over; one with a body is refused (its bytes are past the parser).
   */
  private declineH2cUpgrade(req: IncomingMessage, socket: Duplex): void {
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    res.once('finish', () => socket.end());
    socket.on('error', () => socket.destroy());
    if (hasBody(req)) {
      this.track(res, req);
      this.sendError(req, res, 'BEAM_ERR_BAD_REQUEST', 'a body with Upgrade: h2c; use HTTP/2 with prior knowledge (curl --http2-prior-knowledge), or HTTP/1.1');
      return;
    }
    void this.handleRequest(req, res);
  }

  /** What a visitor is told when the gateway, not the app, fails a request. */
  private failure(req: IncomingMessage, err: unknown): { code: ErrorCode; detail?: string } {
    let code = errorCodeOf(err) ?? 'BEAM_ERR_AGENT_UNREACHABLE';
    // Inside the gateway these all mean the same to a visitor: the agent can't be reached.
    if (code === 'BEAM_ERR_PEER_GONE' || code === 'BEAM_ERR_STREAM_RESET' || code === 'BEAM_ERR_BAD_MESSAGE') code = 'BEAM_ERR_AGENT_UNREACHABLE';
    const detail = err instanceof BeamError ? err.detail : undefined;
    this.log.debug({ code, host: req.headers.host, err: detail }, 'request failed');
    return { code, detail };
  }

  /**
   * A request of a page's first stage: the page's collection waits for its
   * response head (the result ends the wait; handleRequest reports the head).
   * For the app's first document, an answer Beam gave instead of the app (an
   * error page) is reported when the response ends.
   */
  private watchFirstStage(stage: FirstStage, req: IncomingMessage, res: ServerResponse, firstDocument: boolean): (() => void) | undefined {
    const stages = this.firstStage?.stages;
    if (!stages) return undefined;
    const done = stages.started(stage);
    res.once('close', () => {
      const error = res.getHeader('beam-error');
      if (firstDocument && error !== undefined) stages.answered(stage, originForm(req.url), [], { status: res.statusCode, error: String(error) });
      done();
    });
    return done;
  }

  private answerFailure(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const { code, detail } = this.failure(req, err);
    this.sendError(req, res, code, detail);
  }

  /**
   * The gateway's own error answer, with the request id. (Only here: a
   * header set ahead of the success path's raw writeHead would make Node fold
   * repeated headers such as Set-Cookie.)
   */
  private sendError(req: IncomingMessage, res: ServerResponse, code: ErrorCode, detail?: string): void {
    if (!res.headersSent) res.setHeader('X-Request-Id', requestIdOf(req));
    sendError(req.headers, res, code, detail);
  }

  close(): void {
    this.pool.close();
  }
}

/**
 * Answers the app's first document in a page's first stage, which redirects
 * off the share, with a document that sends the whole tab there. The app's
 * cookies go with it.
 */
function leaveShare(res: ServerResponse, pairs: Array<[string, string]>, away: string): void {
  const body = Buffer.from(`<!doctype html><meta charset="utf-8"><script>top.location.href = ${JSON.stringify(away).replace(/</g, '\\u003c')};</script>`);
  const head = ['content-type', 'text/html; charset=utf-8', 'content-length', String(body.byteLength), 'cache-control', 'no-store'];
  for (const [k, v] of pairs) if (k.toLowerCase() === 'set-cookie') head.push(k, v);
  res.writeHead(200, head);
  res.end(body);
}

/**
 * The client's header lines as Node's rawHeaders: an HTTP/2 request's
 * pseudo-headers are not headers, and its :authority (which the HTTP entry
 * has put in `host`) stands as the Host line.
 */
function clientRawHeaders(req: IncomingMessage): string[] {
  if (req.httpVersionMajor !== 2) return req.rawHeaders;
  const out: string[] = [];
  let host = false;
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] as string;
    if (name.startsWith(':')) continue;
    if (name.toLowerCase() === 'host') host = true;
    out.push(name, req.rawHeaders[i + 1] as string);
  }
  if (!host && req.headers.host) out.unshift('Host', req.headers.host);
  return out;
}

/**
 * A body follows the head: HTTP/1.1 says so by Transfer-Encoding or a
 * non-zero Content-Length; HTTP/2 by a HEADERS frame without END_STREAM.
 */
function hasBody(req: IncomingMessage): boolean {
  if (req.httpVersionMajor === 2) {
    const stream = (req as unknown as { stream: { endAfterHeaders: boolean } }).stream;
    return !stream.endAfterHeaders && (req.headers['content-length'] ?? '') !== '0';
  }
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
}

/**
 * The response closed before it was done: the client went away. (An HTTP/2
 * stream the client reset is ended by Node as it closes, so there the reset
 * code tells, not whether the response finished.)
 */
/** The client is gone already (a request Node's parser refused, a socket closed), before an exchange starts. */
function clientGone(req: IncomingMessage, res: ServerResponse): boolean {
  if (res.destroyed || req.destroyed) return true;
  // HTTP/1: the connection is the request's. (An HTTP/2 stream says so through its response.)
  return req.httpVersionMajor === 1 && req.socket.destroyed;
}

function clientLeft(res: ServerResponse): boolean {
  const h2stream = (res as unknown as { stream?: { rstCode?: number } }).stream;
  if (h2stream !== undefined && typeof h2stream.rstCode === 'number' && h2stream.rstCode !== 0) return true;
  return !res.writableFinished;
}

/** Sends a response with no body, its head and end in one: on HTTP/2, one HEADERS frame with END_STREAM. */
function endWithHead(res: ServerResponse, status: number, flat: string[]): void {
  const fields = new Map<string, string[]>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    const values = fields.get(name);
    if (values) values.push(flat[i + 1] as string);
    else fields.set(name, [flat[i + 1] as string]);
  }
  res.statusCode = status;
  for (const [name, values] of fields) res.setHeader(name, values.length === 1 ? (values[0] as string) : values);
  res.end();
}

/** How many times a header occurs in Node's rawHeaders. */
function countHeader(rawHeaders: readonly string[], lower: string): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) if ((rawHeaders[i] as string).toLowerCase() === lower) n++;
  return n;
}

/** reason-phrase = *( HTAB / SP / VCHAR / obs-text ), RFC 9112 section 4. */
const REASON_PHRASE = /^[\t \x21-\x7e\x80-\xff]*$/;

/** Why a response head can't be written raw (a status text or header the agent sent is not valid HTTP), or undefined. */
export function rawResponseProblem(statusText: string | undefined, headers: ReadonlyArray<readonly [string, string]>): string | undefined {
  if (statusText !== undefined && !REASON_PHRASE.test(statusText)) return 'the status text has characters HTTP does not allow';
  for (const [name, value] of headers) {
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      return `header ${JSON.stringify(name.slice(0, 40))} has characters HTTP does not allow`;
    }
  }
  return undefined;
}

const requestIds = new WeakMap<IncomingMessage, string>();

/**
 * A request's id: the client's own X-Request-Id when it is a plain token
 * (a chain of proxies keeps one id), else a new random one.
 */
export function requestIdOf(req: IncomingMessage): string {
  let id = requestIds.get(req);
  if (id === undefined) {
    const offered = req.headers['x-request-id'];
    id = typeof offered === 'string' && /^[A-Za-z0-9._:-]{8,64}$/.test(offered) ? offered : newRequestId();
    requestIds.set(req, id);
  }
  return id;
}
