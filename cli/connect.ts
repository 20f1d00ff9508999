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
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { sendError, sendRawError } from '../gateway/error-page.js';
import { Gateway } from '../gateway/gateway.js';
import { createHttpEntry } from '../gateway/http-entry.js';
import { MAX_UDP_FLOWS, TCP_KEEPALIVE_MS, UDP_FLOW_IDLE_MS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import type { RelayMode, ShareKind } from '../shared/signaling.js';
import type { WebRtcEngine } from '../transport/engine.js';
import { ephemeralIdentity } from '../transport/identity.js';
import { parseLink } from '../transport/link.js';
import { splice } from '../transport/splice.js';
import type { Output } from './output.js';

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

export interface Connected {
  port: number;
  /** The local address: http://, tcp:// or udp://127.0.0.1:<port>. */
  url: string;
  kind: ShareKind;
  close(): Promise<void>;
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
function tcpListener(gateway: Gateway, share: string): net.Server {
  return net.createServer({ allowHalfOpen: true, keepAlive: true, keepAliveInitialDelay: TCP_KEEPALIVE_MS, noDelay: true }, (socket) => {
    socket.on('error', () => {});
    gateway
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
async function udpListener(gateway: Gateway, share: string, bind: string, port: number): Promise<{ port: number; close(): void }> {
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
    gateway.connect(share).then(
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

export async function connect(components: { engine: WebRtcEngine; logger: Logger; out: Output }, options: ConnectOptions): Promise<Connected> {
  const link = parseLink(options.link);
  const server = options.server ?? link.server;
  const { out } = components;
  if (!link.peer) out.line(`! This link names no peer ID (#peer=...): the agent's identity is taken on the server's word.`);
  let announced = false;
  const gateway = new Gateway(
    { engine: components.engine, logger: components.logger, identity: await ephemeralIdentity() },
    {
      signalingUrl: server,
      domain: 'invalid',
      fixedShare: link.share,
      relay: options.relay,
      expectPeer: link.peer,
      secret: link.secret,
      onPath: (share, info) => {
        const rtt = info.rtt !== undefined ? { rtt: Math.round(info.rtt * 10) / 10 } : {};
        out.emit({ event: announced ? 'path' : 'session', id: share, visitor: 'cli', path: info.path, via: info.path, ...rtt, after: info.afterMs });
        announced = true;
      },
    },
  );
  const ready = await Promise.race([gateway.ready().then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000).unref())]);
  if (!ready) {
    gateway.close();
    throw new BeamError('BEAM_ERR_SERVER_UNREACHABLE', server);
  }
  // Set the session up now: a wrong identity or a missing share is an error at once, not at the first request.
  let kind: ShareKind;
  try {
    kind = (await gateway.connect(link.share)).kind ?? 'http';
  } catch (err) {
    gateway.close();
    throw err;
  }
  if (kind === 'udp') {
    const udp = await udpListener(gateway, link.share, options.bind, options.port);
    const host = options.bind.includes(':') ? `[${options.bind}]` : options.bind;
    const url = `udp://${host}:${udp.port}`;
    out.emit({ event: 'ready', name: link.share, url, origin: link.url, server });
    return {
      port: udp.port,
      url,
      kind,
      async close() {
        gateway.close();
        udp.close();
      },
    };
  }
  const local = kind === 'tcp' ? tcpListener(gateway, link.share) : httpListener(gateway, options);
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
  const port = (local.address() as AddressInfo).port;
  const host = options.bind.includes(':') ? `[${options.bind}]` : options.bind;
  const url = kind === 'tcp' ? `tcp://${host}:${port}` : `http://${host}:${port}/`;
  out.emit({ event: 'ready', name: link.share, url, origin: link.url, server });
  return {
    port,
    url,
    kind,
    async close() {
      gateway.close();
      if (local instanceof http.Server) local.closeAllConnections();
      else for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => local.close(() => resolve()));
    },
  };
}
