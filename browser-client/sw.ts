/**
 * The Service Worker: it sees every request of the app's frame and sends it
 * to the page (page.ts), which carries it to the agent over a data channel.
 *
 * - Top-level navigations go to the network: the gateway answers them with
 *   the bootstrap page. So do Beam's own assets (/.beam/…). In the build
 *   for `beam serve --browser-first-load top` (sw-top.js, served as sw.js
 *   there), a form's top-level POST (from the app's top-level first
 *   document, or a frame's form aimed at the tab) takes the tunnel, with
 *   the page's cookie jar: the document it gets is kept here for the
 *   bootstrap's frame (WORKER_STASH_TTL_MS) and the tab goes to its address
 *   with a 303, where the bootstrap keeps the session.
 * - With no tunnel (no peer to peer, or the page gave up) requests go to the
 *   network too: the gateway's HTTP path.
 * - Requests to the origin's own local address (http://localhost:3000/…)
 *   take the tunnel as well, once the page knows that address.
 * - Redirects: a navigation or a `redirect: 'manual'` fetch gets the 3xx as
 *   it is; a `follow` fetch is followed here, as the network would.
 *
 * A worker may be stopped when idle and started again; it then asks the
 * open pages for a new port before it sends anything to the gateway.
 */
import {
  MAX_REDIRECTS,
  MAX_WORKER_STAGED_FRAMES,
  SIGN_IN_CALLBACK_PATH,
  SIGN_OUT_PATH,
  WORKER_BUFFERED_BODY_BYTES,
  WORKER_RESPONSE_WINDOW_BYTES,
  WORKER_STAGE_OFFER_MS,
  WORKER_STASH_TTL_MS,
  WORKER_TUNNEL_WAIT_MS,
  WORKER_UPLOAD_WINDOW_BYTES,
} from '../shared/constants.js';
import type { HeaderList, ToPage, ToWorker, TunnelOffer } from './messages.js';

// The Service Worker global scope, as far as this file uses it (the DOM lib has no worker types).
interface FetchEventLike extends Event {
  request: Request;
  clientId: string;
  /** A navigation's: the client (window) it makes. */
  resultingClientId?: string;
  respondWith(response: Promise<Response> | Response): void;
  waitUntil(p: Promise<unknown>): void;
}
interface WorkerScope {
  location: Location;
  clients: {
    claim(): Promise<void>;
    matchAll(options: { type: 'window'; includeUncontrolled: boolean }): Promise<Array<{ id: string; postMessage(m: unknown): void }>>;
    get(id: string): Promise<unknown>;
  };
  skipWaiting(): Promise<void>;
  addEventListener(type: 'install' | 'activate', fn: (e: Event & { waitUntil(p: Promise<unknown>): void }) => void): void;
  addEventListener(type: 'fetch', fn: (e: FetchEventLike) => void): void;
  addEventListener(type: 'message', fn: (e: MessageEvent & { source: { id: string } | null }) => void): void;
}
const scope = self as unknown as WorkerScope;
/** The build for top-level first documents (browser-client/build.mjs): it carries a form's top-level POST. */
declare const __BEAM_TOP__: boolean;

interface Pending {
  resolve(response: Response): void;
  reject(err: Error): void;
  controller?: ReadableStreamDefaultController<Uint8Array>;
}

interface Tunnel {
  port: MessagePort;
  pageId: string;
  locals: Set<string>;
  pending: Map<number, Pending>;
  /** Streamed request bodies being sent, by request id. */
  uploads: Map<number, { unacked: number; wake: (() => void) | undefined }>;
}

let tunnel: Tunnel | undefined;
/** The page said: no tunnel, use the gateway. Until a page offers one again. */
let gatewayOnly = false;
const waiting: Array<() => void> = [];
let nextId = 1;
/** The document a top-level POST got, for the bootstrap frame's navigation to its address (once). */
let stash: { url: string; until: number; response: Response } | undefined;
/**
 * A visitor back: its bootstrap's frame loads the app's first document from
 * the gateway (a first stage), as a new visitor's does. `staging`: the frame
 * navigation the bootstrap announced (its address), passed to the network
 * once. `staged`: the frames that navigation made (client ids), whose
 * requests go to the network too, until their page takes them (beam:claim).
 */
let staging: { url: string; until: number } | undefined;
const staged = new Set<string>();

scope.addEventListener('install', () => void scope.skipWaiting());
scope.addEventListener('activate', (event) => event.waitUntil(scope.clients.claim()));

