/**
 * Diagnostic: does striping one bulk transfer over several SCTP associations
 * (peer connections) beat one, on the NAT lab's direct path?
 *
 * Raw node-datachannel, no Beam code: a sender in ha and a receiver in hb,
 * behind cone NATs, hole-punched with coturn as the STUN server, delay links
 * on both routers. For each stripe count, the same bytes are split evenly
 * over that many peer connections (one channel each, 16 KiB messages, Beam's
 * SCTP buffers), and the run prints MB/s and the CPU both ends used per MB.
 *
 * Usage (root, coturn, python3): node dist/bench/diag/stripe.js [--rtt 50] [--mib 32] [--stripes 1,2,4] [--reps 2]
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NetLab, WAN_SERVER } from '../../test/helpers/netlab.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const RTT = Number(arg('rtt', '50'));
const MIB = Number(arg('mib', '32'));
const STRIPES = arg('stripes', '1,2,4').split(',').map(Number);
const REPS = Number(arg('reps', '2'));
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SIGNAL_PORT = 9500;

/** Pairs the first two connections and splices them: the two ends' signaling. */
const PAIRER = `
let first;
net.createServer((c) => {
  if (!first) { first = c; return; }
  first.pipe(c); c.pipe(first); first = undefined;
}).listen(${SIGNAL_PORT}, ${JSON.stringify(WAN_SERVER)}, () => console.log(JSON.stringify({ ready: true })));
`;

/** One end: `role` is 'tx' or 'rx'. Prints {mbps, cpuMs} (tx) or {cpuMs} (rx) once the bytes are through. */
const END = (role: 'tx' | 'rx', stripes: number, total: number): string => `
import { createInterface } from 'node:readline';
import ndc from 'node-datachannel';
ndc.setSctpSettings({ recvBufferSize: 16 * 1024 * 1024, sendBufferSize: 16 * 1024 * 1024 });
const sock = net.connect(${SIGNAL_PORT}, ${JSON.stringify(WAN_SERVER)});
const send = (m) => sock.write(JSON.stringify(m) + '\\n');
const pcs = [];
for (let i = 0; i < ${stripes}; i++) {
  const pc = new ndc.PeerConnection('${role}' + i, { iceServers: ['stun:${WAN_SERVER}:3478'] });
  pc.onLocalDescription((sdp, type) => send({ i, sdp, type }));
  pc.onLocalCandidate((candidate, mid) => send({ i, candidate, mid }));
  pcs.push(pc);
}
createInterface({ input: sock }).on('line', (l) => {
  const m = JSON.parse(l);
  if (m.go) return start();
  if (m.done) return finish();
  if (m.sdp) pcs[m.i].setRemoteDescription(m.sdp, m.type);
  else pcs[m.i].addRemoteCandidate(m.candidate, m.mid);
});
const keep = [];
const per = Math.ceil(${total} / ${stripes});
let cpu0;
let t0;
function finish() {
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ role: '${role}', ms: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 }));
  process.exit(0);
}
if ('${role}' === 'rx') {
  let got = 0;
  let open = 0;
  for (const pc of pcs) pc.onDataChannel((dc) => {
    keep.push(dc);
    if (++open === ${stripes}) { cpu0 = process.cpuUsage(); t0 = performance.now(); send({ go: true }); }
    dc.onMessage((msg) => {
      got += msg.byteLength ?? msg.length;
      if (got >= ${total}) { send({ done: true }); setTimeout(finish, 50); }
    });
  });
} else {
  for (const pc of pcs) keep.push(pc.createDataChannel('raw'));
}
function start() {
  cpu0 = process.cpuUsage();
  t0 = performance.now();
  const payload = Buffer.alloc(16 * 1024, 1);
  for (const dc of keep) {
    let sent = 0;
    dc.setBufferedAmountLowThreshold(256 * 1024);
    const pump = () => {
      while (sent < per && dc.bufferedAmount() < 1024 * 1024) { dc.sendMessageBinary(payload); sent += payload.byteLength; }
    };
    dc.onBufferedAmountLow(pump);
    pump();
  }
}
`;

async function once(lab: NetLab, stripes: number): Promise<{ mbps: number; cpuMsPerMb: number }> {
  const total = MIB * 1024 * 1024;
  const [rx, tx] = await Promise.all([lab.node(lab.hb, END('rx', stripes, total)), lab.node(lab.ha, END('tx', stripes, total))]);
  const rxLine = rx.at(-1) ?? {};
  const txLine = tx.at(-1) ?? {};
  const mb = total / 1e6;
  return { mbps: mb / ((rxLine['ms'] as number) / 1000), cpuMsPerMb: ((rxLine['cpuMs'] as number) + (txLine['cpuMs'] as number)) / mb };
}

async function main(): Promise<void> {
  const delayMs = RTT / 4;
  for (const stripes of STRIPES) {
    for (let rep = 0; rep < REPS; rep++) {
      const lab = NetLab.create({ nat: 'cone', delayMs }, { nat: 'cone', delayMs });
      try {
        lab.startTurn(root, 'stripe-bench');
        await new Promise<void>((resolve, reject) => {
          void lab.node(lab.wan, PAIRER, () => resolve()).catch(reject);
        });
        // coturn needs a moment to bind: wait until its port answers.
        await waitForStun(lab);
        const r = await once(lab, stripes);
        console.log(`rtt ${RTT} ms, ${stripes} association(s): ${r.mbps.toFixed(1)} MB/s, both ends ${r.cpuMsPerMb.toFixed(1)} ms CPU per MB`);
      } finally {
        lab.destroy();
      }
    }
  }
}

async function waitForStun(lab: NetLab): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await lab
      .node(
        lab.wan,
        `import { execFileSync } from 'node:child_process'; const out = execFileSync('ss', ['-lun']).toString(); console.log(JSON.stringify({ up: out.includes('${WAN_SERVER}:3478') }));`,
      )
      .then((l) => l[0]?.['up'] === true);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('coturn did not start');
}

await main();
