/**
 * Sign-in in front of a share (`--oidc <issuer>`, `--oauth google`): the
 * agent is an OpenID Connect relying party. It runs the whole flow itself,
 * on the share's own host, so the Beam server sees no credential:
 *
 *   a request without a session   302 to the provider (authorization code,
 *                                  PKCE S256, state, nonce), the flow's
 *                                  values in a signed cookie for 10 minutes
 *   /.beam/oidc/callback           the code is exchanged (openid-client); the
 *                                  ID token is checked: issuer, audience,
 *                                  expiry, nonce, and its signature against
 *                                  the provider's JWKS; then the allow rules
 *   afterwards                     a signed session cookie (HttpOnly,
 *                                  SameSite=Lax, this host only, Secure on
 *                                  https) for `sessionMs` (default SIGN_IN_SESSION_MS)
 *   /.beam/logout                  the cookie goes
 *
 * GitHub (`--oauth github`) is OAuth 2.0, not OpenID Connect: no ID token,
 * so after the code exchange (PKCE and state as above) the agent asks
 * GitHub's API for the user (/user) and their e-mail addresses
 * (/user/emails): the allow rules take any verified address, and the
 * origin gets the one that matched, else the primary one. A GitHub
 * Enterprise Server works with `github.url` (its API at /api/v3).
 *
 * The origin gets the user in `Beam-User-Email` and `Beam-User-Name`, which
 * the agent sets and strips from whatever visitors send; Beam's cookies never
 * reach it. `beam connect` visitors can't sign in (no browser): they get
 * 401 BEAM_ERR_SIGN_IN_REQUIRED saying so. The cookies are signed with a key
 * made when the agent starts: restarting it signs everyone out.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type * as OidcClient from 'openid-client';
import { SIGN_IN_CALLBACK_PATH, SIGN_IN_FLOW_MS, SIGN_IN_SESSION_MS, SIGN_OUT_PATH } from '../shared/constants.js';
import { BeamError, type ErrorCode } from '../shared/errors.js';
import type { HeaderPairs } from './inspect.js';

const SESSION_COOKIE = 'beam_session';
const FLOW_COOKIE = 'beam_signin';
/** Headers that carry the user to the origin: only the agent sets them. */
const IDENTITY_HEADERS = new Set(['beam-user-email', 'beam-user-name']);

export interface SignInOptions {
  /** The provider's issuer URL (discovery at /.well-known/openid-configuration). */
  issuer: string;
  clientId: string;
  clientSecret?: string | undefined;
  /** Default "openid email profile". */
  scopes?: string | undefined;
  /** Only these verified e-mail addresses get in (with allowDomains: either). */
  allowEmails?: readonly string[] | undefined;
  /** Only verified e-mail addresses in these domains get in. */
  allowDomains?: readonly string[] | undefined;
  /** How long a sign-in lasts. Default SIGN_IN_SESSION_MS. */
  sessionMs?: number | undefined;
  /** GitHub's OAuth 2.0 instead of OpenID Connect discovery (`--oauth github`): github.com, or a GitHub Enterprise Server's URL. */
  github?: { url: string } | undefined;
}

const GITHUB_COM = 'https://github.com';
const GITHUB_API = 'https://api.github.com';
/** GitHub's scopes: the profile, and the e-mail addresses with whether each is verified. */
const GITHUB_SCOPES = 'read:user user:email';

/** What the agent does with a request. */
export type SignInOutcome =
  /** Signed in: the request goes on with these headers (the user's, Beam's cookies gone). */
  | { kind: 'pass'; headers: HeaderPairs; user: { email: string | undefined; name: string | undefined } }
  /** Beam answers for the share: a redirect to the provider or back, the sign-out page. */
  | { kind: 'answer'; status: number; headers: HeaderPairs; body: string }
  | { kind: 'refuse'; code: ErrorCode; detail: string };

/** Where the visitor sent the request, as its browser sees it; undefined when the agent can't tell (then no sign-in is possible). */
export interface RequestBase {
  scheme: 'http' | 'https';
  host: string;
}

interface Flow {
  s: string;
  n: string;
  v: string;
  r: string;
  x: number;
}
interface Session {
  e: string | undefined;
  n: string | undefined;
  x: number;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');

export class SignIn {
  private readonly options: SignInOptions;
  private readonly config: OidcClient.Configuration;
  private readonly client: typeof OidcClient;
  private readonly key = randomBytes(32);
  private readonly allowEmails: Set<string>;
  private readonly allowDomains: Set<string>;
  /** GitHub's API base, when signing in with GitHub (no ID token). */
  private readonly githubApi: string | undefined;

