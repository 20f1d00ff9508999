/**
 * Cookie tossing between shares, in Chromium: share A's app sets cookies
 * with `Domain=<server domain>`, which a browser would send to every share
 * of the server (session fixation across shares). Through the gateway and in
 * the page's peer-to-peer mode alike, share B's app must never see them,
 * while A's own cookies keep working on A.
 */
import http from 'node:http';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scopeSetCookie } from '../../shared/cookies.js';
import { launchChromium } from '../helpers/browser.js';
import { close, listen } from '../helpers/http.js';
import { type AgentHandle, type ServerHandle, startAgent, startServer } from '../helpers/procs.js';

/** A's app: every page sets cookies scoped to the whole server domain, and one to its own host. */
function tosser(): http.Server {
  return http.createServer((req, res) => {
    const host = (req.headers['x-forwarded-host'] ?? req.headers.host ?? '').toString().replace(/:\d+$/, '');
    res.writeHead(200, {
      'content-type': 'text/html',
      'set-cookie': [
        'fixation=attacker; Domain=localhost; Path=/',
        'fixation2=attacker; Domain=.localhost; Path=/; HttpOnly',
        `own=a; Domain=${host}; Path=/`,
        'plain=a; Path=/',
      ],
    });
    res.end(`<!doctype html><title>A</title><p id="cookies">${req.headers.cookie ?? ''}</p>`);
  });
}

/** B's app: shows the Cookie header it got. */
function victim(): http.Server {
  return http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><title>B</title><p id="cookies">${req.headers.cookie ?? ''}</p>`);
  });
}

let browser: Browser;
const apps: http.Server[] = [];

beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  for (const app of apps) {
    app.closeAllConnections();
    await close(app);
  }
});

async function shares(serverArgs: string[]): Promise<{ server: ServerHandle; a: AgentHandle; b: AgentHandle; stop(): Promise<void> }> {
  const appA = tosser();
  const appB = victim();
  apps.push(appA, appB);
  const server = await startServer(serverArgs);
  const a = await startAgent(`127.0.0.1:${await listen(appA)}`, server, ['--no-inspect']);
  const b = await startAgent(`127.0.0.1:${await listen(appB)}`, server, ['--no-inspect']);
  return {
    server,
    a,
    b,
    async stop() {
      await a.proc.kill();
      await b.proc.kill();
      await server.proc.kill();
    },
  };
}

/** The cookies an app's page shows it received: the top document's, or the app frame's in the page's peer-to-peer mode. */
async function cookiesSeen(url: string, frame: boolean): Promise<string> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(url);
    const where = frame ? page.frameLocator('#beam-app').locator('#cookies') : page.locator('#cookies');
    await where.waitFor({ state: 'attached', timeout: 20_000 });
    return (await where.textContent()) ?? '';
  } finally {
    await context.close();
  }
}

describe('a share cannot set cookies for another share of the same server', () => {
  for (const [mode, args, frame] of [
    ['through the gateway', ['--no-browser-p2p'], false],
    ["in the page's peer-to-peer mode", [], true],
  ] as const) {
    it(mode, async () => {
      const { a, b, stop } = await shares([...args]);
      try {
        const context = await browser.newContext();
        const page = await context.newPage();
        const at =
          (_handle: AgentHandle): (() => Promise<string>) =>
          async () => {
            const where = frame ? page.frameLocator('#beam-app').locator('#cookies') : page.locator('#cookies');
            await where.waitFor({ state: 'attached', timeout: 20_000 });
            return (await where.textContent()) ?? '';
          };
        // A sets its cookies; a second visit shows they work on A itself, each once.
        await page.goto(a.url);
        await at(a)();
        await page.goto(a.url);
        await expect.poll(at(a), { timeout: 20_000 }).toMatch(/plain=a/);
        const onA = (await at(a)())
          .split('; ')
          .map((c) => c.split('=')[0])
          .sort();
        expect(onA).toEqual(['fixation', 'fixation2', 'own', 'plain']);
        // B, opened in the same browser, sees none of them.
        await page.goto(b.url);
        const onB = await at(b)();
        expect(onB, `B's app received: ${onB}`).not.toMatch(/fixation|own=a|plain=a/);
        expect((await context.cookies()).filter((c) => c.domain.replace(/^\./, '') === 'localhost')).toEqual([]);
        await context.close();
        // A fresh browser opening B directly sees nothing either.
        expect(await cookiesSeen(b.url, frame)).toBe('');
      } finally {
        await stop();
      }
    });
  }
});

describe('scopeSetCookie', () => {
  it.each([
    ['a=1; Domain=localhost; Path=/', 'app.localhost:7070', 'a=1; Path=/'],
    ['a=1; domain=.LOCALHOST', 'app.localhost', 'a=1'],
    ['a=1; Domain=app.localhost; Secure', 'App.Localhost:80', 'a=1; Domain=app.localhost; Secure'],
    ['a=1; Domain=other.example; HttpOnly', 'app.localhost', 'a=1; HttpOnly'],
    ['a=1; Domain', 'app.localhost', 'a=1'],
    ['a=1; Path=/; Max-Age=60', 'app.localhost', 'a=1; Path=/; Max-Age=60'],
    ['a=1; Domain=127.0.0.1', '127.0.0.1:7070', 'a=1; Domain=127.0.0.1'],
  ])('%s from %s is %s', (value, host, expected) => {
    expect(scopeSetCookie(value, host)).toBe(expected);
  });
});