scope.addEventListener('message', (event) => {
  const data = event.data as TunnelOffer | { type: 'beam:gateway' | 'beam:claim' | 'beam:unstage' } | { type: 'beam:stage'; url: unknown } | undefined;
  // The page's frame loaded while this worker started, or through it (its first stage): it takes the frame's next requests.
  if (data?.type === 'beam:claim') {
    staged.clear();
    (event as unknown as { waitUntil(p: Promise<unknown>): void }).waitUntil(scope.clients.claim());
    return;
  }
  // A visitor back: its bootstrap's frame is about to load the app through the gateway; the answer lets it.
  if (data?.type === 'beam:stage') {
    if (typeof data.url !== 'string' || !event.ports[0]) return;
    let url: URL;
    try {
      url = new URL(data.url, scope.location.origin);
    } catch {
      return;
    }
    // Compared with the navigation's address as the browser writes it (no fragment).
    url.hash = '';
    staging = { url: url.href, until: Date.now() + WORKER_STAGE_OFFER_MS };
    event.ports[0].postMessage('staged');
    return;
  }
  // The bootstrap gave up waiting for that answer: its page carries the frame's navigation.
  if (data?.type === 'beam:unstage') {
    staging = undefined;
    return;
  }
  if (data?.type === 'beam:gateway') {
    gatewayOnly = true;
    dropTunnel();
    // Requests waiting for a tunnel go to the gateway now, not when their wait runs out.
    for (const w of waiting.splice(0)) w();
    return;
  }
  if (data?.type !== 'beam:tunnel' || !event.ports[0] || !event.source) return;
  // A second tab's tunnel takes new requests; the first's port stays open for the responses it still owes.
  gatewayOnly = false;
  const t: Tunnel = { port: event.ports[0], pageId: event.source.id, locals: new Set(data.locals), pending: new Map(), uploads: new Map() };
  t.port.onmessage = (e: MessageEvent<ToWorker>) => onPageMessage(t, e.data);
  tunnel = t;
  for (const w of waiting.splice(0)) w();
});

function dropTunnel(): void {
  if (!tunnel) return;
  for (const id of [...tunnel.uploads.keys()]) stopUpload(tunnel, id);
  for (const p of tunnel.pending.values()) p.reject(new Error('the page holding the peer-to-peer session went away'));
  tunnel.port.close();
  tunnel = undefined;
}

function onPageMessage(t: Tunnel, msg: ToWorker): void {
  if (msg.type === 'locals') {
    t.locals = new Set(msg.locals);
    return;
  }
  if (msg.type === 'body-credit') {
    const upload = t.uploads.get(msg.id);
    if (!upload) return;
    upload.unacked -= msg.bytes;
    upload.wake?.();
    upload.wake = undefined;
    return;
  }
  if (msg.type === 'end' || msg.type === 'error') stopUpload(t, msg.id);
  const p = t.pending.get(msg.id);
  if (!p) return;
  switch (msg.type) {
    case 'head': {
      const body = nullBody(msg.status)
        ? null
        : new ReadableStream<Uint8Array>(
            {
              start: (controller) => {
                p.controller = controller;
              },
              // The app has read what was queued: the page may send more.
              pull: () => t.port.postMessage({ type: 'credit', id: msg.id } satisfies ToPage),
              cancel: () => {
                t.pending.delete(msg.id);
                t.port.postMessage({ type: 'cancel', id: msg.id } satisfies ToPage);
              },
            },
            new ByteLengthQueuingStrategy({ highWaterMark: WORKER_RESPONSE_WINDOW_BYTES }),
          );
      p.resolve(new Response(body, { status: msg.status, statusText: msg.statusText, headers: toHeaders(msg.headers) }));
      if (!body) t.pending.delete(msg.id);
      return;
    }
    case 'chunk':
      p.controller?.enqueue(new Uint8Array(msg.data));
      return;
    case 'end':
      t.pending.delete(msg.id);
      p.controller?.close();
      return;
    case 'error':
      t.pending.delete(msg.id);
      if (p.controller) p.controller.error(new Error(`${msg.code}: ${msg.message}`));
      else p.reject(new Error(`${msg.code}: ${msg.message}`));
      return;
  }
}

function stopUpload(t: Tunnel, id: number): void {
  const upload = t.uploads.get(id);
  if (!upload) return;
  t.uploads.delete(id);
  upload.wake?.();
}

const nullBody = (status: number): boolean => status === 101 || status === 204 || status === 205 || status === 304;

