/**
 * The werift engine: pure TypeScript WebRTC for platforms without
 * node-datachannel's native binary (`--engine werift`). Pinned to 0.24.x,
 * the last line that runs on Node 20.
 */
import { type RTCDataChannel, RTCPeerConnection } from 'werift';
import type { PeerSignal as Signal } from '../shared/signaling.js';
import { bareCandidate, type CandidateKind, candidateKind, type DataChannel, type Peer, PeerEvents, type PeerOptions, type WebRtcEngine } from './engine.js';

class WeriftDataChannel implements DataChannel {
  private readonly channel: RTCDataChannel;
  readonly label: string;

  constructor(channel: RTCDataChannel) {
    this.channel = channel;
    this.label = channel.label;
  }
  send(message: Uint8Array): void {
    this.channel.send(Buffer.from(message.buffer, message.byteOffset, message.byteLength));
  }
  bufferedAmount(): number {
    return this.channel.bufferedAmount;
  }
  setBufferedAmountLowThreshold(bytes: number): void {
    this.channel.bufferedAmountLowThreshold = bytes;
  }
  onBufferedAmountLow(cb: () => void): void {
    this.channel.bufferedAmountLow.subscribe(() => cb());
  }
  onMessage(cb: (message: Uint8Array) => void): void {
    this.channel.onMessage.subscribe((msg) => cb(typeof msg === 'string' ? Buffer.from(msg, 'utf8') : msg));
  }
  onClose(cb: () => void): void {
    let fired = false;
    this.channel.stateChanged.subscribe((state) => {
      if (state === 'closed' && !fired) {
        fired = true;
        cb();
      }
    });
  }
  onOpen(cb: () => void): void {
    if (this.channel.readyState === 'open') queueMicrotask(cb);
    else this.channel.stateChanged.subscribe((state) => state === 'open' && cb());
  }
  isOpen(): boolean {
    return this.channel.readyState === 'open';
  }
  close(): void {
    this.channel.close();
  }
}

class WeriftPeer extends PeerEvents<WeriftDataChannel> implements Peer {
  readonly engine = 'werift' as const;
  private readonly pc: RTCPeerConnection;
  private negotiating = false;
  private closed = false;
  // werift gathers (and reports candidates) inside setLocalDescription, before
  // the description itself can be sent: hold candidates until it is out.
  private descriptionSent = false;
  private readonly heldCandidates: Signal[] = [];
  private hasRemoteDescription = false;
  private readonly earlyRemoteCandidates: Signal[] = [];

  constructor(options: PeerOptions) {
    super();
    // werift's default ICE server is a public STUN host: always pass ours (possibly none).
    this.pc = new RTCPeerConnection({ iceServers: options.iceServers.map((s) => ({ ...s })) });
    this.pc.onicecandidate = (event) => {
      const c = event.candidate;
      if (!c?.candidate) return;
      const signal: Signal = { type: 'candidate', candidate: bareCandidate(c.candidate), mid: c.sdpMid ?? '0' };
      if (this.descriptionSent) this.signalCb(signal);
      else this.heldCandidates.push(signal);
    };
    this.pc.connectionStateChange.subscribe((state) => {
      if (state === 'new') return;
      this.stateCb(state);
    });
    this.pc.onDataChannel.subscribe((dc) => {
      this.adopt(new WeriftDataChannel(dc));
    });
  }

  createDataChannel(label: string, options: { unreliable?: boolean } = {}): DataChannel {
    const init = options.unreliable ? { protocol: label, ordered: false, maxRetransmits: 0 } : { protocol: label, ordered: true };
    const channel = new WeriftDataChannel(this.pc.createDataChannel(label, init));
    this.channels.push(channel);
    if (!this.negotiating) {
      this.negotiating = true;
      void this.offer();
    }
    return channel;
  }
  private async offer(): Promise<void> {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    const sdp = this.pc.localDescription?.sdp;
    if (sdp && !this.closed) this.sendDescription({ type: 'offer', sdp });
  }
  private sendDescription(signal: Signal): void {
    this.signalCb(signal);
    this.descriptionSent = true;
    for (const c of this.heldCandidates.splice(0)) this.signalCb(c);
  }
  async signal(signal: Signal): Promise<void> {
    if (this.closed) return;
    if (signal.type === 'candidate') {
      if (!signal.candidate) return;
      if (!this.hasRemoteDescription) {
        this.earlyRemoteCandidates.push(signal);
        return;
      }
      await this.pc.addIceCandidate({ candidate: signal.candidate, sdpMid: signal.mid });
      return;
    }
    await this.pc.setRemoteDescription({ type: signal.type, sdp: signal.sdp });
    this.hasRemoteDescription = true;
    for (const c of this.earlyRemoteCandidates.splice(0)) await this.signal(c);
    if (signal.type === 'offer') {
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      const sdp = this.pc.localDescription?.sdp;
      if (sdp && !this.closed) this.sendDescription({ type: 'answer', sdp });
    }
  }
  selectedCandidateKind(): CandidateKind | undefined {
    const pair = this.pc.iceTransports[0]?.connection.nominated;
    if (!pair) return undefined;
    // Either end relaying through TURN makes the path a TURN path.
    return pair.remoteCandidate.type === 'relay' ? 'relay' : candidateKind(` typ ${pair.localCandidate.type}`);
  }
  remoteAddress(): string | undefined {
    return this.pc.iceTransports[0]?.connection.nominated?.remoteCandidate.host;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.pc.close();
  }
}

export const weriftEngine: WebRtcEngine = {
  name: 'werift',
  createPeer: (options) => new WeriftPeer(options),
};
