/**
 * The bootstrap page: what a browser gets when it opens a share link.
 *
 * It connects to the agent peer to peer with the visitor session of
 * transport/session.ts (RTCPeerConnection, Noise bound to both DTLS
 * fingerprints; the end-to-end encrypted relay when no direct path comes up),
 * registers the Service Worker (sw.ts), hands it a port, and loads the app in
 * a full-window frame. Every request the app makes reaches the worker, which
 * passes it here; this page sends it over a data channel to the agent, so
 * nothing of the app goes through the gateway while a path is up. The page
 * stays while the app navigates inside the frame, and so does the session.
 *
 * When peer to peer is not possible (no secure context, no WebRTC, no path in
 * time) the frame loads through the gateway's HTTP path instead, and the
 * badge says why.
 */
import type { Logger } from 'pino';
import {
  BRIDGE_FIRST_ANSWER_WAIT_MS,
  BRIDGE_PATH,
  BROWSER_ASSET_PATH,
  BROWSER_BRIDGE_TIMEOUT_MS,
  BROWSER_CONNECT_TIMEOUT_MS,
  BROWSER_GATEWAY_COOKIE,
  BROWSER_WORKER_PATH,
  FIRST_STAGE_HANDOVER_MS,
  FIRST_STAGE_PATH,
  MAX_REWRITE_BYTES,
  PAGE_SCHEME_HEADER,
  SECRET_HEADER,
  SECRET_PARAM,
  WORKER_RESPONSE_WINDOW_BYTES,
} from '../shared/constants.js';
import { scopeSetCookie } from '../shared/cookies.js';
import { decode } from '../shared/decode.js';
import { render as renderError } from '../shared/error-page.js';
import { ERRORS, type ErrorCode, isErrorCode } from '../shared/errors.js';
import { type FirstStageReport, FirstStageReportSchema } from '../shared/first-stage.js';
import { frameableHeaders } from '../shared/frame-headers.js';
import { StreamProtocol } from '../shared/frames.js';
import { endToEndPairs, exchange } from '../shared/http-head.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import { injectScript, isHtml, isRewritable, localForms, offShare, rewriteLocal } from '../shared/rewrite.js';
import type { PathKind, VisitorSession } from '../transport/session.js';
import { SessionPool } from '../transport/session-pool.js';
import { browserEngine } from './engine.js';
import { CookieJar, scriptVisible, withScriptCookies } from './jar.js';
import type { HeaderList, ToPage, ToWorker, TunnelOffer } from './messages.js';
import { SocketChannel } from './socket-channel.js';
import type { WsCarrier, WsSink } from './websocket.js';

/**
 * browser-client/app-shim.ts, which goes first into every HTML page of the
 * app this page hands the frame: fetched once, with the first navigation the
 * page carries (not inlined: every visitor would load its bytes up front,
 * and a first stage's document has it from the gateway). A failed fetch is
 * tried again with the next page.
 */
let appShimText: Promise<string> | undefined;
function appShim(): Promise<string> {
  appShimText ??= fetch(`${BROWSER_ASSET_PATH}app-shim.js`).then(async (res) => {
    if (!res.ok) throw new Error(`the page's app shim answered ${res.status}: reload the page`);
    return (await res.text()).trim();
  });
  appShimText.catch(() => {
    appShimText = undefined;
  });
  return appShimText;
}

interface Config {
  share: string;
  /** Its visitors sign in (--oidc): without a peer-to-peer path, the whole tab goes through the gateway, for the provider's pages. */
  signIn?: boolean;
  /**
   * The page without an app frame, in a small frame of the app's top-level
   * first document (browser-client/loader.ts): the app is its parent.
   */
  top?: boolean;
}

/** What tests and curious users can read: `window.__beam`. */
interface State {
  path: PathKind | 'gateway' | 'connecting';
  rtt: number | undefined;
  reason: string | undefined;
  /** Requests this page carried to the agent. */
  requests: number;
}

