/**
 * `share()`: one share, as `beam http|tcp|udp` runs it, for the CLI, `beam
 * start` and the programmatic API alike. It validates every option, starts
 * the embedded server when no server is named, the inspector when asked, and
 * the agent, and resolves once the share is registered.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { type Logger, pino } from 'pino';
import type { BeamServer, startBeamServer } from '../gateway/server.js';
import { IpRules, parseRateLimit } from '../peer-agent/access.js';
import { Agent, type SessionInfo } from '../peer-agent/agent.js';
import { parseHeaderRules } from '../peer-agent/header-rules.js';
import { Inspector } from '../peer-agent/inspect.js';
import { type InspectorServer, startInspectorServer } from '../peer-agent/inspector-server.js';
import { compilePolicy, type PolicyRuleOptions } from '../peer-agent/policy.js';
import type { SignIn } from '../peer-agent/sign-in.js';
import { parseWebhookVerifier } from '../peer-agent/webhooks.js';
import type { NetworkBackend } from '../shared/backend.js';
import { DEFAULT_EMBEDDED_PORT, EMBEDDED_PORT_ATTEMPTS, LAN_SERVICE_TYPE, LOCAL_CA_PATH, SECRET_PARAM } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { randomName, validateName } from '../shared/names.js';
import type { RelayMode, ShareKind } from '../shared/signaling.js';
import { loadAgentIdentity } from '../transport/agent-identity.js';
import { loadLibp2p, parseBackendName } from '../transport/backend.js';
import type { EngineName } from '../transport/engine.js';
import { loadEngine } from '../transport/index.js';
import { announceShare } from '../transport/lan.js';
import { connectLink } from '../transport/link-text.js';
import { lanAddress } from './lan.js';
import { type LocalTls, localTls } from './local-ca.js';
import { forgetName, rememberName, resumeTokenFor } from './names.js';
import { parseAppProtocol, parseBasicAuth, parseEngine, parseHostHeader, parseRelayMode, parseServerUrl, parseTarget } from './options.js';
import { BEAM_VERSION } from './version.js';

export interface ShareOptions {
  /** What to share: a local port, or `host:port`. */
  target: number | string;
  /** What the share carries. Default 'http'. */
  kind?: ShareKind;
  /** The Beam server to register with. Default: one embedded in this process (ports 7070 and up). */
  server?: string | undefined;
  /** The embedded server's port: that one or an error (0: any free one). Default DEFAULT_EMBEDDED_PORT, else the next free one. */
  port?: number | undefined;
  /**
   * The embedded server serves https with a certificate from a local
   * authority (cli/local-ca.ts), so browsers on the LAN get peer to peer once
   * they trust it. Embedded server only. Default false.
   */
  tls?: boolean | undefined;
  /**
   * Announce the share on the LAN by mDNS (`<name>._beam._tcp.local`), so a
   * teammate on the same network runs `beam connect <name>` with no address
   * and no server to deploy. Embedded server only. Default false.
   */
  lan?: boolean | undefined;
  /**
   * The network the share goes through (transport/backend.ts): 'server' (a
   * Beam server: `server`, or the embedded one; the default), or 'libp2p'
   * (no Beam server: a circuit relay of the libp2p network for the hole
   * punch, then a direct WebRTC connection; `beam connect` only).
   */
  via?: 'server' | 'libp2p' | undefined;
  /** With via 'libp2p': the peers to join through (multiaddrs ending /p2p/<id>). Default: the public libp2p bootstrap list. */
  bootstrap?: string[] | undefined;
  /** With via 'libp2p': STUN servers for the hole punch (stun:host:port). Default: libp2p's public list. */
  stun?: string[] | undefined;
  /** With via 'libp2p': a backend already running, which several shares share (beam start: one node, one key, one relay reservation). */
  backend?: NetworkBackend | undefined;
  /** The share name to ask for. Default: a random adjective-noun-NNN. */
  name?: string | undefined;
  /** An agent token, for a server started with --token-file. */
  token?: string | undefined;
  /**
   * Join the pool `name` on the server (--pool): every agent started with
   * --pool and the same name (and token, on a server with --token-file)
   * serves it, and visitors are spread across them. Needs `name` and a server.
   */
  pool?: boolean | undefined;
  /** Only visitors with the full link (it carries a secret) get in. Default false. */
  private?: boolean | undefined;
  /** `user:password`: HTTP basic auth for every visitor (HTTP shares). */
  auth?: string | undefined;
  /** CIDRs or addresses allowed in; when set, no one else is. */
  allowIp?: string[] | undefined;
  /** CIDRs or addresses kept out. */
  denyIp?: string[] | undefined;
  /** `N/min`, `N/s` or `N/h` per visitor. */
  rateLimit?: string | undefined;
  /** Visitors at once: a peer-to-peer visitor while its session lasts, a gateway client address until quiet for a minute. */
  maxVisitors?: number | undefined;
  /** Default 'auto': direct WebRTC, else the relay. */
  relay?: RelayMode | undefined;
  /** Default 'rewrite'. */
  hostHeader?: 'rewrite' | 'preserve' | undefined;
  /** How long to wait for the origin's response head. Default 30 s. */
  originTimeoutMs?: number | undefined;
  /** What the origin speaks: 'http1' (default) or 'http2' (h2c on http, h2 on https; gRPC needs it). */
  appProtocol?: 'http1' | 'http2' | undefined;
  /** An https origin: a PEM file of the authorities its certificate is checked against, instead of the system's. */
  originCa?: string | undefined;
  /** An https origin: don't check its certificate at all (a self-signed development server). */
  originInsecure?: boolean | undefined;
  /** "Name: value" headers the origin gets, after removals; `{client_ip}` and `{path}` expand. */
  requestHeaderAdd?: string[] | undefined;
  /** Header names removed from every request before the origin sees it. */
  requestHeaderRemove?: string[] | undefined;
  /** "Name: value" headers every visitor gets back, after removals. */
  responseHeaderAdd?: string[] | undefined;
  /** Header names removed from every response. */
  responseHeaderRemove?: string[] | undefined;
  /** Visitors sign in with this OpenID Connect provider first (its issuer URL); the agent runs the flow (peer-agent/sign-in.ts). */
  oidc?: string | undefined;
  /** A provider by name instead of `oidc`: 'google', or 'github' (OAuth 2.0; the e-mail addresses come from GitHub's API). */
  oauth?: string | undefined;
  /** With oauth 'github': a GitHub Enterprise Server's URL instead of github.com. */
  oauthUrl?: string | undefined;
  /** The client registered with the provider; its redirect URI is https://<share host>/.beam/oidc/callback. */
  oidcClientId?: string | undefined;
  oidcClientSecret?: string | undefined;
  /** Default "openid email profile". */
  oidcScopes?: string | undefined;
  /** How long a sign-in lasts, in milliseconds. Default 12 hours. */
  oidcSessionMs?: number | undefined;
  /** Only these verified e-mail addresses get in (with `oidcAllowDomain`: either list). Default: anyone who signs in. */
  oidcAllowEmail?: string[] | undefined;
  oidcAllowDomain?: string[] | undefined;
  /**
   * Rules the agent runs in order after the options above, on every path:
   * each may match a path prefix and methods, and allows or denies by
   * address, asks for basic auth, limits the rate, denies, redirects, or
   * changes headers (peer-agent/policy.ts; beam.yml `policy:`).
   */
  policy?: PolicyRuleOptions[] | undefined;
  /** Every request must carry a valid webhook signature: github, stripe, slack, standard, or hmac (with `verifyWebhookHeader`). */
  verifyWebhook?: string | undefined;
  /** The signing secret the sender shows. */
  verifyWebhookSecret?: string | undefined;
  /** The header that carries an `hmac` signature. */
  verifyWebhookHeader?: string | undefined;
  /**
   * The inspector on 127.0.0.1: true for DEFAULT_INSPECT_PORT or the next
   * free port, a number for that port (0: any free one), false for none.
   * Default false (the CLI's default is true). HTTP shares only.
   */
  inspect?: boolean | number | undefined;
  /** Default 'node-datachannel'. */
  engine?: EngineName | undefined;
  /** pino logger. Default: silent. */
  logger?: Logger | undefined;
}