  private constructor(client: typeof OidcClient, config: OidcClient.Configuration, options: SignInOptions, githubApi?: string) {
    this.client = client;
    this.githubApi = githubApi;
    this.config = config;
    this.options = options;
    this.allowEmails = new Set((options.allowEmails ?? []).map((e) => e.toLowerCase()));
    this.allowDomains = new Set((options.allowDomains ?? []).map((d) => d.toLowerCase().replace(/^@/, '')));
  }

  /**
   * Discovers the provider. An http issuer is taken on loopback only (a
   * provider running on this machine); anywhere else it must be https.
   */
  static async start(options: SignInOptions): Promise<SignIn> {
    const flag = options.github ? '--oauth-url' : '--oidc';
    const given = options.github?.url ?? options.issuer;
    let issuer: URL;
    try {
      issuer = new URL(given);
    } catch {
      throw new BeamError(
        'BEAM_ERR_BAD_OPTION',
        `${flag} "${given}" is not a URL (e.g. ${options.github ? 'https://github.example.com' : 'https://accounts.google.com'})`,
      );
    }
    const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(issuer.hostname);
    if (issuer.protocol !== 'https:' && !(issuer.protocol === 'http:' && loopback))
      throw new BeamError('BEAM_ERR_BAD_OPTION', `${flag} ${given}: the provider must be https (http only on this machine)`);
    if (!options.clientId)
      throw new BeamError('BEAM_ERR_BAD_OPTION', '--oidc needs --oidc-client-id (and usually --oidc-client-secret or BEAM_OIDC_CLIENT_SECRET)');
    const client = await import('openid-client');
    if (options.github) {
      // OAuth 2.0 with GitHub's fixed endpoints: nothing to discover.
      const web = issuer.origin;
      const config = new client.Configuration(
        { issuer: web, authorization_endpoint: `${web}/login/oauth/authorize`, token_endpoint: `${web}/login/oauth/access_token` },
        options.clientId,
        options.clientSecret,
      );
      if (issuer.protocol === 'http:') client.allowInsecureRequests(config);
      return new SignIn(client, config, options, web === GITHUB_COM ? GITHUB_API : `${web}/api/v3`);
    }
    const execute = [client.enableNonRepudiationChecks, ...(issuer.protocol === 'http:' ? [client.allowInsecureRequests] : [])];
    let config: OidcClient.Configuration;
    try {
      config = await client.discovery(issuer, options.clientId, options.clientSecret, undefined, { execute, timeout: 10 });
    } catch (err) {
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--oidc ${options.issuer}: discovery failed (${(err as Error).message.slice(0, 200)})`);
    }
    return new SignIn(client, config, options);
  }

  private sign(value: object): string {
    const payload = b64(JSON.stringify(value));
    return `${payload}.${createHmac('sha256', this.key).update(payload).digest('base64url')}`;
  }

  /** The signed value's contents, if the signature holds and it has not expired. */
  private open<T extends { x: number }>(token: string | undefined): T | undefined {
    if (!token) return undefined;
    const dot = token.indexOf('.');
    if (dot < 0) return undefined;
    const payload = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), 'base64url');
    const expected = createHmac('sha256', this.key).update(payload).digest();
    if (given.byteLength !== expected.byteLength || !timingSafeEqual(given, expected)) return undefined;
    let value: T;
    try {
      value = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as T;
    } catch {
      return undefined;
    }
    return typeof value.x === 'number' && value.x > Date.now() ? value : undefined;
  }

  private cookie(base: RequestBase, name: string, value: string, maxAgeS: number): [string, string] {
    // No Domain: this host only, so another share on the same domain never gets it.
    return ['Set-Cookie', `${name}=${value}; Path=/; Max-Age=${maxAgeS}; HttpOnly; SameSite=Lax${base.scheme === 'https' ? '; Secure' : ''}`];
  }

  /** Decides what happens to a request on a share with sign-in. */
  async handle(request: { method: string; target: string; headers: HeaderPairs; base: RequestBase | undefined }): Promise<SignInOutcome> {
    const { base } = request;
    const cookies = cookiesOf(request.headers);
    const path = request.target.split('?')[0] ?? '/';
    if (!base)
      return {
        kind: 'refuse',
        code: 'BEAM_ERR_SIGN_IN_REQUIRED',
        detail: 'this share asks visitors to sign in with a browser: open its link in one, or ask its owner for --auth for scripts',
      };
    if (path === SIGN_OUT_PATH) {
      return {
        kind: 'answer',
        status: 200,
        headers: [this.cookie(base, SESSION_COOKIE, '', 0), ['Content-Type', 'text/plain; charset=utf-8'], ['Cache-Control', 'no-store']],
        body: 'Signed out.\n',
      };
    }
    if (path === SIGN_IN_CALLBACK_PATH) return this.callback(request.target, base, cookies.get(FLOW_COOKIE));
    const session = this.open<Session>(cookies.get(SESSION_COOKIE));
    if (session) {
      const headers = request.headers
        .filter(([k]) => !IDENTITY_HEADERS.has(k.toLowerCase()))
        .flatMap(([k, v]): HeaderPairs => {
          if (k.toLowerCase() !== 'cookie') return [[k, v]];
          const kept = withoutCookies(v, [SESSION_COOKIE, FLOW_COOKIE]);
          return kept ? [[k, kept]] : [];
        });
      if (session.e !== undefined) headers.push(['Beam-User-Email', session.e]);
      if (session.n !== undefined) headers.push(['Beam-User-Name', encodeHeaderText(session.n)]);
      return { kind: 'pass', headers, user: { email: session.e, name: session.n } };
    }
    // Off to the provider; back to this page (a GET) or the share's root.
    const verifier = this.client.randomPKCECodeVerifier();
    const flow: Flow = {
      s: this.client.randomState(),
      n: this.client.randomNonce(),
      v: verifier,
      r: request.method === 'GET' || request.method === 'HEAD' ? request.target : '/',
      x: Date.now() + SIGN_IN_FLOW_MS,
    };
    const url = this.client.buildAuthorizationUrl(this.config, {
      redirect_uri: `${base.scheme}://${base.host}${SIGN_IN_CALLBACK_PATH}`,
      scope: this.options.scopes ?? (this.githubApi ? GITHUB_SCOPES : 'openid email profile'),
      code_challenge: await this.client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: flow.s,
      // OAuth 2.0 (GitHub) has no ID token to carry a nonce.
      ...(this.githubApi ? {} : { nonce: flow.n }),
    });
    return {
      kind: 'answer',
      status: 302,
      headers: [
        ['Location', url.href],
        this.cookie(base, FLOW_COOKIE, this.sign(flow), Math.floor(SIGN_IN_FLOW_MS / 1000)),
        ['Cache-Control', 'no-store'],
        ['Content-Type', 'text/plain; charset=utf-8'],
      ],
      body: 'Sign in to continue.\n',
    };
  }

