/**
 * The network backends side by side (issue 22): a `beam connect` visitor (in
 * hb) reaches an agent (in ha) across two cone NATs, 50 ms round trip from
 * NAT to NAT (each router's link to the wan adds --delay ms each way), once
 * through a Beam server (`beam serve` on the wan, with coturn's STUN) and
 * once through libp2p (a stock js-libp2p circuit relay on the wan, the same
 * STUN, no Beam server). In one run, for each:
 *
 *   - first response: from starting `beam connect` to its first response
 *     through the local port (the process's own start, signaling or the
 *     relay dial and the hole punch, and one request), median of --reps;
 *   - the path it ended on;
 *   - sequential p50: one keep-alive connection, requests one after another;
 *   - throughput: a --mib MiB download, median of --reps.
 *
 *   npm run build && node dist/bench/backends.js [--delay 12.5] [--reps 3] [--mib 16]
 *
 * Needs root (network namespaces), iptables, coturn, python3 and ethtool (the delay links).
 */
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { LIBP2P_RELAY } from '../test/helpers/lab-scripts.js';
import { NetLab, WAN_SERVER } from '../test/helpers/netlab.js';
import { numberArg } from '../test/helpers/services.js';
import { beam, median, ORIGIN, root } from './lab.js';

const DELAY = numberArg('--delay', 12.5);
const REPS = numberArg('--reps', 3);
const MIB = numberArg('--mib', 16);
const SERVER = `http://${WAN_SERVER}:7070`;
const STUN = `stun:${WAN_SERVER}:3478`;

/** Inside hb: waits for the local port, then one GET of /hello (ms), then `requests` sequential ones and `reps` downloads. */
const MEASURE = (port: number, requests: number, reps: number, bytes: number): string => `
import http from 'node:http';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = (path) => new Promise((resolve, reject) => {
  const t = performance.now();
  http.get({ host: '127.0.0.1', port: ${port}, path, agent }, (res) => {
    let n = 0;
    res.on('data', (c) => (n += c.length));
    res.on('end', () => resolve({ status: res.statusCode, bytes: n, ms: performance.now() - t }));
    res.on('error', reject);
  }).on('error', reject);
});
const first = await get('/hello');
const seq = [];
for (let i = 0; i < ${requests}; i++) seq.push((await get('/hello')).ms);
const file = [];
for (let i = 0; i < ${reps}; i++) {
  const r = await get('/file');
  if (r.status !== 200 || r.bytes !== ${bytes}) throw new Error('short download: ' + JSON.stringify(r));
  file.push(r.ms);
}
console.log(JSON.stringify({ first: first.ms, seq, file }));
agent.destroy();
`;

interface Row {
  firstMs: number[];
  path: string;
  seqP50: number;
  mbps: number;
}

/** Starts `beam connect` `reps` times (a fresh process each), measuring the first response after its start; the last one also measures the rest. */
async function visit(lab: NetLab, link: string, extra: string[]): Promise<Row> {
  const firstMs: number[] = [];
  let path = '';
  let seqP50 = Number.NaN;
  let mbps = Number.NaN;
  for (let i = 0; i < REPS; i++) {
    const port = 8500 + i;
    const started = performance.now();
    const v = beam(lab, lab.hb, ['connect', link, '--port', String(port), '--json', ...extra]);
    await v.waitFor('ready');
    const readyMs = performance.now() - started;
    const last = i === REPS - 1;
    const [line] = await lab.node(lab.hb, MEASURE(port, last ? 30 : 0, last ? REPS : 0, MIB * 1024 * 1024));
    // The process's start to its ready line, then the first request: the measuring script's own start is left out.
    firstMs.push(readyMs + (line?.['first'] as number));
    await v.waitFor('session');
    // The path the measurements ended on: the first one, or the last it moved to.
    path = String([...v.events].reverse().find((e) => e['event'] === 'session' || e['event'] === 'path')?.['path']);
    if (last) {
      seqP50 = median(line?.['seq'] as number[]);
      mbps = (MIB * 1.048576) / (median(line?.['file'] as number[]) / 1000);
    }
    v.child.kill('SIGTERM');
  }
  return { firstMs, path, seqP50, mbps };
}

async function main(): Promise<void> {
  console.log(
    `# Backends: ${cpus().length} CPUs, Node ${process.version}; two cone NATs ${4 * DELAY} ms round trip apart, the server or relay on the wan between them; ` +
      `first response after beam connect starts (median of ${REPS}), ${MIB} MiB download\n`,
  );
  const lab = NetLab.create({ nat: 'cone', delayMs: DELAY }, { nat: 'cone', delayMs: DELAY });
  const rows: Array<[string, Row]> = [];
  try {
    lab.startTurn(root, 'bench-secret');
    await new Promise<void>((resolve, reject) => {
      lab.node(lab.ha, ORIGIN(MIB * 1024 * 1024), () => resolve()).catch(reject);
    });
    const server = beam(lab, lab.wan, ['serve', '--host', WAN_SERVER, '--port', '7070', '--stun', STUN, '--json', '--log-level', 'warn']);
    await server.waitFor('ready');
    const relay = await new Promise<string>((resolve, reject) => {
      lab.node(lab.wan, LIBP2P_RELAY(WAN_SERVER), (l) => resolve(l['relay'] as string)).catch(reject);
    });
    const viaServer = beam(lab, lab.ha, ['http', '3000', '--server', SERVER, '--json'], { BEAM_CONFIG_DIR: await mkdtemp(path.join(tmpdir(), 'beam-b-')) });
    const serverLink = (await viaServer.waitFor('ready'))['link'] as string;
    rows.push(['Beam server (beam serve, signaling and STUN on the wan)', await visit(lab, serverLink, ['--server', SERVER])]);
    const viaLibp2p = beam(lab, lab.ha, ['http', '3000', '--via', 'libp2p', '--bootstrap', relay, '--stun', STUN, '--json'], {
      BEAM_CONFIG_DIR: await mkdtemp(path.join(tmpdir(), 'beam-b-')),
    });
    const p2pLink = (await viaLibp2p.waitFor('ready'))['link'] as string;
    rows.push(['libp2p (a circuit relay on the wan, no Beam server)', await visit(lab, p2pLink, ['--stun', STUN])]);
  } finally {
    lab.destroy();
  }
  console.log('| backend | first response after start | path | sequential p50 | download |');
  console.log('|---|---|---|---|---|');
  for (const [what, r] of rows)
    console.log(
      `| ${what} | ${median(r.firstMs).toFixed(0)} ms (${r.firstMs.map((x) => x.toFixed(0)).join(', ')}) | ${r.path} | ${r.seqP50.toFixed(1)} ms | ${r.mbps.toFixed(1)} MB/s |`,
    );
  const [s, p] = rows.map(([, r]) => r);
  if (s && p)
    console.log(
      `\nlibp2p / server: first response ${(median(p.firstMs) / median(s.firstMs)).toFixed(2)}x, sequential p50 ${(p.seqP50 / s.seqP50).toFixed(2)}x, throughput ${(p.mbps / s.mbps).toFixed(2)}x`,
    );
}

await main();
process.exit(0);
