/**
 * The relay: for networks where no WebRTC path comes up (UDP blocked, both
 * NATs symmetric), visitor and agent each open a WebSocket here and the
 * server splices the two. It only ever forwards Noise ciphertext: the two
 * ends run the handshake through it (transport/secure.ts), like Tailscale's
 * DERP forwards WireGuard packets.
 *
 * It splices only sessions that signaling set up, and each side only once:
 * a connection must present the one-time token signaling handed that side.
 * A side in this process (the server's own gateway) joins without a
 * WebSocket, through attachInProcess, with the same checks
 * (transport/relay-side.ts).
 *
 * The operator may cap what one session carries here (RelayLimits maxBytes,
 * maxMs: `beam serve --relay-max-mib`, `--relay-max-seconds`): the relay is
 * then a bridge while direct comes up, not a free path. A session past its
 * cap is closed with RELAY_CAPPED_CLOSE and the reason BEAM_ERR_RELAY_CAPPED,
 * which both ends read (transport/relay.ts). Sessions of the server's own
 * gateway are not capped: their bytes cross this server on any path.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocketServer } from 'ws';
import {
  MAX_RELAY_CAP_SECONDS,
  MAX_RELAY_SESSIONS,
  RELAY_HIGH_WATER_BYTES,
  RELAY_LOW_WATER_BYTES,
  RELAY_MAX_MESSAGE_BYTES,
  RELAY_PAIR_TIMEOUT_MS,
} from '../shared/constants.js';
import { BeamError, ERRORS, type ErrorCode } from '../shared/errors.js';
import type { RelayTicket } from '../transport/relay.js';
import { inProcessSide, type RelaySide } from '../transport/relay-side.js';
import type { Pipe } from '../transport/secure.js';

export type RelayRole = 'visitor' | 'agent';

/** The relay's limits; each defaults to its constant in shared/constants.ts (tests make them small). */
export interface RelayLimits {
  pairTimeoutMs: number;
  maxSessions: number;
  highWaterBytes: number;
  /** Bytes one session may carry, both directions together; 0: no cap (the default). */
  maxBytes: number;
  /** How long one session may be relayed, from the splice; 0: no cap (the default). */
  maxMs: number;
}

/** The WebSocket close code of a session past its cap (4000-4999 are the application's). */
export const RELAY_CAPPED_CLOSE = 4509;

export interface RelayComponents {
  logger: Logger;
  /**
   * Redeems a side's one-time token: true when signaling set this session up
   * with it; false, or why the session ended (it just did: the side hears
   * that, not a bare refusal), when not.
   */
  redeem: (sessionId: string, role: RelayRole, token: string) => boolean | ErrorCode;
  /** True for a session the caps do not apply to (the server's own gateway's). Default: none. */
  uncapped?: (sessionId: string) => boolean;
}

interface Pairing {
  sessionId: string;
  sides: Partial<Record<RelayRole, RelaySide>>;
  /** What a side sent before the other arrived (its first handshake message), held until the splice. */
  early: Map<RelaySide, { messages: Buffer[]; bytes: number; listener: (data: Buffer) => void }>;
  timer: NodeJS.Timeout;
  /** Bytes forwarded for this session, both directions. */
  bytes: number;
  /** Whether maxBytes and maxMs apply (decided at the splice). */
  capped: boolean;
}

