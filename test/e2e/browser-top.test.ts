/**
 * `beam serve --browser-first-load top`, in real Chromium: a new visitor's
 * navigation gets the app's own document top-level through the gateway, with
 * Beam's loader first in it; once the app has loaded, the page joins in a
 * small frame of its own (the badge), the worker takes the document over and
 * the app's next requests go peer to peer with the app's cookies. The
 * browser's next navigation gets the bootstrap page. A sign-in form's
 * top-level POST goes over the page's tunnel with the page's cookie jar, and a
 * document it answers reaches the bootstrap's frame once, not sent twice.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/browser.js';
import { type FixtureApp, startFixtureApp } from '../helpers/fixture-app.js';
import { gatewayRequests, pageRequests, request } from '../helpers/http.js';
import { ROOT, type ServerHandle, serveRefusal, startAgent, startServer } from '../helpers/procs.js';

let app: FixtureApp;
let server: ServerHandle;
let browser: Browser;

beforeAll(async () => {
  app = await startFixtureApp();
  server = await startServer(['--browser-first-load', 'top']);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await server?.proc.kill();
  await app?.close();
});

/** Page-side waits: a step through the gateway or a new session may take a few seconds on a busy machine. */
const poll = { timeout: 15_000 };

/** The page's state as the loader shows it on the app's document (`window.__beam`). */
const beamPath = (page: Page): Promise<string | undefined> => page.evaluate(() => (window as unknown as { __beam?: { path: string } }).__beam?.path);
const controlled = (page: Page): Promise<boolean> => page.evaluate(() => navigator.serviceWorker.controller !== null);

const navigate = { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'sec-fetch-site': 'none', accept: 'text/html' };

