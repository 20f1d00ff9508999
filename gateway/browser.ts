/**
 * What the gateway serves browsers so they reach a share peer to peer
 * (browser-client/): the bootstrap page for a top-level navigation, and the
 * page's script and Service Worker under BROWSER_ASSET_PATH on every share
 * host.
 *
 * Only a browser's own navigation gets the bootstrap (GET, Sec-Fetch-Mode:
 * navigate, Sec-Fetch-Dest: document). curl, webhooks and the app's own
 * frames and fetches carry no such headers, so one link still works for
 * everything: they get the gateway's HTTP path as before.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import {
  BROWSER_ASSET_PATH,
  BROWSER_FRAME_COOKIE,
  BROWSER_GATEWAY_COOKIE,
  BROWSER_PAGE_COOKIE,
  BROWSER_PAGE_COOKIE_MAX_AGE_S,
  BROWSER_WORKER_PATH,
  WORKER_STAGE_ANSWER_MS,
} from '../shared/constants.js';
import { type FirstStage, FirstStages } from './first-stage.js';

interface Asset {
  type: string;
  body: Buffer;
  /** The body gzipped once, at load, for browsers that accept it. */
  gzip: Buffer;
}

/** The built assets (npm run build writes them); undefined when they are missing. */
function load(dir: string): Map<string, Asset> | undefined {
  const assets = new Map<string, Asset>();
  try {
    // The page's script, the worker, and the chunks the page imports (browser-client/build.mjs).
    const names = readdirSync(dir).filter((n) => n.endsWith('.js'));
    for (const name of ['bootstrap.html', ...names]) {
      const body = readFileSync(path.join(dir, name));
      assets.set(name, {
        type: name.endsWith('.html') ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8',
        body,
        gzip: gzipSync(body, { level: 9 }),
      });
    }
  } catch {
    return undefined;
  }
  return assets.has('page.js') && assets.has('sw.js') ? assets : undefined;
}

