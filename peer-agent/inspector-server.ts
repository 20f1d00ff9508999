/**
 * The inspector's web UI and API, on loopback only (http://127.0.0.1:4040 by
 * default, as ngrok's).
 *
 *   GET    /                          the UI (inspector-page.ts)
 *   GET    /api/info                  the share: its URL and origin
 *   GET    /api/requests              summaries, oldest first
 *   GET    /api/requests/:id          one exchange, headers and rendered bodies
 *   POST   /api/requests/:id/replay   replays it, as is or with JSON edits; 201 {id}
 *   DELETE /api/requests              clears the list
 *   GET    /api/events                Server-Sent Events: `exchange` (a summary), `cleared`
 *   GET    /api/har                   every exchange as a HAR 1.2 file
 *
 * Loopback is not enough on its own: a web page the user visits could reach
 * 127.0.0.1 through DNS rebinding, or post to it blindly. So every request
 * must name a loopback Host, and anything that changes state must come from
 * the inspector's own page (Origin) with a JSON body (which a cross-site form
 * cannot send without a preflight this server never answers).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import * as v from 'valibot';
import { DEFAULT_INSPECT_PORT, INSPECT_MAX_WATCHERS, INSPECT_PORT_ATTEMPTS, INSPECT_REPLAY_BODY_BYTES, MAX_HEADER_COUNT } from '../shared/constants.js';
import { describeIssue } from '../shared/decode.js';
import { BeamError, ERRORS, type ErrorCode } from '../shared/errors.js';
import type { Capture, ExchangeDetail, Inspector } from './inspect.js';
import { renderBody, toHar } from './inspect-view.js';
import { INSPECTOR_PAGE, INSPECTOR_SCRIPT, INSPECTOR_STYLE } from './inspector-page.js';
import type { ReplayEdits } from './origin.js';

export interface InspectorServerComponents {
  inspector: Inspector;
  /** Replays exchange `id` against the origin; resolves with the new exchange's id. */
  replay(id: string, edits: ReplayEdits): Promise<string>;
  logger: Logger;
}

export interface InspectorServerOptions {
  /** A port to use, or fail with BEAM_ERR_BAD_OPTION if taken. Default: DEFAULT_INSPECT_PORT, else the next free one. */
  port?: number | undefined;
  /** What /api/info tells the page. */
  info: () => { url?: string | undefined; origin: string };
  /** Beam's version, for the HAR creator field. */
  version: string;
}

export interface InspectorServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const ReplayBodySchema = v.strictObject({
  method: v.optional(v.pipe(v.string(), v.regex(/^[A-Z][A-Z0-9_-]{0,31}$/, 'method: upper-case letters, e.g. POST'))),
  target: v.optional(v.pipe(v.string(), v.startsWith('/', 'path: must start with /'), v.maxLength(8192))),
  headers: v.optional(
    v.pipe(
      v.array(v.strictTuple([v.string(), v.string()])),
      v.maxLength(MAX_HEADER_COUNT),
      v.check(
        (pairs) =>
          pairs.every(([k, value]) => {
            try {
              http.validateHeaderName(k);
              http.validateHeaderValue(k, value);
              return true;
            } catch {
              return false;
            }
          }),
        'headers: a name or value is not valid HTTP',
      ),
    ),
  ),
  /** A new body as text (sent as UTF-8). */
  body: v.optional(v.string()),
});

function sendJson(res: http.ServerResponse, status: number, value: unknown, extra: http.OutgoingHttpHeaders = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...extra,
  });
  res.end(body);
}

function sendError(res: http.ServerResponse, code: ErrorCode, detail?: string): void {
  const err = new BeamError(code, detail);
  sendJson(res, ERRORS[code].status, { error: { code, message: err.message } });
}

/** The exchange as the page shows it: bodies rendered, not raw. */
function view(x: ExchangeDetail): object {
  const { requestBody, responseBody, ...rest } = x;
  return {
    ...rest,
    requestBody: renderBody({ ...requestBody, size: x.requestBytes }, x.requestHeaders),
    responseBody: renderBody({ ...responseBody, size: x.responseBytes }, x.responseHeaders),
  };
}

