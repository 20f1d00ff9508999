/**
 * The gateway's connection to one share: a signaling session, a WebRTC peer
 * connection (the gateway offers), and the stream multiplexer over it. One
 * link carries every public request to that share.
 */
import type { Logger } from 'pino';
import type { Socket } from 'socket.io-client';
import { AGENT_CONNECT_TIMEOUT_MS, LINK_SETUP_ATTEMPTS, STREAM_CHANNEL_LABEL } from '../shared/constants.js';
import { BeamError, isErrorCode } from '../shared/errors.js';
import { Mux } from '../shared/mux.js';
import type { Ack, ClientToServerEvents, ServerToClientEvents, SessionOpened, Signal } from '../shared/signaling.js';
import type { Peer, WebRtcEngine } from '../transport/engine.js';

export type GatewaySocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** A handshake that failed outright, as opposed to one that timed out. */
class HandshakeFailed extends Error {}

export class ShareLink {
  readonly share: string;
  private readonly log: Logger;
  private readonly engine: WebRtcEngine;
  private readonly socket: GatewaySocket;
  private readonly onGone: (link: ShareLink) => void;
  private peer: Peer | undefined;
  private mux: Mux | undefined;
  private closed = false;
  sessionId: string | undefined;
  /** Resolves once the data channel is open. */
  readonly ready: Promise<Mux>;

  constructor(
    components: { engine: WebRtcEngine; logger: Logger; socket: GatewaySocket },
    share: string,
    onGone: (link: ShareLink) => void,
  ) {
    this.share = share;
    this.engine = components.engine;
    this.socket = components.socket;
    this.log = components.logger.child({ share });
    this.onGone = onGone;
    this.ready = this.connect();
    // A link nobody awaits any more must not crash the process when it fails.
    this.ready.catch(() => {});
  }

  /**
   * Sets the link up, trying again with a fresh session when a handshake
   * fails outright (state "failed"), while time remains: one failed DTLS
   * handshake should not cost a visitor a 502.
   */
  private async connect(): Promise<Mux> {
    const deadline = Date.now() + AGENT_CONNECT_TIMEOUT_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.attempt(deadline);
      } catch (err) {
        const retry = err instanceof HandshakeFailed && attempt < LINK_SETUP_ATTEMPTS && Date.now() < deadline && !this.closed;
        if (!retry) {
          this.close();
          throw err instanceof HandshakeFailed ? new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'peer connection failed') : err;
        }
        this.log.warn({ attempt }, 'peer connection failed during setup; trying again');
      }
    }
  }

  /** One setup attempt: a session, a peer connection, an open channel. Cleans up after itself on failure. */
  private async attempt(deadline: number): Promise<Mux> {
    const opened = await new Promise<SessionOpened>((resolve, reject) => {
      this.socket
        .timeout(Math.max(deadline - Date.now(), 1))
        .emit('session:open', { share: this.share }, (err: Error | null, res: Ack<SessionOpened>) => {
          if (err) reject(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'signaling did not answer'));
          else if (res.ok) resolve(res.value);
          else reject(new BeamError(isErrorCode(res.error.code) ? res.error.code : 'BEAM_ERR_AGENT_UNREACHABLE', res.error.detail));
        });
    });
    if (this.closed) throw new BeamError('BEAM_ERR_PEER_GONE');
    const sessionId = opened.sessionId;
    this.sessionId = sessionId;
    const peer = this.engine.createPeer({ iceServers: opened.iceServers });
    this.peer = peer;
    peer.onSignal((signal) => this.socket.emit('session:signal', { sessionId, signal }));
    const channel = peer.createDataChannel(STREAM_CHANNEL_LABEL);
    const abandon = (): void => {
      peer.close();
      if (this.socket.connected) this.socket.emit('session:close', { sessionId });
      if (this.sessionId === sessionId) this.sessionId = undefined;
    };
    return new Promise<Mux>((resolve, reject) => {
      const timer = setTimeout(() => {
        abandon();
        reject(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `no peer connection within ${AGENT_CONNECT_TIMEOUT_MS} ms`));
      }, Math.max(deadline - Date.now(), 1));
      let open = false;
      peer.onStateChange((state) => {
        if (open) {
          if (state === 'failed' || state === 'closed') this.close();
          return;
        }
        if (state === 'failed' || state === 'closed') {
          clearTimeout(timer);
          abandon();
          reject(state === 'failed' ? new HandshakeFailed() : new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'peer connection closed'));
        }
      });
      channel.onOpen(() => {
        clearTimeout(timer);
        open = true;
        if (this.closed) {
          reject(new BeamError('BEAM_ERR_PEER_GONE'));
          return;
        }
        const mux = new Mux(channel, { role: 'initiator' });
        this.mux = mux;
        mux.on('close', () => this.close());
        this.log.debug({ session: sessionId }, 'link up');
        resolve(mux);
      });
    });
  }

  /** Applies a signal from the agent. */
  signal(signal: Signal): void {
    // A signal can land just after the peer failed; the state change, not
    // this error, decides what happens to the link.
    this.peer?.signal(signal).catch((err: Error) => this.log.debug({ err: err.message }, 'signal from agent not applied'));
  }

  /** Bytes this link has sent and received so far. */
  get bytes(): { sent: number; received: number } {
    return { sent: this.mux?.bytesSent ?? 0, received: this.mux?.bytesReceived ?? 0 };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.mux?.close('BEAM_ERR_PEER_GONE');
    this.peer?.close();
    if (this.sessionId && this.socket.connected) this.socket.emit('session:close', { sessionId: this.sessionId });
    this.onGone(this);
  }
}
