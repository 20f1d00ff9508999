/**
 * `beam connect <link>`: the share appears as a local port. Each local
 * connection becomes a stream to the agent over the best path (direct, else
 * the relay), and the agent must prove the peer ID the link names.
 *
 * For an HTTP share this is a one-share gateway on localhost: the app, its
 * WebSockets included, served on 127.0.0.1:<port>. For a TCP share (`beam
 * tcp`) each local connection is a stream: a database, SSH, anything.
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { sendError, sendRawError } from '../gateway/error-page.js';
import { Gateway } from '../gateway/gateway.js';
import { createHttpEntry } from '../gateway/http-entry.js';
import { LOCAL_CA_PATH, MAX_UDP_FLOWS, TCP_KEEPALIVE_MS, UDP_FLOW_IDLE_MS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import { validateName } from '../shared/names.js';
import type { PathKind } from '../shared/paths.js';
import type { RelayMode, ShareKind } from '../shared/signaling.js';
import { dialSecured, loadLibp2p } from '../transport/backend.js';
import type { WebRtcEngine } from '../transport/engine.js';
import { ephemeralIdentity, parsePeerId } from '../transport/identity.js';
import { findShare } from '../transport/lan.js';
import { type ParsedLink, parseLink } from '../transport/link.js';
import { isLibp2pLink } from '../transport/link-text.js';
import type { LocalLink } from '../transport/local-agents.js';
import { SessionPool } from '../transport/session-pool.js';
import { splice } from '../transport/splice.js';

export interface ConnectOptions {
  link: string;
  /** Local port; 0 picks a free one. */
  port: number;
  bind: string;
  relay: RelayMode;
  /** Overrides the server the link names. */
  server?: string;
  /** Host names the local HTTP port answers besides the loopback ones (--allow-host). */
  allowHosts?: string[];
  /** A libp2p share's link (`beam+libp2p://`): STUN servers for the hole punch. Default: libp2p's public list. */
  stun?: string[];
}

/**
 * The names a local HTTP port answers to. A web page the visitor opens
 * elsewhere can point a name of its own at 127.0.0.1 (DNS rebinding) and
 * read the share through the port; and the agent's Host rewrite would hide
 * that from the origin's own check. So only the loopback names, the bound
 * address, and names given with --allow-host pass; the rest get 403
 * BEAM_ERR_HOST_NOT_ALLOWED, as the inspector does.
 */
export function localHostAllowed(hostHeader: string | undefined, port: number, bind: string, extra: readonly string[] = []): boolean {
  if (!hostHeader) return false;
  const host = hostHeader.trim().toLowerCase();
  const names = new Set(['localhost', '127.0.0.1', '[::1]', ...extra.map((h) => h.toLowerCase())]);
  if (bind !== '0.0.0.0' && bind !== '::') names.add(bind.includes(':') ? `[${bind.toLowerCase()}]` : bind.toLowerCase());
  for (const name of names) if (host === name || host === `${name}:${port}`) return true;
  return false;
}

/** An HTTP share on localhost: a one-share gateway, WebSockets included. */
function httpListener(gateway: Gateway, options: ConnectOptions): net.Server {
  const local = createHttpEntry();
  const allowed = (req: http.IncomingMessage): boolean =>
    localHostAllowed(req.headers.host, (local.address() as AddressInfo).port, options.bind, options.allowHosts);
  const detail = (req: http.IncomingMessage): string => `Host "${(req.headers.host ?? '').slice(0, 100)}"`;
  local.on('request', (req, res) => {
    if (!allowed(req)) {
      sendError(req.headers, res, 'BEAM_ERR_HOST_NOT_ALLOWED', detail(req));
      return;
    }
    void gateway.handleRequest(req, res);
  });
  local.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    if (!allowed(req)) {
      sendRawError(req.headers, socket, 'BEAM_ERR_HOST_NOT_ALLOWED', detail(req));
      return;
    }
    void gateway.handleUpgrade(req, socket, head);
  });
  return local;
}

/** A TCP share on localhost: each local connection is one stream to the agent, half-close and resets kept. */
function tcpListener(pool: SessionPool, share: string): net.Server {
  return net.createServer({ allowHalfOpen: true, keepAlive: true, keepAliveInitialDelay: TCP_KEEPALIVE_MS, noDelay: true }, (socket) => {
    socket.on('error', () => {});
    pool
      .connect(share)
      .then((session) => session.stream(StreamProtocol.TCP))
      .then(
        (stream) => {
          if (socket.destroyed) {
            stream.destroy();
            return;
          }
          splice(stream, socket, (err) => new BeamError('BEAM_ERR_STREAM_RESET', `local: ${err.code ?? err.message}`));
        },
        () => socket.resetAndDestroy(),
      );
  });
}

