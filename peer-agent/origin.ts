/**
 * Forwards one HTTP stream to the share's origin, and only there: the visitor
 * chooses the method, path and headers, never the host or port.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { BeamError, ERRORS, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import {
  decodeRequestHead,
  encodeHead,
  endToEndHeaders,
  endToEndPairs,
  FORWARDING_HEADERS,
  newRequestId,
  type RequestHead,
  readHead,
} from '../shared/http-head.js';
import { type BasicCredentials, type IpRules, type RateLimit, stripSecret, type VisitorLimit } from './access.js';
import { admit } from './admission.js';
import { holdToLength } from './framing.js';
import type { Capture, HeaderPairs, Inspector, RequestPath } from './inspect.js';
import { serveWebSocket } from './websocket.js';

export interface Origin {
  host: string;
  port: number;
}

export interface OriginOptions {
  /** 'rewrite' (default) sets Host to the origin's own, as dev servers such as Vite expect; 'preserve' keeps the visitor's. */
  hostHeader: 'rewrite' | 'preserve';
  /** How long to wait for the origin's response head. */
  timeoutMs: number;
  /** --auth: HTTP basic auth every visitor must pass, on every path. */
  basicAuth?: BasicCredentials;
  /** --allow-ip / --deny-ip. */
  ipRules?: IpRules;
  /** --rate-limit. */
  rateLimit?: RateLimit;
  /** --max-visitors: gateway visitors are counted here, by client address. */
  visitorLimit?: VisitorLimit;
  /**
   * A private share: its secret (parameter, cookie, header) is cut from every
   * request on every path, so neither the origin nor the inspector sees it,
   * even from a visitor that proved it in the handshake instead.
   */
  privateShare?: boolean;
}

/** Who sent a request, and how it came. */
export interface RequestContext {
  /** True only for the server's own gateway: any other visitor's X-Forwarded-*, Forwarded and X-Real-IP are dropped. */
  trustForwarded: boolean;
  /** A private share's secret, when this request must prove it (gateway requests; others did in the handshake). */
  secret?: string | undefined;
  /** A peer-to-peer visitor's address, for IP rules; a gateway request's is the X-Forwarded-For the gateway set. */
  visitorAddress?: string | undefined;
  /** Who --rate-limit counts a peer-to-peer request against (its session). */
  visitorKey?: string | undefined;
  /** How the request travelled, for the inspector. */
  path: RequestPath;
  /** A browser page (browser-client/) is told the origin's address, so it can point the app's localhost URLs at the share. */
  browser?: boolean | undefined;
}

/** An edited request to replay; what is left out is taken from the captured exchange. */
export interface ReplayEdits {
  method?: string | undefined;
  target?: string | undefined;
  headers?: HeaderPairs | undefined;
  body?: Buffer | undefined;
}

export interface OriginEvents {
  /** Called when the origin refuses a connection: the CLI prints a line. */
  onUnreachable(err: NodeJS.ErrnoException): void;
}

/** A request id the agent takes from the gateway: a plain token, as the gateway makes or accepts them. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{8,64}$/;

/** The audit log's word for a refusal: a limit hit, or someone kept out; a malformed request is merely refused. */
const AUDIT: Partial<Record<ErrorCode, 'limit.hit' | 'auth.refused'>> = {
  BEAM_ERR_RATE_LIMITED: 'limit.hit',
  BEAM_ERR_MAX_VISITORS: 'limit.hit',
  BEAM_ERR_FORBIDDEN: 'auth.refused',
  BEAM_ERR_PRIVATE: 'auth.refused',
  BEAM_ERR_UNAUTHORIZED: 'auth.refused',
};

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT']);

