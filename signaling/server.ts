/**
 * Signaling over socket.io: the adapter between a socket.io Server and the
 * socket-free core (signaling/core.ts). It checks each handshake through the
 * core, turns socket events into core calls and core answers into acks,
 * and carries the core's messages to sockets (and, with --redis, to the
 * other nodes). It doesn't listen: it is attached to a socket.io Server that
 * somebody else bound (see gateway/server.ts), so tests can attach it to any
 * server.
 */

import type { Logger } from 'pino';
import type { Server, Socket } from 'socket.io';
import { BeamError } from '../shared/errors.js';
import { type Ack, type ClientToServerEvents, type IncomingSession, type ServerToClientEvents, wireError } from '../shared/signaling.js';
import { auditOf, type ConnectionData, type Session, type SignalingComponents, SignalingCore, type SignalingOptions, type SignalingWire } from './core.js';

export type { AddressLimits, SignalingComponents, SignalingOptions } from './core.js';

/**
 * Between server nodes (with --redis, through the socket.io adapter): the
 * node where a visitor opens a session tells the others, so the node holding
 * the agent's connection knows the session too; an ended session is
 * forgotten everywhere; and an event for a connection on another node goes
 * to the node that holds it (`beam:emit`).
 *
 * All three ride one channel (serverSideEmit, Redis PUB/SUB), so a node
 * hears them in the order another sent them. A room broadcast would not do
 * for `beam:emit`: the streams adapter carries broadcasts on a Redis stream
 * and serverSideEmit on PUB/SUB, read by two Redis clients, so on a busy
 * node a visitor's first signals (the relay's call, the offer) reached the
 * agent before the session they belong to, and were dropped: the visitor
 * found no path within AGENT_CONNECT_TIMEOUT_MS.
 */
interface NodeToNodeEvents {
  'beam:session': (session: Session, incoming: IncomingSession) => void;
  'beam:session-end': (sessionId: string) => void;
  'beam:emit': (to: string, event: keyof ServerToClientEvents, args: unknown[]) => void;
}

/** What beam:emit may carry: the events a client hears from the server. */
const CLIENT_EVENTS: ReadonlySet<string> = new Set<keyof ServerToClientEvents>(['session:incoming', 'session:signal', 'session:closed', 'protocol:error']);

export type SignalingIo = Server<ClientToServerEvents, ServerToClientEvents, NodeToNodeEvents>;
type BeamSocket = Socket<ClientToServerEvents, ServerToClientEvents>;

export class SignalingServer {
  private readonly log: Logger;
  private readonly core: SignalingCore;
  private io: SignalingIo | undefined;

  constructor(components: SignalingComponents, options: SignalingOptions) {
    this.log = components.logger.child({ component: 'signaling' });
    const wire: SignalingWire = {
      emit: (to, event, ...args) => {
        const socket = this.io?.sockets.sockets.get(to);
        if (socket) socket.emit(event, ...args);
        // Alone, a connection not here is gone.
        else if (options.cluster) this.io?.serverSideEmit('beam:emit', to, event, args);
      },
      isHere: (conn) => this.io?.sockets.sockets.has(conn) === true,
      toNodes: (message) => {
        if (message.type === 'session') this.io?.serverSideEmit('beam:session', message.session, message.incoming);
        else this.io?.serverSideEmit('beam:session-end', message.sessionId);
      },
      agentsHere: () => [...(this.io?.sockets.sockets.values() ?? [])].filter((s) => (s.data as ConnectionData).role === 'agent').map((s) => s.id),
      disconnect: (conn) => this.io?.sockets.sockets.get(conn)?.disconnect(true),
    };
    this.core = new SignalingCore(components, options, wire);
  }

