/**
 * Sign-in with OpenID Connect, end to end: a certified provider run locally
 * (oidc-provider), a share with --oidc, and Chromium doing the login through
 * the gateway. The agent runs the flow (PKCE, state, nonce, the ID token's
 * signature and claims); the origin gets the user in headers it can trust;
 * refusals: an address not on the list, an unverified one, a callback with
 * a wrong state or none started, a forged session cookie, and beam connect.
 * The same sign-in in the page's peer-to-peer mode: the agent answers the
 * callback over the page's own path, and the session lives in the page's jar.
 */
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BROWSER_GATEWAY_COOKIE } from '../../shared/constants.js';
import { launchChromium } from '../helpers/browser.js';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
let agent: BeamProcess;
let browser: Browser;
let providerServer: import('node:http').Server;
let issuer: string;
const NAME = 'signin-app';
/** A second share of the same client whose sign-ins last 2 s. */
const SHORT = 'signin-short';
let host: string;
let shortHost: string;
let shortAgent: BeamProcess;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  host = `${NAME}.localhost:${server.port}`;
  shortHost = `${SHORT}.localhost:${server.port}`;
  // The provider learns its own URL once it listens: a placeholder until then.
  const { createServer } = await import('node:http');
  let handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void = () => {};
  providerServer = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => providerServer.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(providerServer.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'beam-test',
        client_secret: 'beam-test-secret',
        redirect_uris: [`http://${host}/.beam/oidc/callback`, `http://${shortHost}/.beam/oidc/callback`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    // The login is the e-mail; one that starts with "unverified" is not verified.
    async findAccount(_ctx: unknown, id: string) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: id, email_verified: !id.startsWith('unverified'), name: 'Ada Lovelace' };
        },
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['beam-test-provider-cookies'] },
  } as never);
  handler = provider.callback() as typeof handler;
  agent = new BeamProcess(
    [
      'http',
      `127.0.0.1:${origin.port}`,
      '--server',
      server.url,
      '--name',
      NAME,
      '--json',
      '--no-inspect',
      '--oidc',
      issuer,
      '--oidc-client-id',
      'beam-test',
      '--oidc-allow-domain',
      'example.com',
    ],
    { BEAM_OIDC_CLIENT_SECRET: 'beam-test-secret' },
  );
  await agent.waitFor('ready');
  shortAgent = new BeamProcess(
    [
      'http',
      `127.0.0.1:${origin.port}`,
      '--server',
      server.url,
      '--name',
      SHORT,
      '--json',
      '--no-inspect',
      '--oidc',
      issuer,
      '--oidc-client-id',
      'beam-test',
      '--oidc-session',
      '2s',
    ],
    { BEAM_OIDC_CLIENT_SECRET: 'beam-test-secret' },
  );
  await shortAgent.waitFor('ready');
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await agent?.kill();
  await shortAgent?.kill();
  await server?.proc.kill();
  await origin?.close();
  providerServer?.close();
});

/**
 * A fresh browser context whose pages of the share at `at` come from the
 * gateway (the cookie the bootstrap page sets where peer to peer can't run).
 */
async function viaGateway(at = host): Promise<BrowserContext> {
  const context = await browser.newContext();
  await context.addCookies([{ name: BROWSER_GATEWAY_COOKIE, value: 'gateway', url: `http://${at}/` }]);
  return context;
}

/** Signs in as `login` in a fresh browser context through the gateway, starting at `path` on the share (`at`: its host); the page where it ends. */
async function signIn(login: string, path: string, at = host): Promise<{ context: BrowserContext; page: Page }> {
  const context = await viaGateway(at);
  const page = await context.newPage();
  await page.goto(`http://${at}${path}`);
  // The provider's own pages: sign in, then consent.
  await page.waitForURL((u) => u.href.startsWith(issuer));
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  await page.waitForSelector('button[type=submit]');
  await page.click('button[type=submit]');
  await page
    .waitForURL((u) => u.host === at && !u.pathname.startsWith('/.beam/'))
    .catch(async (err: Error) => {
      throw new Error(`${err.message}; at ${page.url()}: ${(await page.content()).slice(0, 600)}`);
    });
  return { context, page };
}

