/**
 * The agent: registers a share with the signaling server, answers each
 * visitor's session with a WebRTC peer connection, and serves the streams of
 * that connection from the configured origin only.
 */
import { EventEmitter } from 'node:events';
import { io as connectSocket, type Socket } from 'socket.io-client';
import type { Logger } from 'pino';
import { AGENT_CONNECT_TIMEOUT_MS, DEFAULT_ORIGIN_TIMEOUT_MS, SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION, STREAM_CHANNEL_LABEL } from '../shared/constants.js';
import { BeamError, isErrorCode } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import {
  decode,
  IncomingSessionSchema,
  SessionClosedSchema,
  SessionSignalSchema,
  type Ack,
  type ClientToServerEvents,
  type Registered,
  type ServerToClientEvents,
  type VisitorKind,
} from '../shared/signaling.js';
import type { Peer, WebRtcEngine } from '../transport/engine.js';
import { OriginForwarder, type Origin } from './origin.js';

/** Attempts at the first connection before `start` gives up; later drops retry forever. */
const FIRST_CONNECT_ATTEMPTS = 4;

/** How a visitor's traffic travels. */
export type PathKind = 'direct' | 'turn' | 'relay' | 'gateway';

export interface AgentOptions {
  /** The signaling server, e.g. http://127.0.0.1:7070 */
  server: string;
  origin: Origin;
  /** Requested share name; random when absent. */
  name?: string;
  /** Default 'rewrite'. */
  hostHeader?: 'rewrite' | 'preserve';
  /** Default DEFAULT_ORIGIN_TIMEOUT_MS. */
  originTimeoutMs?: number;
}

export interface AgentComponents {
  engine: WebRtcEngine;
  logger: Logger;
}

export interface SessionInfo {
  id: string;
  visitor: VisitorKind;
  path: PathKind;
}

export interface AgentEvents {
  /** The share is registered (again, after a reconnect: `resumed` is true). */
  ready: [Registered];
  session: [SessionInfo];
  'session-closed': [{ id: string }];
  'origin-unreachable': [{ origin: string; code: string }];
  /** Lost the signaling server; reconnecting. */
  disconnected: [{ reason: string }];
  error: [BeamError];
}

interface AgentSession {
  id: string;
  visitor: VisitorKind;
  peer: Peer;
  mux: Mux | undefined;
  /** Ends a session whose channel never opens (a visitor that asked and went quiet). */
  setupTimer: NodeJS.Timeout | undefined;
}

export class Agent extends EventEmitter<AgentEvents> {
  private readonly engine: WebRtcEngine;
  private readonly log: Logger;
  private readonly options: AgentOptions;
  private readonly forwarder: OriginForwarder;
  private readonly sessions = new Map<string, AgentSession>();
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | undefined;
  private registered: Registered | undefined;
  private closed = false;
  private lastUnreachableAt = 0;

  constructor(components: AgentComponents, options: AgentOptions) {
    super();
    this.engine = components.engine;
    this.log = components.logger.child({ component: 'agent' });
    this.options = options;
    this.forwarder = new OriginForwarder(
      {
        logger: this.log,
        events: {
          onUnreachable: (err) => {
            // One line per burst, not one per request.
            const now = Date.now();
            if (now - this.lastUnreachableAt < 5_000) return;
            this.lastUnreachableAt = now;
            this.emit('origin-unreachable', { origin: this.forwarder.hostPort, code: err.code ?? 'ECONNREFUSED' });
          },
        },
      },
      options.origin,
      { hostHeader: options.hostHeader ?? 'rewrite', timeoutMs: options.originTimeoutMs ?? DEFAULT_ORIGIN_TIMEOUT_MS },
    );
  }

  get share(): Registered | undefined {
    return this.registered;
  }

