/**
 * What `beam serve` answers on its HTTP entry, in order: socket.io's own
 * path (it handles it first), /metrics on the server's own host, the facts
 * `beam doctor` reads, the local CA, health checks, the browser client's
 * assets and bootstrap page, and everything else as a share's request (the
 * gateway). Upgrades: the relay's path, else a share's WebSocket.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import {
  BRIDGE_PATH,
  BROWSER_ASSET_PATH,
  BROWSER_FRAME_COOKIE,
  BROWSER_PAGE_COOKIE,
  FIRST_STAGE_PATH,
  LOCAL_CA_PATH,
  RELAY_PATH,
  SECRET_PARAM,
  SESSION_PAGE_PATH,
  SIGNALING_PATH,
} from '../shared/constants.js';
import { BrowserClient, hasCookie } from './browser.js';
import { sendError } from './error-page.js';
import { cookieValue, FirstStages } from './first-stage.js';
import type { Gateway } from './gateway.js';
import type { ServerMetrics } from './metrics.js';
import type { RelayServer } from './relay.js';

export interface ServerRoutes {
  gateway: Gateway;
  /** The browser client, when built and not turned off (--no-browser-p2p). */
  browser: BrowserClient | undefined;
  /** None on the embedded default: /metrics is then a share's path like any other. */
  metrics: ServerMetrics | undefined;
  relay: RelayServer;
  /** What /readyz says: 'ok' is 200, the rest 503. */
  readiness: () => 'ok' | 'draining' | 'not ready';
  /** Public facts for `beam doctor`: never TURN credentials. `stunPort`: the server's own STUN. */
  doctor: () => { stun: string[]; turn: boolean; stunPort?: number };
  /** A local certificate authority's certificate (beam --tls), offered at LOCAL_CA_PATH. */
  caCert: Buffer | undefined;
  /** Whether a share's visitors sign in (--oidc): its browsers get the app from the gateway, top-level, not the peer-to-peer page. */
  signsIn?: ((share: string) => Promise<boolean>) | undefined;
}

/** Liveness and readiness, at /healthz and /readyz on the server's own host and at /.beam/… on any host. */
export function healthPath(url: string | undefined, ownHost: boolean): 'healthz' | 'readyz' | undefined {
  const path = (url ?? '').split('?')[0];
  if (path === '/.beam/healthz' || (ownHost && path === '/healthz')) return 'healthz';
  if (path === '/.beam/readyz' || (ownHost && path === '/readyz')) return 'readyz';
  return undefined;
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(`${JSON.stringify(value)}\n`);
}

