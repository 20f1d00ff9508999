/**
 * Baseline (b): a raw node-datachannel transfer between two processes, no
 * Beam code in the path. The parent sends, a forked child receives; they
 * signal over the fork's IPC channel. Same SCTP settings and message size as
 * Beam's stream protocol unless told otherwise.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import ndc from 'node-datachannel';

export interface Msg {
  kind: 'sdp' | 'candidate' | 'done';
  sdp?: string;
  type?: string;
  candidate?: string;
  mid?: string;
  bytes?: number;
}

export function wire(pc: ndc.PeerConnection, send: (m: Msg) => void): (m: Msg) => void {
  pc.onLocalDescription((sdp, type) => send({ kind: 'sdp', sdp, type }));
  pc.onLocalCandidate((candidate, mid) => send({ kind: 'candidate', candidate, mid }));
  return (m) => {
    if (m.kind === 'sdp') pc.setRemoteDescription(m.sdp!, m.type as ndc.DescriptionType);
    else if (m.kind === 'candidate') pc.addRemoteCandidate(m.candidate!, m.mid!);
  };
}

async function receiver(): Promise<void> {
  const pc = new ndc.PeerConnection('rx', { iceServers: [] });
  const apply = wire(pc, (m) => process.send!(m));
  process.on('message', (m: Msg) => apply(m));
  const keep: ndc.DataChannel[] = [];
  pc.onDataChannel((dc) => {
    keep.push(dc);
    let bytes = 0;
    dc.onMessage((msg) => {
      bytes += typeof msg === 'string' ? msg.length : msg.byteLength;
      if (bytes >= Number(process.env['RAW_TOTAL'])) process.send!({ kind: 'done', bytes });
    });
  });
}

/** Sends `total` bytes in `messageSize` messages; resolves with MB/s. */
export async function rawTransfer(total: number, messageSize: number): Promise<number> {
  const child = fork(fileURLToPath(import.meta.url), ['receiver'], { env: { ...process.env, RAW_TOTAL: String(total) } });
  const pc = new ndc.PeerConnection('tx', { iceServers: [] });
  const apply = wire(pc, (m) => child.send(m));
  let done: (() => void) | undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  child.on('message', (m: Msg) => (m.kind === 'done' ? done?.() : apply(m)));
  const dc = pc.createDataChannel('raw');
  await new Promise<void>((resolve) => dc.onOpen(resolve));
  const payload = Buffer.alloc(messageSize, 1);
  let sent = 0;
  const started = performance.now();
  dc.setBufferedAmountLowThreshold(256 * 1024);
  const pump = (): void => {
    while (sent < total && dc.bufferedAmount() < 1024 * 1024) {
      dc.sendMessageBinary(payload);
      sent += messageSize;
    }
  };
  dc.onBufferedAmountLow(pump);
  pump();
  await finished;
  const seconds = (performance.now() - started) / 1000;
  dc.close();
  pc.close();
  child.kill();
  return total / seconds / 1e6;
}

if (process.argv[2] === 'receiver') void receiver();
