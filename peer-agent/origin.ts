/**
 * Forwards one HTTP stream to the share's origin, and only there: the visitor
 * chooses the method, path and headers, never the host or port.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { BeamError, errorCodeOf, type ErrorCode } from '../shared/errors.js';
import { admit, checkBasic, type BasicCredentials, type IpRules, type RateLimit } from './access.js';
import { decodeRequestHead, encodeHead, endToEndHeaders, endToEndPairs, FORWARDING_HEADERS, readHead, type RequestHead } from '../shared/http-head.js';

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
}

export interface OriginEvents {
  /** Called when the origin refuses a connection: the CLI prints a line. */
  onUnreachable(err: NodeJS.ErrnoException): void;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ETIMEDOUT']);

export class OriginForwarder {
  private readonly origin: Origin;
  private readonly options: OriginOptions;
  private readonly events: OriginEvents;
  private readonly log: Logger;
  // `localhost` may be ::1 or 127.0.0.1: Node tries both, but gives each only
  // 250 ms by default, too little for a busy machine.
  private readonly agent = new http.Agent({ keepAlive: true, maxFreeSockets: 64, autoSelectFamilyAttemptTimeout: 2_000 } as http.AgentOptions);

  constructor(components: { logger: Logger; events: OriginEvents }, origin: Origin, options: OriginOptions) {
    this.origin = origin;
    this.options = options;
    this.events = components.events;
    this.log = components.logger;
  }

  get hostPort(): string {
    return `${this.origin.host.includes(':') ? `[${this.origin.host}]` : this.origin.host}:${this.origin.port}`;
  }

  close(): void {
    this.agent.destroy();
  }