  /** Connects and registers; resolves with the first registration or rejects with a BeamError. */
  start(): Promise<Registered> {
    return new Promise((resolve, reject) => {
      let first = true;
      let failures = 0;
      const socket: Socket<ServerToClientEvents, ClientToServerEvents> = connectSocket(this.options.server, {
        path: SIGNALING_PATH,
        transports: ['websocket'],
        auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'agent' },
        reconnectionDelay: 250,
        reconnectionDelayMax: 5_000,
        randomizationFactor: 0.5,
      });
      this.socket = socket;

      socket.on('connect', () => {
        const req = this.registered
          ? { name: this.registered.name, resumeToken: this.registered.resumeToken }
          : this.options.name !== undefined ? { name: this.options.name } : {};
        socket.emit('share:register', req, (res: Ack<Registered>) => {
          if (res.ok) {
            this.registered = res.value;
            this.log.info({ share: res.value.name, resumed: res.value.resumed }, 'share registered');
            this.emit('ready', res.value);
            if (first) {
              first = false;
              resolve(res.value);
            }
            return;
          }
          const err = new BeamError(isErrorCode(res.error.code) ? res.error.code : 'BEAM_ERR_BAD_MESSAGE', res.error.detail);
          if (first) {
            first = false;
            this.close();
            reject(err);
          } else {
            this.emit('error', err);
          }
        });
      });
      socket.on('connect_error', (err) => {
        const data = (err as Error & { data?: { code?: string; detail?: string } }).data;
        if (first && data?.code && isErrorCode(data.code)) {
          first = false;
          this.close();
          reject(new BeamError(data.code, data.detail));
          return;
        }
        failures++;
        if (first && (!socket.active || failures >= FIRST_CONNECT_ATTEMPTS)) {
          first = false;
          this.close();
          reject(new BeamError('BEAM_ERR_SERVER_UNREACHABLE', `${this.options.server}: ${err.message}`));
          return;
        }
        this.log.debug({ err: err.message }, 'signaling connect failed; retrying');
      });
      socket.on('disconnect', (reason) => {
        if (this.closed) return;
        this.log.warn({ reason }, 'lost the signaling server; reconnecting');
        this.emit('disconnected', { reason });
      });
      socket.on('session:incoming', (raw) => this.onIncoming(raw));
      socket.on('session:signal', (raw) => {
        try {
          const msg = decode(SessionSignalSchema, raw, 'session:signal');
          const session = this.sessions.get(msg.sessionId);
          session?.peer.signal(msg.signal).catch((err: Error) => {
            this.log.warn({ session: msg.sessionId, err: err.message }, 'bad signal from visitor');
            this.endSession(msg.sessionId);
          });
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'dropped a malformed signal');
        }
      });
      socket.on('session:closed', (raw) => {
        try {
          const msg = decode(SessionClosedSchema, raw, 'session:closed');
          this.endSession(msg.sessionId);
        } catch {
          // malformed: nothing to close
        }
      });
      socket.on('protocol:error', (err) => this.log.warn({ code: err.code }, err.message));
    });
  }

  private onIncoming(raw: unknown): void {
    let msg;
    try {
      msg = decode(IncomingSessionSchema, raw, 'session:incoming');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'dropped a malformed session');
      return;
    }
    const sessionId = msg.sessionId;
    const peer = this.engine.createPeer({ iceServers: msg.iceServers });
    const session: AgentSession = { id: sessionId, visitor: msg.visitor.kind, peer, mux: undefined, setupTimer: undefined };
    session.setupTimer = setTimeout(() => {
      this.log.info({ session: sessionId }, 'visitor never connected; session ended');
      this.endSession(sessionId);
    }, AGENT_CONNECT_TIMEOUT_MS);
    session.setupTimer.unref();
    this.sessions.set(sessionId, session);
    peer.onSignal((signal) => this.socket?.emit('session:signal', { sessionId, signal }));
    peer.onStateChange((state) => {
      if (state === 'failed' || state === 'closed') this.endSession(sessionId);
    });
    peer.onDataChannel((channel) => {
      if (channel.label !== STREAM_CHANNEL_LABEL || session.mux) {
        channel.close();
        return;
      }
      const start = (): void => {
        clearTimeout(session.setupTimer);
        const mux = new Mux(channel, { role: 'responder' });
        session.mux = mux;
        mux.on('stream', (stream) => this.onStream(stream, session.visitor));
        mux.on('close', () => this.endSession(sessionId));
        const path: PathKind = session.visitor === 'gateway' ? 'gateway' : peer.selectedCandidateKind() === 'relay' ? 'turn' : 'direct';
        this.emit('session', { id: sessionId, visitor: session.visitor, path });
      };
      if (channel.isOpen()) start();
      else channel.onOpen(start);
    });
  }

  private onStream(stream: MuxStream, visitor: VisitorKind): void {
    stream.on('error', () => {
      // Reset by the visitor or the connection: the forwarder already cleaned up.
    });
    if (stream.protocol === StreamProtocol.HTTP) {
      void this.forwarder.serve(stream, visitor === 'gateway');
      return;
    }
    stream.destroy(new BeamError('BEAM_ERR_BAD_REQUEST', 'this share serves HTTP'));
  }

  private endSession(id: string): void {
    const session = this.sessions.get(id);
    if (!session) return;
    this.sessions.delete(id);
    clearTimeout(session.setupTimer);
    session.mux?.close('BEAM_ERR_PEER_GONE');
    session.peer.close();
    this.socket?.emit('session:close', { sessionId: id });
    // Only sessions announced with 'session' are announced as closed.
    if (session.mux) this.emit('session-closed', { id });
  }

  /** Closes every session and leaves the signaling server. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    this.socket?.disconnect();
    this.forwarder.close();
  }
}
