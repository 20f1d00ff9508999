/**
 * Beam's signaling server as a network backend (shared/backend.ts), the
 * default one: `--via server`.
 *
 * Where libp2p hands each visitor over as one finished pipe, the server
 * pairs visitor and agent in a signaled session: it names the share, and
 * carries their offers and candidates; the session classes set up the
 * direct, TURN and relay paths from those signals and replace them as they
 * fail (peer-agent/agent-session.ts, transport/session.ts). So each session
 * comes with its own signal channel, both ways:
 *
 *   agent    listen: registers the share and hands each session the server
 *            pairs to BackendVisitors.signaled (transport/server-listen.ts,
 *            loaded only by agents)
 *   visitor  dial: opens a session with a share (session:open) and routes
 *            its signals and its end to the session's handlers; one
 *            connection carries every session of a gateway, a `beam
 *            connect` or a browser page
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BackendDialOptions, BackendShare, BackendTarget, BackendVisitors, NetworkBackend, SignaledDial, VisitorHandlers } from '../shared/backend.js';
import { AGENT_CONNECT_TIMEOUT_MS, SIGNALING_PROTOCOL_VERSION } from '../shared/constants.js';
import { BeamError, isErrorCode } from '../shared/errors.js';
import type { PathKind } from '../shared/paths.js';
import { type Ack, decode, type Handshake, SessionClosedSchema, type SessionOpened, SessionSignalSchema } from '../shared/signaling.js';
import type { AgentHello, ServerListening } from './server-listen.js';

export type { ServerListening } from './server-listen.js';

import { connectSignaling, type Reconnect, type SignalingSocket } from './signaling-client.js';

export interface ServerBackendOptions {
  /** The server's base URL, e.g. https://beam.example.com (its relay too). */
  server: string;
  logger: Logger;
  /** An agent's handshake (listen). */
  agent?: AgentHello;
  /** A visitor's (dial): its handshake beyond the protocol version, and how its connection comes back. Connects at once. */
  visitor?: { handshake?: Pick<Handshake, 'gatewayToken' | 'client'>; reconnect: Reconnect };
}

export class ServerBackend extends EventEmitter<{ connect: [] }> implements NetworkBackend {
  readonly name = 'server' as const;
  /** The paths the session classes set up from the server's signals. */
  readonly paths: readonly PathKind[] = ['direct', 'turn', 'relay'];
  readonly server: string;
  private readonly options: ServerBackendOptions;
  private readonly log: Logger;
  /** The visitor's connection. */
  private readonly socket: SignalingSocket | undefined;
  /** Each open session's handlers, by its id: where its signals and its end go. */
  private readonly sessions = new Map<string, VisitorHandlers>();

  constructor(options: ServerBackendOptions) {
    super();
    this.options = options;
    this.server = options.server;
    this.log = options.logger;
    const visitor = options.visitor;
    if (!visitor) return;
    const socket = connectSignaling(options.server, { protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor', ...visitor.handshake }, visitor.reconnect);
    this.socket = socket;
    socket.on('connect', () => this.emit('connect'));
    socket.on('session:signal', (raw) => {
      try {
        const msg = decode(SessionSignalSchema, raw, 'session:signal');
        this.sessions.get(msg.sessionId)?.signal(msg.signal);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'dropped a malformed signal');
      }
    });
    socket.on('session:closed', (raw) => {
      try {
        const msg = decode(SessionClosedSchema, raw, 'session:closed');
        this.sessions.get(msg.sessionId)?.closed(msg.code);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'dropped a malformed session:closed');
      }
    });
    socket.on('disconnect', (reason) => {
      // The server forgets this side's sessions; their paths carry on while the agents answer on them.
      if (this.sessions.size > 0)
        this.log.warn({ reason, sessions: this.sessions.size }, 'lost the signaling server; sessions carry on over the paths that are up');
      for (const h of [...this.sessions.values()]) h.detach();
    });
  }

  /** Whether the visitor's connection is up now (for /readyz). */
  get connected(): boolean {
    return this.socket?.connected ?? false;
  }

  /** Resolves once the visitor's connection is up. */
  ready(): Promise<void> {
    const socket = this.socket;
    if (!socket || socket.connected) return Promise.resolve();
    return new Promise((resolve) => socket.once('connect', () => resolve()));
  }

  /** Agent: registers the share; see transport/server-listen.ts. */
  async listen(share: BackendShare, visitors: BackendVisitors, onListening?: (listening: ServerListening) => void): Promise<ServerListening> {
    const { listenOnServer } = await import('./server-listen.js');
    return listenOnServer(this.server, this.log, this.options.agent ?? { relay: 'auto', http: 1 }, share, visitors, onListening);
  }

  /**
   * Visitor: opens a session with `target.share`. Resolves with what the
   * server says of it (the agent's peer ID, ICE servers, the relay token)
   * and its signal channel; rejects with the server's code, or
   * BEAM_ERR_AGENT_UNREACHABLE when it does not answer.
   */
  dial(target: Pick<BackendTarget, 'share'>, options: BackendDialOptions = {}): Promise<SignaledDial> {
    const socket = this.socket;
    const handlers = options.handlers;
    if (!socket || !handlers) return Promise.reject(new BeamError('BEAM_ERR_INTERNAL', 'a server visitor dials with its connection and its handlers'));
    const req = {
      share: target.share,
      ...(options.spread ? { spread: true } : {}),
      ...(options.relayFirst ? { relayFirst: true } : {}),
      ...(options.relayPreferred ? { relayPreferred: true } : {}),
    };
    return new Promise<SignaledDial>((resolve, reject) => {
      socket.timeout(AGENT_CONNECT_TIMEOUT_MS).emit('session:open', req, (err: Error | null, res: Ack<SessionOpened>) => {
        if (err) return reject(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'signaling did not answer'));
        if (!res.ok) return reject(new BeamError(isErrorCode(res.error.code) ? res.error.code : 'BEAM_ERR_AGENT_UNREACHABLE', res.error.detail));
        const sessionId = res.value.sessionId;
        this.sessions.set(sessionId, handlers);
        resolve({
          opened: res.value,
          signal: (signal) => {
            if (socket.connected) socket.emit('session:signal', { sessionId, signal });
          },
          close: () => {
            if (this.sessions.get(sessionId) === handlers) this.sessions.delete(sessionId);
            if (socket.connected) socket.emit('session:close', { sessionId });
          },
        });
      });
    });
  }

  async close(): Promise<void> {
    this.socket?.disconnect();
  }
}