function readJson(req: http.IncomingMessage, max: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        reject(new BeamError('BEAM_ERR_BAD_REQUEST', `a replay body is at most ${INSPECT_REPLAY_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (size === 0) return resolve({});
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new BeamError('BEAM_ERR_BAD_REQUEST', 'the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

/** What the inspector's routes need. */
interface InspectorContext {
  inspector: Inspector;
  options: InspectorServerOptions;
  replay: InspectorServerComponents['replay'];
  views: LiveViews;
  /** The Host values the inspector answers: its own port on the loopback names. */
  hosts: () => Set<string>;
}

/** One request to the inspector: its page, its API, its live view; a caller that is not its own page is refused. */
async function route(ctx: InspectorContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const hosts = ctx.hosts();
  if (!hosts.has((req.headers.host ?? '').toLowerCase())) return sendError(res, 'BEAM_ERR_INSPECT_HOST', `Host: ${req.headers.host ?? '(none)'}`);
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') {
    const origin = req.headers.origin;
    if (origin !== undefined && !hosts.has(origin.replace(/^http:\/\//, '').toLowerCase())) return sendError(res, 'BEAM_ERR_INSPECT_HOST', `Origin: ${origin}`);
    if (method === 'POST' && !/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return sendError(res, 'BEAM_ERR_BAD_REQUEST', 'a change is a JSON request: send it with Content-Type: application/json, as the inspector page does');
    }
  }
  const path = new URL(req.url ?? '/', 'http://inspector').pathname;
  if (method === 'GET' && path === '/') {
    res.writeHead(200, {
      'Content-Type': 'text/html; charset=utf-8',
      'Content-Security-Policy': "default-src 'self'; frame-ancestors 'none'",
      'X-Frame-Options': 'DENY',
      'Cache-Control': 'no-store',
    });
    res.end(INSPECTOR_PAGE);
    return;
  }
  if (method === 'GET' && path === '/app.js') {
    res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(INSPECTOR_SCRIPT);
    return;
  }
  if (method === 'GET' && path === '/favicon.ico') {
    // Browsers ask for it unbidden: nothing to show, and no error in their console.
    res.writeHead(204, { 'Cache-Control': 'max-age=86400' }).end();
    return;
  }
  if (method === 'GET' && path === '/app.css') {
    res.writeHead(200, { 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(INSPECTOR_STYLE);
    return;
  }
  if (method === 'GET' && path === '/api/info') return sendJson(res, 200, ctx.options.info());
  if (path === '/api/requests') {
    if (method === 'GET') return sendJson(res, 200, { requests: ctx.inspector.list() });
    if (method === 'DELETE') {
      ctx.inspector.clear();
      res.writeHead(204).end();
      return;
    }
  }
  const one = /^\/api\/requests\/(\d{1,12})(\/replay)?$/.exec(path);
  if (one) {
    const id = one[1] as string;
    if (!one[2] && method === 'GET') {
      const x = ctx.inspector.get(id);
      return x ? sendJson(res, 200, view(x)) : sendError(res, 'BEAM_ERR_EXCHANGE_GONE', `request ${id}`);
    }
    if (one[2] && method === 'POST') {
      // JSON text of a body of INSPECT_REPLAY_BODY_BYTES may take up to 6 bytes a byte (\u00xx).
      const raw = await readJson(req, 6 * INSPECT_REPLAY_BODY_BYTES + 64 * 1024);
      const parsed = v.safeParse(ReplayBodySchema, raw);
      if (!parsed.success) return sendError(res, 'BEAM_ERR_BAD_REQUEST', describeIssue(parsed.issues[0]).message);
      const body = parsed.output.body !== undefined ? Buffer.from(parsed.output.body, 'utf8') : undefined;
      if (body && body.byteLength > INSPECT_REPLAY_BODY_BYTES)
        return sendError(res, 'BEAM_ERR_BAD_REQUEST', `a replay body is at most ${INSPECT_REPLAY_BODY_BYTES} bytes`);
      const replayed = await ctx.replay(id, { method: parsed.output.method, target: parsed.output.target, headers: parsed.output.headers, body });
      return sendJson(res, 201, { id: replayed });
    }
  }
  if (method === 'GET' && path === '/api/har') {
    return sendJson(res, 200, toHar(ctx.inspector.details(), ctx.options.info().origin, ctx.options.version), {
      'Content-Disposition': 'attachment; filename="beam.har"',
    });
  }
  if (method === 'GET' && path === '/api/events') {
    ctx.views.add(req, res);
    return;
  }
  sendError(res, 'BEAM_ERR_BAD_REQUEST', `${method} ${path} is not part of the inspector`);
}

/** The pages watching live (server-sent events), at most INSPECT_MAX_WATCHERS. */
class LiveViews {
  private readonly watchers = new Set<http.ServerResponse>();

  add(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.watchers.size >= INSPECT_MAX_WATCHERS) {
      sendError(res, 'BEAM_ERR_LIMIT_REACHED', `${INSPECT_MAX_WATCHERS} live views are open`);
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    res.write(': beam inspector\n\n');
    this.watchers.add(res);
    req.on('close', () => this.watchers.delete(res));
  }

  get size(): number {
    return this.watchers.size;
  }

  send(event: string, data: unknown): void {
    // Most of the time nobody watches: then nothing is serialized.
    if (this.watchers.size === 0) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    // A view that can't keep up is dropped rather than buffered without end; the page reconnects and reloads the list.
    for (const res of this.watchers) {
      if (res.writableLength > 1024 * 1024) {
        this.watchers.delete(res);
        res.destroy();
        continue;
      }
      res.write(frame);
    }
  }

  close(): void {
    for (const res of this.watchers) res.destroy();
    this.watchers.clear();
  }
}

function listenOn(server: http.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, '127.0.0.1');
  });
}

/** Binds to 127.0.0.1: the port asked for, else DEFAULT_INSPECT_PORT or the next free one of INSPECT_PORT_ATTEMPTS, else any. */
async function bindInspector(server: http.Server, port: number | undefined): Promise<void> {
  if (port !== undefined) {
    await listenOn(server, port).catch((err: NodeJS.ErrnoException) => {
      throw new BeamError(
        'BEAM_ERR_BAD_OPTION',
        err.code === 'EADDRINUSE' ? `--inspect ${port}: the port is taken; pick another or leave --inspect out` : `--inspect ${port}: ${err.message}`,
      );
    });
    return;
  }
  for (let i = 0; i < INSPECT_PORT_ATTEMPTS; i++) {
    try {
      await listenOn(server, DEFAULT_INSPECT_PORT + i);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
  // Twenty inspectors already: any free port will do.
  await listenOn(server, 0);
}

export async function startInspectorServer(components: InspectorServerComponents, options: InspectorServerOptions): Promise<InspectorServer> {
  const { inspector, logger } = components;
  const log = logger.child({ component: 'inspector' });
  let port = 0;
  const views = new LiveViews();
  const ctx: InspectorContext = {
    inspector,
    options,
    replay: components.replay,
    views,
    hosts: () => new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]),
  };
  const onExchange = (capture: Capture): void => {
    if (views.size > 0) views.send('exchange', capture.summary());
  };
  const onCleared = (): void => views.send('cleared', {});
  inspector.on('exchange', onExchange);
  inspector.on('cleared', onCleared);

  const server = http.createServer((req, res) => {
    route(ctx, req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof BeamError) return sendError(res, err.code, err.detail);
      log.warn({ err: (err as Error).message }, 'inspector request failed');
      sendError(res, 'BEAM_ERR_BAD_REQUEST', (err as Error).message);
    });
  });
  await bindInspector(server, options.port);
  port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        inspector.off('exchange', onExchange);
        inspector.off('cleared', onCleared);
        views.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
