/**
 * `beam serve` and the embedded default: one HTTP server on one port that
 * carries the signaling endpoint (under /.beam/signal) and the gateway (every
 * other request, routed by Host).
 */

import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Server as SocketIoServer } from 'socket.io';
import {
  DRAIN_TIMEOUT_MS,
  GATEWAY_WARM_LINKS,
  MAX_SIGNALING_MESSAGE_BYTES,
  SIGNALING_PATH,
  SIGNALING_PING_INTERVAL_MS,
  SIGNALING_PING_TIMEOUT_MS,
} from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { RelayMode } from '../shared/signaling.js';
import { type IceConfig, iceServersFor } from '../signaling/ice.js';
import { type AddressLimits, type SignalingIo, SignalingServer } from '../signaling/server.js';
import type { AgentTokens } from '../signaling/tokens.js';
import type { WebRtcEngine } from '../transport/engine.js';
import { serveRelayInProcess } from '../transport/relay.js';
import { SessionPool } from '../transport/session-pool.js';
import { BrowserClient } from './browser.js';
import { FirstStages } from './first-stage.js';
import { Gateway } from './gateway.js';
import { createHttpEntry, type TlsOptions } from './http-entry.js';
import { RelayServer } from './relay.js';
import { serverRoutes } from './routes.js';
import { type StunServer, startStunServer } from './stun.js';

export interface BeamServerOptions {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Address to bind. Default all interfaces. */
  host?: string;
  /** Shares live at `<name>.<domain>`. Default 'localhost'. */
  domain?: string;
  /** The server's public URL (e.g. https://beam.example.com): share URLs are built from it. */
  publicUrl?: string;
  /** Route Hosts that name no share to this share (the embedded default). */
  defaultShare?: () => string | undefined;
  /** `<name>.local` names the share `name` (shares announced by mDNS), where no default share takes every Host. */
  lanNames?: boolean;
  /** STUN and TURN servers for sessions (signaling/ice.ts). */
  ice?: IceConfig;
  /**
   * How the gateway's own HTTP entry reaches agents (`beam serve
   * --gateway-relay`): 'auto' (the default) carries requests on the relay,
   * the agent's own WebSocket to this server, with direct WebRTC standing by
   * for when that connection drops; 'always' uses the relay alone, with no
   * WebRTC; 'never' uses WebRTC only. An agent's own --relay always or never
   * wins.
   */
  gatewayRelay?: RelayMode;
  /**
   * What one session may carry on the relay, bytes both ways and time from
   * the splice (0 or absent: no cap, the default). Past either, the relay
   * ends the session with BEAM_ERR_RELAY_CAPPED: it then bridges the wait
   * for direct, and visitors whose networks allow no direct path (and no
   * TURN) lose long transfers. The server's own gateway is not capped.
   */
  relayCap?: { bytes?: number; ms?: number };
  /**
   * Open the gateway's link to each HTTP share as it registers, while the
   * gateway holds fewer than this many (0: none, the links open at each
   * share's first visitor). Default GATEWAY_WARM_LINKS; none with `redis`
   * (a share's visitors reach any node, not the one it registered on).
   */
  warmLinks?: number;
  /** Compress text responses for clients that accept brotli or gzip. Default true. */
  compress?: boolean;
  /** How long a client may take over its first request head, counted from accept. Default GATEWAY_HEADERS_TIMEOUT_MS. */
  headersTimeoutMs?: number;
  /**
   * Concurrent TCP connections one client address may hold to the public
   * entry; 0 for no cap. Default GATEWAY_MAX_CONNECTIONS_PER_IP, or no cap
   * with trustProxy (every client then has the proxy's address).
   */
  maxConnectionsPerIp?: number;
  /** --token-file: agents need a token; tokens reserve names. Default: anyone may share. */
  tokens?: AgentTokens;
  /** Per client address limits on signaling (defaults in shared/constants.ts). */
  limits?: Partial<AddressLimits>;
  /** Behind a reverse proxy: believe its X-Forwarded-For and X-Forwarded-Proto. Default false. */
  trustProxy?: boolean;
  /**
   * A Redis URL: this server is one node of many. Names live in Redis
   * (signaling/redis-registry.ts) and signaling passes between nodes through
   * socket.io's Redis Streams adapter. Default: everything in memory.
   */
  redis?: string;
  /**
   * This node's own URL, reachable by agents and visitors (with --redis,
   * behind a load balancer): both sides of a relayed session meet at the relay
   * of the node that set it up. On the public host or below it, e.g.
   * https://node1.beam.example.com for https://beam.example.com.
   */
  nodeUrl?: string;
  /**
   * Browsers that navigate to a share get the bootstrap page and reach the
   * agent peer to peer (gateway/browser.ts). Default true; false sends them
   * through the gateway's HTTP path, as curl.
   */
  browserP2p?: boolean;
  /**
   * Where a new visitor's browser shows the app's first document: 'frame'
   * (default) in the bootstrap page's frame; 'top' top-level, through the
   * gateway, with a loader that adds the page once the app has loaded
   * (browser-client/loader.ts): the first paint has no page of Beam's before
   * it. `--browser-first-load`.
   */
  browserFirstLoad?: 'frame' | 'top';
  /**
   * Serve https with this certificate (PEM chain and key): browsers on
   * other machines need it for peer to peer (a Service Worker needs a secure
   * context). The server's own gateway then reaches signaling and the relay
   * on a second, loopback-only plain listener.
   */
  tls?: TlsOptions;
  /** A local certificate authority's certificate (beam --tls), offered at LOCAL_CA_PATH for teammates to trust. */
  caCert?: Buffer;
  /** Prometheus metrics at /metrics. Default true; the embedded default has none. */
  metrics?: boolean;
  /**
   * Load Noise and the gateway's key once the server is up, so the first
   * visitor's session waits for no module loading. Default true; the
   * embedded default (its gateway reaches its agent in memory) leaves it.
   */
  warmUp?: boolean;
  /**
   * The server's own STUN (gateway/stun.ts): on UDP `port` (default: the
   * server's port), or none (false). `background`: start it beside the rest
   * and don't wait for it (the embedded default, whose link should not wait).
   */
  stun?: { port?: number; background?: boolean } | false;
}

