import type { Duplex, Readable } from 'node:stream';
import type { Logger } from 'pino';
import { BodyDeframer } from '../shared/body-records.js';
import { BRIDGE_HEADER, MAX_WEBHOOK_BODY_BYTES, PAGE_SCHEME_HEADER } from '../shared/constants.js';
import { BeamError, ERRORS, type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { endToEndHeaders, endToEndPairs, FORWARDING_HEADERS, newRequestId, type RequestHead, readRequestHead, writeHead } from '../shared/http-head.js';
import { type BasicCredentials, type IpRules, type RateLimit, stripSecret, type VisitorLimit } from './access.js';
import { admit } from './admission.js';
import { readWhole } from './framing.js';
import { type HeaderRules, requestHeaders, responseHeaders } from './header-rules.js';
import type { Capture, HeaderPairs, Inspector, RequestPath } from './inspect.js';
import { forward, type Origin, OriginIo, type OriginProtocol, originRequest } from './origin-io.js';
import { forwardPooled, poolCarries, warmPool } from './origin-pool.js';
import type { PolicyRule } from './policy.js';
import type { SignIn } from './sign-in.js';
import { type WebhookVerifier, webhookProblem } from './webhooks.js';
import { serveWebSocket } from './websocket.js';

export type { Origin } from './origin-io.js';

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
  /** --app-protocol, --origin-ca, --origin-insecure. */
  protocol?: OriginProtocol | undefined;
  /** --request-header-add/remove, --response-header-add/remove. */
  headerRules?: HeaderRules | undefined;
  /** --oidc: visitors sign in with a provider first (peer-agent/sign-in.ts). */
  signIn?: SignIn | undefined;
  /** The share's policy rules (beam.yml `policy:`), run after the flags' checks. */
  policy?: readonly PolicyRule[] | undefined;
  /** --verify-webhook: every request must carry a valid signature over its body. */
  webhook?: WebhookVerifier | undefined;
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

export class OriginForwarder {
  private readonly options: OriginOptions;
  private readonly events: OriginEvents;
  private readonly log: Logger;
  private readonly inspector: Inspector | undefined;
  /** The origin's connections (peer-agent/origin-io.ts). */
  private readonly io: OriginIo;

  constructor(components: { logger: Logger; events: OriginEvents; inspector?: Inspector | undefined }, origin: Origin, options: OriginOptions) {
    this.options = options;
    this.events = components.events;
    this.log = components.logger;
    this.inspector = components.inspector;
    this.io = new OriginIo(origin, {
      timeoutMs: options.timeoutMs,
      log: components.logger,
      onUnreachable: (err) => components.events.onUnreachable(err),
      protocol: options.protocol,
    });
    void warmPool();
  }

  get hostPort(): string {
    return this.io.hostPort;
  }

  close(): void {
    this.io.close();
  }

  /** Serves one HTTP stream: reads its head, admits it (or refuses), and forwards it; never throws: failures become an error head or a reset. */
  async serve(stream: Duplex, context: RequestContext): Promise<void> {
    const { trustForwarded, secret } = context;
    let head: RequestHead;
    try {
      head = await readRequestHead(stream);
    } catch (err) {
      stream.destroy(err instanceof BeamError ? err : new BeamError('BEAM_ERR_BAD_MESSAGE'));
      return;
    }
    let headers = endToEndPairs(head.headers, trustForwarded ? undefined : FORWARDING_HEADERS);
    // The gateway's bridge carries a browser page's requests (gateway/bridge.ts): answered as a page's. Only the gateway may say so.
    if (headers.some(([k]) => k.toLowerCase() === BRIDGE_HEADER)) {
      headers = headers.filter(([k]) => k.toLowerCase() !== BRIDGE_HEADER);
      if (trustForwarded) context = { ...context, browser: true };
    }
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
    const refuse = (code: ErrorCode, response?: { status: number; statusText: string; headers: HeaderPairs; body: string }, detail?: string): void => {
      if (response) {
        writeHead(stream, { kind: 'response', ...response, headers: [...response.headers, ['beam-error', code]] });
        stream.end(response.body);
      } else {
        writeHead(stream, { kind: 'error', code, ...(detail ? { detail: detail.slice(0, 1000) } : {}) }, true);
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
        method: head.method,
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
        rules: this.options.policy,
      },
    );
    /** The share's own answer (a policy's redirect, a sign-in step), not a refusal. */
    const answer = (status: number, statusText: string, answerHeaders: HeaderPairs, body: string): void => {
      writeHead(stream, { kind: 'response', status, statusText, headers: answerHeaders });
      stream.end(body);
      stream.resume();
      capture?.response(status, statusText, answerHeaders);
      capture?.responseChunk(Buffer.from(body));
      capture?.finish();
    };
    if (!admission.ok) {
      const { refusal } = admission;
      if (refusal.answer && refusal.response) {
        const { status, statusText, headers: answerHeaders, body } = refusal.response;
        answer(status, statusText, answerHeaders, body);
        return;
      }
      refuse(refusal.code, refusal.response);
      return;
    }
    const { target, framing, setCookie } = admission;
    // The page's scheme is for the sign-in below: never the origin's to see.
    headers = admission.headers.filter(([k]) => k.toLowerCase() !== PAGE_SCHEME_HEADER);
    if (this.options.hostHeader === 'rewrite') {
      headers = headers.filter(([k]) => k.toLowerCase() !== 'host');
      headers.unshift(['Host', this.hostPort]);
    }
    if (head.upgrade) {
      const upgrade = head.headers.find(([k]) => k.toLowerCase() === 'upgrade');
      if (upgrade) headers.push(['Connection', 'Upgrade'], ['Upgrade', upgrade[1]]);
    }
    // Sign-in (--oidc): the agent's own flow, on the share's host as the visitor's browser sees it.
    const signIn = this.options.signIn;
    if (signIn) {
      const proto = trustForwarded ? headers.find(([k]) => k.toLowerCase() === 'x-forwarded-proto')?.[1] : undefined;
      const forwardedHost = trustForwarded ? headers.find(([k]) => k.toLowerCase() === 'x-forwarded-host')?.[1] : undefined;
      // Where the browser is: as the server's gateway saw it, or, for a browser page peer to peer, its Host and
      // scheme. (A page that names another host only sends its own browser there; the provider checks the
      // redirect URI.) A `beam connect` visitor has no browser to send to the provider.
      const visitorHeader = (name: string): string | undefined => head.headers.find(([k]) => k.toLowerCase() === name)?.[1];
      const pageScheme = context.browser ? visitorHeader(PAGE_SCHEME_HEADER) : undefined;
      const pageHost = context.browser ? visitorHeader('host') : undefined;
      const base =
        forwardedHost && (proto === 'http' || proto === 'https')
          ? { scheme: proto as 'http' | 'https', host: forwardedHost }
          : pageHost && (pageScheme === 'http' || pageScheme === 'https')
            ? { scheme: pageScheme as 'http' | 'https', host: pageHost }
            : undefined;
      const outcome = await signIn.handle({ method: head.method, target, headers, base });
      if (outcome.kind === 'refuse') {
        refuse(outcome.code, undefined, outcome.detail);
        return;
      }
      if (outcome.kind === 'answer') {
        answer(outcome.status, outcome.status === 302 ? 'Found' : 'OK', outcome.headers, outcome.body);
        return;
      }
      headers = outcome.headers;
    }
    // A signed webhook: the body is read whole and its signature checked before the origin sees anything.
    let preread: Buffer | undefined;
    // The share's --verify-webhook, and those of the policy rules that matched.
    const webhooks = this.options.webhook ? [this.options.webhook, ...admission.webhooks] : admission.webhooks;
    if (webhooks.length > 0) {
      let source: Readable = stream;
      if (head.framed && head.body) {
        const records = new BodyDeframer();
        records.on('error', (err) => stream.destroy(err));
        source = stream.pipe(records);
      }
      try {
        preread = await readWhole(source, head.upgrade ? { kind: 'none' } : framing, MAX_WEBHOOK_BODY_BYTES);
      } catch (err) {
        const code = errorCodeOf(err);
        if (code === 'BEAM_ERR_BODY_TOO_LARGE' || code === 'BEAM_ERR_BAD_FRAMING') refuse(code);
        else stream.destroy(err as Error);
        return;
      }
      for (const webhook of webhooks) {
        const problem = webhookProblem(webhook, headers, preread);
        if (problem) {
          this.log.info({ req: requestId, provider: webhook.provider, problem }, 'webhook signature refused');
          refuse('BEAM_ERR_WEBHOOK_SIGNATURE');
          return;
        }
      }
    }
    const rules = this.options.headerRules;
    const ruleContext = { clientIp: (trustForwarded ? forwardedFor : context.visitorAddress) ?? undefined, path: target.split('?')[0] ?? '/' };
    if (rules) headers = requestHeaders(rules, headers, ruleContext);
    capture?.forwarded(target, headers);
    if (head.websocket) {
      serveWebSocket(
        stream,
        target,
        headers,
        {
          hostPort: this.hostPort,
          timeoutMs: this.options.timeoutMs,
          log: this.log,
          onUnreachable: (err) => this.events.onUnreachable(err),
          tls: this.io.scheme === 'https' ? this.io.tls : undefined,
        },
        capture,
        requestId,
      );
      return;
    }

    const forwarded = {
      method: head.method,
      target,
      headers,
      upgrade: head.upgrade,
      body: head.body,
      framed: head.framed === true,
      trailers: head.trailers === true,
      framing,
      setCookie,
      browser: context.browser === true,
      requestId,
      path: context.path,
      capture,
      rewriteResponse:
        rules || admission.responseRules.length > 0
          ? (pairs: HeaderPairs) => {
              let out = rules ? responseHeaders(rules, pairs, ruleContext) : pairs;
              for (const r of admission.responseRules) out = responseHeaders(r, out, ruleContext);
              return out;
            }
          : undefined,
      preread,
    };
    // Upgrades (WebSocket) stay on HTTP/1.1, whatever the origin speaks otherwise.
    if (this.io.appProtocol === 'http2' && !head.upgrade) (await import('./origin-h2.js')).forwardH2(stream, this.io, forwarded);
    else if (poolCarries(forwarded, this.io)) forwardPooled(stream, this.io, forwarded);
    else forward(stream, this.io, forwarded);
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
      const req = originRequest(this.io, method, target, headers, true);
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