export class OriginForwarder {
  private readonly origin: Origin;
  private readonly options: OriginOptions;
  private readonly events: OriginEvents;
  private readonly log: Logger;
  private readonly inspector: Inspector | undefined;
  // `localhost` may be ::1 or 127.0.0.1: Node tries both, but gives each only
  // 250 ms by default, too little for a busy machine.
  private readonly agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64, autoSelectFamilyAttemptTimeout: 2_000 } as http.AgentOptions);

  constructor(components: { logger: Logger; events: OriginEvents; inspector?: Inspector | undefined }, origin: Origin, options: OriginOptions) {
    this.origin = origin;
    this.options = options;
    this.events = components.events;
    this.log = components.logger;
    this.inspector = components.inspector;
  }

  get hostPort(): string {
    return `${this.origin.host.includes(':') ? `[${this.origin.host}]` : this.origin.host}:${this.origin.port}`;
  }

  close(): void {
    this.agent.destroy();
  }

  /** Serves one HTTP stream; never throws: failures become an error head or a reset. */
  async serve(stream: Duplex, context: RequestContext): Promise<void> {
    const { trustForwarded, secret } = context;
    let head: RequestHead;
    try {
      head = decodeRequestHead(await readHead(stream));
    } catch (err) {
      stream.destroy(err instanceof BeamError ? err : new BeamError('BEAM_ERR_BAD_MESSAGE'));
      return;
    }
    let headers = endToEndPairs(head.headers, trustForwarded ? undefined : FORWARDING_HEADERS);
    const forwardedFor = trustForwarded ? headers.find(([k]) => k.toLowerCase() === 'x-forwarded-for')?.[1] : undefined;
    // The gateway's request id, so its log and this one line up; a peer-to-peer request gets one here.
    // Exactly one id reaches the origin: a second X-Request-Id (a visitor's own beside the gateway's) never does.
    const offeredIds = headers.filter(([k]) => k.toLowerCase() === 'x-request-id');
    const offeredId = offeredIds.length === 1 ? offeredIds[0]?.[1] : undefined;
    const requestId = offeredId !== undefined && REQUEST_ID.test(offeredId) ? offeredId : newRequestId();
    if (offeredIds.length > 0) headers = headers.filter(([k]) => k.toLowerCase() !== 'x-request-id');
    headers.push(['X-Request-Id', requestId]);
    const private_ = secret !== undefined || this.options.privateShare === true;
    const capture = this.inspector ? this.record(head.method, head.target, headers, private_, context, forwardedFor) : undefined;
    /** Beam answers instead of the origin: an error head, or a response of its own. */
    const refuse = (code: ErrorCode, response?: { status: number; statusText: string; headers: HeaderPairs; body: string }): void => {
      if (response) {
        stream.write(encodeHead({ kind: 'response', ...response, headers: [...response.headers, ['beam-error', code]] }));
        stream.end(response.body);
      } else {
        stream.end(encodeHead({ kind: 'error', code }));
      }
      stream.resume();
      capture?.fail(code, response?.status ?? ERRORS[code].status);
      // The audit log: who was kept out, or which limit was hit. The path only: a query may hold secrets.
      this.log.info(
        {
          audit: AUDIT[code] ?? 'refused',
          code,
          req: requestId,
          visitor: (trustForwarded ? forwardedFor : context.visitorAddress) ?? context.visitorKey,
          path: context.path,
          method: head.method,
          target: head.target.split('?')[0],
        },
        'request refused',
      );
    };
    const admission = await admit(
      {
        target: head.target,
        headers,
        body: head.body,
        upgrade: head.upgrade,
        trustForwarded,
        forwardedFor,
        visitorAddress: context.visitorAddress,
        visitorKey: context.visitorKey,
        secret,
      },
      {
        ipRules: this.options.ipRules,
        basicAuth: this.options.basicAuth,
        rateLimit: this.options.rateLimit,
        visitorLimit: this.options.visitorLimit,
        privateShare: private_,
      },
    );
    if (!admission.ok) {
      refuse(admission.refusal.code, admission.refusal.response);
      return;
    }
    const { target, framing, setCookie } = admission;
    headers = admission.headers;
    if (this.options.hostHeader === 'rewrite') {
      headers = headers.filter(([k]) => k.toLowerCase() !== 'host');
      headers.unshift(['Host', this.hostPort]);
    }
    if (head.upgrade) {
      const upgrade = head.headers.find(([k]) => k.toLowerCase() === 'upgrade');
      if (upgrade) headers.push(['Connection', 'Upgrade'], ['Upgrade', upgrade[1]]);
    }
    capture?.forwarded(target, headers);
    if (head.websocket) {
      serveWebSocket(
        stream,
        target,
        headers,
        { hostPort: this.hostPort, timeoutMs: this.options.timeoutMs, log: this.log, onUnreachable: (err) => this.events.onUnreachable(err) },
        capture,
        requestId,
      );
      return;
    }

    const open = (): http.ClientRequest =>
      http.request({
        host: this.origin.host,
        port: this.origin.port,
        method: head.method,
        path: target,
        headers: headers.flat(),
        agent: head.upgrade ? false : this.agent,
        setHost: false,
        autoSelectFamilyAttemptTimeout: 2_000,
      } as http.RequestOptions);
    let req = open();
    // waiting -> (error-sent | responding | upgraded): once an answer went out, later
    // failures can only reset the stream, and an error head is final.
    let state: 'waiting' | 'error-sent' | 'responding' | 'upgraded' = 'waiting';
    const fail = (code: ErrorCode, detail: string): void => {
      if (state !== 'waiting') return;
      state = 'error-sent';
      stream.end(encodeHead({ kind: 'error', code, detail }));
      capture?.fail(code, ERRORS[code].status);
      this.log.info({ req: requestId, code, detail }, 'request failed');
    };
    // The clock runs from the moment the whole request is at the origin: a
    // long upload is not a slow origin.
    let timer: NodeJS.Timeout | undefined;
    let retried = false;
    const wire = (r: http.ClientRequest): void => {
      r.on('finish', () => {
        if (state !== 'waiting') return;
        timer = setTimeout(() => {
          fail('BEAM_ERR_ORIGIN_TIMEOUT', `no response from ${this.hostPort} within ${this.options.timeoutMs} ms`);
          req.destroy();
        }, this.options.timeoutMs);
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
        if (state === 'waiting' && !retried && !head.body && !head.upgrade && r.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          retried = true;
          this.log.debug({ req: requestId, code: err.code }, 'pooled origin socket was closed; retrying on a new one');
          req = open();
          wire(req);
          req.end();
          return;
        }
        if (err.code && UNREACHABLE.has(err.code)) this.events.onUnreachable(err);
        fail(
          'BEAM_ERR_ORIGIN_UNREACHABLE',
          err.code && UNREACHABLE.has(err.code) ? `nothing answered on ${this.hostPort} (${err.code})` : `${this.hostPort}: ${err.code ?? err.message}`,
        );
      });

      r.on('response', (res) => {
        clearTimeout(timer);
        if (state !== 'waiting') {
          res.destroy();
          return;
        }
        state = 'responding';
        this.log.debug({ req: requestId, path: context.path, method: head.method, target: target.split('?')[0], status: res.statusCode }, 'forwarded');
        // What the origin said is what the inspector shows; Beam's own headers (its secret cookie above all) never are.
        const originHeaders: HeaderPairs = endToEndHeaders(res.rawHeaders);
        const responseHeaders: HeaderPairs = setCookie ? [...originHeaders, ['Set-Cookie', setCookie]] : [...originHeaders];
        if (context.browser) responseHeaders.push(['beam-origin', this.hostPort]);
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
      this.log.debug({ code: errorCodeOf(err) }, 'stream ended early');
      capture?.fail(errorCodeOf(err) ?? 'BEAM_ERR_STREAM_RESET');
      req.destroy();
    });
    if (head.upgrade) {
      // An upgrade request has no body: what follows on the stream belongs to
      // the upgraded connection and is spliced once the origin says 101.
      req.end();
    } else if (framing.kind === 'chunked' || (framing.kind === 'length' && head.body)) {
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

  /** Starts recording an exchange for the inspector, with any secret cut out and credentials masked. */
  private record(
    method: string,
    target: string,
    headers: HeaderPairs,
    private_: boolean,
    context: RequestContext,
    forwardedFor: string | undefined,
  ): Capture | undefined {
    const shown = private_ ? stripSecret(target, headers) : { target, headers };
    return this.inspector?.begin({
      method,
      target: shown.target,
      headers: shown.headers.map(([k, v]) => (k.toLowerCase() === 'authorization' ? [k, `${v.split(' ')[0] ?? ''} [hidden]`] : [k, v])),
      visitor: (context.trustForwarded ? forwardedFor : context.visitorAddress) ?? context.visitorKey ?? 'unknown',
      path: context.path,
    });
  }

  /**
   * Sends a captured exchange's request to the origin again, as it was or
   * edited, and records the replay as an exchange of its own. Resolves with
   * the replay's id once the origin's response head arrived, or rejects with
   * a BeamError. Like every request, it goes to the configured origin only.
   */
  replay(id: string, edits: ReplayEdits = {}): Promise<string> {
    const inspector = this.inspector;
    const original = inspector?.get(id);
    if (!inspector || !original) return Promise.reject(new BeamError('BEAM_ERR_EXCHANGE_GONE', `request ${id}`));
    if (edits.body === undefined && original.requestBody.truncated) return Promise.reject(new BeamError('BEAM_ERR_REPLAY_TRUNCATED', `request ${id}`));
    const method = edits.method ?? original.method;
    const target = edits.target ?? original.target;
    const body = edits.body ?? original.requestBody.bytes;
    // Beam sets the framing: the body as it is now decides Content-Length.
    const headers = endToEndPairs(edits.headers ?? original.requestHeaders).filter(([k]) => k.toLowerCase() !== 'content-length');
    if (body.byteLength > 0 || original.requestHeaders.some(([k]) => k.toLowerCase() === 'content-length'))
      headers.push(['Content-Length', String(body.byteLength)]);
    // HTTP/1.1 needs a Host; an edit that dropped it gets the origin's.
    if (!headers.some(([k]) => k.toLowerCase() === 'host')) headers.unshift(['Host', this.hostPort]);
    const capture = inspector.begin({ method, target, headers, visitor: 'inspector', path: 'replay', replayOf: id });
    capture.requestChunk(body);
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: this.origin.host,
        port: this.origin.port,
        method,
        path: target,
        headers: headers.flat(),
        agent: this.agent,
        setHost: false,
        autoSelectFamilyAttemptTimeout: 2_000,
      } as http.RequestOptions);
      const timer = setTimeout(() => {
        req.destroy();
        capture.fail('BEAM_ERR_ORIGIN_TIMEOUT', 504);
        reject(new BeamError('BEAM_ERR_ORIGIN_TIMEOUT', `no response from ${this.hostPort} within ${this.options.timeoutMs} ms`));
      }, this.options.timeoutMs);
      timer.unref();
      req.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        capture.fail('BEAM_ERR_ORIGIN_UNREACHABLE', 502);
        reject(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', `${this.hostPort}: ${err.code ?? err.message}`));
      });
      req.on('response', (res) => {
        clearTimeout(timer);
        capture.response(res.statusCode ?? 502, res.statusMessage, endToEndHeaders(res.rawHeaders));
        res.on('data', (chunk: Buffer) => capture.responseChunk(chunk));
        res.on('end', () => capture.finish());
        res.on('error', () => capture.fail('BEAM_ERR_ORIGIN_UNREACHABLE'));
        resolve(capture.id);
      });
      req.end(body);
    });
  }
}