/** Accept-Encoding allows gzip (a q=0 refuses it). */
function acceptsGzip(header: string | undefined): boolean {
  return (header ?? '').split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding !== 'gzip' && coding !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

export function hasCookie(header: string | undefined, name: string): boolean {
  return (header ?? '').split(';').some((c) => c.trim().startsWith(`${name}=`));
}

/**
 * A navigation Beam's worker fetched itself: its way to the gateway for the
 * frame's document when no page offered it a tunnel in time. Chromium sends
 * it with mode `navigate` and no destination (`empty`), which only a worker's
 * fetch can carry; the browser holds the marker that Beam's worker script
 * set (BROWSER_PAGE_COOKIE). Without this it was answered as any fetch: an
 * app's `X-Frame-Options: DENY` went through, and the frame refused it.
 */
function workerNavigation(req: IncomingMessage): boolean {
  return (
    req.headers['sec-fetch-mode'] === 'navigate' &&
    req.headers['sec-fetch-dest'] === 'empty' &&
    req.headers['sec-fetch-site'] === 'same-origin' &&
    hasCookie(req.headers.cookie, BROWSER_PAGE_COOKIE)
  );
}

/**
 * A request for the app's frame in the share's own bootstrap page, loaded
 * through the gateway: a same-origin frame navigation (or Beam's worker's
 * fetch of one), or (no fetch metadata on a non-secure origin) a browser the
 * bootstrap marked with its cookie.
 */
export function inBeamFrame(req: IncomingMessage): boolean {
  if (req.headers['sec-fetch-dest'] !== undefined) {
    return (req.headers['sec-fetch-dest'] === 'iframe' && req.headers['sec-fetch-site'] === 'same-origin') || workerNavigation(req);
  }
  return hasCookie(req.headers.cookie, BROWSER_GATEWAY_COOKIE);
}

/**
 * The app's document in the share's own bootstrap frame, as the bootstrap
 * loads it (a same-origin frame navigation, or Beam's worker's fetch of one):
 * a page's first stage puts the page's script in it (gateway/first-stage.ts).
 */
export function isFrameDocument(req: IncomingMessage): boolean {
  if (req.method !== 'GET') return false;
  if (workerNavigation(req)) return true;
  return req.headers['sec-fetch-mode'] === 'navigate' && req.headers['sec-fetch-dest'] === 'iframe' && req.headers['sec-fetch-site'] === 'same-origin';
}

/** Beam's own cookies: the origin never sees them. */
export const BEAM_COOKIES = [BROWSER_GATEWAY_COOKIE, BROWSER_FRAME_COOKIE, BROWSER_PAGE_COOKIE];

/** The Set-Cookie header that marks a browser as one with the page's worker (BROWSER_PAGE_COOKIE), renewed by each page. */
export const PAGE_MARKER = `${BROWSER_PAGE_COOKIE}=1; Max-Age=${BROWSER_PAGE_COOKIE_MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax`;

/** A Cookie header without Beam's own cookies (the origin never sees them); undefined when nothing is left. */
export function withoutBeamCookie(header: string): string | undefined {
  if (!BEAM_COOKIES.some((name) => header.includes(name))) return header;
  const kept = header
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c && !BEAM_COOKIES.some((name) => c.startsWith(`${name}=`)));
  return kept.length ? kept.join('; ') : undefined;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** Next to the compiled gateway (dist/), or in dist/ when the gateway runs from its sources (tests). */
const DEFAULT_DIRS = [path.join(here, '..', 'browser-client', 'assets'), path.join(here, '..', 'dist', 'browser-client', 'assets')];

/** The bootstrap's head, for a page with no first stage: its code is fetched while the document is still parsed. */
const PAGE_PRELOAD = '<link rel="preload" as="script" crossorigin href="/.beam/client/page.js">';

export class BrowserClient {
  private readonly assets: Map<string, Asset>;
  /** The script that goes first into every HTML page of the app (browser-client/app-shim.ts); the gateway puts it in a first stage's document. */
  readonly appShim: string | undefined;
  /** What goes before it in a top-level first document (browser-client/loader.ts): it adds the page once the app has loaded. */
  readonly loader: string | undefined;

  private constructor(assets: Map<string, Asset>) {
    this.assets = assets;
    this.appShim = assets.get('app-shim.js')?.body.toString('utf8').trim();
    this.loader = assets.get('loader.js')?.body.toString('utf8').trim();
  }

  /** Undefined when the assets were never built: browsers then get the HTTP path, as curl does. */
  static load(dirs = DEFAULT_DIRS): BrowserClient | undefined {
    // app-shim.js comes with page.js from one build (browser-client/build.mjs).
    for (const dir of dirs) {
      const assets = load(dir);
      if (assets) return new BrowserClient(assets);
    }
    return undefined;
  }

  /** A browser's own top-level navigation (not the app's frame, fetch or form POST). */
  static isNavigation(req: IncomingMessage): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    // The bootstrap's cookie means "through the gateway from now on": the page set it where it can't run
    // peer to peer (no secure context; a sign-in share with no peer-to-peer path).
    if (hasCookie(req.headers.cookie, BROWSER_GATEWAY_COOKIE)) return false;
    const mode = req.headers['sec-fetch-mode'];
    if (mode !== undefined) return mode === 'navigate' && req.headers['sec-fetch-dest'] === 'document';
    // Browsers send no fetch metadata to a non-secure origin (plain http on a
    // LAN address): a navigation shows in its Accept and Upgrade-Insecure-Requests.
    return req.headers['upgrade-insecure-requests'] === '1' && (req.headers.accept ?? '').includes('text/html');
  }

  /**
   * Answers a request for BROWSER_ASSET_PATH…; false if it names no asset.
   * `top`: the server runs `--browser-first-load top`, whose worker (sw-top.js) is served as sw.js.
   */
  serveAsset(req: IncomingMessage, res: ServerResponse, top = false): boolean {
    const name = (req.url ?? '').split('?')[0]?.slice(BROWSER_ASSET_PATH.length) ?? '';
    const asset = name === 'bootstrap.html' ? undefined : this.assets.get(top && name === 'sw.js' ? 'sw-top.js' : name);
    if (!asset) return false;
    const gzip = acceptsGzip(req.headers['accept-encoding']);
    const body = gzip ? asset.gzip : asset.body;
    res.writeHead(200, {
      'content-type': asset.type,
      'content-length': body.byteLength,
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
      vary: 'Accept-Encoding',
      // A chunk's name changes with its contents; the worker must be checked
      // for updates on every registration, and page.js names the chunks.
      'cache-control': name.startsWith('chunk-') ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
      // The browser is registering the page's worker: its next navigations need no first stage (they get none).
      ...(req.url?.startsWith(BROWSER_WORKER_PATH) ? { 'service-worker-allowed': '/', 'set-cookie': PAGE_MARKER } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }

  /**
   * The bootstrap page for `share`. `signIn`: its visitors sign in (the page
   * then falls back to the gateway for the whole tab). `stage`: the page's
   * first stage (gateway/first-stage.ts): its frame loads the app at once,
   * through the gateway, and the browser carries the stage's cookie.
   * `page.top`: the page without an app frame, in a small frame of the app's
   * top-level first document (SESSION_PAGE_PATH); `page.marker`: the browser
   * gets (or renews) BROWSER_PAGE_COOKIE.
   */
  serveBootstrap(
    req: IncomingMessage,
    res: ServerResponse,
    share: string,
    signIn = false,
    stage?: FirstStage,
    page: { top?: boolean; marker?: boolean } = {},
  ): void {
    const config = JSON.stringify({ share, ...(signIn ? { signIn } : {}), ...(page.top ? { top: true } : {}) }).replace(/</g, '\\u003c');
    const cookies = [...(stage ? [FirstStages.cookie(stage)] : []), ...(page.marker ? [PAGE_MARKER] : [])];
    let text = (this.assets.get('bootstrap.html') as Asset).body
      .toString('utf8')
      .replace('__BEAM_CONFIG__', config)
      .replace('__BEAM_FIRST_STAGE__', stage ? 'true' : 'false')
      .replace('__BEAM_STAGE_ANSWER_MS__', String(WORKER_STAGE_ANSWER_MS))
      // A new visitor's page with a first stage fetches its code only once the app's first document has loaded
      // (bootstrap.html). A browser with the page's worker has that code in its cache: asking whether it changed
      // (page.js is no-cache) costs a round trip and no body, and the page needs it at once if it declines the stage.
      .replace('__BEAM_PRELOAD__', stage && !hasCookie(req.headers.cookie, BROWSER_PAGE_COOKIE) ? '' : PAGE_PRELOAD);
    // The page as the badge over the app's own document: no app frame, and the app shows around it.
    if (page.top) text = text.replace('</head>', '<style>html,body{background:transparent}#beam-app{display:none}</style></head>');
    const html = Buffer.from(text);
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': html.byteLength,
      'cache-control': 'no-store',
      vary: 'Sec-Fetch-Mode, Sec-Fetch-Dest',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'same-origin',
      ...(cookies.length > 0 ? { 'set-cookie': cookies } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : html);
  }
}