function toHeaders(list: HeaderList): Headers {
  const headers = new Headers();
  for (const [k, v] of list) {
    try {
      headers.append(k, v);
    } catch {
      // a header a Response may not carry: dropped
    }
  }
  return headers;
}

/** The tunnel, or undefined once WORKER_TUNNEL_WAIT_MS passed without one (after asking the pages for it). */
async function currentTunnel(): Promise<Tunnel | undefined> {
  if (gatewayOnly) return undefined;
  // A page that was closed leaves a port nobody answers on. Only that page's tunnel goes: another page may
  // have offered its own (or the page said "gateway") while this was asked, and that stands.
  const known = tunnel;
  if (known && !(await scope.clients.get(known.pageId)) && tunnel === known) dropTunnel();
  if (gatewayOnly) return undefined;
  if (tunnel) return tunnel;
  const pages = await scope.clients.matchAll({ type: 'window', includeUncontrolled: true });
  if (tunnel || gatewayOnly) return tunnel;
  if (pages.length === 0) return undefined;
  for (const page of pages) page.postMessage({ type: 'beam:need-tunnel' });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, WORKER_TUNNEL_WAIT_MS);
    waiting.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  return tunnel;
}

/** A request's body: none, whole (small: it can go again after a 307 or 308), or a stream with what was read of it so far. */
type Body = { kind: 'none' } | { kind: 'whole'; bytes: ArrayBuffer } | { kind: 'stream'; read: Uint8Array[]; reader: ReadableStreamDefaultReader<Uint8Array> };

async function readBody(request: Request): Promise<Body> {
  if (request.method === 'GET' || request.method === 'HEAD' || !request.body) return { kind: 'none' };
  const reader = request.body.getReader();
  const read: Uint8Array[] = [];
  let size = 0;
  while (size <= WORKER_BUFFERED_BODY_BYTES) {
    const { done, value } = await reader.read();
    if (done) {
      const bytes = new Uint8Array(size);
      let at = 0;
      for (const chunk of read) {
        bytes.set(chunk, at);
        at += chunk.byteLength;
      }
      return { kind: 'whole', bytes: bytes.buffer };
    }
    read.push(value);
    size += value.byteLength;
  }
  return { kind: 'stream', read, reader };
}

async function send(t: Tunnel, method: string, headers: HeaderList, body: Body, url: URL, navigate: boolean): Promise<Response> {
  const id = nextId++;
  const response = new Promise<Response>((resolve, reject) => t.pending.set(id, { resolve, reject }));
  const nav = navigate ? { navigate } : {};
  if (body.kind !== 'stream') {
    // A copy goes: the worker keeps the body for a redirect that needs it again.
    const bytes = body.kind === 'whole' ? body.bytes.slice(0) : null;
    t.port.postMessage({ type: 'request', id, method, url: url.href, headers, body: bytes, ...nav } satisfies ToPage, bytes ? [bytes] : []);
    return response;
  }
  t.port.postMessage({ type: 'request', id, method, url: url.href, headers, body: null, streamed: true, ...nav } satisfies ToPage);
  void upload(t, id, body);
  return response;
}

/** Sends a streamed body, never more than WORKER_UPLOAD_WINDOW_BYTES ahead of what the agent took. */
async function upload(t: Tunnel, id: number, body: Extract<Body, { kind: 'stream' }>): Promise<void> {
  const state = { unacked: 0, wake: undefined as (() => void) | undefined };
  t.uploads.set(id, state);
  const post = async (chunk: Uint8Array): Promise<void> => {
    while (state.unacked >= WORKER_UPLOAD_WINDOW_BYTES && t.uploads.has(id)) await new Promise<void>((resolve) => (state.wake = resolve));
    const data = chunk.slice().buffer;
    state.unacked += chunk.byteLength;
    t.port.postMessage({ type: 'body', id, data } satisfies ToPage, [data]);
  };
  try {
    for (const chunk of body.read) await post(chunk);
    for (;;) {
      if (!t.uploads.has(id)) {
        // The response is complete (or the tunnel went): the rest of the body is nobody's.
        await body.reader.cancel().catch(() => {});
        return;
      }
      const { done, value } = await body.reader.read();
      if (done) break;
      await post(value);
    }
    t.port.postMessage({ type: 'body-end', id } satisfies ToPage);
  } catch {
    t.port.postMessage({ type: 'body-error', id } satisfies ToPage);
  } finally {
    t.uploads.delete(id);
  }
}

