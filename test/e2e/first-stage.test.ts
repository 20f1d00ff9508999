/**
 * A browser page's first stage, at the gateway (gateway/first-stage.ts), with
 * a real server, agent and app, the browser's requests made by hand: the
 * bootstrap opens a stage and marks the browser with its cookie; the app's
 * first document in the frame goes through the gateway with the page's script
 * first in it and the origin's localhost URLs pointed at the share; the page
 * collects the app's cookies (HttpOnly ones too), the origin's address and how
 * the document was answered, once. browser.test.ts runs it in Chromium.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BROWSER_FRAME_COOKIE, FIRST_STAGE_PATH } from '../../shared/constants.js';
import { type FixtureApp, startFixtureApp } from '../helpers/fixture-app.js';
import { gatewayRequests, pageRequests, request } from '../helpers/http.js';
import { type AgentHandle, ROOT, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';

let app: FixtureApp;
let server: ServerHandle;
let agent: AgentHandle;

beforeAll(async () => {
  app = await startFixtureApp();
  server = await startServer();
  agent = await startAgent(app.port, server, ['--no-inspect']);
});
afterAll(async () => {
  await agent?.proc.kill();
  await server?.proc.kill();
  await app?.close();
});

/** A browser's own navigation to the share (fetch metadata, as Chromium sends it on a secure origin). */
const navigate = { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'sec-fetch-site': 'none', accept: 'text/html' };
/** The bootstrap's frame loading the app. */
const frameLoad = { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'iframe', 'sec-fetch-site': 'same-origin', accept: 'text/html' };

/** Opens a stage the way a browser does: the bootstrap's answer sets its cookie. */
async function openStage(target = '/welcome'): Promise<string> {
  const boot = await request(server.port, agent.host, target, { headers: navigate });
  expect(boot.status).toBe(200);
  const cookie = [boot.headers['set-cookie'] ?? []].flat().find((c) => c.startsWith(`${BROWSER_FRAME_COOKIE}=`));
  expect(cookie).toMatch(new RegExp(`^${BROWSER_FRAME_COOKIE}=[\\w-]{22}; Max-Age=30; Path=/; HttpOnly; SameSite=Strict$`));
  expect(boot.body.toString()).toContain('var beamStageOpen = true,');
  return (cookie as string).split(';')[0] as string;
}

async function collect(cookie?: string): Promise<{ status: number; setCookie: string[]; report: Record<string, unknown> }> {
  const res = await request(server.port, agent.host, FIRST_STAGE_PATH, { headers: cookie ? { cookie } : {} });
  return { status: res.status, setCookie: [res.headers['set-cookie'] ?? []].flat(), report: JSON.parse(res.body.toString()) as Record<string, unknown> };
}