  /** GitHub: the code for a token (PKCE, state), then the user and their addresses from GitHub's API. */
  private async githubCallback(current: URL, base: RequestBase, flow: Flow): Promise<SignInOutcome> {
    const api = this.githubApi as string;
    let user: { login?: unknown; name?: unknown };
    let emails: GithubEmail[];
    try {
      // GitHub sends no ID token; its access token is for its API.
      const tokens = await this.client.authorizationCodeGrant(this.config, current, { pkceCodeVerifier: flow.v, expectedState: flow.s });
      const headers = new Headers({ accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28' });
      const get = async <T>(path: string): Promise<T> => {
        const res = await this.client.fetchProtectedResource(this.config, tokens.access_token, new URL(`${api}${path}`), 'GET', undefined, headers);
        if (!res.ok) throw new Error(`GitHub's ${path} answered ${res.status}`);
        return (await res.json()) as T;
      };
      [user, emails] = await Promise.all([get<typeof user>('/user'), get<GithubEmail[]>('/user/emails')]);
      if (!Array.isArray(emails)) throw new Error("GitHub's /user/emails answered no list");
    } catch (err) {
      return { kind: 'refuse', code: 'BEAM_ERR_SIGN_IN_FAILED', detail: (err as Error).message.slice(0, 300) };
    }
    const addresses = emails
      .filter((e) => typeof e?.email === 'string')
      .map((e) => ({ email: e.email, verified: e.verified === true, primary: e.primary === true }));
    const primary = addresses.find((a) => a.primary)?.email;
    const name = typeof user.name === 'string' && user.name ? user.name : typeof user.login === 'string' ? user.login : undefined;
    return this.admit(base, flow, addresses, primary, name);
  }

  private async callback(target: string, base: RequestBase, flowCookie: string | undefined): Promise<SignInOutcome> {
    const flow = this.open<Flow>(flowCookie);
    if (!flow)
      return { kind: 'refuse', code: 'BEAM_ERR_SIGN_IN_FAILED', detail: 'no sign-in was started here, or it took over 10 minutes: open the link again' };
    const current = new URL(`${base.scheme}://${base.host}${target}`);
    if (this.githubApi) return this.githubCallback(current, base, flow);
    let claims: Record<string, unknown>;
    try {
      const tokens = await this.client.authorizationCodeGrant(this.config, current, {
        pkceCodeVerifier: flow.v,
        expectedState: flow.s,
        expectedNonce: flow.n,
        idTokenExpected: true,
      });
      const idToken = tokens.claims();
      if (!idToken) return { kind: 'refuse', code: 'BEAM_ERR_SIGN_IN_FAILED', detail: 'the provider sent no ID token' };
      claims = { ...idToken };
      // Providers may keep the profile's claims out of the ID token (OpenID Connect Core 5.4): then they come from UserInfo, for the same subject.
      if (claims['email'] === undefined && this.config.serverMetadata().userinfo_endpoint) {
        const info = await this.client.fetchUserInfo(this.config, tokens.access_token, idToken.sub);
        claims = { ...info, ...idToken, email: info.email, email_verified: info.email_verified, name: idToken['name'] ?? info.name };
      }
    } catch (err) {
      return { kind: 'refuse', code: 'BEAM_ERR_SIGN_IN_FAILED', detail: (err as Error).message.slice(0, 300) };
    }
    const email = typeof claims['email'] === 'string' ? claims['email'] : undefined;
    const verified = claims['email_verified'] === true;
    const name = typeof claims['name'] === 'string' ? claims['name'] : undefined;
    return this.admit(base, flow, email === undefined ? [] : [{ email, verified }], email, name);
  }

  /** Whether an address passes the allow rules (any address when there are none). */
  private allows(email: string): boolean {
    if (this.allowEmails.size === 0 && this.allowDomains.size === 0) return true;
    const lower = email.toLowerCase();
    return this.allowEmails.has(lower) || this.allowDomains.has(lower.split('@')[1] ?? '');
  }

  /**
   * The allow rules, then the session: `addresses` are the user's, each
   * verified or not; the session carries the first verified one the rules
   * allow, else `shown` (the provider's main address for the user).
   */
  private admit(
    base: RequestBase,
    flow: Flow,
    addresses: Array<{ email: string; verified: boolean }>,
    shown: string | undefined,
    name: string | undefined,
  ): SignInOutcome {
    const passing = addresses.find((a) => a.verified && this.allows(a.email));
    if ((this.allowEmails.size > 0 || this.allowDomains.size > 0) && !passing) {
      const unverified = shown !== undefined && addresses.some((a) => a.email === shown && !a.verified);
      return {
        kind: 'refuse',
        code: 'BEAM_ERR_FORBIDDEN',
        detail: `signed in as ${shown ?? 'a user with no e-mail'}${unverified ? ' (not verified)' : ''}, who is not on this share's list`,
      };
    }
    const email = passing?.email ?? shown;
    const sessionMs = this.options.sessionMs ?? SIGN_IN_SESSION_MS;
    const session: Session = { e: email, n: name, x: Date.now() + sessionMs };
    return {
      kind: 'answer',
      status: 302,
      headers: [
        // Back to a path on this host only: "//elsewhere" and "/\elsewhere" are other hosts to a browser.
        ['Location', /^\/(?![/\\])/.test(flow.r) ? flow.r : '/'],
        this.cookie(base, SESSION_COOKIE, this.sign(session), Math.max(1, Math.floor(sessionMs / 1000))),
        this.cookie(base, FLOW_COOKIE, '', 0),
        ['Cache-Control', 'no-store'],
        ['Content-Type', 'text/plain; charset=utf-8'],
      ],
      body: 'Signed in.\n',
    };
  }
}

/** GitHub's answer to /user/emails. */
interface GithubEmail {
  email: string;
  primary: boolean;
  verified: boolean;
}

/** The request's cookies by name (the first of each). */
function cookiesOf(headers: HeaderPairs): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of headers) {
    if (k.toLowerCase() !== 'cookie') continue;
    for (const part of v.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0) continue;
      const name = part.slice(0, eq).trim();
      if (!out.has(name)) out.set(name, part.slice(eq + 1).trim());
    }
  }
  return out;
}

/** A Cookie header without Beam's own cookies, or undefined when nothing is left. */
function withoutCookies(value: string, names: readonly string[]): string | undefined {
  const kept = value
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p && !names.includes(p.slice(0, p.indexOf('=') < 0 ? p.length : p.indexOf('=')).trim()));
  return kept.length > 0 ? kept.join('; ') : undefined;
}

/** A display name as a header value: characters a header can't carry are percent-encoded (RFC 8187 style, without the charset tag). */
function encodeHeaderText(text: string): string {
  return /^[\x20-\x7e]*$/.test(text) ? text : encodeURIComponent(text);
}
