/**
 * Sign-in with GitHub (`--oauth github`), end to end in Chromium. GitHub
 * can't run here, so a GitHub Enterprise Server stand-in does (`--oauth-url`,
 * the same endpoints and answers as github.com's: /login/oauth/authorize,
 * /login/oauth/access_token, and the API's /user and /user/emails under
 * /api/v3). It checks what GitHub checks: the client's secret, the code's
 * redirect URI, and PKCE (S256). The agent's allow rules take any verified
 * address of the user's, and the origin gets the one that matched.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BROWSER_GATEWAY_COOKIE } from '../../shared/constants.js';
import { launchChromium } from '../helpers/browser.js';
import { close, listen } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

interface GithubUser {
  login: string;
  name: string | null;
  emails: Array<{ email: string; primary: boolean; verified: boolean }>;
}

const CLIENT_ID = 'Iv1.beamtest';
const CLIENT_SECRET = 'github-test-secret';
const NAME = 'signin-github';

/** The user the stand-in has signed in (GitHub's own session, as far as the test needs one). */
let current: GithubUser;
/** Codes GitHub issued: for whom, to which redirect URI, with which PKCE challenge. */
const codes = new Map<string, { user: GithubUser; redirectUri: string; challenge: string }>();
const tokens = new Map<string, GithubUser>();
/** What the stand-in saw, for the test to check. */
const seen = { authorize: [] as URLSearchParams[], tokenRequests: 0, pkceChecked: 0 };

const github = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://github.test');
  const json = (status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  if (url.pathname === '/login/oauth/authorize') {
    seen.authorize.push(url.searchParams);
    const p = url.searchParams;
    if (p.get('client_id') !== CLIENT_ID || p.get('code_challenge_method') !== 'S256' || !p.get('code_challenge')) return json(400, { error: 'bad_request' });
    const code = randomBytes(10).toString('hex');
    codes.set(code, { user: current, redirectUri: p.get('redirect_uri') ?? '', challenge: p.get('code_challenge') ?? '' });
    const back = new URL(p.get('redirect_uri') ?? '');
    back.searchParams.set('code', code);
    back.searchParams.set('state', p.get('state') ?? '');
    res.writeHead(302, { location: back.href }).end();
    return;
  }
  if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      seen.tokenRequests++;
      const form = new URLSearchParams(text);
      // The client authenticates with its secret (basic auth, or in the form).
      const basic = req.headers.authorization?.startsWith('Basic ')
        ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString().split(':').map(decodeURIComponent)
        : [form.get('client_id'), form.get('client_secret')];
      const grant = codes.get(form.get('code') ?? '');
      if (basic[0] !== CLIENT_ID || basic[1] !== CLIENT_SECRET || !grant) return json(200, { error: 'bad_verification_code' });
      codes.delete(form.get('code') ?? '');
      if (form.get('redirect_uri') !== grant.redirectUri) return json(200, { error: 'redirect_uri_mismatch' });
      const verifier = form.get('code_verifier') ?? '';
      if (createHash('sha256').update(verifier).digest('base64url') !== grant.challenge) return json(200, { error: 'invalid_grant' });
      seen.pkceChecked++;
      const token = `gho_${randomBytes(16).toString('hex')}`;
      tokens.set(token, grant.user);
      json(200, { access_token: token, token_type: 'bearer', scope: 'read:user,user:email' });
    });
    return;
  }
  const user = tokens.get(req.headers.authorization?.replace(/^Bearer /i, '') ?? '');
  if (url.pathname.startsWith('/api/v3/') && !user) return json(401, { message: 'Bad credentials' });
  if (url.pathname === '/api/v3/user') return json(200, { login: user?.login, id: 1, name: user?.name });
  if (url.pathname === '/api/v3/user/emails') return json(200, user?.emails);
  json(404, { message: 'Not Found' });
});

let githubUrl: string;
let origin: Origin;
let server: ServerHandle;
let agent: BeamProcess;
let browser: Browser;
let host: string;

