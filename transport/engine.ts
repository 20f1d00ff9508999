/**
 * The WebRTC engine interface. Beam runs on node-datachannel by default and on
 * werift (pure TypeScript) where the native binary is missing; both speak to
 * each other and to browsers. Only this folder touches an engine's own API.
 */
import type { FrameChannel } from '../shared/mux.js';
import type { IceServer, PeerSignal as Signal } from '../shared/signaling.js';

export type EngineName = 'node-datachannel' | 'werift';
export const ENGINE_NAMES: readonly EngineName[] = ['node-datachannel', 'werift'];

export type PeerState = 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

/** How the selected ICE pair reaches the peer. */
export type CandidateKind = 'host' | 'srflx' | 'prflx' | 'relay';

export interface PeerOptions {
  /** STUN/TURN servers handed out by the signaling server. Default none. */
  iceServers: IceServer[];
}

export interface DataChannel extends FrameChannel {
  readonly label: string;
  isOpen(): boolean;
  onOpen(cb: () => void): void;
}

export interface Peer {
  readonly engine: EngineName | 'browser';
  /** Local descriptions and candidates to hand to signaling. */
  onSignal(cb: (signal: Signal) => void): void;
  onStateChange(cb: (state: PeerState) => void): void;
  /** Channels the remote side opened. */
  onDataChannel(cb: (channel: DataChannel) => void): void;
  /**
   * Opens a channel; on the offerer this starts negotiation. Reliable and
   * ordered unless `unreliable`: unordered, no retransmits (UDP shares).
   */
  createDataChannel(label: string, options?: { unreliable?: boolean }): DataChannel;
  /** Applies a remote description or candidate. */
  signal(signal: Signal): Promise<void>;
  /** 'relay' when either candidate of the selected pair is a TURN relay, else the local candidate's kind; once connected. */
  selectedCandidateKind(): CandidateKind | undefined;
  /** The remote address of the selected pair, once connected (the peer's address, or its TURN server's). */
  remoteAddress(): string | undefined;
  close(): void;
}

export interface WebRtcEngine {
  readonly name: EngineName | 'browser';
  createPeer(options: PeerOptions): Peer;
}

/** "a=candidate:..." and "candidate:..." are both seen in the wild; engines want the latter. */
export function bareCandidate(line: string): string {
  return line.startsWith('a=') ? line.slice(2) : line;
}

export function candidateKind(line: string): CandidateKind | undefined {
  const m = / typ (host|srflx|prflx|relay)/.exec(line);
  return m ? (m[1] as CandidateKind) : undefined;
}

/**
 * What both engines share: the callbacks a Peer hands its events to, and
 * the channels it must keep referenced (a collected node-datachannel channel
 * closes).
 */
export abstract class PeerEvents<C extends DataChannel> {
  protected signalCb: (s: Signal) => void = () => {};
  protected stateCb: (s: PeerState) => void = () => {};
  protected channelCb: (c: DataChannel) => void = () => {};
  protected readonly channels: C[] = [];

  onSignal(cb: (signal: Signal) => void): void {
    this.signalCb = cb;
  }
  onStateChange(cb: (state: PeerState) => void): void {
    this.stateCb = cb;
  }
  onDataChannel(cb: (channel: DataChannel) => void): void {
    this.channelCb = cb;
  }
  /** Keeps `channel` and hands it to the onDataChannel callback. */
  protected adopt(channel: C): void {
    this.channels.push(channel);
    this.channelCb(channel);
  }
}
