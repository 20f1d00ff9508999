/**
 * A share opened in real Chromium (Debian's, through playwright-core): the
 * bootstrap page reaches the agent peer to peer and a Service Worker carries
 * the app's requests over data channels. A multi-page app with a login
 * cookie, a form POST and its redirect, fetch bodies, SSE and a localhost URL
 * works from the page; the gateway proxies none of it. With the direct path
 * refused the relay carries it; on a non-secure origin the gateway does, and
 * the page says why.
 */

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_REWRITE_BYTES, WORKER_STAGE_ANSWER_MS } from '../../shared/constants.js';
import { launchChromium } from '../helpers/browser.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { type FixtureApp, startFixtureApp } from '../helpers/fixture-app.js';
import { gatewayRequests, pageRequests, request } from '../helpers/http.js';
import { BeamProcess, onPath, ROOT, type ServerHandle, startAgent, startServer, tlsServe } from '../helpers/procs.js';
import { makeCertificates } from '../helpers/tls.js';

let app: FixtureApp;
let server: ServerHandle;
let browser: Browser;

beforeAll(async () => {
  app = await startFixtureApp();
  server = await startServer();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.proc.kill();
  await app?.close();
});

const expectedEcho = (): string => {
  const body = new Uint8Array(200_000).map((_, i) => (i * 7) % 251);
  return `200000 ${createHash('sha256').update(body).digest('hex')}`;
};

/** The built assets and their sizes (browser-client/build.mjs): which chunks load only on demand. */
const sizes = (): Record<string, { bytes: number; gzip: number; onDemand: boolean }> =>
  JSON.parse(readFileSync(path.join(ROOT, 'dist/browser-client/assets/sizes.json'), 'utf8')) as Record<
    string,
    { bytes: number; gzip: number; onDemand: boolean }
  >;

/** Beam's scripts the page has loaded so far (by file name), from its resource timing. */
async function loadedScripts(page: Page): Promise<string[]> {
  const urls = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name));
  return urls.filter((u) => u.includes('/.beam/client/')).map((u) => path.basename(new URL(u).pathname));
}

/** Page-side waits: a step through the gateway or a new session may take a few seconds on a busy machine. */
const poll = { timeout: 15_000 };

/**
 * Signs in through the app's form and checks the dashboard: cookie, redirect,
 * SSE, fetch body, and (peer to peer, where the worker sees them) localhost URLs.
 */
async function useApp(page: Page, localUrls = true): Promise<void> {
  const frame = page.frameLocator('#beam-app');
  await expect.poll(() => frame.locator('#title').textContent(), poll).toBe('Home');
  await expect.poll(() => frame.locator('#who').textContent(), poll).toBe('not signed in');
  await frame.locator('#to-login').click();
  await expect.poll(() => frame.locator('#title').textContent(), poll).toBe('Sign in');
  await frame.locator('#user').fill('alice');
  await frame.locator('#submit').click();
  // POST, 303 with Set-Cookie, GET /dashboard with the cookie.
  await expect.poll(() => frame.locator('#title').textContent(), poll).toBe('Welcome alice');
  await expect.poll(() => frame.locator('#events li').allTextContents(), poll).toEqual(['tick 1', 'tick 2', 'tick 3']);
  await expect.poll(() => frame.locator('#echo').textContent(), poll).toBe(expectedEcho());
  if (localUrls) await expect.poll(() => frame.locator('#local').textContent(), poll).toBe('me: alice');
  // The app's own worker would take the share's scope from Beam's: peer to peer it is refused (the gateway's path has none of Beam's to lose).
  if (localUrls) await expect.poll(() => frame.locator('#sw').textContent(), poll).toBe('refused');
  // Scripts read the CSRF cookie, never the HttpOnly session; a cookie they set reaches the server.
  await expect.poll(() => frame.locator('#js-cookies').textContent(), poll).toMatch(/(^|,)csrf(,|$)/);
  expect(await frame.locator('#js-cookies').textContent()).not.toMatch(/(^|,)session(,|$)/);
  await expect.poll(() => frame.locator('#server-cookies').textContent(), poll).toBe('csrf,session,theme');
  // A WebSocket with a subprotocol, text and binary, and a clean close; the cookie went with the upgrade.
  await expect.poll(() => frame.locator('#ws').textContent(), poll).toBe('echo: echo: ping 1 | bytes 1,2,3,250');
  await expect.poll(() => frame.locator('#ws').getAttribute('data-closed'), poll).toBe('1000 true');
  // The address bar follows the app.
  await expect.poll(() => new URL(page.url()).pathname, poll).toBe('/dashboard');
}