describe("a browser page's first stage", () => {
  it('opens for a navigation with fetch metadata and no secret in the link; not for a non-secure origin, a link with a secret, or curl', async () => {
    await openStage();
    const insecure = await request(server.port, agent.host, '/welcome', { headers: { 'upgrade-insecure-requests': '1', accept: 'text/html' } });
    const secret = await request(server.port, agent.host, '/welcome?beam_secret=abc', { headers: navigate });
    const curl = await request(server.port, agent.host, '/welcome');
    for (const res of [insecure, secret]) {
      expect(res.status).toBe(200);
      expect(res.body.toString()).toContain('var beamStageOpen = false,');
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    expect(curl.body.toString()).toContain('<h1 id="title">Welcome</h1>');
    expect([curl.headers['set-cookie']].flat().join()).not.toContain(BROWSER_FRAME_COOKIE);
  });

  it("carries the app's first document with the page's script first, its localhost URLs on the share, and keeps Beam's cookie and the origin's address from the app", async () => {
    const stage = await openStage();
    const before = { page: await pageRequests(server.port), gateway: await gatewayRequests(server.port) };
    const shim = readFileSync(path.join(ROOT, 'dist/browser-client/assets/app-shim.js'), 'utf8').trim();
    const res = await request(server.port, agent.host, '/welcome', { headers: { ...frameLoad, cookie: `${stage}; theme=dark`, 'accept-encoding': 'gzip' } });
    expect(res.status).toBe(200);
    // Compressed after the rewrite, as the gateway compresses any HTML.
    expect(res.headers['content-encoding']).toBe('gzip');
    const html = gunzipSync(res.body).toString('utf8');
    expect(html.startsWith(`<!doctype html><html><head><script>${shim.replace(/<\//g, '<\\/')}</script><meta charset="utf-8">`)).toBe(true);
    expect(html).toContain(`<a id="api" href="http://${agent.host}/api/me">`);
    expect(html).not.toContain(`localhost:${app.port}`);
    // The app's frame in its own page may show it; the origin's address and Beam's cookie stay Beam's.
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['beam-origin']).toBeUndefined();
    expect(app.cookies.at(-1)).toBe('theme=dark');
    // The app's cookies land in the browser's jar as well.
    expect(res.headers['set-cookie']).toEqual(['visit=v1; Path=/; HttpOnly; SameSite=Lax', 'greeting=hi; Path=/']);
    // Counted as the page's loading, not as a request of the app through the gateway.
    expect(await pageRequests(server.port)).toBe(before.page + 1);
    expect(await gatewayRequests(server.port)).toBe(before.gateway);

    // Another share's page (same site, so the SameSite=Strict cookie goes along) may not take it.
    const other = await request(server.port, agent.host, FIRST_STAGE_PATH, { headers: { cookie: stage, 'sec-fetch-site': 'same-site' } });
    expect(other.status).toBe(403);
    expect(other.headers['beam-error']).toBe('BEAM_ERR_FORBIDDEN');
    // The page collects it once: the app's cookies, HttpOnly ones too; the origin; how the document was answered.
    const first = await collect(stage);
    expect(first.status).toBe(200);
    expect(first.report).toEqual({
      cookies: [{ target: '/welcome', setCookie: ['visit=v1; Path=/; HttpOnly; SameSite=Lax', 'greeting=hi; Path=/'] }],
      origin: `localhost:${app.port}`,
      document: { target: '/welcome', status: 200 },
    });
    expect(first.setCookie).toEqual([`${BROWSER_FRAME_COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict`]);
    expect((await collect(stage)).report).toEqual({ cookies: [] });
    expect((await collect()).report).toEqual({ cookies: [] });

    // Once collected, the stage is over: the same request is the app's, as it is.
    const after = await request(server.port, agent.host, '/welcome', { headers: { ...frameLoad, cookie: stage } });
    expect(after.body.toString()).not.toContain(shim.slice(0, 60));
    expect(after.body.toString()).toContain(`localhost:${app.port}`);
    expect(await gatewayRequests(server.port)).toBe(before.gateway + 1);
  });

  it("waits for the app's first document when the page collects before its head is in", async () => {
    const stage = await openStage('/held');
    const held = app.nextHeld();
    const document = request(server.port, agent.host, '/held', { headers: { ...frameLoad, cookie: stage } });
    const release = await held;
    let collected = false;
    const collecting = collect(stage).then((c) => {
      collected = true;
      return c;
    });
    // The collection is at the gateway, waiting (its answer would otherwise be in by the time a second request is).
    await request(server.port, agent.host, '/.beam/healthz');
    expect(collected).toBe(false);
    release();
    expect((await document).status).toBe(200);
    expect((await collecting).report).toEqual({ cookies: [], origin: `localhost:${app.port}`, document: { target: '/held', status: 200 } });
  });

  it('a first document that redirects to another site sends the whole tab there (a frame would be refused), with its cookies', async () => {
    const stage = await openStage('/away');
    const res = await request(server.port, agent.host, '/away', { headers: { ...frameLoad, cookie: stage } });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers.location).toBeUndefined();
    expect(res.headers['set-cookie']).toEqual(['state=s1; Path=/; HttpOnly']);
    expect(res.body.toString()).toContain('top.location.href = "https://login.example.com/authorize?client=app";');
    // A redirect within the share stays the frame's own.
    const stage2 = await openStage('/dashboard');
    const inside = await request(server.port, agent.host, '/dashboard', { headers: { ...frameLoad, cookie: stage2 } });
    expect(inside.status).toBe(302);
    expect(inside.headers.location).toBe('/login');
  });

  it("reports an answer Beam gave instead of the app's document: the page loads it again with a private share's secret", async () => {
    const priv = await startAgent(app.port, server, ['--no-inspect', '--private']);
    try {
      const boot = await request(server.port, priv.host, '/welcome', { headers: navigate });
      const stage = [boot.headers['set-cookie'] ?? []].flat()[0]?.split(';')[0] as string;
      const document = await request(server.port, priv.host, '/welcome', { headers: { ...frameLoad, cookie: stage } });
      expect(document.status).toBe(401);
      expect(document.headers['beam-error']).toBe('BEAM_ERR_PRIVATE');
      expect((await collect(stage)).report).toEqual({ cookies: [], document: { target: '/welcome', status: 401, error: 'BEAM_ERR_PRIVATE' } });
    } finally {
      await priv.proc.kill();
    }
  });
});
