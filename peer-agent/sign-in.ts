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
 * The origin gets the user in `Beam-User-Email` and `Beam-User-Name`, which
 * the agent sets and strips from whatever visitors send; Beam's cookies never
 * reach it. `beam connect` visitors can't sign in (no browser): they get
 * 401 BEAM_ERR_SIGN_IN_REQUIRED saying so. The cookies are signed with a key
 * made when the agent starts: restarting it signs everyone out.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type * as OidcClient from 'openid-client';
import { SIGN_IN_FLOW_MS, SIGN_IN_SESSION_MS } from '../shared/constants.js';
import { BeamError, type ErrorCode } from '../shared/errors.js';
import type { HeaderPairs } from './inspect.js';

export const SIGN_IN_CALLBACK_PATH = '/.beam/oidc/callback';
export const SIGN_OUT_PATH = '/.beam/logout';
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
}

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

  private constructor(client: typeof OidcClient, config: OidcClient.Configuration, options: SignInOptions) {
    this.client = client;
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
    let issuer: URL;
    try {
      issuer = new URL(options.issuer);
    } catch {
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--oidc "${options.issuer}" is not a URL (e.g. https://accounts.google.com)`);
    }
    const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(issuer.hostname);
    if (issuer.protocol !== 'https:' && !(issuer.protocol === 'http:' && loopback))
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--oidc ${options.issuer}: the provider must be https (http only on this machine)`);
    if (!options.clientId)
      throw new BeamError('BEAM_ERR_BAD_OPTION', '--oidc needs --oidc-client-id (and usually --oidc-client-secret or BEAM_OIDC_CLIENT_SECRET)');
    const client = await import('openid-client');
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
      scope: this.options.scopes ?? 'openid email profile',
      code_challenge: await this.client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: flow.s,
      nonce: flow.n,
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

  private async callback(target: string, base: RequestBase, flowCookie: string | undefined): Promise<SignInOutcome> {
    const flow = this.open<Flow>(flowCookie);
    if (!flow)
      return { kind: 'refuse', code: 'BEAM_ERR_SIGN_IN_FAILED', detail: 'no sign-in was started here, or it took over 10 minutes: open the link again' };
    const current = new URL(`${base.scheme}://${base.host}${target}`);
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
    if (this.allowEmails.size > 0 || this.allowDomains.size > 0) {
      const lower = email?.toLowerCase();
      const allowed = lower !== undefined && verified && (this.allowEmails.has(lower) || this.allowDomains.has(lower.split('@')[1] ?? ''));
      if (!allowed)
        return {
          kind: 'refuse',
          code: 'BEAM_ERR_FORBIDDEN',
          detail: `signed in as ${email ?? 'a user with no e-mail'}${email && !verified ? ' (not verified)' : ''}, who is not on this share's list`,
        };
    }
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