/** A UDP share on localhost: each client address is a flow; datagrams go over the best path, unreliable where it can. */
async function udpListener(pool: SessionPool, share: string, bind: string, port: number): Promise<{ port: number; close(): void }> {
  const socket = dgram.createSocket(net.isIPv6(bind) ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new BeamError('BEAM_ERR_BAD_OPTION', `${bind}:${port} is in use; pick another --port`) : err),
    );
    socket.bind(port, bind, () => resolve());
  });
  const flows = new Map<string, { id: number; address: string; port: number; lastUsed: number }>();
  const byId = new Map<number, { address: string; port: number; lastUsed: number }>();
  let nextFlow = 1;
  const subscribed = new WeakSet<object>();
  socket.on('message', (msg, rinfo) => {
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = flows.get(key);
    if (!flow) {
      if (flows.size >= MAX_UDP_FLOWS) {
        let oldest: [string, { id: number; lastUsed: number }] | undefined;
        for (const entry of flows) if (!oldest || entry[1].lastUsed < oldest[1].lastUsed) oldest = entry;
        if (oldest) {
          flows.delete(oldest[0]);
          byId.delete(oldest[1].id);
        }
      }
      flow = { id: nextFlow++, address: rinfo.address, port: rinfo.port, lastUsed: 0 };
      flows.set(key, flow);
      byId.set(flow.id, flow);
    }
    flow.lastUsed = Date.now();
    const id = flow.id;
    pool.connect(share).then(
      (session) => {
        if (!subscribed.has(session)) {
          subscribed.add(session);
          session.on('datagram', (flowId, payload) => {
            const to = byId.get(flowId);
            if (!to) return;
            to.lastUsed = Date.now();
            socket.send(payload, to.port, to.address);
          });
        }
        session.sendDatagram(id, msg);
      },
      () => {
        // No path right now: the datagram is lost, as UDP allows.
      },
    );
  });
  const sweep = setInterval(() => {
    const cutoff = Date.now() - UDP_FLOW_IDLE_MS;
    for (const [key, flow] of [...flows]) {
      if (flow.lastUsed < cutoff) {
        flows.delete(key);
        byId.delete(flow.id);
      }
    }
  }, 30_000);
  sweep.unref();
  return {
    port: socket.address().port,
    close() {
      clearInterval(sweep);
      socket.close();
    },
  };
}

/** The path a connection's requests take now. */
export interface ConnectionPath {
  path: PathKind;
  /** Round-trip time on it, in ms, once measured. */
  rtt: number | undefined;
  /** Milliseconds from asking for the session to this path coming up. */
  afterMs: number;
}

export interface ConnectionEvents {
  /** The path changed (a better one came up, or the one in use died and another took over). */
  path: [ConnectionPath];
}

/** A share open as a local port; resolves once it listens, with its first path up. */
export interface Connection extends EventEmitter<ConnectionEvents> {
  /** The share's name. */
  readonly share: string;
  /** The share's own URL, as the link names it. */
  readonly origin: string;
  /** The Beam server signaling goes through. */
  readonly server: string;
  readonly port: number;
  /** The local address: http://, tcp:// or udp://127.0.0.1:<port>. */
  readonly url: string;
  readonly kind: ShareKind;
  /** The link names the agent's peer ID, so the agent proved who it is; false: taken on the server's (or, found by name, the LAN's) word. */
  readonly verified: boolean;
  /** Found on this network by mDNS (`beam <port> --lan`): by its name, or for a `*.localhost` link of another machine. */
  readonly lan: boolean;
  /** The agent's peer ID, as the link or the LAN's answer named it. */
  readonly peer: string | undefined;
  /** The network the share is reached through: a Beam server, or libp2p (a `beam+libp2p://` link). */
  readonly via: 'server' | 'libp2p';
  /** The path requests take now. */
  readonly path: ConnectionPath | undefined;
  /** The round-trip time on that path now, in ms, once measured. */
  readonly rtt: number | undefined;
  close(): Promise<void>;
}

/** @deprecated the name of Connection before it was an emitter. */
export type Connected = Connection;

class ConnectionHandle extends EventEmitter<ConnectionEvents> implements Connection {
  share = '';
  origin = '';
  server = '';
  port = 0;
  url = '';
  kind: ShareKind = 'http';
  verified = false;
  lan = false;
  peer: string | undefined;
  via: 'server' | 'libp2p' = 'server';
  path: ConnectionPath | undefined;
  closeParts: Array<() => void | Promise<void>> = [];
  /** The session's live RTT. */
  rttOf: () => number | undefined = () => undefined;

  get rtt(): number | undefined {
    return this.rttOf();
  }
  private closed = false;

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const part of this.closeParts.reverse()) await part();
  }
}