describe('beam serve --browser-first-load top', () => {
  it("answers a new visitor's navigation with the app's document and the loader, marking the browser; a marked browser gets the bootstrap; curl gets the app as it is", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    try {
      const first = await request(server.port, agent.host, '/login', { headers: navigate });
      expect(first.status).toBe(200);
      const text = first.body.toString();
      expect(text).toContain('<h1 id="title">Sign in</h1>');
      // The loader and the app's shim go first, before anything of the app's.
      expect(text.indexOf('/.beam/session')).toBeGreaterThan(-1);
      expect(text.indexOf('/.beam/session')).toBeLessThan(text.indexOf('<title>'));
      const cookies = [first.headers['set-cookie'] ?? []].flat().map((c) => c.split(';')[0]?.split('=')[0]);
      expect(cookies).toEqual(expect.arrayContaining(['beam_frame', 'beam_page']));
      expect([first.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith('beam_page='))).toMatch(/HttpOnly/);
      // A browser with the page's worker: the bootstrap page, as without the option, and the marker renewed.
      const marked = await request(server.port, agent.host, '/login', { headers: { ...navigate, cookie: 'beam_page=1' } });
      expect(marked.body.toString()).toContain('id="beam-config"');
      expect(marked.body.toString()).not.toContain('<h1 id="title">');
      expect([marked.headers['set-cookie'] ?? []].flat().some((c) => c.startsWith('beam_page=1'))).toBe(true);
      // curl: the app as it is, no loader and no cookie of Beam's.
      const curl = await request(server.port, agent.host, '/login');
      expect(curl.body.toString()).toContain('<h1 id="title">Sign in</h1>');
      expect(curl.body.toString()).not.toContain('/.beam/session');
      expect(curl.headers['set-cookie']).toBeUndefined();
      // The origin never sees Beam's cookies.
      await request(server.port, agent.host, '/api/cookies', { headers: { cookie: 'beam_page=1; theme=dark' } });
      expect(app.cookies.at(-1)).toBe('theme=dark');
      // The page without an app frame, for the loader's frame.
      const session = await request(server.port, agent.host, '/.beam/session');
      expect(session.body.toString()).toContain('"top":true');
      expect(session.body.toString()).toContain('#beam-app{display:none}');
    } finally {
      await agent.proc.kill();
    }
  });

  it("keeps what a new visitor loads up front within issue 4's 60 KiB gzipped: the loader in the app's document, Beam's page, its scripts and this server's worker", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    try {
      const gz = (bytes: Buffer): number => gzipSync(bytes, { level: 9 }).byteLength;
      const assets = path.join(ROOT, 'dist/browser-client/assets');
      const built = JSON.parse(readFileSync(path.join(assets, 'sizes.json'), 'utf8')) as Record<string, { onDemand: boolean }>;
      const loader = readFileSync(path.join(assets, 'loader.js'), 'utf8').trim();
      const first = await request(server.port, agent.host, '/', { headers: navigate });
      expect(first.body.toString()).toContain(loader);
      let upfront = gz(Buffer.from(loader));
      const session = await request(server.port, agent.host, '/.beam/session');
      expect(session.status).toBe(200);
      upfront += gz(session.body);
      // This server's worker is the build that also carries a form's top-level POST.
      const worker = await request(server.port, agent.host, '/.beam/client/sw.js');
      expect(worker.body.equals(readFileSync(path.join(assets, 'sw-top.js')))).toBe(true);
      upfront += gz(worker.body);
      // The page's script and what it imports.
      const scripts = Object.entries(built)
        .filter(([name, s]) => !s.onDemand && name.endsWith('.js') && name !== 'sw.js')
        .map(([name]) => name);
      expect(scripts).toContain('page.js');
      for (const name of scripts) {
        const script = await request(server.port, agent.host, `/.beam/client/${name}`);
        expect(script.status, name).toBe(200);
        upfront += gz(script.body);
      }
      expect(upfront).toBeLessThanOrEqual(60 * 1024);
    } finally {
      await agent.proc.kill();
    }
  });

  it("shows a new visitor the app top-level at once; Beam's page joins in a small frame, the worker takes the document over, and the app's next requests go peer to peer with its cookies, HttpOnly ones too", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const before = { gateway: await gatewayRequests(server.port), page: await pageRequests(server.port) };
      const page = await context.newPage();
      // The link redirects (with a cookie) to the landing page: both answers are the same first stage.
      await page.goto(new URL('/enter', agent.url).href);
      expect(new URL(page.url()).pathname).toBe('/welcome');
      // The app's own document, top-level: no bootstrap page and no app frame.
      expect(await page.locator('#title').textContent()).toBe('Welcome');
      expect(await page.locator('#beam-app').count()).toBe(0);
      // The shim went in before the app's script: the app's worker is refused, its localhost URL points at the share.
      await expect.poll(() => page.locator('#sw').textContent(), poll).toBe('refused');
      expect(await page.locator('#api').getAttribute('href')).toBe(`${new URL(agent.url).origin}/api/me`);
      await expect.poll(() => beamPath(page), poll).toBe('direct');
      await expect.poll(() => controlled(page), poll).toBe(true);
      // The page's frame is the badge, no bigger.
      await expect.poll(async () => (await page.locator('#beam-session').boundingBox())?.height ?? 0, poll).toBeGreaterThan(0);
      const box = await page.locator('#beam-session').boundingBox();
      expect(box?.width).toBeLessThan(480);
      expect(box?.height).toBeLessThan(100);
      expect(await page.frameLocator('#beam-session').locator('#beam-badge span').textContent()).toMatch(/^Beam: direct/);
      // Peer to peer now, with the cookies the redirect and the first document set (the HttpOnly ones came to the page's jar from the gateway).
      expect(await page.evaluate(() => (window as unknown as { serverCookies(): Promise<string> }).serverCookies())).toBe('entered,greeting,visit');
      expect(app.cookies.at(-1)).toContain('visit=v1');
      // The gateway carried the first stage only, counted as the page's.
      expect(await pageRequests(server.port)).toBeGreaterThan(before.page);
      expect(await gatewayRequests(server.port)).toBe(before.gateway);
      // The next navigation gets the bootstrap, which keeps the session while the app navigates in its frame.
      await page.goto(new URL('/dashboard', agent.url).href);
      await expect.poll(() => page.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Sign in');
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      expect(await gatewayRequests(server.port)).toBe(before.gateway);
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it("a WebSocket the app's top-level first document opens before Beam's page has joined waits for the page's tunnel: it never goes through the gateway", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext();
    try {
      const before = await gatewayRequests(server.port);
      const page = await context.newPage();
      await page.goto(new URL('/early-ws', agent.url).href);
      // The app's own document, top-level, whose socket opened as it was parsed.
      await expect.poll(() => page.locator('#got').textContent(), poll).toBe('echo: hi');
      expect(await page.locator('#beam-app').count()).toBe(0);
      expect(app.seen).toContain('WS /ws-open');
      expect(await gatewayRequests(server.port)).toBe(before);
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it("carries a sign-in form's top-level POST over the page's tunnel with its jar: the answer reaches the bootstrap's frame once, and the session holds across a reload", async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const page = await context.newPage();
      await page.goto(new URL('/login?stay=1', agent.url).href);
      expect(await page.locator('#title').textContent()).toBe('Sign in');
      await expect.poll(() => beamPath(page), poll).toBe('direct');
      await expect.poll(() => controlled(page), poll).toBe(true);
      const before = { gateway: await gatewayRequests(server.port), seen: app.seen.length };
      await page.locator('#user').fill('bob');
      await page.locator('#submit').click();
      // The page the POST got (200, not a redirect) shows in the bootstrap's frame at the same address.
      await expect.poll(() => page.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Signed in as bob');
      expect(new URL(page.url()).pathname + new URL(page.url()).search).toBe('/login?stay=1');
      // Sent once: the frame took the kept document, the app was not asked again.
      expect(app.seen.slice(before.seen).filter((r) => r !== 'GET /favicon.ico')).toEqual(['POST /login']);
      expect(await gatewayRequests(server.port)).toBe(before.gateway);
      // The session cookie (HttpOnly) is in the page's jar: the app's next request carries it, peer to peer.
      const me = await page.frames()[1]?.evaluate(() => fetch('/api/me').then((r) => r.json()));
      expect(me).toEqual({ user: 'bob' });
      // A reload asks the app again (the kept document went once) and stays signed in.
      await page.reload();
      await expect.poll(() => page.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Sign in');
      await expect.poll(() => page.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
      expect(await page.frames()[1]?.evaluate(() => fetch('/api/me').then((r) => r.json()))).toEqual({ user: 'bob' });
      expect(await gatewayRequests(server.port)).toBe(before.gateway);
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it('a browser whose worker still runs but whose marker is gone gets the bootstrap after one reload, not a document the worker would hold for a tunnel nobody offers', async () => {
    const agent = await startAgent(app.port, server, ['--no-inspect']);
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const page = await context.newPage();
      await page.goto(new URL('/welcome', agent.url).href);
      await expect.poll(() => controlled(page), poll).toBe(true);
      await page.close();
      await context.clearCookies();
      const again = await context.newPage();
      await again.goto(new URL('/welcome', agent.url).href);
      await expect.poll(() => again.frameLocator('#beam-app').locator('#title').textContent(), poll).toBe('Welcome');
      expect(await again.evaluate(() => sessionStorage.getItem('beam:reloaded'))).toBe('1');
      await expect.poll(() => again.locator('#beam-badge').getAttribute('data-path'), poll).toBe('direct');
    } finally {
      await context.close();
      await agent.proc.kill();
    }
  });

  it('refuses a --browser-first-load other than frame or top with BEAM_ERR_BAD_OPTION', async () => {
    const refused = await serveRefusal(['--browser-first-load', 'side']);
    expect(refused.code).toBe('BEAM_ERR_BAD_OPTION');
    expect(refused.message).toContain('--browser-first-load must be "frame" or "top"');
    expect(refused.exit).not.toBe(0);
  });
});