beforeAll(async () => {
  githubUrl = `http://127.0.0.1:${await listen(github)}`;
  origin = await startOrigin();
  server = await startServer();
  host = `${NAME}.localhost:${server.port}`;
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
      '--oauth',
      'github',
      '--oauth-url',
      githubUrl,
      '--oidc-client-id',
      CLIENT_ID,
      '--oidc-allow-domain',
      'example.com',
    ],
    { BEAM_OIDC_CLIENT_SECRET: CLIENT_SECRET },
  );
  await agent.waitFor('ready');
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await agent?.kill();
  await server?.proc.kill();
  await origin?.close();
  github.closeAllConnections();
  await close(github);
});

/**
 * Opens `/headers` on the share as `user` in a fresh browser, its pages
 * through the gateway (sign-in/peer to peer is sign-in.test.ts's): the final
 * response's status, and the origin's view of the headers when it answered.
 */
async function visit(user: GithubUser): Promise<{ status: number; headers?: Record<string, string> }> {
  current = user;
  const context = await browser.newContext();
  await context.addCookies([{ name: BROWSER_GATEWAY_COOKIE, value: 'gateway', url: `http://${host}/` }]);
  try {
    const page = await context.newPage();
    const res = await page.goto(`http://${host}/headers`);
    const status = res?.status() ?? 0;
    if (status !== 200) return { status };
    return { status, headers: (JSON.parse((await page.textContent('body')) ?? '{}') as { headers: Record<string, string> }).headers };
  } finally {
    await context.close();
  }
}

describe('--oauth github', () => {
  it('signs in through GitHub with PKCE; the origin gets the verified address on the list and the name', async () => {
    const before = seen.pkceChecked;
    const ada = await visit({ login: 'ada', name: 'Ada Lovelace', emails: [{ email: 'ada@example.com', primary: true, verified: true }] });
    expect(ada.status).toBe(200);
    expect(ada.headers?.['beam-user-email']).toBe('ada@example.com');
    expect(ada.headers?.['beam-user-name']).toBe('Ada Lovelace');
    expect(ada.headers?.['cookie'] ?? '').not.toMatch(/beam_session|beam_signin/);
    // The agent asked GitHub for the profile and the addresses, with no OpenID scope or nonce, and proved PKCE.
    const asked = seen.authorize.at(-1);
    expect(asked?.get('scope')).toBe('read:user user:email');
    expect(asked?.get('nonce')).toBeNull();
    expect(asked?.get('redirect_uri')).toBe(`http://${host}/.beam/oidc/callback`);
    expect(seen.pkceChecked).toBe(before + 1);

    // A secondary verified address on the list gets in, and is the one the origin sees; no display name: the login.
    const grace = await visit({
      login: 'grace',
      name: null,
      emails: [
        { email: 'grace@elsewhere.test', primary: true, verified: true },
        { email: 'grace@example.com', primary: false, verified: true },
      ],
    });
    expect(grace.status).toBe(200);
    expect(grace.headers?.['beam-user-email']).toBe('grace@example.com');
    expect(grace.headers?.['beam-user-name']).toBe('grace');
  });

  it('refuses a user whose address on the list is not verified, or who has none: 403 BEAM_ERR_FORBIDDEN', async () => {
    for (const emails of [[{ email: 'eve@example.com', primary: true, verified: false }], [{ email: 'eve@elsewhere.test', primary: true, verified: true }]]) {
      const eve = await visit({ login: 'eve', name: 'Eve', emails });
      expect(eve.status, JSON.stringify(emails)).toBe(403);
    }
  });

  it('takes --oauth-url with --oauth github only', async () => {
    const p = new BeamProcess(['http', '3000', '--oauth', 'google', '--oauth-url', githubUrl, '--oidc-client-id', 'x', '--json']);
    const err = await p.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(err['message'])).toMatch(/--oauth-url .* --oauth github/);
    await p.exited;
  });
});