  attach(io: SignalingIo): void {
    this.io = io;
    io.use((socket, next) => {
      try {
        const address = this.core.addressOf(socket.handshake.address, socket.handshake.headers['x-forwarded-for']);
        socket.data = this.core.admit(socket.id, socket.handshake.auth, address, socket.handshake.headers.host);
        // From here the connection counts against its address, until it goes.
        socket.once('disconnect', (reason) => this.core.disconnected(socket.id, reason));
        next();
      } catch (err) {
        const wire = wireError(err);
        const rejection = new Error(wire.message) as Error & { data: unknown };
        rejection.data = wire;
        this.log.warn({ audit: auditOf(wire.code), code: wire.code, address: socket.handshake.address }, 'handshake refused');
        next(rejection);
      }
    });
    io.on('connection', (socket) => this.onConnection(socket));
    io.on('beam:session', (session: Session, incoming: IncomingSession) => this.core.remoteSession(session, incoming));
    io.on('beam:session-end', (sessionId: string) => this.core.remoteSessionEnd(sessionId));
    io.on('beam:emit', (to: string, event: keyof ServerToClientEvents, args: unknown[]) => {
      if (typeof to !== 'string' || !CLIENT_EVENTS.has(event) || !Array.isArray(args)) return;
      // Only the node that holds the connection has it.
      (this.io?.sockets.sockets.get(to) as { emit(event: string, ...args: unknown[]): boolean } | undefined)?.emit(event, ...args);
    });
  }

  /** Redeems a side's relay token for a live session (signaling/core.ts). */
  redeemRelayToken(sessionId: string, role: 'visitor' | 'agent', token: string): ReturnType<SignalingCore['redeemRelayToken']> {
    return this.core.redeemRelayToken(sessionId, role, token);
  }

  /** Whether a live share's visitors sign in (--oidc): its browsers get pages from the gateway, not the peer-to-peer page. */
  signsIn(share: string): Promise<boolean> {
    return this.core.signsIn(share);
  }

  /** Live shares, for metrics. */
  shareCount(): Promise<number> {
    return this.core.shareCount();
  }

  /** Open sessions by visitor kind, for metrics. */
  sessionKind(sessionId: string): ReturnType<SignalingCore['sessionKind']> {
    return this.core.sessionKind(sessionId);
  }

  sessionCounts(): ReturnType<SignalingCore['sessionCounts']> {
    return this.core.sessionCounts();
  }

  /** Graceful stop: agents here are sent away with their names held (signaling/core.ts). */
  moveAgents(): Promise<void> {
    return this.core.moveAgents();
  }

  close(): void {
    this.core.close();
  }

  private onConnection(socket: BeamSocket): void {
    const conn = socket.id;
    socket.on('share:register', (raw, ack) => this.answer(socket, ack, 'share:register', () => this.core.register(conn, raw)));
    socket.on('share:close', (_raw, ack) => this.answer(socket, ack, 'share:close', () => this.core.closeShares(conn)));
    socket.on('session:open', (raw, ack) => this.answer(socket, ack, 'session:open', () => this.core.openSession(conn, raw)));
    socket.on('session:signal', (raw) => this.tell(socket, 'session:signal', () => this.core.signal(conn, raw)));
    socket.on('session:close', (raw) => this.tell(socket, 'session:close', () => this.core.closeSession(conn, raw)));
  }

  /** Runs an acked request: a typed value or a coded error, and never a throw into socket.io. */
  private answer<T>(socket: BeamSocket, ack: unknown, event: string, run: () => Promise<T>): void {
    if (typeof ack !== 'function') {
      this.reject(socket, event, new BeamError('BEAM_ERR_BAD_MESSAGE', `${event} needs an acknowledgement`));
      return;
    }
    const reply = ack as (res: Ack<T>) => void;
    run().then(
      (value) => reply({ ok: true, value }),
      (err: unknown) => {
        const wire = wireError(err);
        this.log.info(
          { audit: auditOf(wire.code), event, code: wire.code, socket: socket.id, address: (socket.data as ConnectionData | undefined)?.address },
          'request refused',
        );
        reply({ ok: false, error: wire });
      },
    );
  }

  /** Runs a message with no ack: a refusal goes back as protocol:error. */
  private tell(socket: BeamSocket, event: string, run: () => void): void {
    try {
      run();
    } catch (err) {
      this.reject(socket, event, err);
    }
  }

  private reject(socket: BeamSocket, event: string, err: unknown): void {
    const wire = wireError(err);
    this.log.info({ event, code: wire.code, socket: socket.id }, 'message refused');
    socket.emit('protocol:error', wire);
  }
}