export class RelayServer {
  private readonly log: Logger;
  private readonly redeem: RelayComponents['redeem'];
  private readonly uncapped: (sessionId: string) => boolean;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: RELAY_MAX_MESSAGE_BYTES, perMessageDeflate: false });
  private readonly pairings = new Map<string, Pairing>();
  /** Ciphertext bytes forwarded, both directions (for metrics). */
  bytesRelayed = 0;

  private readonly limits: RelayLimits;

  constructor(components: RelayComponents, limits: Partial<RelayLimits> = {}) {
    this.log = components.logger.child({ component: 'relay' });
    this.redeem = components.redeem;
    this.uncapped = components.uncapped ?? (() => false);
    this.limits = {
      pairTimeoutMs: limits.pairTimeoutMs ?? RELAY_PAIR_TIMEOUT_MS,
      maxSessions: limits.maxSessions ?? MAX_RELAY_SESSIONS,
      highWaterBytes: limits.highWaterBytes ?? RELAY_HIGH_WATER_BYTES,
      maxBytes: limits.maxBytes ?? 0,
      maxMs: limits.maxMs ?? 0,
    };
    for (const [name, value] of [
      ['maxBytes', this.limits.maxBytes],
      ['maxMs', this.limits.maxMs],
    ] as const)
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`relay ${name} must be a whole number, 0 for no cap (got ${value})`);
    if (this.limits.maxMs > MAX_RELAY_CAP_SECONDS * 1000) throw new RangeError(`relay maxMs must be at most ${MAX_RELAY_CAP_SECONDS * 1000}`);
  }

  /** Sessions being relayed or waiting for their second side. */
  get sessionCount(): number {
    return this.pairings.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // A side that goes away mid-upgrade (a killed agent resets its connection) must not take the server with it:
    // an upgrade's socket has no error listener until ws takes it over, and none at all when it is refused.
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://relay');
    const sessionId = url.searchParams.get('session') ?? '';
    const role = url.searchParams.get('role');
    const token = url.searchParams.get('token') ?? '';
    const verdict = role === 'visitor' || role === 'agent' ? this.redeem(sessionId, role, token) : false;
    if (verdict !== true || (role !== 'visitor' && role !== 'agent')) {
      const code = verdict === false || verdict === true ? 'BEAM_ERR_RELAY_REFUSED' : verdict;
      this.log.info(
        { audit: 'auth.refused', code, session: sessionId.slice(0, 64), role },
        verdict === false ? 'relay refused: no such session or token' : 'relay refused: the session ended',
      );
      refuse(socket, code);
      return;
    }
    if (!this.pairings.has(sessionId) && this.pairings.size >= this.limits.maxSessions) {
      refuse(socket, 'BEAM_ERR_LIMIT_REACHED');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.join(sessionId, role, ws));
  }

  /**
   * A side in this process (the server's own gateway: transport/relay.ts
   * connectRelay), checked as a WebSocket's upgrade is: its pipe, or a
   * BeamError with the code a refused upgrade would carry.
   */
  attachInProcess(ticket: RelayTicket): Pipe {
    const verdict = this.redeem(ticket.sessionId, ticket.role, ticket.token);
    if (verdict !== true) {
      const code = verdict === false ? 'BEAM_ERR_RELAY_REFUSED' : verdict;
      this.log.info({ audit: 'auth.refused', code, session: ticket.sessionId.slice(0, 64), role: ticket.role }, 'relay refused (in process)');
      throw new BeamError(code, 'the relay refused this side');
    }
    if (!this.pairings.has(ticket.sessionId) && this.pairings.size >= this.limits.maxSessions) throw new BeamError('BEAM_ERR_LIMIT_REACHED', 'relay sessions');
    const { side, pipe } = inProcessSide();
    this.join(ticket.sessionId, ticket.role, side);
    return pipe;
  }

  /** A side arrived: held until the other comes, then spliced to it. */
  private join(sessionId: string, role: RelayRole, ws: RelaySide): void {
    // Looked up here, not before the upgrade: both sides may be upgrading at once.
    let current = this.pairings.get(sessionId);
    if (!current) {
      const timer = setTimeout(() => this.end(sessionId, 4504, 'BEAM_ERR_RELAY_TIMEOUT'), this.limits.pairTimeoutMs);
      timer.unref();
      current = { sessionId, sides: {}, early: new Map(), timer, bytes: 0, capped: false };
      this.pairings.set(sessionId, current);
    }
    current.sides[role] = ws;
    ws.on('error', () => {});
    ws.on('close', () => this.end(sessionId, 1000, 'closed'));
    const { visitor, agent } = current.sides;
    if (!visitor || !agent) {
      const held = {
        messages: [] as Buffer[],
        bytes: 0,
        listener: (data: Buffer): void => {
          held.bytes += data.length;
          if (held.bytes > this.limits.highWaterBytes) ws.close(1009, 'too much before the other side arrived');
          else held.messages.push(data);
        },
      };
      current.early.set(ws, held);
      ws.on('message', held.listener);
      return;
    }
    clearTimeout(current.timer);
    const pairing = current;
    pairing.capped = (this.limits.maxBytes > 0 || this.limits.maxMs > 0) && !this.uncapped(sessionId);
    if (pairing.capped && this.limits.maxMs > 0) {
      pairing.timer = setTimeout(() => this.cap(pairing, `${this.limits.maxMs / 1000} s`), this.limits.maxMs);
      pairing.timer.unref();
    }
    for (const [from, held] of pairing.early) {
      from.off('message', held.listener);
      const to = from === visitor ? agent : visitor;
      for (const m of held.messages) if (!this.carry(pairing, to, m)) return;
    }
    pairing.early.clear();
    this.forward(pairing, visitor, agent);
    this.forward(pairing, agent, visitor);
    this.log.debug({ session: sessionId }, 'relay spliced');
  }

  /** Ends the relaying of a session (it closed in signaling, or one side left). */
  end(sessionId: string, code = 1000, reason = 'closed'): void {
    const pairing = this.pairings.get(sessionId);
    if (!pairing) return;
    this.pairings.delete(sessionId);
    clearTimeout(pairing.timer);
    for (const ws of Object.values(pairing.sides)) ws?.close(code, reason);
  }

  close(): void {
    for (const id of [...this.pairings.keys()]) this.end(id, 1001, 'server closing');
    this.wss.close();
  }

  /** Sends one message of the session to `to`; false (and the session ended) when it would pass the byte cap. */
  private carry(pairing: Pairing, to: RelaySide, data: Buffer, written?: () => void): boolean {
    pairing.bytes += data.length;
    if (pairing.capped && this.limits.maxBytes > 0 && pairing.bytes > this.limits.maxBytes) {
      this.cap(pairing, `${this.limits.maxBytes} bytes`);
      return false;
    }
    this.bytesRelayed += data.length;
    to.send(data, { binary: true }, written);
    return true;
  }

  /** The session reached a cap: both ends hear BEAM_ERR_RELAY_CAPPED. */
  private cap(pairing: Pairing, what: string): void {
    if (this.pairings.get(pairing.sessionId) !== pairing) return;
    this.log.info({ session: pairing.sessionId, bytes: pairing.bytes, cap: what }, 'relayed session reached its cap; closed');
    this.end(pairing.sessionId, RELAY_CAPPED_CLOSE, 'BEAM_ERR_RELAY_CAPPED');
  }

  /** Messages from `from` go to `to` unchanged; reading from `from` pauses while `to` is backed up. */
  private forward(pairing: Pairing, from: RelaySide, to: RelaySide): void {
    let paused = false;
    const written = (): void => {
      if (paused && to.bufferedAmount <= Math.min(RELAY_LOW_WATER_BYTES, this.limits.highWaterBytes / 4)) {
        paused = false;
        from.resume();
      }
    };
    from.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        from.close(1003, 'binary only');
        return;
      }
      if (!this.carry(pairing, to, data, written)) return;
      if (!paused && to.bufferedAmount > this.limits.highWaterBytes) {
        paused = true;
        from.pause();
      }
    });
  }
}

function refuse(socket: Duplex, code: ErrorCode): void {
  const status = ERRORS[code].status;
  socket.end(`HTTP/1.1 ${status} ${code}\r\nbeam-error: ${code}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
}