  /**
   * Serves one HTTP stream; never throws: failures become an error head or a
   * reset. `trustForwarded` is true only for the server's own gateway: any
   * other visitor's X-Forwarded-*, Forwarded and X-Real-IP are dropped.
   */
  /**
   * `visitorAddress`: a peer-to-peer visitor's address, for IP rules; a
   * gateway request's is the X-Forwarded-For the gateway set.
   */
  async serve(stream: Duplex, trustForwarded: boolean, secret?: string, visitorAddress?: string, visitorKey?: string): Promise<void> {
    let head: RequestHead;
    try {
      head = decodeRequestHead(await readHead(stream));
    } catch (err) {
      stream.destroy(err instanceof BeamError ? err : new BeamError('BEAM_ERR_BAD_MESSAGE'));
      return;
    }
    let headers = endToEndPairs(head.headers, trustForwarded ? undefined : FORWARDING_HEADERS);
    if (this.options.ipRules) {
      const address = trustForwarded ? headers.find(([k]) => k.toLowerCase() === 'x-forwarded-for')?.[1] : visitorAddress;
      if (!this.options.ipRules.allows(address)) {
        stream.end(encodeHead({ kind: 'error', code: 'BEAM_ERR_FORBIDDEN' }));
        stream.resume();
        return;
      }
    }
    let target = head.target;
    let setCookie: string | undefined;
    if (secret !== undefined) {
      const proto = headers.find(([k]) => k.toLowerCase() === 'x-forwarded-proto')?.[1];
      const admission = admit(target, headers, secret, proto === 'https');
      if (!admission.ok) {
        stream.end(encodeHead({ kind: 'error', code: 'BEAM_ERR_PRIVATE' }));
        stream.resume();
        return;
      }
      ({ target, headers, setCookie } = admission);
    }
    if (this.options.rateLimit) {
      // Per visitor: a gateway client by its address, a peer-to-peer visitor by its session.
      const key = trustForwarded ? `ip:${headers.find(([k]) => k.toLowerCase() === 'x-forwarded-for')?.[1] ?? '?'}` : (visitorKey ?? 'peer');
      const waitMs = await this.options.rateLimit.take(key);
      if (waitMs > 0) {
        stream.write(
          encodeHead({
            kind: 'response',
            status: 429,
            statusText: 'Too Many Requests',
            headers: [['Retry-After', String(Math.ceil(waitMs / 1000))], ['Content-Type', 'text/plain; charset=utf-8'], ['beam-error', 'BEAM_ERR_RATE_LIMITED']],
          }),
        );
        stream.end('Too many requests to this share; retry later.\n');
        stream.resume();
        return;
      }
    }
    if (this.options.basicAuth) {
      const checked = checkBasic(headers, this.options.basicAuth);
      if (!checked.ok) {
        stream.write(
          encodeHead({
            kind: 'response',
            status: 401,
            statusText: 'Unauthorized',
            headers: [['WWW-Authenticate', 'Basic realm="beam", charset="UTF-8"'], ['Content-Type', 'text/plain; charset=utf-8'], ['beam-error', 'BEAM_ERR_UNAUTHORIZED']],
          }),
        );
        stream.end('This share needs a user name and password.\n');
        stream.resume();
        return;
      }
      headers = checked.headers;
    }
    if (this.options.hostHeader === 'rewrite') {
      const i = headers.findIndex(([k]) => k.toLowerCase() === 'host');
      if (i >= 0) headers.splice(i, 1);
      headers.unshift(['Host', this.hostPort]);
    }
    if (head.upgrade) {
      const upgrade = head.headers.find(([k]) => k.toLowerCase() === 'upgrade');
      if (upgrade) headers.push(['Connection', 'Upgrade'], ['Upgrade', upgrade[1]]);
    }

    const req = http.request({
      host: this.origin.host,
      port: this.origin.port,
      method: head.method,
      path: target,
      headers: headers.flat(),
      agent: head.upgrade ? false : this.agent,
      setHost: false,
      autoSelectFamilyAttemptTimeout: 2_000,
    } as http.RequestOptions);
    // waiting -> (error-sent | responding | upgraded): once an answer went out, later
    // failures can only reset the stream, and an error head is final.
    let state: 'waiting' | 'error-sent' | 'responding' | 'upgraded' = 'waiting';
    const fail = (code: ErrorCode, detail: string): void => {
      if (state !== 'waiting') return;
      state = 'error-sent';
      stream.end(encodeHead({ kind: 'error', code, detail }));
    };
    // The clock runs from the moment the whole request is at the origin: a
    // long upload is not a slow origin.
    let timer: NodeJS.Timeout | undefined;
    req.on('finish', () => {
      if (state !== 'waiting') return;
      timer = setTimeout(() => {
        fail('BEAM_ERR_ORIGIN_TIMEOUT', `no response from ${this.hostPort} within ${this.options.timeoutMs} ms`);
        req.destroy();
      }, this.options.timeoutMs);
      timer.unref();
    });

    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (state === 'responding' || state === 'upgraded') {
        stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', err.code));
        return;
      }
      if (err.code === 'ECONNREFUSED') this.events.onUnreachable(err);
      fail(
        'BEAM_ERR_ORIGIN_UNREACHABLE',
        err.code && UNREACHABLE.has(err.code) ? `nothing answered on ${this.hostPort} (${err.code})` : `${this.hostPort}: ${err.code ?? err.message}`,
      );
    });

    req.on('response', (res) => {
      clearTimeout(timer);
      if (state !== 'waiting') {
        res.destroy();
        return;
      }
      state = 'responding';
      stream.write(
        encodeHead({
          kind: 'response',
          status: res.statusCode ?? 502,
          statusText: res.statusMessage,
          headers: setCookie ? [...endToEndHeaders(res.rawHeaders), ['Set-Cookie', setCookie]] : endToEndHeaders(res.rawHeaders),
        }),
      );
      res.pipe(stream);
      res.on('error', () => stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin closed mid-response')));
      res.on('aborted', () => stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin closed mid-response')));
    });

    req.on('upgrade', (res, socket, rest) => {
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
      if (rest.byteLength > 0) stream.write(rest);
      socket.pipe(stream);
      stream.pipe(socket);
      socket.on('error', () => stream.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', 'origin closed the upgraded connection')));
      stream.on('error', () => socket.destroy());
      stream.on('close', () => socket.destroy());
    });

    stream.on('error', (err) => {
      clearTimeout(timer);
      state = state === 'waiting' ? 'error-sent' : state;
      this.log.debug({ code: errorCodeOf(err) }, 'stream ended early');
      req.destroy();
    });
    if (head.upgrade) {
      // An upgrade request has no body: what follows on the stream belongs to
      // the upgraded connection and is spliced once the origin says 101.
      req.end();
    } else if (head.body) {
      // The rest of the stream is the request body; the head goes out now.
      req.flushHeaders();
      stream.pipe(req);
    } else {
      req.end();
      stream.resume();
    }
  }
}
