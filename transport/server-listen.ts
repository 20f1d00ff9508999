/**
 * The agent's end of the server backend (transport/server-backend.ts): one
 * socket.io connection that registers the share, takes it back under the
 * same name after a drop (its resume token), hands each session the server
 * pairs to the agent with its signal channel, and detaches every session
 * while the server is away: they go on over the paths that are up.
 *
 * A module of its own so that a browser page, which only visits, never
 * loads it.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BackendListening, BackendShare, BackendVisitors, SignaledHandlers } from '../shared/backend.js';
import { MAX_EARLY_SIGNAL_SESSIONS, MAX_EARLY_SIGNALS, SHARE_CLOSE_TIMEOUT_MS, SIGNALING_PROTOCOL_VERSION } from '../shared/constants.js';
import { BeamError, type ErrorCode, isErrorCode } from '../shared/errors.js';
import {
  type Ack,
  decode,
  isPrivateLink,
  type Registered,
  type RelayMode,
  SessionClosedSchema,
  SessionSignalSchema,
  type Signal,
} from '../shared/signaling.js';
import { IncomingSessionSchema } from '../shared/signaling-requests.js';
import { connectSignaling, type SignalingSocket } from './signaling-client.js';

/** Attempts at the first connection before listen gives up; later drops retry forever. */
const FIRST_CONNECT_ATTEMPTS = 4;

/** What an agent says of itself in its handshake, besides its peer ID and what it shares. */
export interface AgentHello {
  relay: RelayMode;
  /** The HTTP head codec version it speaks. */
  http: number;
  signIn?: boolean;
  pool?: boolean;
  /** The server's agent token (--token-file on the server). */
  token?: string | undefined;
  /** The token this machine kept for the name asked for (app/names.ts): takes it back at once if the server holds it. */
  resumeToken?: string | undefined;
  /**
   * The first registration waits for this (never rejected): what the agent
   * warms while it connects. Not sent to the server.
   */
  registerAfter?: Promise<void> | undefined;
}

export interface ServerListeningEvents {
  /** The share is registered: first, and again after each drop (`resumed`). */
  ready: [Registered];
  /** Lost the server; reconnecting. Sessions are detached, not ended. */
  disconnected: [{ reason: string }];
  /** A later registration failed (the first rejects listen instead). */
  error: [BeamError];
}

/** A share registered on the server. */
export class ServerListening extends EventEmitter<ServerListeningEvents> implements BackendListening {
  /** The first registration (`registered` has the latest). */
  readonly first: Registered;
  registered: Registered;
  readonly address: string;
  readonly addresses: string[];
  private readonly socket: SignalingSocket;
  private readonly handlers: Map<string, SignaledHandlers>;
  private closed = false;

  constructor(server: string, socket: SignalingSocket, first: Registered, handlers: Map<string, SignaledHandlers>) {
    super();
    this.address = server;
    this.addresses = [server];
    this.socket = socket;
    this.first = first;
    this.registered = first;
    this.handlers = handlers;
  }

  /** The share's URL: `beam connect` takes it (the caller pins the agent's peer ID and adds a private share's secret). */
  get link(): string {
    return this.registered.url;
  }