// The page's own milestones, for bench/browser.ts and devtools: beam:start, beam:bridge, beam:worker, beam:frame, beam:answer.
performance.mark('beam:start');
const state: State = { path: 'connecting', rtt: undefined, reason: undefined, requests: 0 };
(window as unknown as { __beam: State }).__beam = state;

const log = {
  level: 'info',
  child: () => log,
  trace: () => {},
  debug: () => {},
  info: (o: unknown, msg?: string) => console.info('[beam]', msg ?? '', o),
  warn: (o: unknown, msg?: string) => console.warn('[beam]', msg ?? '', o),
  error: (o: unknown, msg?: string) => console.error('[beam]', msg ?? '', o),
} as unknown as Logger;

/** Request headers that are the browser's or Beam's to set, not the app's (hop-by-hop ones go too: shared/http-head.ts). */
const DROP_REQUEST: ReadonlySet<string> = new Set(['host', 'cookie', 'accept-encoding', SECRET_HEADER]);
/** Response headers the page consumes or a constructed Response may not carry. */
const DROP_RESPONSE: ReadonlySet<string> = new Set(['set-cookie', 'beam-origin']);

/** Cookies that are Beam's, never the app's. */
const BEAM_COOKIES: ReadonlySet<string> = new Set([BROWSER_GATEWAY_COOKIE]);

/** The Cookie header for a request of the app: what its scripts see and set, and the jar's HttpOnly ones. */
function cookieFor(url: URL): string | undefined {
  return withScriptCookies(jar.header(url), document.cookie, BEAM_COOKIES);
}

/** A response's Set-Cookie headers: into the jar, and those without HttpOnly where scripts read them too. */
async function keepCookies(url: URL, setCookies: string[]): Promise<void> {
  // document.cookie would take a Domain wider than the share's host (shared/cookies.ts): cut it first.
  const scoped = setCookies.map((c) => scopeSetCookie(c, url.host));
  await jar.store(url, scoped);
  for (const c of scriptVisible(scoped)) document.cookie = c;
}

const config = JSON.parse(document.getElementById('beam-config')?.textContent ?? '{}') as Config;
const frame = document.getElementById('beam-app') as HTMLIFrameElement;
/** The tab: this page, or the app's top-level document that holds it. */
const tab: Window = config.top ? parent : window;
/** The app's window: the frame's, or the tab's. (With `top`, the gateway serves this page without its frame.) */
const appWindow = (): Window | null => (config.top ? parent : frame.contentWindow);
const jar = new CookieJar(window.localStorage);
window.addEventListener('storage', () => jar.load());
let session: VisitorSession | undefined;
/** The page's bridge to the gateway (gateway/bridge.ts): its requests ride it until the peer connection is up. */
let bridge: Mux | undefined;
let locals: string[] = [];

/** Resolves when the agent's first answer to the app is in. */
let answered: () => void = () => {};
const firstAnswer = new Promise<void>((resolve) => {
  answered = () => {
    answered = () => {};
    performance.mark('beam:answer');
    resolve();
  };
});

/** What the app's next request rides: the peer connection once it has a path, else the bridge. */
function carrier(): { openStream(protocol: StreamProtocol): MuxStream } | undefined {
  if (session?.path) return session;
  return bridge && !bridge.isClosed ? bridge : undefined;
}
const ports = new Set<MessagePort>();

// ------------------------------------------------------------------ badge

const badge = document.getElementById('beam-badge') as HTMLElement;
const badgeText = badge.querySelector('span') as HTMLElement;
badge.querySelector('button')?.addEventListener('click', () => badge.remove());