describe('a share in a browser', () => {
  it('runs a multi-page app peer to peer: login cookie, form POST, redirect, SSE, fetch bodies, localhost URLs; the gateway proxies nothing', async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const before = await gatewayRequests(server.port);
      const page = await context.newPage();
      await page.goto(agent.url);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      // The direct path runs on DTLS alone: the page never loads the chunks that carry Noise.
      const onDemand = Object.entries(sizes())
        .filter(([, s]) => s.onDemand)
        .map(([name]) => name);
      expect(onDemand.length).toBeGreaterThan(0);
      expect(await loadedScripts(page)).toContain('page.js');
      expect((await loadedScripts(page)).filter((n) => onDemand.includes(n))).toEqual([]);
      await useApp(page);
      expect(app.seen).toEqual(
        expect.arrayContaining(['GET /', 'GET /login', 'POST /login', 'GET /dashboard', 'GET /events', 'POST /api/echo', 'GET /api/me', 'WS /ws']),
      );
      // A body too big to hold streams through the worker with credit; a small one goes again after a 307.
      const uploads = await page.frames()[1]?.evaluate(async () => {
        const pattern = (size: number): ArrayBuffer => new Uint8Array(size).map((_, i) => (i * 31) % 251).buffer as ArrayBuffer;
        const big = await (await fetch('/api/echo', { method: 'POST', body: pattern(8 * 1024 * 1024) })).json();
        const moved = await (await fetch('/api/moved', { method: 'POST', body: pattern(1000) })).json();
        return { big, moved };
      });
      const pattern = (size: number): Buffer => Buffer.from(new Uint8Array(size).map((_, i) => (i * 31) % 251));
      expect(uploads).toEqual({
        big: {
          length: 8 * 1024 * 1024,
          sha256: createHash('sha256')
            .update(pattern(8 * 1024 * 1024))
            .digest('hex'),
        },
        moved: { length: 1000, sha256: createHash('sha256').update(pattern(1000)).digest('hex') },
      });
      // HTML is held whole to point its localhost URLs at the share, up to MAX_REWRITE_BYTES; one byte more is refused with a code.
      const held = await page.frames()[1]?.evaluate(async (cap) => {
        const at = await fetch(`/big.html?bytes=${cap}`);
        const text = await at.text();
        const over = await fetch(`/big.html?bytes=${cap + 1}`);
        // All of it, with the page's script put in it.
        const rest = text.replace(/<script[^>]*>[\s\S]*?<\/script>/g, '');
        return { status: at.status, whole: rest.length === cap && /^a*$/.test(rest), over: over.status, code: over.headers.get('beam-error') };
      }, MAX_REWRITE_BYTES);
      expect(held).toEqual({ status: 200, whole: true, over: 502, code: 'BEAM_ERR_STREAM_RESET' });
      // A reload keeps the session (the jar), and a deep link opens where it points.
      await page.goto(new URL('/dashboard', agent.url).href);
      await expect.poll(() => page.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Welcome alice');
      await expect.poll(() => page.locator('#beam-badge span').textContent(), poll).toMatch(/^Beam: direct · [\d.]+ ms$/);
      // A second tab shares the worker and the cookie jar; when it closes, the first carries on through its own session.
      const second = await context.newPage();
      await second.goto(agent.url);
      await expect.poll(() => second.frameLocator('#beam-app').locator('#who').textContent(), poll).toBe('signed in as alice');
      await second.close();
      await page.frames()[1]?.evaluate(() => {
        location.href = '/';
      });
      await expect.poll(() => page.frameLocator('#beam-app').locator('#who').textContent(), poll).toBe('signed in as alice');
      expect(await gatewayRequests(server.port)).toBe(before);
      mkdirSync(path.join(ROOT, 'test/artifacts'), { recursive: true });
      await page.screenshot({ path: path.join(ROOT, 'test/artifacts/browser-direct.png') });
      // The agent saw a browser visitor on the direct path (first, or right after the relay on a loaded machine).
      const session = await agent.proc.waitFor(onPath('direct', 'browser'));
      expect(session['visitor']).toBe('browser');
      // curl on the same link still gets the app through the gateway.
      const curl = await request(server.port, agent.host, '/');
      expect(curl.body.toString()).toContain('<h1 id="title">Home</h1>');
      expect(await gatewayRequests(server.port)).toBe(before + 1);
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it("a new visitor's frame loads the app at once through the gateway (the first stage); the page then takes over, with the app's cookies, HttpOnly ones too", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const before = { gateway: await gatewayRequests(server.port), page: await pageRequests(server.port) };
      const page = await context.newPage();
      await page.goto(new URL('/welcome', agent.url).href);
      const frame = page.frameLocator('#beam-app');
      await expect.poll(() => frame.locator('#title').textContent(), poll).toBe('Welcome');
      // The frame started loading before the page's own script ran.
      const marks = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, m.startTime])));
      expect(marks['beam:frame']).toBeLessThan(marks['beam:start'] as number);
      // Nothing of the page's code was fetched, compiled or run beside the app's first document: the page's code
      // (page.js and its chunks, side by side) was asked for once that document had loaded, or at the bootstrap's 1 s cap.
      const order = await page.evaluate(() => {
        const at = (name: string): number => performance.getEntriesByName(name)[0]?.startTime ?? Number.NaN;
        const inner = (document.getElementById('beam-app') as HTMLIFrameElement).contentWindow as Window;
        const nav = inner.performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
        const code = performance.getEntriesByType('resource').filter((r) => /\/\.beam\/client\/(page|chunk-[^/]*)\.js$/.test(r.name));
        return {
          asked: at('beam:frame'),
          loaded: inner.performance.timeOrigin + nav.loadEventStart - performance.timeOrigin,
          run: at('beam:run'),
          code: code.map((r) => ({ name: r.name.replace(/.*\//, ''), start: r.startTime })),
        };
      });
      expect(order.run >= order.loaded - 1 || order.run >= order.asked + 1000, JSON.stringify(order)).toBe(true);
      expect(order.code.map((c) => c.name)).toContain('page.js');
      expect(order.code.filter((c) => c.name.startsWith('chunk-')).length).toBeGreaterThan(0);
      for (const c of order.code) expect(c.start, JSON.stringify(order)).toBeGreaterThanOrEqual(order.run);
      expect(await page.locator('link[rel=preload]').count()).toBe(0);
      // The gateway put the page's script first in that document: the app's own worker is refused there too,
      // and its localhost URL points at the share.
      await expect.poll(() => frame.locator('#sw').textContent(), poll).toBe('refused');
      expect(await frame.locator('#api').getAttribute('href')).toBe(`${new URL(agent.url).origin}/api/me`);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      // Peer to peer now, the app's request carries both cookies its first document set: the HttpOnly one came to the page's jar from the gateway.
      const seen = await page.frames()[1]?.evaluate(() => (window as unknown as { serverCookies(): Promise<string> }).serverCookies());
      expect(seen).toBe('greeting,visit');
      expect(app.cookies.at(-1)).toContain('visit=v1');
      // The gateway carried the page's first stage, counted as such, and nothing of the app since.
      expect(await pageRequests(server.port)).toBeGreaterThan(before.page);
      expect(await gatewayRequests(server.port)).toBe(before.gateway);
      // The worker's script marked the browser as one with the worker (HttpOnly: the app never reads it).
      const marker = (await context.cookies()).find((c) => c.name === 'beam_page');
      expect(marker?.httpOnly).toBe(true);
      // The same visitor in a new tab: the server opens a stage, but the page's jar holds the app's cookies (the
      // browser's jar may not), so the page declines it: the worker answers the frame, through the page's code,
      // fetched as the bootstrap is parsed (a marked browser has it in its cache), its chunks compiled at once.
      const again = await context.newPage();
      await again.goto(new URL('/welcome', agent.url).href);
      await expect.poll(() => again.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Welcome');
      expect(await again.evaluate(() => (window as unknown as { beamStageOpen: boolean }).beamStageOpen)).toBe(true);
      expect(await again.evaluate(() => (window as unknown as { beamStage: boolean }).beamStage)).toBe(false);
      expect(await again.locator('link[rel=preload][href$="/page.js"]').count()).toBe(1);
      expect(await again.locator('link[rel=modulepreload]').count()).toBeGreaterThan(0);
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it("a visitor back, with Beam's worker running and nothing in the page's jar: the frame's document, and what it loads, come through the gateway at once; the page then takes over", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext();
    try {
      const first = await context.newPage();
      await first.goto(new URL('/styled', agent.url).href);
      await expect.poll(() => first.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      await expect.poll(() => first.evaluate(() => navigator.serviceWorker.controller !== null), poll).toBe(true);
      const before = { gateway: await gatewayRequests(server.port), page: await pageRequests(server.port) };
      const seen = app.seen.length;
      // A new tab of the same browser: its worker runs, and the app set no cookies.
      const back = await context.newPage();
      await back.goto(new URL('/styled', agent.url).href);
      const frame = back.frameLocator('#beam-app');
      await expect.poll(() => frame.locator('#title').textContent(), poll).toBe('Styled');
      const state = await back.evaluate(() => {
        const w = window as unknown as { beamStage: boolean; beamWorker: unknown };
        return { stage: w.beamStage, worker: Boolean(w.beamWorker) };
      });
      expect(state).toEqual({ stage: true, worker: true });
      // The frame was asked for before the page's code ran, and that code ran once the frame's document had loaded
      // (its stylesheet included): neither waited for the other.
      const order = await back.evaluate(() => {
        const at = (name: string): number => performance.getEntriesByName(name)[0]?.startTime ?? Number.NaN;
        const inner = (document.getElementById('beam-app') as HTMLIFrameElement).contentWindow as Window;
        const nav = inner.performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
        return { asked: at('beam:frame'), loaded: inner.performance.timeOrigin + nav.loadEventStart - performance.timeOrigin, run: at('beam:run') };
      });
      expect(order.asked, JSON.stringify(order)).toBeLessThan(order.run);
      expect(order.run, JSON.stringify(order)).toBeGreaterThanOrEqual(order.loaded - 1);
      expect(order.loaded - order.asked, JSON.stringify(order)).toBeLessThan(1000);
      // Both the document and its stylesheet went through the gateway as the page's first stage, as a new visitor's do.
      expect(await frame.locator('#title').evaluate((e) => getComputedStyle(e).color)).toBe('rgb(1, 2, 3)');
      expect(app.seen.slice(seen)).toEqual(expect.arrayContaining(['GET /styled', 'GET /style.css']));
      expect(await pageRequests(server.port)).toBeGreaterThanOrEqual(before.page + 2);
      // Then the page takes the frame's requests: peer to peer, neither of the gateway's counters moves.
      await expect.poll(() => back.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      const afterStage = await pageRequests(server.port);
      const me = await back.frames()[1]?.evaluate(async () => (await fetch('/api/me')).json());
      expect(me).toEqual({ user: null });
      expect(app.seen.at(-1)).toBe('GET /api/me');
      expect(await pageRequests(server.port)).toBe(afterStage);
      expect(await gatewayRequests(server.port)).toBe(before.gateway);
      // A visitor back whose first document redirects (setting a cookie), in the only tab (no other page's tunnel to
      // take): both hops go through the gateway at once, and the cookie the redirect set reaches the page's jar.
      await first.close();
      await back.close();
      const redirected = await context.newPage();
      await redirected.goto(new URL('/enter', agent.url).href);
      await expect.poll(() => redirected.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Welcome');
      const hops = await redirected.evaluate(() => {
        const at = (name: string): number => performance.getEntriesByName(name)[0]?.startTime ?? Number.NaN;
        const inner = (document.getElementById('beam-app') as HTMLIFrameElement).contentWindow as Window;
        const nav = inner.performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
        return {
          stage: (window as unknown as { beamStage: boolean }).beamStage,
          asked: at('beam:frame'),
          loaded: inner.performance.timeOrigin + nav.loadEventStart - performance.timeOrigin,
          run: at('beam:run'),
        };
      });
      expect(hops.stage).toBe(true);
      expect(hops.loaded - hops.asked, JSON.stringify(hops)).toBeLessThan(1000);
      expect(hops.run, JSON.stringify(hops)).toBeGreaterThanOrEqual(hops.loaded - 1);
      expect(await pageRequests(server.port)).toBeGreaterThanOrEqual(afterStage + 2);
      await expect.poll(() => redirected.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      const cookies = await redirected.frames()[1]?.evaluate(() => (window as unknown as { serverCookies(): Promise<string> }).serverCookies());
      expect(cookies).toBe('entered,greeting,visit');
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it('a bootstrap whose running worker does not answer its ask (a worker of an older Beam) declines the stage after WORKER_STAGE_ANSWER_MS and tells it; the page then loads the app', async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext();
    try {
      // The tab's top window sees a controller that takes messages and never answers, until the bootstrap gives up.
      await context.addInitScript(() => {
        if (window !== window.top) return;
        const w = window as unknown as { silentWorker: Array<{ type: string; at: number; ports: number }> };
        w.silentWorker = [];
        let declined = false;
        const silent = {
          postMessage(message: { type: string }, ports?: MessagePort[]) {
            w.silentWorker.push({ type: message.type, at: performance.now(), ports: ports?.length ?? 0 });
            if (message.type === 'beam:unstage') declined = true;
          },
        };
        const own = Object.getOwnPropertyDescriptor(ServiceWorkerContainer.prototype, 'controller');
        Object.defineProperty(ServiceWorkerContainer.prototype, 'controller', {
          configurable: true,
          get(this: ServiceWorkerContainer) {
            return declined ? own?.get?.call(this) : silent;
          },
        });
      });
      const page = await context.newPage();
      await page.goto(new URL('/styled', agent.url).href);
      await expect.poll(() => page.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Styled');
      const seen = await page.evaluate(() => {
        const w = window as unknown as { silentWorker: Array<{ type: string; at: number; ports: number }>; beamStage: boolean; beamStageOpen: boolean };
        return {
          messages: w.silentWorker,
          stage: w.beamStage,
          open: w.beamStageOpen,
          run: performance.getEntriesByName('beam:run')[0]?.startTime ?? Number.NaN,
        };
      });
      expect(seen.open).toBe(true);
      expect(seen.stage).toBe(false);
      expect(seen.messages.map((m) => m.type)).toEqual(['beam:stage', 'beam:unstage']);
      // The ask carried a reply port; the page's code ran once the answer's time was up, not before.
      expect(seen.messages[0]?.ports).toBe(1);
      const waited = (seen.messages[1]?.at ?? 0) - (seen.messages[0]?.at ?? 0);
      expect(waited, JSON.stringify(seen)).toBeGreaterThanOrEqual(WORKER_STAGE_ANSWER_MS - 5);
      expect(seen.run, JSON.stringify(seen)).toBeGreaterThanOrEqual(seen.messages[1]?.at ?? Number.NaN);
      // The frame never went to the gateway as a stage: the page carried it, peer to peer.
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it("a WebSocket the app's first document opens while the page connects waits for the page's tunnel: it never goes through the gateway", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext();
    try {
      const before = await gatewayRequests(server.port);
      const page = await context.newPage();
      await page.goto(new URL('/early-ws', agent.url).href);
      const frame = page.frameLocator('#beam-app');
      await expect.poll(() => frame.locator('#got').textContent(), poll).toBe('echo: hi');
      // The socket opened before the page's code ran (a first stage), and rode the page's tunnel.
      const marks = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, m.startTime])));
      expect(marks['beam:frame']).toBeLessThan(marks['beam:run'] as number);
      expect(app.seen).toContain('WS /ws-open');
      expect(await gatewayRequests(server.port)).toBe(before);
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it('when the agent loses the signaling server for a moment, the page keeps its peer-to-peer session: the app goes on with the gateway out of the path', async () => {
    const proxy = await startFaultProxy(server.port);
    const agent = new BeamProcess(['http', String(app.port), '--server', `http://127.0.0.1:${proxy.port}`, '--json', '--no-inspect']);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const ready = await agent.waitFor('ready');
      const page = await context.newPage();
      await page.goto(ready['url'] as string);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      const frame = page.frameLocator('#beam-app');
      await expect.poll(() => frame.locator('#title').textContent(), poll).toBe('Home');
      const session = await agent.waitFor(onPath('direct', 'browser'));
      const before = await gatewayRequests(server.port);
      const mark = agent.events.length;
      proxy.cut();
      // Signaling told the page at once; by the time the agent has its name back, the page has acted on it.
      await agent.waitFor((e) => e.event === 'ready' && e['resumed'] === true, mark);
      await frame.locator('#to-login').click();
      await expect.poll(() => frame.locator('#title').textContent(), poll).toBe('Sign in');
      expect(await page.locator('#beam-badge').getAttribute('data-path')).toBe('direct');
      expect(await gatewayRequests(server.port)).toBe(before);
      expect(agent.events.slice(mark).filter((e) => e.event === 'session-closed' && e['id'] === session['id'])).toEqual([]);
    } finally {
      await context.close();
      await agent.kill();
      await proxy.close();
    }
  });

  it('with the direct path refused, the same page works over the end-to-end encrypted relay, and the badge says so', async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect', '--relay', 'always']);
    const context = await browser.newContext();
    try {
      const before = await gatewayRequests(server.port);
      const page = await context.newPage();
      await page.goto(agent.url);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('relay');
      await expect.poll(() => page.locator('#beam-badge span').textContent(), poll).toMatch(/^Beam: relay/);
      // The relay runs Noise, loaded for it.
      const onDemand = Object.entries(sizes())
        .filter(([, s]) => s.onDemand)
        .map(([name]) => name);
      expect((await loadedScripts(page)).filter((n) => onDemand.includes(n)).length).toBeGreaterThan(0);
      await useApp(page);
      expect(await gatewayRequests(server.port)).toBe(before);
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it("a --private share: the link's secret goes with every request, peer to peer; the app never sees it; a wrong one is refused and forgotten; without it, 401 through the gateway", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect', '--private']);
    const context = await browser.newContext();
    const stranger = await browser.newContext();
    const guesser = await browser.newContext();
    try {
      expect(agent.url).toContain('beam_secret=');
      const before = await gatewayRequests(server.port);
      const page = await context.newPage();
      await page.goto(agent.url);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      await useApp(page);
      expect(await gatewayRequests(server.port)).toBe(before);
      // Nor in the address bar: the secret stays with the page for reloads.
      expect(page.url()).not.toContain('beam_secret');
      await page.reload();
      await expect.poll(() => page.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Welcome alice');
      expect(app.cookies.filter((c) => c.includes('beam_secret'))).toEqual([]);
      const other = await stranger.newPage();
      await other.goto(new URL('/dashboard', agent.url.split('?')[0]).href);
      await expect.poll(() => other.locator('#beam-badge').getAttribute('data-path'), poll).toBe('gateway');
      await expect.poll(() => other.frameLocator('#beam-app').locator('body').textContent(), poll).toContain('BEAM_ERR_PRIVATE');
      // A wrong secret: the agent refuses each request, and the page forgets it for the next visit.
      const wrong = await guesser.newPage();
      const guessed = new URL(agent.url);
      guessed.searchParams.set('beam_secret', 'not-the-secret');
      await wrong.goto(guessed.href);
      await expect.poll(() => wrong.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      await expect.poll(() => wrong.frameLocator('#beam-app').locator('body').textContent(), poll).toContain('BEAM_ERR_PRIVATE');
      expect(await wrong.evaluate(() => localStorage.getItem('beam:secret'))).toBeNull();
      expect(app.cookies.filter((c) => c.includes('beam_secret'))).toEqual([]);
    } finally {
      await context.close();
      await stranger.close();
      await guesser.close();
      await agent.proc.kill();
    }
  });

  it('a TCP share opened in a browser: the page says what it is, through the gateway', async () => {
    const tcp = new BeamProcess(['tcp', String(app.port), '--server', server.url, '--json']);
    const context = await browser.newContext();
    try {
      const ready = await tcp.waitFor('ready');
      const page = await context.newPage();
      await page.goto(ready['url'] as string);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('gateway');
      await expect.poll(() => page.locator('#beam-why').textContent(), poll).toContain('BEAM_ERR_SHARE_KIND');
      await expect.poll(() => page.frameLocator('#beam-app').locator('body').textContent(), poll).toContain('BEAM_ERR_SHARE_KIND');
    } finally {
      await context.close();
      await tcp.kill();
    }
  });

  it('on a non-secure origin the app loads through the gateway, and the page says why and how to get peer to peer', async () => {
    // http://<name>.beam.test is no secure context (unlike *.localhost): no Service Worker there.
    const plain = await startServer(['--domain', 'beam.test']);
    const agent = await startAgent(app.port, plain, ['--no-inspect']);
    const insecure = await launchChromium([`--host-resolver-rules=MAP *.beam.test 127.0.0.1`]);
    try {
      const page = await insecure.newPage();
      await page.goto(agent.url);
      expect(new URL(agent.url).hostname).toMatch(/\.beam\.test$/);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('gateway');
      await expect.poll(() => page.locator('#beam-why').textContent(), poll).toContain('not a secure context');
      expect(await page.locator('#beam-why').textContent()).toContain('https');
      // The gateway passes bodies as they are: the app's localhost URL stays the visitor's own.
      await useApp(page, false);
      expect(await gatewayRequests(plain.port)).toBeGreaterThanOrEqual(5);
      // From then on this browser's navigations are proxied: a reload is the app itself, signed in.
      await page.reload();
      expect(await page.locator('#title').textContent()).toBe('Welcome alice');
      expect(await page.locator('#beam-app').count()).toBe(0);
      // Beam's cookie never reaches the app.
      expect(app.cookies.length).toBeGreaterThan(0);
      expect(app.cookies.filter((c) => c.includes('beam_via'))).toEqual([]);
    } finally {
      await insecure.close();
      await agent.proc.kill();
      await plain.proc.kill();
    }
  });

  it("gives the bootstrap to browser navigations only: curl, the app's frames and fetches get the app; --no-browser-p2p turns it off", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const off = await startServer(['--no-browser-p2p']);
    const offAgent = await startAgent(app.port, off, ['--no-inspect']);
    try {
      const navigate = { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept: 'text/html' };
      const boot = await request(server.port, agent.host, '/deep?x=1', { headers: navigate });
      expect(boot.status).toBe(200);
      expect(boot.body.toString()).toContain(`<script id="beam-config" type="application/json">{"share":"${agent.name}"}</script>`);
      expect(boot.headers['cache-control']).toBe('no-store');
      // A new visitor's page gets a first stage, and so fetches none of its code as it is parsed.
      expect(boot.body.toString()).toContain('var beamStageOpen = true,');
      expect(boot.body.toString()).not.toContain('rel="preload"');
      for (const headers of [
        {} as Record<string, string>,
        { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe' },
        { 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' },
      ]) {
        const res = await request(server.port, agent.host, '/', { headers });
        expect(res.body.toString()).toContain('<h1 id="title">Home</h1>');
        // The app's own framing policy, as it sent it.
        expect(res.headers['x-frame-options']).toBe('DENY');
      }
      // Its frame in the share's own page may show it; other sites still may not.
      const framed = await request(server.port, agent.host, '/', {
        headers: { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe', 'sec-fetch-site': 'same-origin' },
      });
      expect(framed.headers['x-frame-options']).toBe('SAMEORIGIN');
      const elsewhere = await request(server.port, agent.host, '/', {
        headers: { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe', 'sec-fetch-site': 'cross-site' },
      });
      expect(elsewhere.headers['x-frame-options']).toBe('DENY');
      // Beam's worker's own fetch of the frame's document (no tunnel in time): Chromium names no destination for it.
      const refetched = { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'empty', 'sec-fetch-site': 'same-origin' };
      const byWorker = await request(server.port, agent.host, '/', { headers: { ...refetched, cookie: 'beam_page=1' } });
      expect(byWorker.body.toString()).toContain('<h1 id="title">Home</h1>');
      expect(byWorker.headers['x-frame-options']).toBe('SAMEORIGIN');
      // Without the marker of Beam's worker, such a request may be the app's own worker's: its policy stands.
      expect((await request(server.port, agent.host, '/', { headers: refetched })).headers['x-frame-options']).toBe('DENY');
      // A form POST navigation is the app's.
      const post = await request(server.port, agent.host, '/login', {
        method: 'POST',
        headers: { ...navigate, 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.from('user=bob'),
      });
      expect(post.status).toBe(303);
      const worker = await request(server.port, agent.host, '/.beam/client/sw.js');
      expect(worker.status).toBe(200);
      expect(worker.headers['service-worker-allowed']).toBe('/');
      // Fetching the worker's script marks the browser (HttpOnly). A marked browser's navigation opens a first stage
      // too (its page asks its worker first), and names the page's script at once: it is in that browser's cache.
      expect([worker.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith('beam_page='))).toMatch(/HttpOnly/);
      const marked = await request(server.port, agent.host, '/', { headers: { ...navigate, cookie: 'beam_page=1' } });
      expect(marked.body.toString()).toContain('var beamStageOpen = true,');
      expect(marked.body.toString()).toContain('rel="preload"');
      expect([marked.headers['set-cookie'] ?? []].flat().some((c) => c.startsWith('beam_frame='))).toBe(true);
      expect(worker.headers['content-type']).toBe('text/javascript; charset=utf-8');
      expect((await request(server.port, agent.host, '/.beam/client/bootstrap.html')).status).not.toBe(200);
      // Every script gzipped for browsers that take it; chunks (named by their contents) cached for good.
      const built = sizes();
      let upfront = 0;
      for (const [name, s] of Object.entries(built)) {
        if (s.onDemand === false) upfront += s.gzip;
        if (!name.endsWith('.js')) continue;
        const plainJs = await request(server.port, agent.host, `/.beam/client/${name}`);
        const gz = await request(server.port, agent.host, `/.beam/client/${name}`, { headers: { 'accept-encoding': 'gzip, deflate, br' } });
        expect(plainJs.headers['content-encoding'], name).toBeUndefined();
        expect(plainJs.body.byteLength, name).toBe(s.bytes);
        expect(gz.headers['content-encoding'], name).toBe('gzip');
        expect(gunzipSync(gz.body).equals(plainJs.body), name).toBe(true);
        expect(gz.headers['cache-control'], name).toBe(name.startsWith('chunk-') ? 'public, max-age=31536000, immutable' : 'no-cache');
        // Node's immediates, which browsers lack, come from the build's shims: none is left to the browser's globals.
        expect(plainJs.body.toString(), name).not.toMatch(/\b(setImmediate|clearImmediate)\(/);
      }
      // Issue 4's budget: what every visitor loads (bootstrap, its scripts, the worker) is 60 KiB gzipped or less.
      expect(upfront).toBeLessThanOrEqual(60 * 1024);
      const plain = await request(off.port, offAgent.host, '/', { headers: navigate });
      expect(plain.body.toString()).toContain('<h1 id="title">Home</h1>');
    } finally {
      await agent.proc.kill();
      await offAgent.proc.kill();
      await off.proc.kill();
    }
  });

  it('beam serve --tls-cert/--tls-key: https for a domain other than localhost, where the browser gets peer to peer; curl gets the app over https', async () => {
    const certs = makeCertificates('beam.test');
    const tlsServer = tlsServe('beam.test', certs);
    const ready = await tlsServer.waitFor('ready');
    const port = ready['port'] as number;
    expect(ready['url']).toBe(`https://beam.test:${port}`);
    // The agent trusts the test authority as it would a public one.
    const agent = new BeamProcess(['http', String(app.port), '--server', `https://127.0.0.1:${port}`, '--json', '--no-inspect'], {
      NODE_EXTRA_CA_CERTS: certs.caFile,
    });
    const secure = await launchChromium([`--host-resolver-rules=MAP *.beam.test 127.0.0.1`, '--ignore-certificate-errors']);
    try {
      const shared = await agent.waitFor('ready');
      const url = shared['url'] as string;
      expect(url).toMatch(new RegExp(`^https://[a-z0-9-]+\\.beam\\.test:${port}/$`));
      const curl = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port, path: '/', headers: { host: new URL(url).host }, ca: certs.ca, servername: new URL(url).hostname }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          })
          .on('error', reject);
      });
      expect(curl.status).toBe(200);
      expect(curl.body).toContain('<h1 id="title">Home</h1>');
      const page = await secure.newPage();
      await page.goto(url);
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      await useApp(page);
    } finally {
      await secure.close();
      await agent.kill();
      await tlsServer.kill();
    }
  });

  it('beam serve refuses a key that does not match its certificate, or one without the other, with BEAM_ERR_BAD_OPTION', async () => {
    const a = makeCertificates('beam.test');
    const b = makeCertificates('beam.test');
    for (const [args, words] of [
      [['--tls-cert', a.certFile, '--tls-key', b.keyFile], 'key'],
      [['--tls-cert', a.certFile], '--tls-key'],
      [['--tls-cert', '/nonexistent.pem', '--tls-key', a.keyFile], 'ENOENT'],
    ] as const) {
      const proc = new BeamProcess(['serve', '--port', '0', '--json', ...args]);
      const event = await proc.waitFor('error');
      expect(event['code']).toBe('BEAM_ERR_BAD_OPTION');
      expect(String(event['message'])).toContain(words);
      expect(await proc.exited).toBe(1);
    }
  });
});