/** Events, as the CLI's `--json` prints them. */
export interface ShareEvents {
  session: [SessionInfo];
  path: [SessionInfo];
  'session-closed': [{ id: string }];
  'origin-unreachable': [{ origin: string; code: string }];
  reconnecting: [{ reason: string }];
  /** Registered again after a drop or a server restart. */
  resumed: [{ name: string; url: string }];
  error: [BeamError];
}

export interface Share extends EventEmitter<ShareEvents> {
  readonly name: string;
  /** The link for browsers and curl (with the secret, for a private HTTP share). */
  readonly url: string;
  /** The link for `beam connect`: the agent's peer ID, and the secret of a private share. */
  readonly link: string;
  /** The embedded server's address on the LAN, when there is one. */
  readonly lan: string | undefined;
  /** With `lan`: the name the share is announced under by mDNS (`<name>._beam._tcp.local`). */
  readonly announced: string | undefined;
  /** With `lan`, an HTTP share's link on the LAN by its mDNS name: `http://<name>.local:<port>/`. */
  readonly lanUrl: string | undefined;
  /** The inspector's URL, when it runs. */
  readonly inspect: string | undefined;
  /** With `tls`: the local authority teammates trust once (its file, fingerprint and download URL). */
  readonly ca: { file: string; fingerprint: string; url: string } | undefined;
  /** `host:port` of the origin. */
  readonly origin: string;
  /** The Beam server's URL; with via 'libp2p', the agent's relayed multiaddr. */
  readonly server: string;
  /** The network the share goes through. */
  readonly via: 'server' | 'libp2p';
  readonly kind: ShareKind;
  /** Leaves the server and stops whatever this share started. */
  close(): Promise<void>;
}