export interface BeamServer {
  readonly port: number;
  readonly http: http.Server;
  readonly signaling: SignalingServer;
  readonly gateway: Gateway;
  readonly relay: RelayServer;
  /** Public URL of a share. */
  shareUrl(name: string): string;
  /** Plain http on loopback, for clients on this machine (the embedded agent); with TLS, the loopback-only listener. */
  readonly localUrl: string;
  /**
   * Graceful stop (SIGTERM): /readyz turns 503, no new connections are
   * accepted, in-flight requests finish for up to `timeoutMs`, then close().
   */
  drain(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
  /** The Redis client, with --redis (for metrics and health). */
  readonly redis: Redis | undefined;
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Builds `<scheme>://<name>.<host>[:port]/` from a base URL. */
export function shareUrlFrom(base: URL, name: string): string {
  const url = new URL(base.href);
  url.hostname = `${name}.${url.hostname}`;
  url.pathname = '/';
  url.search = '';
  url.hash = '';
  return url.href;
}

export async function startBeamServer(components: { engine: WebRtcEngine; logger: Logger }, options: BeamServerOptions): Promise<BeamServer> {
  const domain = (options.domain ?? 'localhost').toLowerCase();
  const gatewayToken = randomBytes(24).toString('base64url');
  const server = createHttpEntry({
    headersTimeoutMs: options.headersTimeoutMs,
    tls: options.tls,
    maxConnectionsPerIp: options.maxConnectionsPerIp ?? (options.trustProxy ? 0 : undefined),
  });
  await listen(server, options.port, options.host ?? '0.0.0.0');
  const port = (server.address() as AddressInfo).port;
  const base = new URL(options.publicUrl ?? `${options.tls ? 'https' : 'http'}://${domain}:${port}`);
  const shareUrl = (name: string): string => shareUrlFrom(base, name);

  let redis: Redis | undefined;
  if (options.redis) {
    // Redis and its adapter load only for --redis: a single server (and the embedded default) never pays for them.
    const { Redis } = await import('ioredis');
    const client = new Redis(options.redis, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(100 * n, 2_000) });
    client.on('error', (err) => components.logger.warn({ err: err.message }, 'redis'));
    try {
      await client.connect();
    } catch (err) {
      client.disconnect();
      server.close();
      throw new BeamError('BEAM_ERR_STORE_UNAVAILABLE', `--redis ${options.redis}: ${(err as Error).message}`);
    }
    redis = client;
    // Both sides of a relayed session meet at one node's relay only when the nodes say where they are.
    if (!options.nodeUrl) {
      components.logger.warn(
        { redis: true },
        'no --node-url: relayed sessions whose sides land on different nodes never meet (they wait for direct); give each node its own URL with --node-url',
      );
    }
  }
  const registry = redis ? new (await import('../signaling/redis-registry.js')).RedisShareRegistry({ redis, logger: components.logger }) : undefined;
  const adapter = redis ? (await import('@socket.io/redis-streams-adapter')).createAdapter(redis, { streamName: 'beam:signal' }) : undefined;

  const io: SignalingIo = new SocketIoServer(server, {
    ...(adapter ? { adapter } : {}),
    path: SIGNALING_PATH,
    serveClient: false,
    // Upgrades on other paths are WebSockets for shares: engine.io must leave them alone.
    destroyUpgrade: false,
    transports: ['websocket'],
    maxHttpBufferSize: MAX_SIGNALING_MESSAGE_BYTES,
    pingInterval: SIGNALING_PING_INTERVAL_MS,
    pingTimeout: SIGNALING_PING_TIMEOUT_MS,
  });
  // The server's own STUN, on the server's port number (UDP) unless told otherwise. A port asked for must be had
  // (an error before anything is served); the default one is started beside the rest and only costs the feature if taken.
  let stun: StunServer | undefined;
  const stunHost = options.host ?? '0.0.0.0';
  if (options.stun !== false && options.stun?.port !== undefined) {
    try {
      stun = await startStunServer({ host: stunHost, port: options.stun.port, logger: components.logger });
    } catch (err) {
      server.close();
      throw err;
    }
  }
  const stunStarted =
    options.stun !== false && options.stun?.port === undefined
      ? startStunServer({ host: stunHost, port, logger: components.logger }).then(
          (started) => {
            stun = started;
          },
          (err: Error) => components.logger.warn({ err: err.message }, 'no STUN from this server: peers behind NATs need --stun servers for direct paths'),
        )
      : Promise.resolve();
  let relay: RelayServer | undefined;
  let warm: ((name: string, kind: string) => boolean) | undefined;
  const signaling = new SignalingServer(
    { logger: components.logger, registry },
    {
      cluster: redis !== undefined,
      nodeUrl: options.nodeUrl,
      shareUrl,
      gatewayToken,
      iceServers: () => (options.ice ? iceServersFor(options.ice) : []),
      onSessionEnd: (id) => relay?.end(id),
      onShareRegistered: (name, kind) => warm?.(name, kind) ?? false,
      tokens: options.tokens,
      limits: options.limits,
      trustProxy: options.trustProxy,
      stunPort: () => stun?.port,
    },
  );
  signaling.attach(io);
  // A name this node's agent held, taken by another while Redis was away: the agent is told by a reconnect, and finds out.
  if (registry) registry.onLost = (owner) => io.sockets.sockets.get(owner)?.disconnect(true);
  relay = new RelayServer(
    {
      logger: components.logger,
      redeem: (sessionId, role, token) => signaling.redeemRelayToken(sessionId, role, token),
      // The gateway's bytes cross this server whatever its path to the agent: a cap would bound nothing.
      uncapped: (sessionId) => signaling.sessionKind(sessionId) === 'gateway',
    },
    { maxBytes: options.relayCap?.bytes ?? 0, maxMs: options.relayCap?.ms ?? 0 },
  );
  const relayServer = relay;

  // With TLS, the gateway's own way in: plain, on loopback only, sharing socket.io's engine and every handler below.
  let internal: http.Server | undefined;
  if (options.tls) {
    // Loopback only, for the gateway's own links: no per-address cap.
    internal = createHttpEntry({ headersTimeoutMs: options.headersTimeoutMs, maxConnectionsPerIp: 0 });
    await listen(internal, 0, '127.0.0.1');
    io.engine.attach(internal, { path: SIGNALING_PATH, destroyUpgrade: false });
  }
  const loopback = internal ? '127.0.0.1' : !options.host || options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host;
  const signalingPort = internal ? (internal.address() as AddressInfo).port : port;
  const localUrl = `http://${loopback.includes(':') ? `[${loopback}]` : loopback}:${signalingPort}`;
  // This server's own gateway (and an agent in this process) joins the relay's sessions in memory, not over loopback.
  const unserveRelay = serveRelayInProcess(localUrl, (ticket) => relayServer.attachInProcess(ticket));
  const pool = new SessionPool(
    {
      engine: components.engine,
      logger: components.logger.child({ component: 'gateway' }),
      identity: () => import('../transport/identity.js').then((m) => m.ephemeralIdentity()),
    },
    {
      server: localUrl,
      handshake: { gatewayToken },
      reconnect: 'gateway',
      // A share whose agent runs in this process (the embedded default) is reached in memory.
      localLinks: true,
      // The server's own gateway passes each request's secret on to the agent instead.
      // The relay carries the link: it runs in this process, so WebRTC would remove no server from the path, only
      // cost throughput (DTLS and SCTP in user space). Direct comes up beside it and stands by for when the relay goes.
      session: { relay: options.gatewayRelay ?? 'auto', relayYields: true, requestLevelAccess: true, relayPreferred: true, plainRelay: true },
    },
  );
  /** drain() was called: SIGTERM, or a rolling restart. */
  let draining = false;
  // In a cluster a share's visitors reach any node: warming the registering node's link would help one in N.
  const warmLinks = options.warmLinks ?? (redis ? 0 : GATEWAY_WARM_LINKS);
  // True when a link opens: the agent then announces its share once that link is up (Registered.gatewayLink).
  // Each opens after the registration's answer has gone out: the agent knows its name before any session for it arrives.
  warm = (name, kind) => {
    // The gateway serves HTTP shares only; past warmLinks a link opens at its share's first visitor. A node
    // that drains opens no session: its agents are moving to other nodes, and it only finishes what it carries.
    if (kind !== 'http' || draining) return false;
    // A member joined a pool this gateway has sessions with: a session with it now, not at the next probe.
    if (pool.get(name)) {
      setImmediate(() => {
        pool.joined(name);
        // A one-agent share back after losing the server: a new session, with signaling (and the relay) again.
        pool.renew(name);
      });
      return false;
    }
    if (pool.size >= warmLinks) return false;
    setImmediate(() => {
      pool.connect(name).catch((err: BeamError) => components.logger.debug({ share: name, code: err.code }, 'warm link not opened'));
    });
    return true;
  };
  const gateway = new Gateway(
    { logger: components.logger, pool },
    {
      serverGateway: true,
      domain,
      defaultShare: options.defaultShare,
      lanNames: options.lanNames ?? false,
      compress: options.compress ?? true,
      trustProxy: options.trustProxy ?? false,
    },
  );
  const browser = options.browserP2p === false ? undefined : BrowserClient.load();
  // A new visitor's page loads the app's first document through the gateway at once (gateway/first-stage.ts).
  // A stage lives in one node's memory: behind a load balancer (--redis) the page's next request may reach
  // another node, so there pages start as a returning visitor's do.
  if (browser?.appShim && !redis) {
    const loader = options.browserFirstLoad === 'top' ? browser.loader : undefined;
    gateway.firstStage = { stages: new FirstStages(), shim: browser.appShim, ...(loader ? { loader } : {}) };
  }
  if (options.browserP2p !== false && !browser) components.logger.warn('the browser client is not built (npm run build): browsers get the HTTP path');
  // Prometheus metrics for a server one runs (the embedded default has none: prom-client is a hundred files to load).
  const metrics =
    options.metrics === false
      ? undefined
      : (await import('./metrics.js')).createMetrics(signaling, { pool, gateway }, relayServer, redis ? () => redis?.status === 'ready' : undefined);
  if (metrics) gateway.onRequestDone = metrics.observeRequest;
  const { onRequest, onUpgrade } = serverRoutes({
    gateway,
    browser,
    metrics,
    relay: relayServer,
    readiness: () => (draining ? 'draining' : pool.connected && (!redis || redis.status === 'ready') ? 'ok' : 'not ready'),
    doctor: () => ({ stun: options.ice?.stun ?? [], turn: (options.ice?.turn.length ?? 0) > 0, ...(stun ? { stunPort: stun.port } : {}) }),
    caCert: options.caCert,
    signsIn: (share) => signaling.signsIn(share),
  });
  for (const entry of internal ? [server, internal] : [server]) {
    entry.on('request', onRequest);
    entry.on('upgrade', onUpgrade);
  }
  await pool.ready();
  if (options.stun === undefined || (options.stun !== false && !options.stun.background)) await stunStarted;
  if (options.warmUp !== false) {
    setImmediate(() => {
      void import('../transport/secure.js').catch(() => {});
      void import('../transport/identity.js').catch(() => {});
    });
  }

  const result: BeamServer = {
    port,
    http: server,
    signaling,
    gateway,
    relay: relayServer,
    shareUrl,
    localUrl,
    async drain(timeoutMs = DRAIN_TIMEOUT_MS) {
      draining = true;
      // Stop accepting; keep-alive connections close once their current request is done.
      server.close();
      server.closeIdleConnections();
      internal?.close();
      // Agents move to another node now (their names held for them), while requests in flight finish here.
      await signaling.moveAgents();
      const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
      await Promise.race([gateway.idle(), timer]);
      await result.close();
    },
    async close() {
      gateway.close();
      unserveRelay();
      relayServer.close();
      await stunStarted;
      stun?.close();
      signaling.close();
      await new Promise<void>((resolve) => {
        io.close(() => resolve());
        server.closeAllConnections();
        internal?.closeAllConnections();
        internal?.close();
      });
      registry?.close();
      await redis?.quit().catch(() => redis?.disconnect());
    },
    redis,
  };
  return result;
}