function show(path: State['path'], reason?: string): void {
  state.path = path;
  state.reason = reason;
  state.rtt = session?.rtt;
  badge.dataset['path'] = path;
  const rtt = state.rtt !== undefined && path !== 'gateway' ? ` · ${state.rtt < 10 ? state.rtt.toFixed(1) : Math.round(state.rtt)} ms` : '';
  const label = path === 'turn' ? 'direct (TURN)' : path;
  badgeText.textContent = `Beam: ${label}${rtt}`;
  badge.title = reason ?? (path === 'direct' ? 'peer to peer: no server in the path' : path === 'relay' ? 'through the Beam server, end-to-end encrypted' : '');
  const why = document.getElementById('beam-why');
  if (why) why.textContent = reason ?? '';
}

// ------------------------------------------------------------------ the app's frame

/** Where a private share's secret is kept once a link brought it, so reloads and new tabs get in too. */
const SECRET_KEY = 'beam:secret';

/** A private share's secret: from the link (`?beam_secret=`), else from an earlier visit. */
function shareSecret(): string | undefined {
  const fromLink = new URLSearchParams(location.search).get(SECRET_PARAM);
  try {
    if (fromLink) localStorage.setItem(SECRET_KEY, fromLink);
    return fromLink ?? localStorage.getItem(SECRET_KEY) ?? undefined;
  } catch {
    return fromLink ?? undefined;
  }
}

/** The secret this page's requests carry to the agent (a Beam-Secret header, which the agent removes). */
let secret: string | undefined;

/** A secret the agent refused is not offered again on the next visit. */
function forgetSecret(): void {
  try {
    localStorage.removeItem(SECRET_KEY);
  } catch {
    // storage blocked: nothing was kept
  }
}

/** Request headers of Beam's own: the private share's secret, which the agent checks and removes. */
function beamHeaders(headers: HeaderList): HeaderList {
  if (secret !== undefined) headers.push([SECRET_HEADER, secret]);
  return headers;
}

/**
 * Loads the app in the frame at the path the link named. Peer to peer, the
 * secret travels in a header the agent removes: the app never sees it.
 * Through the gateway it stays, for the agent to check and turn into a cookie.
 */
function loadApp(keepSecret: boolean): void {
  if (config.top || frame.src) return;
  performance.mark('beam:frame');
  const params = new URLSearchParams(location.search);
  if (!keepSecret) params.delete(SECRET_PARAM);
  const search = params.toString();
  frame.src = location.pathname + (search ? `?${search}` : '') + location.hash;
}

// The address bar and the title follow the app's navigations (the first may have loaded before this script ran).
function followFrame(): void {
  try {
    const inner = frame.contentWindow?.location;
    if (inner && inner.origin === location.origin && inner.href !== 'about:blank') history.replaceState(null, '', inner.pathname + inner.search + inner.hash);
    const title = frame.contentDocument?.title;
    if (title) document.title = title;
  } catch {
    // a frame navigated elsewhere: nothing to follow
  }
}
/** The bootstrap loaded the app in the frame at once, through the gateway: a first stage (gateway/first-stage.ts) to collect. */
const firstStage = config.top === true || frame.src !== '';
let stageCollected = false;
frame.addEventListener('load', followFrame);
if (firstStage) followFrame();

/**
 * Collects what the page's first stage left (the bootstrap loaded the app's
 * first document through the gateway): the app's cookies go into the jar, so
 * this page's requests carry them (HttpOnly ones too, which the browser's jar
 * hides from scripts), and the origin's address. Undefined without a stage.
 */
async function collectFirstStage(worker?: ServiceWorker): Promise<FirstStageReport | undefined> {
  if (stageCollected) return undefined;
  stageCollected = true;
  // A stage the bootstrap did not use (this page's jar has the app's cookies) only ends.
  if (!firstStage) {
    if ((window as { beamStageOpen?: boolean }).beamStageOpen) void fetch(FIRST_STAGE_PATH).catch(() => {});
    return undefined;
  }
  try {
    if (worker) await handOver(worker);
    // Same-origin, so the stage's cookie goes; the answer is no-store.
    const res = await fetch(FIRST_STAGE_PATH);
    if (!res.ok) return undefined;
    const report = decode(FirstStageReportSchema, await res.json(), 'stage');
    for (const { target, setCookie } of report.cookies) {
      const url = new URL(target, location.origin);
      // Scripts' cookies are in the browser's jar already, and may have changed since: only the page's jar takes them.
      await jar.store(
        url,
        setCookie.map((c) => scopeSetCookie(c, url.host)),
      );
    }
    if (report.origin && locals.length === 0) locals = localForms(report.origin);
    return report;
  } catch {
    return undefined;
  }
}