async function viaTunnel(t: Tunnel, request: Request, url: URL): Promise<Response> {
  let method = request.method;
  let body = await readBody(request);
  const headers: HeaderList = [];
  request.headers.forEach((v, k) => {
    headers.push([k, v]);
  });
  let currentUrl = url;
  for (let hop = 0; ; hop++) {
    const response = await send(t, method, headers, body, currentUrl, request.mode === 'navigate');
    const location = response.headers.get('location');
    if (request.redirect !== 'follow' || response.status < 300 || response.status >= 400 || response.status === 304 || !location) return response;
    if (hop >= MAX_REDIRECTS) return Response.error();
    const next = new URL(location, currentUrl);
    if (next.origin !== scope.location.origin && !t.locals.has(next.host)) {
      // Leaving the share: the browser follows from here.
      return fetch(next.href, { redirect: 'follow', credentials: 'omit' });
    }
    // 303, and 301/302 after a POST, become GET without a body (the Fetch standard's rules).
    if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === 'POST')) {
      method = 'GET';
      body = { kind: 'none' };
    } else if (body.kind === 'stream') {
      // A streamed body cannot be sent again, as in the Fetch standard.
      return Response.error();
    }
    currentUrl = sameOrigin(next, t);
  }
}

/** A URL of the origin's local address, as the share's. */
function sameOrigin(url: URL, t: Tunnel | undefined): URL {
  if (!t?.locals.has(url.host)) return url;
  const out = new URL(url.pathname + url.search + url.hash, scope.location.origin);
  return out;
}

/**
 * A form's top-level POST: carried over the tunnel with the page's jar (a
 * sign-in's session cookie lands there). A document it gets is kept for the
 * bootstrap's frame, and the tab goes to its address (303): the bootstrap
 * page there keeps the session. A redirect, or anything but HTML, is the
 * browser's as it is.
 */
async function topLevelPost(request: Request, url: URL): Promise<Response> {
  const t = await currentTunnel();
  if (!t) return fetch(request);
  const response = await viaTunnel(t, request, url);
  if ((response.status > 299 && response.status < 400) || !response.headers.get('content-type')?.includes('html')) return response;
  // Read whole (the page held it whole, to put the app's script in it): the tunnel it came on goes with this document.
  stash = { url: url.href, until: Date.now() + WORKER_STASH_TTL_MS, response: new Response(await response.arrayBuffer(), response) };
  return Response.redirect(url.href, 303);
}

scope.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  const own = url.origin === scope.location.origin;
  const local = !own && (url.protocol === 'http:' || url.protocol === 'https:') && (tunnel?.locals.has(url.host) ?? false);
  if (!own && !local) return;
  // Beam's own paths are the gateway's, but for a sign-in's callback and sign-out: the agent answers those, peer to peer too.
  if (own && url.pathname.startsWith('/.beam/') && url.pathname !== SIGN_IN_CALLBACK_PATH && url.pathname !== SIGN_OUT_PATH) return;
  const navigate = request.mode === 'navigate';
  const kept = stash;
  // The bootstrap's frame, at the address a top-level POST was sent on to: the document that POST got.
  if (__BEAM_TOP__ && navigate && kept && kept.url === url.href && request.destination === 'iframe' && request.method === 'GET') {
    stash = undefined;
    if (kept.until > Date.now()) {
      event.respondWith(kept.response);
      return;
    }
  }
  // A visitor back's first stage: the frame's first document, and what it loads until its page takes over, go to the gateway.
  if (own && navigate && request.destination === 'iframe' && request.method === 'GET' && staging?.url === url.href) {
    const fresh = staging.until > Date.now();
    staging = undefined;
    if (fresh) {
      if (event.resultingClientId) {
        if (staged.size >= MAX_WORKER_STAGED_FRAMES) staged.delete(staged.values().next().value as string);
        staged.add(event.resultingClientId);
      }
      return;
    }
  }
  // The staged frame's own requests, and the next hop of its navigation's redirect (the same window to be).
  if (own && (navigate ? request.destination === 'iframe' && staged.has(event.resultingClientId ?? '') : staged.has(event.clientId))) return;
  if (gatewayOnly && !local) return;
  // A top-level navigation is the bootstrap's, from the gateway; the app lives in the frame. A form's POST is the app's.
  if (navigate && request.destination === 'document') {
    if (__BEAM_TOP__ && request.method !== 'GET' && request.method !== 'HEAD' && own) event.respondWith(topLevelPost(request, url));
    return;
  }
  event.respondWith(
    (async () => {
      const t = await currentTunnel();
      if (!t) return fetch(request);
      return viaTunnel(t, request, sameOrigin(url, t));
    })(),
  );
});