export function serverRoutes(r: ServerRoutes): {
  onRequest: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  onUpgrade: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;
} {
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.url?.startsWith(`${SIGNALING_PATH}/`)) return;
    const ownHost = r.gateway.route(req.headers.host) === undefined;
    const metrics = r.metrics;
    if (ownHost && req.url === '/metrics' && metrics) {
      // Only on the server's own host: a share's visitors never see the server's numbers.
      void metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' });
        res.end(text);
      });
      return;
    }
    if (req.url === '/.beam/doctor') {
      json(res, 200, r.doctor());
      return;
    }
    if (r.caCert && req.url === LOCAL_CA_PATH) {
      res.writeHead(200, {
        'content-type': 'application/x-pem-file',
        'content-disposition': 'attachment; filename="beam-local-ca.pem"',
        'cache-control': 'no-store',
      });
      res.end(r.caCert);
      return;
    }
    const check = healthPath(req.url, ownHost);
    if (check) {
      const status = check === 'healthz' ? 'ok' : r.readiness();
      json(res, status === 'ok' ? 200 : 503, { status });
      return;
    }
    if (r.browser && !ownHost) {
      if (req.url?.startsWith(BROWSER_ASSET_PATH) && r.browser.serveAsset(req, res, r.gateway.firstStage?.loader !== undefined)) return;
      const share = r.gateway.route(req.headers.host);
      const stages = r.gateway.firstStage?.stages;
      if (share && stages && req.method === 'GET' && req.url === FIRST_STAGE_PATH) {
        // The page collects what its first stage left for it, once; its browser's stage cookie goes. Only the
        // share's own page may: another share is on the same site, where a SameSite=Strict cookie still goes.
        const site = req.headers['sec-fetch-site'];
        if (site !== undefined && site !== 'same-origin') {
          sendError(req.headers, res, 'BEAM_ERR_FORBIDDEN', "the first stage is for the share's own page");
          return;
        }
        void stages.collect(cookieValue(req.headers.cookie, BROWSER_FRAME_COOKIE)).then((report) => {
          res.writeHead(200, {
            'content-type': 'application/json',
            'cache-control': 'no-store',
            'x-content-type-options': 'nosniff',
            'set-cookie': FirstStages.cookie(undefined),
          });
          res.end(JSON.stringify(report));
        });
        return;
      }
      // The page without an app frame, which a top-level first document's loader adds (browser-client/loader.ts).
      if (share && req.method === 'GET' && req.url === SESSION_PAGE_PATH && r.gateway.firstStage?.loader) {
        r.browser.serveBootstrap(req, res, share, false, undefined, { top: true, marker: true });
        return;
      }
      if (share && BrowserClient.isNavigation(req)) {
        const browser = r.browser;
        r.gateway.warm(share);
        // With --browser-first-load top, a new visitor (no marker of the page's worker) gets the app's own
        // document top-level, through the gateway, with the page's loader in it; every page renews the marker.
        const top = r.gateway.firstStage?.loader !== undefined;
        const marker = top ? { marker: true } : {};
        const topLevel = (signsIn: boolean): boolean => {
          if (!top || signsIn || req.method !== 'GET' || hasCookie(req.headers.cookie, BROWSER_PAGE_COOKIE)) return false;
          if (!staged(false)) return false;
          // The app's first answer redirected here: the stage it opened goes on (its cookies are the page's too).
          const opened = stages?.of(req.headers.cookie) ?? stage(false);
          if (!opened) return false;
          void r.gateway.handleRequest(req, res, opened);
          return true;
        };
        // The frame loads the app at once through the gateway (a first stage), unless the link carries a private
        // share's secret: that goes to the agent in a header, never in the app's address.
        // A browser that sends no fetch metadata is on a non-secure origin: its page takes the gateway's path whole.
        // A browser marked as one with the page's worker gets one too: its page asks the worker to pass the frame's
        // document to the gateway, and declines the stage without its word (bootstrap.html).
        const staged = (signsIn: boolean): boolean =>
          stages !== undefined &&
          !signsIn &&
          req.method === 'GET' &&
          req.headers['sec-fetch-mode'] !== undefined &&
          !new URLSearchParams((req.url ?? '').split('?')[1] ?? '').has(SECRET_PARAM);
        const stage = (signsIn: boolean): ReturnType<FirstStages['open']> | undefined => (staged(signsIn) ? stages?.open() : undefined);
        if (!r.signsIn) {
          if (!topLevel(false)) browser.serveBootstrap(req, res, share, false, stage(false), marker);
          return;
        }
        // A share whose visitors sign in: the agent runs the sign-in peer to peer too; its page needs to know, for when it can't.
        void r.signsIn(share).then(
          (signsIn) => {
            if (!topLevel(signsIn)) browser.serveBootstrap(req, res, share, signsIn, stage(signsIn), marker);
          },
          () => browser.serveBootstrap(req, res, share),
        );
        return;
      }
    }
    void r.gateway.handleRequest(req, res);
  };
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (req.url?.startsWith(`${SIGNALING_PATH}/`)) return;
    if (req.url === RELAY_PATH || req.url?.startsWith(`${RELAY_PATH}?`)) {
      r.relay.handleUpgrade(req, socket, head);
      return;
    }
    // The share's browser page, while its peer connection comes up (with the page turned off, there is none).
    if (req.url === BRIDGE_PATH && r.browser) {
      r.gateway.handleBridge(req, socket, head);
      return;
    }
    void r.gateway.handleUpgrade(req, socket, head);
  };
  return { onRequest, onUpgrade };
}