describe('--oidc', () => {
  it('a browser signs in at the provider and lands on the page it asked for; the origin gets the user, never the cookies', async () => {
    const { context, page } = await signIn('ada@example.com', '/headers');
    try {
      expect(new URL(page.url()).pathname).toBe('/headers');
      // The same request from the page, with the browser's cookies: the JSON the origin answered.
      const seen = JSON.parse(await page.evaluate(async () => (await fetch('/headers')).text())) as { headers: Record<string, string> };
      expect(seen.headers['beam-user-email']).toBe('ada@example.com');
      expect(seen.headers['beam-user-name']).toBe('Ada Lovelace');
      expect(seen.headers['cookie'] ?? '').not.toMatch(/beam_session|beam_signin/);
      // The session cookie: HttpOnly, SameSite=Lax, this host only.
      const session = (await context.cookies()).find((c) => c.name === 'beam_session');
      expect(session).toMatchObject({ httpOnly: true, sameSite: 'Lax', domain: `${NAME}.localhost` });

      // What a visitor sends as the user is dropped; only the agent's word reaches the origin.
      const cookie = `beam_session=${session?.value}`;
      const spoofed = await request(server.port, host, '/headers', { headers: { cookie, 'beam-user-email': 'mallory@example.com' } });
      expect((JSON.parse(spoofed.body.toString()) as { headers: Record<string, string> }).headers['beam-user-email']).toBe('ada@example.com');
      // A forged session (another e-mail, the old signature) is no session: back to the provider.
      const [payload, signature] = (session?.value ?? '').split('.');
      const forgedPayload = Buffer.from(
        Buffer.from(payload ?? '', 'base64url')
          .toString()
          .replace('ada@', 'eve@'),
      ).toString('base64url');
      const forged = await request(server.port, host, '/headers', { headers: { cookie: `beam_session=${forgedPayload}.${signature}` } });
      expect(forged.status).toBe(302);
      expect(forged.headers['location']).toMatch(new RegExp(`^${issuer}/`));

      // Signing out.
      const out = await request(server.port, host, '/.beam/logout', { headers: { cookie } });
      expect(out.status).toBe(200);
      expect(String(out.headers['set-cookie'])).toMatch(/beam_session=; .*Max-Age=0/);
    } finally {
      await context.close();
    }
  });

  it('an address not on the list, or not verified, is refused: 403 BEAM_ERR_FORBIDDEN, and no session', async () => {
    for (const login of ['eve@elsewhere.test', 'unverified@example.com']) {
      const context = await viaGateway();
      const page = await context.newPage();
      await page.goto(`http://${host}/`);
      await page.waitForURL((u) => u.href.startsWith(issuer));
      await page.fill('input[name=login]', login);
      await page.fill('input[name=password]', 'any');
      await page.click('button[type=submit]');
      await page.waitForSelector('button[type=submit]');
      const callback = page.waitForResponse((r) => r.url().includes('/.beam/oidc/callback'));
      await page.click('button[type=submit]');
      const res = await callback;
      expect(res.status(), login).toBe(403);
      expect(await res.headerValue('beam-error')).toBe('BEAM_ERR_FORBIDDEN');
      expect((await context.cookies()).some((c) => c.name === 'beam_session')).toBe(false);
      await context.close();
    }
  });

  it('a session ends when its time is up (--oidc-session): the next request goes to the provider again', async () => {
    const { context, page } = await signIn('ada@example.com', '/hello', shortHost);
    try {
      expect(await page.evaluate(async () => (await fetch('/hello')).text())).toBe('hello from /hello');
      // The agent checks the session's own expiry, whatever the browser keeps: the same cookie, sent after its time, is no session.
      const session = (await context.cookies()).find((c) => c.name === 'beam_session');
      const cookie = `beam_session=${session?.value}`;
      expect((await request(server.port, shortHost, '/hello', { headers: { cookie } })).status).toBe(200);
      // Time, not an event, ends a session: ask until the share sends it back to sign in (2 s, plus the clock's second).
      await expect
        .poll(async () => (await request(server.port, shortHost, '/hello', { headers: { cookie } })).status, { timeout: 10_000, interval: 250 })
        .toBe(302);
    } finally {
      await context.close();
    }
  });

  it("peer to peer: the whole tab goes to the provider, the agent answers the callback over the page's path, and the app gets the user", async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`http://${host}/headers`);
      // The app's frame asked the agent peer to peer; its redirect to the provider took the whole tab.
      await page.waitForURL((u) => u.href.startsWith(issuer));
      await page.fill('input[name=login]', 'ada@example.com');
      await page.fill('input[name=password]', 'any');
      await page.click('button[type=submit]');
      await page.waitForSelector('button[type=submit]');
      await page.click('button[type=submit]');
      // Back on the share: its page, then the app at the path first asked for.
      await page.waitForURL((u) => u.host === host && u.pathname === '/headers', { timeout: 30_000 });
      const frame = page.frameLocator('#beam-app');
      const poll = { timeout: 15_000 };
      await expect.poll(async () => (await frame.locator('body').textContent()) ?? '', poll).toContain('beam-user-email');
      const seen = JSON.parse((await frame.locator('body').textContent()) ?? '{}') as { headers: Record<string, string> };
      expect(seen.headers['beam-user-email']).toBe('ada@example.com');
      expect(seen.headers['beam-user-name']).toBe('Ada Lovelace');
      expect(seen.headers['beam-page-scheme']).toBeUndefined();
      expect(seen.headers['cookie'] ?? '').not.toMatch(/beam_session|beam_signin/);
      // Peer to peer, not the gateway: the page starts on its bridge to the gateway and moves to its own path once that is up.
      await expect.poll(() => page.evaluate(() => (window as unknown as { __beam: { path: string } }).__beam.path), poll).toMatch(/^(direct|turn|relay)$/);
      await agent.waitFor((e) => e.event === 'session' && e['visitor'] === 'browser');
      // The session is the page's (its jar), not a cookie of the browser's: the gateway's path has no session.
      expect((await context.cookies()).some((c) => c.name === 'beam_session')).toBe(false);
      // Signing out, peer to peer: the frame asks the agent, which ends the session in the jar.
      await frame.locator('body').evaluate(() => {
        window.location.href = '/.beam/logout';
      });
      await expect.poll(async () => (await frame.locator('body').textContent()) ?? '', poll).toContain('Signed out.');
      const after = await frame.locator('body').evaluate(async () => (await fetch('/headers', { redirect: 'manual' })).type);
      expect(after).toBe('opaqueredirect');
    } finally {
      await context.close();
    }
  });

  it('a page with no peer-to-peer path moves the whole tab to the gateway, where the sign-in runs at the top level', async () => {
    const context = await browser.newContext();
    // A browser without WebRTC: the share's page can't go peer to peer.
    await context.addInitScript(() => {
      delete (window as unknown as { RTCPeerConnection?: unknown }).RTCPeerConnection;
    });
    try {
      const page = await context.newPage();
      await page.goto(`http://${host}/headers`);
      await page.waitForURL((u) => u.href.startsWith(issuer));
      // The page marked the tab for the gateway before it went: no frame to trap the provider's pages in.
      expect((await context.cookies(`http://${host}/`)).some((c) => c.name === BROWSER_GATEWAY_COOKIE)).toBe(true);
      await page.fill('input[name=login]', 'ada@example.com');
      await page.fill('input[name=password]', 'any');
      await page.click('button[type=submit]');
      await page.waitForSelector('button[type=submit]');
      await page.click('button[type=submit]');
      await page.waitForURL((u) => u.host === host && u.pathname === '/headers');
      // The app itself at the top level, through the gateway, with the session in the browser's cookies.
      const seen = JSON.parse((await page.textContent('body')) ?? '{}') as { headers: Record<string, string> };
      expect(seen.headers['beam-user-email']).toBe('ada@example.com');
      expect((await context.cookies()).some((c) => c.name === 'beam_session' && c.httpOnly)).toBe(true);
    } finally {
      await context.close();
    }
  });

  it('a callback with a wrong state, or with no sign-in started, is 400 BEAM_ERR_SIGN_IN_FAILED', async () => {
    const started = await request(server.port, host, '/', { agent: false });
    expect(started.status).toBe(302);
    const flow = String(started.headers['set-cookie']).split(';')[0] ?? '';
    expect(flow).toMatch(/^beam_signin=/);
    const wrong = await request(server.port, host, '/.beam/oidc/callback?code=abc&state=not-the-state', { headers: { cookie: flow } });
    expect(wrong.status).toBe(400);
    expect(wrong.headers['beam-error']).toBe('BEAM_ERR_SIGN_IN_FAILED');
    const none = await request(server.port, host, '/.beam/oidc/callback?code=abc&state=x');
    expect(none.status).toBe(400);
    expect(none.headers['beam-error']).toBe('BEAM_ERR_SIGN_IN_FAILED');
  });

  it('beam connect visitors are told to use a browser: 401 BEAM_ERR_SIGN_IN_REQUIRED', async () => {
    const link = (await agent.waitFor('ready'))['link'] as string;
    const connect = new BeamProcess(['connect', link, '--server', server.url, '--json']);
    try {
      const port = Number(new URL((await connect.waitFor('ready'))['url'] as string).port);
      const res = await request(port, `127.0.0.1:${port}`, '/');
      expect(res.status).toBe(401);
      expect(res.headers['beam-error']).toBe('BEAM_ERR_SIGN_IN_REQUIRED');
      expect(res.body.toString()).toContain('browser');
    } finally {
      await connect.kill();
    }
  });

  it('refuses options that make no sense before anything starts', async () => {
    for (const args of [
      ['--oidc', 'ftp://x', '--oidc-client-id', 'a'],
      ['--oidc', 'http://203.0.113.1/', '--oidc-client-id', 'a'],
      ['--oidc', issuer],
      ['--oauth', 'myspace', '--oidc-client-id', 'a'],
      ['--oidc-allow-email', 'a@example.com', '--'],
    ]) {
      const p = new BeamProcess(['http', String(origin.port), '--server', server.url, '--json', ...args.filter((a) => a !== '--')]);
      expect((await p.waitFor('error'))['code'], args.join(' ')).toBe('BEAM_ERR_BAD_OPTION');
      expect(await p.exited).toBe(1);
    }
  });
});
