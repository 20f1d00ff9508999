/**
 * The gateway's connection to one share: a signaling session, a WebRTC peer
 * connection (the gateway offers), and the stream multiplexer over it. One
 * link carries every public request to that share.
 */
import type { Logger } from 'pino';
import type { Socket } from 'socket.io-client';
import { AGENT_CONNECT_TIMEOUT_MS, STREAM_CHANNEL_LABEL } from '../shared/constants.js';
import { BeamError, isErrorCode } from '../shared/errors.js';
import { Mux } from '../shared/mux.js';
import type { Ack, ClientToServerEvents, ServerToClientEvents, SessionOpened, Signal } from '../shared/signaling.js';
import type { Peer, WebRtcEngine } from '../transport/engine.js';

export type GatewaySocket = Socket<ServerToClientEvents, ClientToServerEvents>;

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

  private async connect(): Promise<Mux> {
    const opened = await new Promise<SessionOpened>((resolve, reject) => {
      this.socket
        .timeout(AGENT_CONNECT_TIMEOUT_MS)
        .emit('session:open', { share: this.share }, (err: Error | null, res: Ack<SessionOpened>) => {
          if (err) reject(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'signaling did not answer'));
          else if (res.ok) resolve(res.value);
          else reject(new BeamError(isErrorCode(res.error.code) ? res.error.code : 'BEAM_ERR_AGENT_UNREACHABLE', res.error.detail));
        });
    }).catch((err: unknown) => {
      this.close();
      throw err;
    });
    if (this.closed) throw new BeamError('BEAM_ERR_PEER_GONE');
    this.sessionId = opened.sessionId;
    const peer = this.engine.createPeer({ iceServers: opened.iceServers });
    this.peer = peer;
    peer.onSignal((signal) => this.socket.emit('session:signal', { sessionId: opened.sessionId, signal }));
    const channel = peer.createDataChannel(STREAM_CHANNEL_LABEL);
    return new Promise<Mux>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `no peer connection within ${AGENT_CONNECT_TIMEOUT_MS} ms`));
        this.close();
      }, AGENT_CONNECT_TIMEOUT_MS);
      peer.onStateChange((state) => {
        if (state === 'failed' || state === 'closed') {
          clearTimeout(timer);
          reject(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `peer connection ${state}`));
          this.close();
        }
      });
      channel.onOpen(() => {
        clearTimeout(timer);
        if (this.closed) {
          reject(new BeamError('BEAM_ERR_PEER_GONE'));
          return;
        }
        const mux = new Mux(channel, { role: 'initiator' });
        this.mux = mux;
        mux.on('close', () => this.close());
        this.log.debug({ session: opened.sessionId }, 'link up');
        resolve(mux);
      });
    });
  }

  /** Applies a signal from the agent. */
  signal(signal: Signal): void {
    this.peer?.signal(signal).catch((err: Error) => {
      this.log.warn({ err: err.message }, 'bad signal from agent');
      this.close();
    });
  }

  get rtt(): number | undefined {
    return this.mux?.rtt;
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
