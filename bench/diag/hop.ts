/**
 * Diagnostic: sequential request latency through the stream protocol and the
 * agent's origin forwarder, without the gateway's HTTP server, over real
 * node-datachannel and over an in-memory channel. Usage: node dist/bench/diag/hop.js <originPort>
 */
import { pino } from 'pino';
import { OriginForwarder } from '../../peer-agent/origin.js';
import { StreamProtocol } from '../../shared/frames.js';
import { decodeResponseHead, encodeHead, readHead } from '../../shared/http-head.js';
import { type FrameChannel, Mux } from '../../shared/mux.js';
import { loadEngine } from '../../transport/index.js';

class Mem implements FrameChannel {
  peer!: Mem;
  private cb: (m: Uint8Array) => void = () => {};
  send(m: Uint8Array): void {
    const copy = Buffer.from(m);
    setImmediate(() => this.peer.cb(copy));
  }
  bufferedAmount(): number {
    return 0;
  }
  setBufferedAmountLowThreshold(): void {}
  onBufferedAmountLow(): void {}
  onMessage(cb: (m: Uint8Array) => void): void {
    this.cb = cb;
  }
  onClose(): void {}
  close(): void {}
}

async function pair(kind: 'ndc' | 'mem'): Promise<[FrameChannel, FrameChannel]> {
  if (kind === 'mem') {
    const a = new Mem();
    const b = new Mem();
    a.peer = b;
    b.peer = a;
    return [a, b];
  }
  const e = await loadEngine('node-datachannel');
  const pa = e.createPeer({ iceServers: [] });
  const pb = e.createPeer({ iceServers: [] });
  pa.onSignal((s) => void pb.signal(s));
  pb.onSignal((s) => void pa.signal(s));
  const ca = pa.createDataChannel('beam/1');
  const cbP = new Promise<FrameChannel>((r) => pb.onDataChannel(r));
  await new Promise<void>((r) => ca.onOpen(r));
  return [ca, await cbP];
}

const port = Number(process.argv[2]);
for (const kind of ['mem', 'ndc'] as const) {
  const [ca, cb] = await pair(kind);
  const a = new Mux(ca, { role: 'initiator', ping: false });
  const b = new Mux(cb, { role: 'responder', ping: false });
  const fwd = new OriginForwarder(
    { logger: pino({ level: 'silent' }), events: { onUnreachable() {} } },
    { host: '127.0.0.1', port },
    { hostHeader: 'rewrite', timeoutMs: 5000 },
  );
  b.on('stream', (s) => void fwd.serve(s, { trustForwarded: true, path: 'gateway' }));
  const times: number[] = [];
  for (let i = 0; i < Number(process.env['N'] ?? 500); i++) {
    const t0 = performance.now();
    const s = a.openStream(StreamProtocol.HTTP);
    s.end(encodeHead({ method: 'GET', target: '/1k', headers: [['host', 'x']], upgrade: false, body: false }));
    const head = decodeResponseHead(await readHead(s));
    if (head.kind !== 'response') throw new Error('bad');
    await new Promise<void>((r) => {
      s.on('end', r);
      s.resume();
    });
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  console.log(`${kind}: p50 ${times[times.length >> 1]!.toFixed(3)} ms p90 ${times[Math.floor(times.length * 0.9)]!.toFixed(3)} ms`);
  a.close();
  b.close();
  fwd.close();
}
process.exit(0);
