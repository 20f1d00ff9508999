/** The node-datachannel (libdatachannel) engine: Beam's default. */
import ndc from 'node-datachannel';
import { SCTP_BUFFER_BYTES } from '../shared/constants.js';
import type { IceServer, PeerSignal as Signal } from '../shared/signaling.js';
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
} from './engine.js';

type NdcChannel = ndc.DataChannel;

// usrsctp's default buffers (~256 KiB) cap a path at buffer / RTT: 7.9 MB/s at
// 55 ms in the NAT lab; SCTP_BUFFER_BYTES lets a long path fill. The stream
// multiplexer's credit and bufferedAmount gating still bound what is queued.
ndc.setSctpSettings({ recvBufferSize: SCTP_BUFFER_BYTES, sendBufferSize: SCTP_BUFFER_BYTES });

// BEAM_NDC_LOG=Verbose|Debug|Info|Warning|Error turns on libdatachannel's own log (stderr), for ICE trouble.
const NDC_LOG_LEVELS = ['Verbose', 'Debug', 'Info', 'Warning', 'Error', 'Fatal'] as const;
const ndcLog = process.env['BEAM_NDC_LOG'];
if (ndcLog && (NDC_LOG_LEVELS as readonly string[]).includes(ndcLog)) {
  ndc.initLogger(ndcLog as ndc.LogLevel, (level, message) => process.stderr.write(`[libdatachannel ${level}] ${message}\n`));
}

/** Turns a WebRTC-style ICE server into libdatachannel's form. */
export function toNdcIceServer(server: IceServer): string | ndc.IceServer {
  const m = /^(stun|turn|turns):([^:?]+|\[[^\]]+\]):?(\d+)?(?:\?transport=(udp|tcp))?$/.exec(server.urls);
  if (!m) return server.urls;
  const [, scheme, host = '', port, transport] = m;
  if (scheme === 'stun') return `stun:${host}:${port ?? 3478}`;
  return {
    hostname: host.replace(/^\[|\]$/g, ''),
    port: Number(port ?? (scheme === 'turns' ? 5349 : 3478)),
    username: server.username,
    password: server.credential,
    relayType: scheme === 'turns' ? 'TurnTls' : transport === 'tcp' ? 'TurnTcp' : 'TurnUdp',
  };
}

class NdcDataChannel implements DataChannel {
  // Held for the wrapper's whole life: a garbage-collected ndc channel closes.
  private readonly channel: NdcChannel;
  readonly label: string;

  constructor(channel: NdcChannel) {
    this.channel = channel;
    this.label = channel.getLabel();
  }
  send(message: Uint8Array): void {
    // false means "queued", not "failed": the mux gates on bufferedAmount.
    this.channel.sendMessageBinary(message);
  }
  bufferedAmount(): number {
    return this.channel.bufferedAmount();
  }
  setBufferedAmountLowThreshold(bytes: number): void {
    this.channel.setBufferedAmountLowThreshold(bytes);
  }
  onBufferedAmountLow(cb: () => void): void {
    this.channel.onBufferedAmountLow(cb);
  }
  onMessage(cb: (message: Uint8Array) => void): void {
    this.channel.onMessage((msg) => {
      if (typeof msg === 'string') cb(Buffer.from(msg, 'utf8'));
      else if (msg instanceof ArrayBuffer) cb(new Uint8Array(msg));
      else cb(msg);
    });
  }
  onClose(cb: () => void): void {
    this.channel.onClosed(cb);
  }
  onOpen(cb: () => void): void {
    this.channel.onOpen(cb);
  }
  isOpen(): boolean {
    return this.channel.isOpen();
  }
  close(): void {
    this.channel.close();
  }
}

class NdcPeer extends PeerEvents<NdcDataChannel> implements Peer {
  readonly engine = 'node-datachannel' as const;
  private readonly pc: ndc.PeerConnection;
  private closed = false;
  // Trickled candidates can overtake the description they belong to.
  private hasRemoteDescription = false;
  private readonly earlyRemoteCandidates: Array<{ candidate: string; mid: string }> = [];
  // Our own candidates wait for the remote description: see signal().
  private readonly heldLocalCandidates: Signal[] = [];

  constructor(options: PeerOptions) {
    super();
    this.pc = new ndc.PeerConnection('beam', {
      iceServers: options.iceServers.map(toNdcIceServer),
    });
    this.pc.onLocalDescription((sdp, type) => {
      if (type === 'offer' || type === 'answer') this.signalCb({ type, sdp });
    });
    this.pc.onLocalCandidate((candidate, mid) => {
      const signal: Signal = { type: 'candidate', candidate: bareCandidate(candidate), mid };
      if (this.hasRemoteDescription) this.signalCb(signal);
      else this.heldLocalCandidates.push(signal);
    });
    this.pc.onStateChange((state) => {
      const mapped: PeerState | undefined =
        state === 'connected'
          ? 'connected'
          : state === 'disconnected'
            ? 'disconnected'
            : state === 'failed'
              ? 'failed'
              : state === 'closed'
                ? 'closed'
                : state === 'connecting'
                  ? 'connecting'
                  : undefined;
      if (mapped) this.stateCb(mapped);
    });
    this.pc.onDataChannel((dc) => {
      this.adopt(new NdcDataChannel(dc));
    });
  }

  createDataChannel(label: string, options: { unreliable?: boolean } = {}): DataChannel {
    const init = options.unreliable ? { protocol: label, unordered: true, maxRetransmits: 0 } : { protocol: label };
    const channel = new NdcDataChannel(this.pc.createDataChannel(label, init));
    this.channels.push(channel);
    return channel;
  }
  async signal(signal: Signal): Promise<void> {
    if (this.closed) return;
    if (signal.type === 'candidate') {
      if (!signal.candidate) return;
      if (this.hasRemoteDescription) this.pc.addRemoteCandidate(signal.candidate, signal.mid);
      else this.earlyRemoteCandidates.push(signal);
      return;
    }
    this.pc.setRemoteDescription(signal.sdp, signal.type);
    this.hasRemoteDescription = true;
    for (const c of this.earlyRemoteCandidates.splice(0)) this.pc.addRemoteCandidate(c.candidate, c.mid);
    // libdatachannel hands the remote description to ICE before it stores the
    // fingerprint DTLS checks against. An answerer that already had the
    // offerer's candidates could connect in that window, and the offerer then
    // rejects the DTLS certificate (seen under load: about 1 setup in 80).
    // Candidates sent only once the answer is in close the window: the
    // answerer cannot reach the offerer before the offerer checks it.
    for (const c of this.heldLocalCandidates.splice(0)) this.signalCb(c);
  }
  selectedCandidateKind(): CandidateKind | undefined {
    try {
      const pair = this.pc.getSelectedCandidatePair();
      if (!pair) return undefined;
      const local = candidateKind(` typ ${pair.local.type}`) ?? candidateKind(pair.local.candidate);
      const remote = candidateKind(` typ ${pair.remote.type}`) ?? candidateKind(pair.remote.candidate);
      // Either end relaying through TURN makes the path a TURN path.
      return remote === 'relay' ? 'relay' : local;
    } catch {
      return undefined;
    }
  }
  remoteAddress(): string | undefined {
    try {
      return this.pc.getSelectedCandidatePair()?.remote.address;
    } catch {
      return undefined;
    }
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.channels) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    this.pc.close();
  }
}

export const nodeDatachannelEngine: WebRtcEngine = {
  name: 'node-datachannel',
  createPeer: (options) => new NdcPeer(options),
};