  /** A server share keeps its address: a drop is resumed under the same name ('ready' again). */
  onAddress(): void {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends a signal on a session (while connected: the server forgets the sessions of a side that drops). */
  signal(sessionId: string, signal: Signal): void {
    if (this.socket.connected) this.socket.emit('session:signal', { sessionId, signal });
  }

  /** Ends a session at the server (the agent refused it, or it ended). */
  closeSession(sessionId: string, code?: ErrorCode): void {
    this.handlers.delete(sessionId);
    if (this.socket.connected) this.socket.emit('session:close', { sessionId, ...(code ? { code } : {}) });
  }

  /**
   * Leaves the server, freeing the name at once (a dropped connection would
   * keep it for the resume grace). Resolves once the server confirmed, or
   * after SHARE_CLOSE_TIMEOUT_MS.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const socket = this.socket;
    if (socket.connected) await new Promise<void>((resolve) => socket.timeout(SHARE_CLOSE_TIMEOUT_MS).emit('share:close', {}, () => resolve()));
    socket.disconnect();
  }
}

/**
 * Connects, registers the share (`share.name`, else a name the server
 * picks), and hands each session the server pairs to `visitors.signaled`.
 * Resolves with the first registration; rejects with a BeamError when the
 * server refuses it or can't be reached. `onListening` gets the share
 * before its first 'ready', so its listeners hear that one too.
 */
export function listenOnServer(
  server: string,
  log: Logger,
  hello: AgentHello,
  share: BackendShare,
  visitors: BackendVisitors,
  onListening?: (listening: ServerListening) => void,
): Promise<ServerListening> {
  const handlers = new Map<string, SignaledHandlers>();
  /** Signals that came before their session (MAX_EARLY_SIGNAL_SESSIONS), handed over when it comes. */
  const early = new Map<string, Signal[]>();
  const hold = (sessionId: string, signal: Signal): void => {
    let held = early.get(sessionId);
    if (!held) {
      if (early.size >= MAX_EARLY_SIGNAL_SESSIONS) {
        const oldest = early.keys().next().value as string;
        early.delete(oldest);
        log.debug({ session: oldest }, 'signals for a session that never came dropped');
      }
      held = [];
      early.set(sessionId, held);
    }
    if (held.length < MAX_EARLY_SIGNALS) {
      held.push(signal);
      log.debug({ session: sessionId, type: signal.type }, 'signal kept for a session not heard of yet');
    } else log.debug({ session: sessionId, type: signal.type }, `more than ${MAX_EARLY_SIGNALS} signals before their session; dropped`);
  };
  const socket = connectSignaling(
    server,
    {
      protocol: SIGNALING_PROTOCOL_VERSION,
      role: 'agent',
      peerId: share.peerId,
      relay: hello.relay,
      kind: share.kind,
      private: share.private,
      http: hello.http,
      ...(hello.signIn ? { signIn: true } : {}),
      ...(hello.pool ? { pool: true } : {}),
      ...(hello.token !== undefined ? { token: hello.token } : {}),
      // Over TLS or loopback, the server's own gateway may skip Noise on its relay link (SessionOpened.plainLink).
      ...(isPrivateLink(server) ? { plainGatewayLink: true } : {}),
    },
    'agent',
  );
  let current: ServerListening | undefined;
  return new Promise((resolve, reject) => {
    let first = true;
    let failures = 0;
    const fail = (err: BeamError): void => {
      first = false;
      socket.disconnect();
      reject(err);
    };
    // The first registration waits for the agent's warm-up: the server's gateway opens its link to the
    // share as it registers, and a handshake that ran beside module loading made its first visitor wait.
    let gate = hello.registerAfter;
    let gating = false;
    socket.on('connect', () => {
      if (gate) {
        if (gating) return;
        gating = true;
        void gate.then(() => {
          gate = undefined;
          gating = false;
          if (socket.connected) register();
        });
        return;
      }
      register();
    });
    const register = (): void => {
      const registered = current?.registered;
      const req = registered
        ? { name: registered.name, resumeToken: registered.resumeToken }
        : share.name !== undefined
          ? { name: share.name, ...(hello.resumeToken !== undefined ? { resumeToken: hello.resumeToken, heldOnly: true } : {}) }
          : {};
      socket.emit('share:register', req, (res: Ack<Registered>) => {
        if (res.ok) {
          if (current) current.registered = res.value;
          else {
            current = new ServerListening(server, socket, res.value, handlers);
            onListening?.(current);
          }
          current.emit('ready', res.value);
          if (first) {
            first = false;
            resolve(current);
          }
          return;
        }
        const err = new BeamError(isErrorCode(res.error.code) ? res.error.code : 'BEAM_ERR_BAD_MESSAGE', res.error.detail);
        if (first) fail(err);
        else current?.emit('error', err);
      });
    };
    socket.on('connect_error', (err) => {
      const data = (err as Error & { data?: { code?: string; detail?: string } }).data;
      if (first && data?.code && isErrorCode(data.code)) return fail(new BeamError(data.code, data.detail));
      failures++;
      if (first && (!socket.active || failures >= FIRST_CONNECT_ATTEMPTS))
        return fail(new BeamError('BEAM_ERR_SERVER_UNREACHABLE', `${server}: ${err.message}`));
      log.debug({ err: err.message }, 'signaling connect failed; retrying');
    });
    socket.on('disconnect', (reason) => {
      if (!current || current.isClosed) return;
      log.warn({ reason, sessions: handlers.size }, 'lost the signaling server; reconnecting (sessions carry on over the paths that are up)');
      // The server forgot the sessions it had not told of yet.
      early.clear();
      current.emit('disconnected', { reason });
      // A drop makes the server forget this side's sessions: each goes on over its paths while the
      // visitor answers. A server that sends its agents to another node keeps them there.
      if (reason !== 'io server disconnect') for (const h of [...handlers.values()]) h.detach(false);
      // A server that sends its agents away (it is draining) expects them back elsewhere; socket.io
      // does not reconnect on its own then. Jitter, so a node's agents don't all land at once.
      if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 200 + Math.random() * 800).unref();
    });
    socket.on('session:incoming', (raw) => {
      let msg;
      try {
        msg = decode(IncomingSessionSchema, raw, 'session:incoming');
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'dropped a malformed session');
        return;
      }
      const sessionId = msg.sessionId;
      const h = visitors.signaled({
        id: sessionId,
        visitor: msg.visitor.kind,
        iceServers: msg.iceServers,
        relayToken: msg.relayToken,
        relayUrl: msg.relayUrl,
        serverSeenAddress: msg.visitor.address,
        ...(msg.relayFirst === true ? { relayFirst: true } : {}),
        ...(msg.relayPreferred === true ? { relayPreferred: true } : {}),
        ...(msg.plainLink === true ? { plainLink: true } : {}),
        signal: (signal) => current?.signal(sessionId, signal),
        close: (code) => current?.closeSession(sessionId, code),
      });
      if (h) handlers.set(sessionId, h);
      const held = early.get(sessionId);
      early.delete(sessionId);
      if (h && held) {
        log.debug({ session: sessionId, signals: held.length }, 'signals that came before their session handed over');
        for (const signal of held) h.signal(signal);
      }
    });
    socket.on('session:signal', (raw) => {
      try {
        const msg = decode(SessionSignalSchema, raw, 'session:signal');
        const h = handlers.get(msg.sessionId);
        if (h) h.signal(msg.signal);
        else hold(msg.sessionId, msg.signal);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'dropped a malformed signal');
      }
    });
    socket.on('session:closed', (raw) => {
      try {
        const msg = decode(SessionClosedSchema, raw, 'session:closed');
        const h = handlers.get(msg.sessionId);
        // The visitor lost the server, not necessarily the session: its paths are checked instead.
        if (msg.code === 'BEAM_ERR_SIGNALING_LOST') h?.detach(true);
        else {
          handlers.delete(msg.sessionId);
          early.delete(msg.sessionId);
          h?.end();
        }
      } catch {
        // malformed: nothing to close
      }
    });
    socket.on('protocol:error', (err) => log.warn({ code: err.code }, err.message));
  });
}