/**
 * Opens the bridge: this page's multiplexer on a WebSocket to the gateway
 * (gateway/bridge.ts), which carries the app's first requests while the
 * peer connection comes up. Resolves undefined when there is none.
 */
function openBridge(): Promise<Mux | undefined> {
  return new Promise((resolve) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${BRIDGE_PATH}`);
    } catch {
      resolve(undefined);
      return;
    }
    ws.binaryType = 'arraybuffer';
    const timer = setTimeout(() => {
      ws.close();
      resolve(undefined);
    }, BROWSER_BRIDGE_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(new Mux(new SocketChannel(ws), { role: 'initiator' }));
    };
    ws.onerror = () => {
      clearTimeout(timer);
      resolve(undefined);
    };
  });
}

/**
 * The first stage ends when the worker controls the app's frame: the app's
 * next requests come to this page. A frame whose document arrived after the
 * worker first claimed its pages is claimed again. At most FIRST_STAGE_HANDOVER_MS.
 */
async function handOver(worker: ServiceWorker): Promise<void> {
  const end = Date.now() + FIRST_STAGE_HANDOVER_MS;
  const wait = (ms: number): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, ms));
  while (Date.now() < end) {
    try {
      // The frame's own document (not the blank one before it) is in, and the worker controls it; else it is asked to.
      const inner = appWindow();
      if (inner?.location.href !== 'about:blank') {
        // Also to a worker that controls the frame already (a visitor back): it passed the frame's requests to the gateway until now.
        worker.postMessage({ type: 'beam:claim' });
        if (inner?.navigator.serviceWorker?.controller) return;
      }
    } catch {
      return; // the frame went to another site: nothing of the share's to take over
    }
    await wait(10);
  }
}

/**
 * The app's first document came from Beam, not the app (a private share's 401
 * without its secret, an agent out of reach): once this page carries the
 * frame's requests, it loads again over the page's path.
 */
function reloadFrame(): void {
  // Beam's own answer is in the frame (or the tab): it is on the share's origin.
  appWindow()?.location.reload();
}

function viaGateway(reason: string): void {
  if (config.signIn && !document.cookie.includes(`${BROWSER_GATEWAY_COOKIE}=`)) {
    // A sign-in's provider refuses to be framed: the gateway serves this tab's pages from now on.
    document.cookie = `${BROWSER_GATEWAY_COOKIE}=gateway; path=/; SameSite=Lax`;
    tab.location.reload();
    return;
  }
  // The gateway carries this tab from here: its first stage ends (the browser's jar has the app's cookies).
  void collectFirstStage();
  session?.close();
  session = undefined;
  bridge?.close();
  bridge = undefined;
  for (const port of ports) port.close();
  ports.clear();
  navigator.serviceWorker?.controller?.postMessage({ type: 'beam:gateway' });
  void navigator.serviceWorker?.getRegistration('/').then((r) => r?.active?.postMessage({ type: 'beam:gateway' }));
  show('gateway', reason);
  loadApp(true);
}

// ------------------------------------------------------------------ requests from the worker

function post(port: MessagePort, message: ToWorker, transfer: Transferable[] = []): void {
  port.postMessage(message, transfer);
}

function errorResponse(port: MessagePort, id: number, accept: string, code: ErrorCode, detail?: string): void {
  const { type, text } = renderError({ accept }, code, detail);
  post(port, {
    type: 'head',
    id,
    status: ERRORS[code].status,
    statusText: code,
    headers: [
      ['content-type', type],
      ['beam-error', code],
      ['cache-control', 'no-store'],
    ],
  });
  const bytes = new TextEncoder().encode(text);
  post(port, { type: 'chunk', id, data: bytes.buffer }, [bytes.buffer]);
  post(port, { type: 'end', id });
}

const toArrayBuffer = (chunk: Uint8Array): ArrayBuffer => chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer;

/**
 * A response body whole, up to `max` bytes: past them the stream is
 * destroyed and this rejects, as it does when the stream fails or closes
 * before its end. Events, not `for await`: readable-stream's async iterator
 * stays out of the page's bundle (browser-client/build.mjs).
 */
function readWhole(stream: MuxStream, max: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let ended = false;
    const fail = (err: Error): void => {
      stream.off('data', onData);
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.byteLength;
      if (size <= max) chunks.push(chunk);
      else {
        fail(new Error(`${what} over ${max} bytes`));
        stream.destroy();
      }
    };
    stream.on('data', onData);
    stream.once('end', () => {
      ended = true;
      resolve(Buffer.concat(chunks, size));
    });
    stream.once('error', fail);
    stream.once('close', () => {
      if (!ended) fail(new Error(`${what} closed before its end`));
    });
    // readHead listened for 'readable'; readable-stream 3 stays paused after that until told.
    stream.resume();
  });
}

/** Response bodies being streamed to the worker, for credit and cancel. */
const streams = new Map<string, { stream: MuxStream; unacked: number }>();
/** Request bodies the worker streams in, by port and request id. */
const uploads = new Map<string, { stream: MuxStream; port: MessagePort }>();

/** A streamed request body's next message from the worker. */
function onUpload(key: string, msg: Extract<ToPage, { type: 'body' | 'body-end' | 'body-error' }>): void {
  const upload = uploads.get(key);
  if (!upload) return;
  if (msg.type === 'body') {
    const bytes = msg.data.byteLength;
    upload.stream.write(Buffer.from(msg.data), () => post(upload.port, { type: 'body-credit', id: msg.id, bytes }));
    return;
  }
  uploads.delete(key);
  if (msg.type === 'body-end') upload.stream.end();
  else upload.stream.destroy(new Error('the app stopped sending the request body'));
}

async function serve(port: MessagePort, portId: number, msg: Extract<ToPage, { type: 'request' }>): Promise<void> {
  const { id } = msg;
  const accept = msg.headers.find(([k]) => k.toLowerCase() === 'accept')?.[1] ?? '';
  // Fetched beside the app's answer, for the HTML it will likely be.
  if (msg.navigate) appShim().catch(() => {});
  const via = carrier();
  if (!via) {
    errorResponse(port, id, accept, 'BEAM_ERR_AGENT_UNREACHABLE', 'no path to the agent: reload the page');
    return;
  }
  const url = new URL(msg.url);
  const headers: HeaderList = endToEndPairs(msg.headers, DROP_REQUEST);
  headers.unshift(['Host', location.host]);
  // With the Host, where a sign-in sends this browser back to (the agent reads it from browser pages only).
  headers.push([PAGE_SCHEME_HEADER, location.protocol === 'https:' ? 'https' : 'http']);
  const cookie = cookieFor(url);
  if (cookie) headers.push(['Cookie', cookie]);
  // A constructed Response is never decoded by the browser: ask for the body as it is.
  headers.push(['Accept-Encoding', 'identity']);
  beamHeaders(headers);
  const hasBody = msg.streamed === true || (msg.body !== null && msg.body.byteLength > 0);
  let stream: MuxStream;
  try {
    stream = via.openStream(StreamProtocol.HTTP);
  } catch (err) {
    errorResponse(port, id, accept, 'BEAM_ERR_AGENT_UNREACHABLE', (err as Error).message);
    return;
  }
  state.requests++;
  stream.on('error', () => {});
  const head = { method: msg.method, target: url.pathname + url.search, headers, upgrade: false, body: hasBody };
  let response;
  try {
    if (msg.streamed) {
      // The body follows from the worker; each chunk is credited back once the stream took it.
      uploads.set(`${portId}:${id}`, { stream, port });
      response = await exchange(stream, head, undefined, { end: false });
    } else response = await exchange(stream, head, hasBody ? Buffer.from(msg.body as ArrayBuffer) : undefined);
  } catch (err) {
    const code = (err as { code?: string }).code;
    errorResponse(port, id, accept, isErrorCode(code) ? code : 'BEAM_ERR_AGENT_UNREACHABLE', (err as Error).message);
    stream.destroy();
    return;
  }
  if (response.kind === 'error') {
    if (response.code === 'BEAM_ERR_PRIVATE') forgetSecret();
    errorResponse(port, id, accept, response.code, response.detail);
    stream.resume();
    return;
  }
  const origin = response.headers.find(([k]) => k.toLowerCase() === 'beam-origin')?.[1];
  if (origin && locals.length === 0) {
    locals = localForms(origin);
    for (const p of ports) post(p, { type: 'locals', id: 0, locals });
  }
  answered();
  const setCookies = response.headers.filter(([k]) => k.toLowerCase() === 'set-cookie').map(([, v]) => v);
  await keepCookies(url, setCookies);
  const away = msg.navigate ? offShare(response.status, response.headers, url, location.origin, locals) : undefined;
  if (away) {
    // The app's page sends the browser elsewhere (a sign-in's provider, whose pages refuse frames): the whole tab goes.
    stream.resume();
    post(port, { type: 'head', id, status: 204, statusText: 'No Content', headers: [] });
    post(port, { type: 'end', id });
    tab.location.assign(away);
    return;
  }
  let out: HeaderList = frameableHeaders(endToEndPairs(response.headers, DROP_RESPONSE));
  const type = out.find(([k]) => k.toLowerCase() === 'content-type')?.[1] ?? '';
  const length = Number(out.find(([k]) => k.toLowerCase() === 'content-length')?.[1] ?? NaN);
  const encoded = out.some(([k, v]) => k.toLowerCase() === 'content-encoding' && v.toLowerCase() !== 'identity');
  if ((locals.length > 0 || isHtml(type)) && isRewritable(type) && !encoded && !(length > MAX_REWRITE_BYTES)) {
    // Held whole, so the origin's localhost URLs can point at the share.
    let whole: Buffer;
    try {
      whole = await readWhole(stream, MAX_REWRITE_BYTES, `a ${type} response`);
    } catch (err) {
      errorResponse(port, id, accept, 'BEAM_ERR_STREAM_RESET', (err as Error).message);
      return;
    }
    let text = rewriteLocal(whole.toString('utf8'), locals, location.origin);
    if (isHtml(type)) {
      try {
        text = injectScript(text, await appShim());
      } catch (err) {
        errorResponse(port, id, accept, 'BEAM_ERR_AGENT_UNREACHABLE', (err as Error).message);
        return;
      }
    }
    const bytes = new TextEncoder().encode(text);
    out = out.filter(([k]) => k.toLowerCase() !== 'content-length');
    post(port, { type: 'head', id, status: response.status, statusText: response.statusText ?? '', headers: out });
    post(port, { type: 'chunk', id, data: bytes.buffer }, [bytes.buffer]);
    post(port, { type: 'end', id });
    return;
  }
  post(port, { type: 'head', id, status: response.status, statusText: response.statusText ?? '', headers: out });
  const key = `${portId}:${id}`;
  const entry = { stream, unacked: 0 };
  streams.set(key, entry);
  stream.on('data', (chunk: Buffer) => {
    const data = toArrayBuffer(chunk);
    post(port, { type: 'chunk', id, data }, [data]);
    entry.unacked += chunk.byteLength;
    // The app reads at its own pace: stop the agent once a window is unread.
    if (entry.unacked >= WORKER_RESPONSE_WINDOW_BYTES) stream.pause();
  });
  stream.on('end', () => {
    streams.delete(key);
    post(port, { type: 'end', id });
  });
  stream.on('error', (err) => {
    streams.delete(key);
    post(port, { type: 'error', id, code: (err as { code?: string }).code ?? 'BEAM_ERR_STREAM_RESET', message: err.message });
  });
  // readHead listened for 'readable'; the browser's streams (readable-stream 3) stay paused after that until told.
  stream.resume();
}

// ------------------------------------------------------------------ WebSockets of the app (app-shim.ts)

/**
 * Opens one of the app's WebSockets through the session: the agent opens it
 * to the origin and both sides pass whole messages (browser-client/websocket.ts,
 * loaded with the app's first WebSocket). Undefined when this page cannot
 * carry it (another host, or no path): the frame's browser then opens it itself.
 */
function openWebSocket(url: string, protocols: string[], sink: WsSink): WsCarrier | undefined {
  const u = new URL(url);
  const via = carrier();
  if ((u.host !== location.host && !locals.includes(u.host)) || !via) return undefined;
  let stream: MuxStream;
  try {
    stream = via.openStream(StreamProtocol.HTTP);
  } catch {
    return undefined;
  }
  state.requests++;
  stream.on('error', () => {});
  const target = u.pathname + u.search;
  const pageUrl = new URL(target, location.origin);
  const headers: HeaderList = [
    ['Host', location.host],
    ['Origin', location.origin],
    ['User-Agent', navigator.userAgent],
  ];
  if (protocols.length) headers.push(['Sec-WebSocket-Protocol', protocols.join(', ')]);
  const cookie = cookieFor(pageUrl);
  if (cookie) headers.push(['Cookie', cookie]);
  beamHeaders(headers);
  const socket = import('./websocket.js').then(
    (m) => m.carryWebSocket(exchange, stream, target, headers, sink, (setCookies) => keepCookies(pageUrl, setCookies)),
    () => {
      stream.destroy();
      sink.error();
      sink.close(1006, '', false);
      return undefined;
    },
  );
  // Sends and the close keep their order: each waits for the same module.
  return {
    send: (kind, data) => void socket.then((s) => s?.send(kind, data)),
    close: (code, reason) => void socket.then((s) => s?.close(code, reason)),
  };
}
(window as unknown as { __beamWebSocket: typeof openWebSocket }).__beamWebSocket = openWebSocket;

let nextPortId = 1;

/** Hands the worker a fresh port to send requests to. */
function offerTunnel(worker: ServiceWorker): void {
  const channel = new MessageChannel();
  const port = channel.port1;
  const portId = nextPortId++;
  ports.add(port);
  port.onmessage = (event: MessageEvent<ToPage>) => {
    const msg = event.data;
    const key = `${portId}:${msg.id}`;
    if (msg.type === 'request') void serve(port, portId, msg);
    else if (msg.type === 'body' || msg.type === 'body-end' || msg.type === 'body-error') onUpload(key, msg);
    else if (msg.type === 'credit') {
      const entry = streams.get(key);
      if (entry) {
        entry.unacked = 0;
        entry.stream.resume();
      }
    } else if (msg.type === 'cancel') {
      streams.get(key)?.stream.destroy();
      streams.delete(key);
    }
  };
  const offer: TunnelOffer = { type: 'beam:tunnel', locals };
  worker.postMessage(offer, [channel.port2]);
}

// ------------------------------------------------------------------ start

async function connect(): Promise<void> {
  // The direct path runs on DTLS alone: this page came from the server, so Noise could not guard it from the server
  // (transport/session.ts, directNoise). The relay runs Noise, with a key made (and Noise loaded) only then.
  const pool = new SessionPool(
    { engine: browserEngine, logger: log, identity: () => import('../transport/identity.js').then((m) => m.ephemeralIdentity()) },
    { server: location.origin, handshake: { client: 'browser' }, reconnect: 'none', session: { relay: 'auto', secret, directNoise: false } },
  );
  const s = pool.open(config.share);
  session = s;
  s.on('path', (info) => show(info.path));
  s.on('close', () => {
    if (session === s) viaGateway('the peer-to-peer session ended (the agent left, or the network changed): reload to try again');
  });
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`no path to the agent within ${BROWSER_CONNECT_TIMEOUT_MS} ms`)), BROWSER_CONNECT_TIMEOUT_MS),
  );
  await Promise.race([s.ready, timeout]);
  // A TCP or UDP share has no pages: the gateway says so, in the frame.
  if (s.kind !== 'http') throw Object.assign(new Error(`a ${s.kind ?? 'non-HTTP'} share`), { code: 'BEAM_ERR_SHARE_KIND' });
}

async function main(): Promise<void> {
  if (!window.isSecureContext || !('serviceWorker' in navigator)) {
    // The gateway proxies this browser's navigations from now on (no bootstrap each time).
    document.cookie = `${BROWSER_GATEWAY_COOKIE}=gateway; path=/; SameSite=Lax`;
    viaGateway(
      `Loaded through the Beam server: ${location.protocol}//${location.host} is not a secure context, so the browser allows no Service Worker. ` +
        "For peer to peer, open the share over https (a Beam server with TLS: see Beam's docs/browsers.md) or as http://<name>.localhost on the sharing machine.",
    );
    return;
  }
  if (typeof RTCPeerConnection === 'undefined') {
    viaGateway('Loaded through the Beam server: this browser has no WebRTC.');
    return;
  }
  // The bridge comes up while the worker installs (the bootstrap registered it already); the app starts on it.
  secret = shareSecret();
  const bridging = openBridge();
  const registration = await navigator.serviceWorker.register(BROWSER_WORKER_PATH, { scope: '/' });
  const worker = registration.active ?? (await navigator.serviceWorker.ready).active;
  if (!worker) {
    viaGateway('Loaded through the Beam server: the Service Worker did not start.');
    return;
  }
  performance.mark('beam:worker');
  // A worker that restarted asks again for a port.
  navigator.serviceWorker.addEventListener('message', (event) => {
    if ((event.data as { type?: string })?.type === 'beam:need-tunnel' && carrier() && event.source) offerTunnel(event.source as ServiceWorker);
  });
  bridge = await bridging;
  performance.mark('beam:bridge');
  // Once the worker has taken the frame over, the first stage is over: what it left comes first.
  const stage = await collectFirstStage(worker);
  let offered = false;
  if (bridge) {
    show('gateway', 'through the Beam server while the peer-to-peer path comes up');
    offerTunnel(worker);
    offered = true;
    if (stage?.document?.error) reloadFrame();
    loadApp(false);
    // The peer connection starts once the app's first answer is in: its setup (here and at the agent) would
    // only hold that answer up. A first stage has had its answer.
    if (!stage?.document) await Promise.race([firstAnswer, new Promise((resolve) => setTimeout(resolve, BRIDGE_FIRST_ANSWER_WAIT_MS))]);
  }
  const connecting = connect();
  try {
    await connecting;
  } catch (err) {
    const code = (err as { code?: string }).code;
    // A secret that failed is not tried again on the next visit.
    if (code === 'BEAM_ERR_PRIVATE') forgetSecret();
    // The app loads again through the gateway's HTTP path, as the page shows it.
    if (frame.src) frame.removeAttribute('src');
    viaGateway(`Loaded through the Beam server: no peer-to-peer path (${code ?? (err as Error).message}).`);
    return;
  }
  // New requests take the peer connection; the bridge finishes what it carries.
  bridge?.closeWhenIdle();
  if (!offered) offerTunnel(worker);
  if (!offered && stage?.document?.error) reloadFrame();
  loadApp(false);
  setInterval(() => {
    if (session?.path) show(session.path);
  }, 1_000);
}

void main().catch((err: Error) => viaGateway(`Loaded through the Beam server: ${err.message}`));