/** A private HTTP share's browser link: the secret as a query parameter, which the agent turns into a cookie. */
function withSecretParam(url: string, secret: string): string {
  const u = new URL(url);
  u.searchParams.set(SECRET_PARAM, secret);
  return u.href;
}

/** The embedded server: on DEFAULT_EMBEDDED_PORT, else the next free one. */
export async function startEmbedded(
  components: Parameters<typeof startBeamServer>[0],
  defaultShare: () => string | undefined,
  tls?: LocalTls,
  port?: number,
): Promise<BeamServer> {
  let lastError: unknown;
  const ports = port !== undefined ? [port] : Array.from({ length: EMBEDDED_PORT_ATTEMPTS }, (_, i) => DEFAULT_EMBEDDED_PORT + i);
  // Loaded only here: an agent of a server elsewhere (--server, beam connect) never needs the server's
  // modules (socket.io's server, engine.io, the gateway's routes), whose loading cost its start ~60 ms.
  const { startBeamServer: start } = await import('../gateway/server.js');
  for (const candidate of ports) {
    try {
      return await start(components, {
        port: candidate,
        host: '0.0.0.0',
        domain: 'localhost',
        defaultShare,
        // Shares it announces on the LAN (--lan) are `<name>.local` there too.
        lanNames: true,
        // The gateway is on the sharer's machine, and reaches the agent in memory: a browser that got here
        // is talking to that machine already, so it gets the app straight from the gateway (no bootstrap page,
        // no peer connection back to the same machine).
        browserP2p: false,
        // Metrics are for a server one runs (beam serve).
        metrics: false,
        // Its STUN comes up beside the link, not before it.
        stun: { background: true },
        warmUp: false,
        // share() opens the in-memory link itself, once the agent offers it.
        warmLinks: 0,
        ...(tls ? { tls: { cert: tls.cert, key: tls.key, certFor: tls.certFor }, caCert: await readFile(tls.caFile) } : {}),
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      lastError = err;
    }
  }
  if (port !== undefined)
    throw new BeamError(
      'BEAM_ERR_BAD_OPTION',
      `--port ${port} is in use: pick another, or leave --port out for the first free one from ${DEFAULT_EMBEDDED_PORT}`,
      { cause: lastError },
    );
  throw new BeamError(
    'BEAM_ERR_BAD_OPTION',
    `ports ${DEFAULT_EMBEDDED_PORT}-${DEFAULT_EMBEDDED_PORT + EMBEDDED_PORT_ATTEMPTS - 1} are all taken; pass --server`,
    { cause: lastError },
  );
}

/**
 * Announces a share of an embedded server on the LAN by mDNS until it
 * closes: share() does it for `lan`, `beam start` for beam.yml's `lan: true`.
 * What goes out is the name, the port, the agent's peer ID and whether the
 * share is private; never a secret.
 */
export async function announceOnLan(s: Share, port: number, scheme: 'http' | 'https', log?: Logger): Promise<void> {
  if (!(s instanceof ShareHandle)) throw new TypeError('announceOnLan takes a share from share()');
  const fragment = new URLSearchParams(new URL(s.link).hash.slice(1));
  const peer = fragment.get('peer');
  if (peer === null) throw new BeamError('BEAM_ERR_BAD_OPTION', '--lan announces a share with its own key: not a pool member');
  const announcement = await announceShare({ name: s.name, port, peer, scheme, kind: s.kind, private: fragment.has('secret') }, log);
  s.closeParts.push(() => announcement.close());
  s.announced = `${s.name}._${LAN_SERVICE_TYPE}._tcp.local`;
  if (s.kind === 'http') {
    const url = `${scheme}://${s.name}.local:${port}/`;
    const secret = fragment.get('secret');
    s.lanUrl = secret === null ? url : withSecretParam(url, secret);
  }
}

class ShareHandle extends EventEmitter<ShareEvents> implements Share {
  name = '';
  url = '';
  link = '';
  lan: string | undefined;
  announced: string | undefined;
  lanUrl: string | undefined;
  inspect: string | undefined;
  ca: { file: string; fingerprint: string; url: string } | undefined;
  origin = '';
  server = '';
  via: 'server' | 'libp2p' = 'server';
  kind: ShareKind = 'http';
  closeParts: Array<() => unknown> = [];
  private closing: Promise<void> | undefined;

  close(): Promise<void> {
    this.closing ??= (async () => {
      // Last started, first stopped: the agent leaves before its server goes.
      for (const part of this.closeParts.reverse()) await part();
    })();
    return this.closing;
  }
}

/** What a share through libp2p can't have: a server's parts (its gateway, relay, names), and checks no one could make. */
function refuseWithLibp2p(options: ShareOptions, relay: RelayMode): void {
  const refuse = (what: string, why: string): never => {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `${what} with --via libp2p: ${why}`);
  };
  if (options.server) refuse('--server', 'libp2p needs no Beam server; leave one of them out');
  if (options.port !== undefined || options.tls || options.lan) refuse('--port, --tls and --lan', "they are the embedded server's, and libp2p runs none");
  if (options.pool || options.token) refuse('--pool and --token', "they are a Beam server's");
  if (relay === 'always') refuse('--relay always', "libp2p's relays carry the hole punch only, never a share's traffic");
  if (options.oidc !== undefined || options.oauth !== undefined)
    refuse('--oidc and --oauth', 'sign-in needs a browser, and a libp2p share is for beam connect');
  if (options.allowIp?.length || options.denyIp?.length)
    refuse('--allow-ip and --deny-ip', "libp2p does not say which address a visitor's direct path comes from; use --private");
}

/** Providers `oauth` names: OpenID Connect issuers. */
const OAUTH_ISSUERS: Record<string, string> = { google: 'https://accounts.google.com', github: 'https://github.com' };

/** The sign-in a share's options ask for (discovered now, so a wrong issuer fails at start), or none. */
async function startSignIn(options: ShareOptions, kind: ShareKind): Promise<SignIn | undefined> {
  const asked = options.oidc !== undefined || options.oauth !== undefined;
  if (!asked) {
    if (
      options.oidcClientId ||
      options.oidcClientSecret ||
      options.oidcAllowEmail?.length ||
      options.oidcAllowDomain?.length ||
      options.oidcScopes ||
      options.oidcSessionMs !== undefined ||
      options.oauthUrl !== undefined
    )
      throw new BeamError('BEAM_ERR_BAD_OPTION', 'the --oidc-* options go with --oidc <issuer-url> (or --oauth google|github)');
    return undefined;
  }
  if (kind !== 'http') throw new BeamError('BEAM_ERR_BAD_OPTION', `sign-in is for HTTP shares, not ${kind}; a ${kind} share can use --private`);
  if (options.oidcSessionMs !== undefined && !(Number.isInteger(options.oidcSessionMs) && options.oidcSessionMs >= 1000))
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--oidc-session must be at least 1s (e.g. 30m, 12h, 7d)');
  if (options.oidc !== undefined && options.oauth !== undefined)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--oidc and --oauth both name a provider: pick one');
  let issuer = options.oidc;
  if (options.oauth !== undefined) {
    issuer = OAUTH_ISSUERS[options.oauth];
    if (!issuer)
      throw new BeamError(
        'BEAM_ERR_BAD_OPTION',
        `--oauth ${options.oauth}: the provider Beam knows is ${Object.keys(OAUTH_ISSUERS).join(', ')}; any other OpenID Connect provider works with --oidc <issuer-url>`,
      );
  }
  if (options.oauthUrl !== undefined && options.oauth !== 'github')
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--oauth-url names a GitHub Enterprise Server: it goes with --oauth github');
  const { SignIn } = await import('../peer-agent/sign-in.js');
  return SignIn.start({
    ...(options.oauth === 'github' ? { github: { url: options.oauthUrl ?? (issuer as string) } } : {}),
    issuer: issuer as string,
    clientId: options.oidcClientId ?? '',
    clientSecret: options.oidcClientSecret,
    scopes: options.oidcScopes,
    allowEmails: options.oidcAllowEmail,
    allowDomains: options.oidcAllowDomain,
    sessionMs: options.oidcSessionMs,
  });
}

/** Shares a local port; resolves once the share is registered, or rejects with a BeamError. */
export async function share(options: ShareOptions): Promise<Share> {
  const kind = options.kind ?? 'http';
  const target = parseTarget(String(options.target));
  const server = options.server ? parseServerUrl(options.server) : undefined;
  const hostHeader = parseHostHeader(options.hostHeader ?? 'rewrite');
  const relay = parseRelayMode(options.relay ?? 'auto');
  const engineName = parseEngine(options.engine ?? 'node-datachannel');
  const via = parseBackendName(options.via ?? options.backend?.name ?? 'server');
  if (options.backend && options.backend.name !== via) throw new BeamError('BEAM_ERR_BAD_OPTION', `a ${options.backend.name} backend with via ${via}`);
  if (via === 'libp2p') refuseWithLibp2p(options, relay);
  else if (options.bootstrap?.length || options.stun?.length)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--bootstrap and --stun are for --via libp2p (a Beam server hands out its own STUN: beam serve --stun)');
  const p2p = via === 'libp2p' ? await loadLibp2p() : undefined;
  const bootstrap = p2p && options.bootstrap?.length ? p2p.parseBootstrap(options.bootstrap) : undefined;
  const stun = p2p && options.stun?.length ? p2p.parseStun(options.stun) : undefined;
  if (options.name !== undefined && via === 'libp2p') validateName(options.name);
  if (options.originTimeoutMs !== undefined && !(Number.isInteger(options.originTimeoutMs) && options.originTimeoutMs > 0)) {
    throw new BeamError('BEAM_ERR_BAD_OPTION', 'the origin timeout must be a whole number of milliseconds');
  }
  const appProtocol = parseAppProtocol(options.appProtocol ?? 'http1');
  if ((appProtocol !== 'http1' || target.scheme) && kind !== 'http')
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--app-protocol and http(s):// origins are for HTTP shares, not ${kind}`);
  if ((options.originCa !== undefined || options.originInsecure) && target.scheme !== 'https')
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--origin-ca and --origin-insecure are for an https origin: share it as https://host:port');
  if (options.originCa !== undefined && options.originInsecure)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--origin-ca checks the certificate and --origin-insecure does not: pick one');
  let originCa: Buffer | undefined;
  if (options.originCa !== undefined) {
    try {
      originCa = await readFile(options.originCa);
    } catch (err) {
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--origin-ca ${options.originCa}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!originCa.includes('-----BEGIN CERTIFICATE-----'))
      throw new BeamError('BEAM_ERR_BAD_OPTION', `--origin-ca ${options.originCa} holds no PEM certificate`);
  }
  const headerRules = parseHeaderRules(options);
  const signIn = await startSignIn(options, kind);
  const policy = options.policy !== undefined && options.policy.length > 0 ? compilePolicy(options.policy) : undefined;
  if (policy && kind !== 'http') throw new BeamError('BEAM_ERR_BAD_OPTION', `a policy is for HTTP shares, not ${kind}`);
  if (options.verifyWebhook === undefined && (options.verifyWebhookSecret !== undefined || options.verifyWebhookHeader !== undefined))
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--verify-webhook-secret and --verify-webhook-header go with --verify-webhook <provider>');
  const webhook =
    options.verifyWebhook !== undefined ? parseWebhookVerifier(options.verifyWebhook, options.verifyWebhookSecret, options.verifyWebhookHeader) : undefined;
  if (webhook && kind !== 'http') throw new BeamError('BEAM_ERR_BAD_OPTION', `--verify-webhook is for HTTP shares, not ${kind}`);
  if (headerRules && kind !== 'http') throw new BeamError('BEAM_ERR_BAD_OPTION', `header rules are for HTTP shares, not ${kind}`);
  if (options.auth !== undefined && kind !== 'http') throw new BeamError('BEAM_ERR_BAD_OPTION', `--auth is HTTP basic auth; a ${kind} share can use --private`);
  const basicAuth = options.auth !== undefined ? parseBasicAuth(options.auth) : undefined;
  const rateLimit = options.rateLimit !== undefined ? parseRateLimit(options.rateLimit) : undefined;
  if (options.maxVisitors !== undefined && !(Number.isInteger(options.maxVisitors) && options.maxVisitors >= 1)) {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--max-visitors must be a whole number from 1 (got ${options.maxVisitors})`);
  }
  const ipRules = options.allowIp?.length || options.denyIp?.length ? new IpRules(options.allowIp ?? [], options.denyIp ?? []) : undefined;
  const inspect = kind === 'http' ? (options.inspect ?? false) : false;
  if (typeof inspect === 'number' && !(Number.isInteger(inspect) && inspect >= 0 && inspect <= 65535)) {
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--inspect ${inspect} is not a port from 0 to 65535`);
  }
  if (options.port !== undefined && server)
    throw new BeamError('BEAM_ERR_BAD_OPTION', "--port is the embedded server's; with --server, that server has its own");
  if (options.port !== undefined && !(Number.isInteger(options.port) && options.port >= 0 && options.port <= 65535))
    throw new BeamError('BEAM_ERR_BAD_OPTION', `--port ${options.port} is not a port from 0 to 65535`);
  if (options.tls && server)
    throw new BeamError('BEAM_ERR_BAD_OPTION', '--tls is for the embedded server; a server you run takes `beam serve --tls-cert <file> --tls-key <file>`');
  if (options.lan && server)
    throw new BeamError(
      'BEAM_ERR_BAD_OPTION',
      '--lan announces the embedded server on your network; with --server, visitors find the share through that server: send them its link',
    );
  if (options.pool && options.name === undefined) throw new BeamError('BEAM_ERR_BAD_OPTION', '--pool needs --name: the name every agent of the pool registers');
  if (options.pool && !server) throw new BeamError('BEAM_ERR_BAD_OPTION', '--pool needs --server: the agents of a pool share one Beam server (beam serve)');
  const log = options.logger ?? pino({ level: 'silent' });
  const engine = await loadEngine(engineName);
  const identity = await loadAgentIdentity();
  const secret = options.private ? randomBytes(18).toString('base64url') : undefined;
  const browserUrl = (url: string): string => (secret !== undefined && kind === 'http' ? withSecretParam(url, secret) : url);

  const handle = new ShareHandle();
  handle.kind = kind;
  handle.via = via;
  handle.origin = `${target.scheme === 'https' ? 'https://' : ''}${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  let agent: Agent | undefined;
  try {
    let embedded: BeamServer | undefined;
    if (!server && !p2p) {
      const tls = options.tls ? await localTls() : undefined;
      embedded = await startEmbedded({ engine, logger: log }, () => agent?.share?.name, tls, options.port);
      const e = embedded;
      handle.closeParts.push(() => e.close());
      if (tls) handle.ca = { file: tls.caFile, fingerprint: tls.caFingerprint, url: '' };
    }
    // The embedded agent reaches its server on loopback, in plain http even when visitors get https.
    handle.server = server ?? embedded?.localUrl ?? '';

    // The inspector records HTTP exchanges; TCP and UDP shares carry no requests to show.
    const inspector = inspect === false ? undefined : new Inspector();
    if (inspector) {
      const ui: InspectorServer = await startInspectorServer(
        { inspector, logger: log, replay: (id, edits) => (agent ? agent.replay(id, edits) : Promise.reject(new BeamError('BEAM_ERR_EXCHANGE_GONE'))) },
        {
          port: inspect === true ? undefined : (inspect as number),
          info: () => ({ url: handle.url || undefined, origin: handle.origin }),
          version: BEAM_VERSION,
        },
      );
      handle.inspect = ui.url;
      handle.closeParts.push(() => ui.close());
    }

    // A name asked for on a server of one's own: the token this config directory kept takes it back at once.
    // A pool member joins by name, with no token to keep.
    const remembered = server !== undefined && options.name !== undefined && !options.pool;
    const resumeToken = remembered ? await resumeTokenFor(server, options.name as string) : undefined;
    // Closed after the agent (close parts run last first): its sessions end before the node stops.
    const own = p2p && !options.backend ? new p2p.Libp2pBackend({ bootstrap, stun, logger: log }) : undefined;
    if (own) handle.closeParts.push(() => own.close());
    const backend = options.backend ?? own;
    const a = new Agent(
      { engine, logger: log, identity, inspector },
      {
        ...(p2p ? {} : { server: handle.server }),
        origin: target,
        name: options.name,
        hostHeader,
        originTimeoutMs: options.originTimeoutMs,
        originProtocol: { appProtocol, ca: originCa, insecure: options.originInsecure === true },
        headerRules,
        webhook,
        policy,
        signIn,
        relay,
        kind,
        secret,
        basicAuth,
        ipRules,
        rateLimit,
        maxVisitors: options.maxVisitors,
        ...(options.token ? { token: options.token } : {}),
        ...(options.pool ? { pool: true } : {}),
        ...(resumeToken !== undefined ? { resumeToken } : {}),
        // On the embedded default the gateway reaches the agent in memory: nothing to warm up for.
        warmUp: server !== undefined,
      },
    );
    agent = a;
    handle.closeParts.push(() => a.close());
    // A session may come before share() returns (the server's gateway opens its link as the share registers):
    // its events wait until the caller, who listens once share() resolves, can hear them.
    let held: Array<() => void> | undefined = [];
    const pass = (emit: () => void): void => {
      if (held) held.push(emit);
      else emit();
    };
    a.on('session', (s) => pass(() => handle.emit('session', s)));
    a.on('path', (s) => pass(() => handle.emit('path', s)));
    a.on('session-closed', (s) => pass(() => handle.emit('session-closed', s)));
    a.on('origin-unreachable', (e) => handle.emit('origin-unreachable', e));
    a.on('disconnected', (e) => handle.emit('reconnecting', e));
    a.on('error', (err) => {
      if (handle.listenerCount('error') > 0) handle.emit('error', err);
      else log.error({ code: err.code }, err.message);
    });
    if (p2p) {
      // No server: the backend announces the share, and the link names the relay that carries the hole punch.
      const name = options.name ?? randomName();
      const listening = await a.listenOn(backend as NetworkBackend, name);
      handle.name = name;
      handle.server = listening.address;
      handle.link = p2p.libp2pLink(name, listening.address, { kind, secret });
      handle.url = handle.link;
      // Another relay took over: the link changes with it, and is said again as 'resumed'.
      listening.onAddress((address) => {
        handle.server = address;
        handle.link = p2p.libp2pLink(name, address, { kind, secret });
        handle.url = handle.link;
        handle.emit('resumed', { name, url: handle.link });
      });
      setImmediate(() => {
        const early = held ?? [];
        held = undefined;
        for (const emit of early) emit();
      });
      return handle;
    }
    let registered = false;
    // The first registration resolves below; every later one (after a drop, or a server restart) is 'resumed'.
    a.on('ready', (r) => {
      if (registered) handle.emit('resumed', { name: r.name, url: browserUrl(r.url) });
    });
    const first = await a.start();
    registered = true;
    if (remembered && server) {
      const name = first.name;
      await rememberName(server, name, first.resumeToken).catch((err: Error) =>
        log.warn({ err: err.message }, 'could not keep the name in the config directory'),
      );
      // Closed on purpose, the name is free at once: its token is no use any more. (Runs before the agent's close, which is fine.)
      handle.closeParts.push(() => forgetName(server, name).catch(() => {}));
    }
    handle.name = first.name;
    handle.url = browserUrl(first.url);
    // A pool is several agents, each with its own key: its link pins none of them (beam connect trusts the server to name the one it reaches).
    handle.link = connectLink(first.url, options.pool ? undefined : identity.peerIdText, secret);
    const lan = embedded ? lanAddress() : undefined;
    const scheme = options.tls ? 'https' : 'http';
    if (lan && embedded) handle.lan = browserUrl(`${scheme}://${lan}:${embedded.port}/`);
    // The embedded gateway reaches its agent in memory: open that session now, so the first visitor waits for nothing.
    if (embedded && kind === 'http') void embedded.gateway.pool.connect(first.name).catch(() => {});
    if (options.lan && embedded) await announceOnLan(handle, embedded.port, scheme, log);
    if (handle.ca && embedded) handle.ca.url = `https://${lan ?? 'localhost'}:${embedded.port}${LOCAL_CA_PATH}`;
    // After the caller's continuation (a microtask): its listeners are on by then.
    setImmediate(() => {
      const early = held ?? [];
      held = undefined;
      for (const emit of early) emit();
    });
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}
