/**
 * Diagnostic, and the reproduction for an upstream report: native memory that
 * node-datachannel keeps for each peer connection closed before it connects.
 *
 * Raw node-datachannel, no Beam code: one offer is made once; then, per round,
 * N peer connections each take it, answer, and are closed (what an agent does
 * for an abandoned session). After each round the script collects garbage and
 * prints RSS, the JS heap and external memory. Measured 2026-12-04 (Node 20,
 * node-datachannel 0.33): heap and external stay flat; RSS grows by about
 * 1 KB per peer connection and does not level off (2,000 a round, 15 rounds:
 * 52 -> 90 MiB). MALLOC_ARENA_MAX=2 gives the same slope, so it is not glibc's
 * per-thread arenas. Beam bounds how many such peers a visitor can make
 * (MAX_OFFERS_PER_SESSION_PER_MINUTE, MAX_PENDING_PEERS, the signaling
 * budgets); it cannot free what the library holds.
 *
 * Usage: node --expose-gc dist/bench/diag/peer-leak.js [--rounds 5] [--peers 2000]
 */
import ndc from 'node-datachannel';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const ROUNDS = Number(arg('rounds', '5'));
const PEERS = Number(arg('peers', '2000'));
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const mib = (n: number): string => (n / 2 ** 20).toFixed(1);
function report(label: string): void {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  process.stdout.write(`${label.padEnd(9)} rss ${mib(m.rss)} MiB  heap ${mib(m.heapUsed)} MiB  external ${mib(m.external)} MiB\n`);
}

const offerer = new ndc.PeerConnection('offerer', { iceServers: [] });
const offer = new Promise<{ sdp: string; type: string }>((resolve) => offerer.onLocalDescription((sdp, type) => resolve({ sdp, type })));
offerer.createDataChannel('beam/1');
const { sdp, type } = await offer;

report('start');
for (let round = 1; round <= ROUNDS; round++) {
  for (let i = 0; i < PEERS; i++) {
    const pc = new ndc.PeerConnection(`answerer-${i}`, { iceServers: [] });
    const answered = new Promise<void>((resolve) => pc.onLocalDescription(() => resolve()));
    pc.onLocalCandidate(() => {});
    pc.onStateChange(() => {});
    pc.onDataChannel(() => {});
    pc.setRemoteDescription(sdp, type as ndc.DescriptionType);
    await answered;
    pc.close();
  }
  // libdatachannel tears down on its own threads: give them a moment before measuring.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  report(`round ${round}`);
}
offerer.close();
// Exiting without ndc.cleanup(): a 15-round run that called it crashed with SIGSEGV on the way out.
process.exit(0);