/** Whether `text` is a share's name (a DNS label Beam would give out). */
function isName(text: string): boolean {
  try {
    validateName(text);
    return true;
  } catch {
    return false;
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`, within a moment. */
function listensLocally(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (up: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(up);
    };
    const timer = setTimeout(() => done(false), 500);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

interface Located {
  link: ParsedLink;
  /** Found on the LAN by mDNS. */
  lan: boolean;
  verified: boolean;
  /** A *.localhost link taken to a Beam on this machine: if that one has no such agent, the LAN may. */
  local: boolean;
}

/**
 * Why Node would refuse the certificate of an https server found on the LAN,
 * or undefined when it trusts it. A `beam --tls` share's embedded server signs
 * with the sharer's local authority, which this machine may not trust yet.
 */
function untrusted(server: string): Promise<string | undefined> {
  const url = new URL(server);
  return new Promise((resolve) => {
    const socket = tls.connect({ host: url.hostname, port: Number(url.port || 443), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    const done = (why: string | undefined): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done('no TLS handshake within 3 s'), 3_000);
    socket.once('secureConnect', () => done(socket.authorized ? undefined : String(socket.authorizationError)));
    socket.once('error', (err) => done(err.message));
  });
}

/** A share found on the LAN that serves https: its certificate must be one Node trusts, or the user hears how to make it so. */
async function checkLanTls(server: string): Promise<void> {
  if (!server.startsWith('https:')) return;
  const why = await untrusted(server);
  if (why === undefined) return;
  throw new BeamError(
    'BEAM_ERR_SERVER_UNREACHABLE',
    `${server} serves https with its sharer's local certificate authority (beam --tls), which Node does not trust here (${why}): save it from ${server}${LOCAL_CA_PATH}, check its fingerprint with the sharer (beam prints it), and run beam connect with NODE_EXTRA_CA_CERTS=<that file>`,
  );
}

/** Where the share is: as the link says, or on this network by mDNS (`beam <port> --lan`). */
async function locate(options: ConnectOptions, logger: Logger): Promise<Located> {
  if (!options.link.includes('://')) {
    if (!isName(options.link))
      throw new BeamError(
        'BEAM_ERR_BAD_OPTION',
        `"${options.link.slice(0, 80)}" is neither a Beam link (http://swift-otter-042.localhost:7070/#peer=...) nor a share's name (swift-otter-042)`,
      );
    const name = validateName(options.link);
    if (options.server !== undefined) {
      // A name on the server --server names: the agent's key is taken on that server's word, as with a link without #peer=.
      const url = new URL(options.server);
      if (isIP(url.hostname.replace(/^\[|\]$/g, '')) === 0) url.hostname = `${name}.${url.hostname}`;
      return { link: { server: options.server, url: url.href, share: name, peer: undefined, secret: undefined }, lan: false, verified: false, local: false };
    }
    // A bare name: the share that answers to it on this network, taken on the LAN's word (no link pins its key).
    const found = await findShare(options.link, { log: logger });
    if (found.private)
      throw new BeamError('BEAM_ERR_PRIVATE', `"${found.name}" is private: connect with the full link its owner sent you (it carries the secret)`);
    await checkLanTls(found.server);
    const url = `${found.server}/`;
    return {
      link: { server: found.server, url, share: found.name, peer: parsePeerId(found.peer), secret: undefined },
      lan: true,
      verified: false,
      local: false,
    };
  }
  const link = parseLink(options.link);
  const server = new URL(link.server);
  // A *.localhost link names the sharer's own machine; on another one, with nothing of Beam's on that port here, ask the LAN.
  const localhost = options.server === undefined && server.hostname === 'localhost';
  if (localhost && !(await listensLocally(Number(server.port || 80)))) {
    const found = await findShare(link.share, { peer: link.peer?.toString(), log: logger });
    await checkLanTls(found.server);
    return { link: { ...link, server: found.server }, lan: true, verified: link.peer !== undefined, local: false };
  }
  return { link, lan: false, verified: link.peer !== undefined, local: localhost };
}

/** A libp2p share's link: no server; the backend dials the agent through the relay the link names (transport/libp2p.ts). */
async function locateLibp2p(options: ConnectOptions, logger: Logger): Promise<{ located: Located; dial: Dial }> {
  if (options.server !== undefined) throw new BeamError('BEAM_ERR_BAD_OPTION', 'a beam+libp2p:// link needs no Beam server: leave --server out');
  if (options.relay === 'always') throw new BeamError('BEAM_ERR_BAD_OPTION', "--relay always with a libp2p link: libp2p's relays carry the hole punch only");
  const p2p = await loadLibp2p();
  const target = p2p.parseLibp2pLink(options.link);
  const backend = new p2p.Libp2pBackend({ stun: options.stun?.length ? p2p.parseStun(options.stun) : undefined, logger });
  const url = p2p.libp2pLink(target.share, target.address);
  const peer = parsePeerId(target.peer);
  const identity = await ephemeralIdentity();
  return {
    located: { link: { server: target.address, url, share: target.share, peer, secret: target.secret }, lan: false, verified: true, local: false },
    dial: {
      open: async () => ({ ...(await dialSecured(await backend.dial(target), { identity, peer, secret: target.secret })), kind: target.kind }),
      close: () => backend.close(),
    },
  };
}

