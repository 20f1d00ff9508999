/**
 * The browser's own RTCPeerConnection as a WebRtcEngine (transport/engine.ts),
 * so the visitor session of transport/session.ts (direct path, Noise bound to
 * both DTLS fingerprints, relay fallback, retries) runs in the page unchanged.
 *
 * Chromium hides host candidates behind mDNS names (`<uuid>.local`) that the
 * agent cannot resolve; the pair still comes up peer-reflexive, so hiding
 * stays on, as it is for every user.
 */

import type { PeerSignal as Signal } from '../shared/signaling.js';
import {
  bareCandidate,
  type CandidateKind,
  candidateKind,
  type DataChannel,
  type Peer,
  PeerEvents,
  type PeerOptions,
  type PeerState,
  type WebRtcEngine,
} from '../transport/engine.js';

class BrowserDataChannel implements DataChannel {
  private readonly channel: RTCDataChannel;
  readonly label: string;

  constructor(channel: RTCDataChannel) {
    this.channel = channel;
    this.channel.binaryType = 'arraybuffer';
    this.label = channel.label;
  }
  send(message: Uint8Array): void {
    if (this.channel.readyState !== 'open') return;
    // A copy: the caller may reuse its buffer, and send() wants a plain ArrayBuffer view.
    this.channel.send(new Uint8Array(message));
  }
  bufferedAmount(): number {
    return this.channel.bufferedAmount;
  }
  setBufferedAmountLowThreshold(bytes: number): void {
    this.channel.bufferedAmountLowThreshold = bytes;
  }
  onBufferedAmountLow(cb: () => void): void {
    this.channel.addEventListener('bufferedamountlow', () => cb());
  }
  onMessage(cb: (message: Uint8Array) => void): void {
    this.channel.addEventListener('message', (event: MessageEvent) => {
      const data = event.data as ArrayBuffer | string;
      cb(typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data));
    });
  }
  onClose(cb: () => void): void {
    this.channel.addEventListener('close', () => cb(), { once: true });
  }
  onOpen(cb: () => void): void {
    if (this.channel.readyState === 'open') queueMicrotask(cb);
    else this.channel.addEventListener('open', () => cb(), { once: true });
  }
  isOpen(): boolean {
    return this.channel.readyState === 'open';
  }
  close(): void {
    this.channel.close();
  }
}

class BrowserPeer extends PeerEvents<BrowserDataChannel> implements Peer {
  readonly engine = 'browser' as const;
  private readonly pc: RTCPeerConnection;
  private negotiating = false;
  private closed = false;
  private selected: { kind: CandidateKind; address: string | undefined } | undefined;

  constructor(options: PeerOptions) {
    super();
    this.pc = new RTCPeerConnection({ iceServers: options.iceServers.map((s) => ({ ...s })) });
    this.pc.addEventListener('icecandidate', (event) => {
      const c = event.candidate;
      if (!c?.candidate) return;
      this.signalCb({ type: 'candidate', candidate: bareCandidate(c.candidate), mid: c.sdpMid ?? '0' });
    });
    this.pc.addEventListener('connectionstatechange', () => {
      const state = this.pc.connectionState;
      if (state === 'new') return;
      if (state === 'connected') void this.readSelectedPair();
      this.stateCb(state as PeerState);
    });
    this.pc.addEventListener('datachannel', (event) => this.adopt(new BrowserDataChannel(event.channel)));
  }

  createDataChannel(label: string, options: { unreliable?: boolean } = {}): DataChannel {
    const init: RTCDataChannelInit = options.unreliable ? { protocol: label, ordered: false, maxRetransmits: 0 } : { protocol: label, ordered: true };
    const channel = new BrowserDataChannel(this.pc.createDataChannel(label, init));
    this.channels.push(channel);
    if (!this.negotiating) {
      this.negotiating = true;
      void this.offer();
    }
    return channel;
  }

  private async offer(): Promise<void> {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const sdp = this.pc.localDescription?.sdp;
    if (sdp && !this.closed) this.signalCb({ type: 'offer', sdp });
  }

  async signal(signal: Signal): Promise<void> {
    if (this.closed) return;
    if (signal.type === 'candidate') {
      if (signal.candidate) await this.pc.addIceCandidate({ candidate: signal.candidate, sdpMid: signal.mid });
      return;
    }
    await this.pc.setRemoteDescription({ type: signal.type, sdp: signal.sdp });
    if (signal.type === 'offer') {
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      const sdp = this.pc.localDescription?.sdp;
      if (sdp && !this.closed) this.signalCb({ type: 'answer', sdp });
    }
  }

  /** The browser tells the selected pair only through getStats, which is asynchronous: read once connected. */
  private async readSelectedPair(): Promise<void> {
    const stats = await this.pc.getStats();
    const byId = new Map<string, Record<string, unknown>>();
    stats.forEach((s: Record<string, unknown>) => {
      byId.set(s['id'] as string, s);
    });
    for (const s of byId.values()) {
      if (s['type'] !== 'candidate-pair' || s['state'] !== 'succeeded' || !s['nominated']) continue;
      const local = byId.get(s['localCandidateId'] as string);
      const remote = byId.get(s['remoteCandidateId'] as string);
      const relayed = local?.['candidateType'] === 'relay' || remote?.['candidateType'] === 'relay';
      this.selected = {
        kind: relayed ? 'relay' : (candidateKind(` typ ${String(local?.['candidateType'] ?? 'host')}`) ?? 'host'),
        address: (remote?.['address'] ?? remote?.['ip']) as string | undefined,
      };
      return;
    }
  }

  selectedCandidateKind(): CandidateKind | undefined {
    return this.selected?.kind ?? (this.pc.connectionState === 'connected' ? 'host' : undefined);
  }

  remoteAddress(): string | undefined {
    return this.selected?.address;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pc.close();
    // The browser fires no state change for a close it was asked to do.
    this.stateCb('closed');
  }
}

export const browserEngine: WebRtcEngine = {
  name: 'browser',
  createPeer: (options) => new BrowserPeer(options),
};
