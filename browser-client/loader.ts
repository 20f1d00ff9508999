/**
 * Runs first in a new visitor's top-level first document (`beam serve
 * --browser-first-load top`): the gateway answered the visitor's navigation
 * with the app's own document, through its HTTP path, so the app paints with
 * no page of Beam's, no frame and no worker before it. Once the app has
 * loaded, this registers Beam's worker and adds the page (page.ts) in a small
 * frame of its own (SESSION_PAGE_PATH, the badge): the session, the page's
 * cookie jar and the tunnel it offers the worker. The worker then takes this
 * document over: its later requests go peer to peer. The app's next
 * navigation gets the bootstrap page, which keeps the session while the app
 * navigates in its frame.
 *
 * A browser that already has the page's worker (it controls this document),
 * or whose page keeps the app's cookies or a private share's secret, reloads
 * at once: the gateway's marker (BROWSER_PAGE_COOKIE, set with this document)
 * gets it the bootstrap, whose page carries that jar.
 */
import { BROWSER_WORKER_PATH, SESSION_PAGE_PATH } from '../shared/constants.js';

(() => {
  // The same keys as the page's (page.ts, jar.ts).
  const RELOADED = 'beam:reloaded';
  try {
    const returning = navigator.serviceWorker?.controller || (localStorage.getItem('beam:cookies') ?? '[]') !== '[]' || localStorage.getItem('beam:secret');
    // Once: a browser that keeps no cookie (so no marker) would get this document again.
    if (returning && !sessionStorage.getItem(RELOADED)) {
      sessionStorage.setItem(RELOADED, '1');
      location.reload();
      return;
    }
  } catch {
    // storage blocked: the page could keep nothing either; the app stays on the gateway's path
    return;
  }
  if (!window.isSecureContext || !navigator.serviceWorker || typeof RTCPeerConnection === 'undefined') return;
  // Taken before the app's shim (next) refuses the app's own registrations.
  const workers = navigator.serviceWorker;
  const register = workers.register.bind(workers);
  const frame = document.createElement('iframe');
  // The app's WebSockets ride the page's session (app-shim.ts, next); tests and curious users read the page's state here too.
  const page = (): (Window & { __beam?: unknown }) | null => frame.contentWindow;
  // __beamLoading: the page is on its way, so the app's WebSockets wait for its tunnel meanwhile (app-shim.ts).
  Object.assign(window, { __beamPage: page, __beamLoading: true });
  Object.defineProperty(window, '__beam', { get: () => page()?.__beam, configurable: true });
  const start = (): void => {
    register(BROWSER_WORKER_PATH, { scope: '/' }).catch(() => {});
    frame.id = 'beam-session';
    frame.title = 'Beam';
    frame.src = SESSION_PAGE_PATH;
    frame.style.cssText = 'position:fixed;right:0;bottom:0;width:0;height:0;border:0;z-index:2147483647;color-scheme:normal';
    // The frame is the badge: sized to it, so the rest of the app's corner stays the app's.
    frame.addEventListener(
      'load',
      () => {
        const badge = frame.contentDocument?.getElementById('beam-badge');
        if (!badge) return;
        const fit = (): void => {
          // Measured in room for its widest; then the frame shrinks around it.
          frame.style.width = '480px';
          frame.style.height = '160px';
          const r = badge.isConnected ? badge.getBoundingClientRect() : undefined;
          frame.style.width = r ? `${Math.ceil(r.width) + 20}px` : '0';
          frame.style.height = r ? `${Math.ceil(r.height) + 20}px` : '0';
        };
        new ResizeObserver(fit).observe(badge);
        badge.querySelector('button')?.addEventListener('click', () => setTimeout(fit));
      },
      { once: true },
    );
    document.documentElement.appendChild(frame);
  };
  if (document.readyState === 'complete') start();
  else window.addEventListener('load', start, { once: true });
})();