/** A network backend's way to the share (transport/backend.ts), instead of signaling. */
interface Dial {
  open: () => Promise<LocalLink>;
  close: () => Promise<void>;
}

export async function connect(components: { engine: WebRtcEngine; logger: Logger }, options: ConnectOptions): Promise<Connection> {
  if (isLibp2pLink(options.link)) {
    const { located, dial } = await locateLibp2p(options, components.logger);
    return open(components, options, located, dial);
  }
  if (options.stun?.length) throw new BeamError('BEAM_ERR_BAD_OPTION', '--stun is for a beam+libp2p:// link (a Beam server hands out its own STUN)');
  const located = await locate(options, components.logger);
  try {
    return await open(components, options, located);
  } catch (err) {
    // A *.localhost link names the sharer's machine. A Beam of this machine answered instead, with another agent under
    // that name (or none): the one the link names may be on the LAN. If it is not there either, the first answer stands.
    const code = (err as { code?: string }).code;
    if (!located.local || (code !== 'BEAM_ERR_PEER_MISMATCH' && code !== 'BEAM_ERR_SHARE_NOT_FOUND')) throw err;
    let found: Awaited<ReturnType<typeof findShare>>;
    try {
      found = await findShare(located.link.share, { peer: located.link.peer?.toString(), log: components.logger });
    } catch {
      throw err;
    }
    await checkLanTls(found.server);
    return open(components, options, { ...located, link: { ...located.link, server: found.server }, lan: true, local: false });
  }
}

async function open(components: { engine: WebRtcEngine; logger: Logger }, options: ConnectOptions, located: Located, dial?: Dial): Promise<Connection> {
  const { link, lan, verified } = located;
  const handle = new ConnectionHandle();
  if (dial) {
    handle.via = 'libp2p';
    handle.closeParts.push(() => dial.close());
  }
  handle.share = link.share;
  handle.origin = link.url;
  handle.server = options.server ?? link.server;
  handle.verified = verified;
  handle.lan = lan;
  handle.peer = link.peer?.toString();
  const pool = new SessionPool(
    { engine: components.engine, logger: components.logger, identity: await ephemeralIdentity() },
    {
      server: handle.server,
      reconnect: 'gateway',
      session: { relay: options.relay, expectPeer: link.peer, secret: link.secret, relayFirst: true },
      ...(dial ? { dial: () => dial.open() } : {}),
    },
  );
  handle.closeParts.push(() => pool.close());
  handle.rttOf = () => pool.get(link.share)?.rtt;
  pool.on('path', (_share, info) => {
    handle.path = { path: info.path, rtt: info.rtt, afterMs: info.afterMs };
    handle.emit('path', handle.path);
  });
  const gateway = new Gateway({ logger: components.logger, pool }, { domain: 'invalid', fixedShare: link.share });
  const ready = await Promise.race([pool.ready().then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000).unref())]);
  if (!ready) {
    await handle.close();
    throw new BeamError('BEAM_ERR_SERVER_UNREACHABLE', handle.server);
  }
  try {
    // Set the session up now: a wrong identity or a missing share is an error at once, not at the first request.
    handle.kind = (await pool.connect(link.share)).kind ?? 'http';
    const host = options.bind.includes(':') ? `[${options.bind}]` : options.bind;
    if (handle.kind === 'udp') {
      const udp = await udpListener(pool, link.share, options.bind, options.port);
      handle.closeParts.push(() => udp.close());
      handle.port = udp.port;
      handle.url = `udp://${host}:${udp.port}`;
      return handle;
    }
    const local = handle.kind === 'tcp' ? tcpListener(pool, link.share) : httpListener(gateway, options);
    const sockets = new Set<net.Socket>();
    local.on('connection', (socket: net.Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      local.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'EADDRINUSE' ? new BeamError('BEAM_ERR_BAD_OPTION', `${options.bind}:${options.port} is in use; pick another --port`) : err),
      );
      local.listen(options.port, options.bind, () => resolve());
    });
    handle.closeParts.push(async () => {
      if (local instanceof http.Server) local.closeAllConnections();
      else for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => local.close(() => resolve()));
    });
    handle.port = (local.address() as AddressInfo).port;
    handle.url = handle.kind === 'tcp' ? `tcp://${host}:${handle.port}` : `http://${host}:${handle.port}/`;
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}
