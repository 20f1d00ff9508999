/**
 * Paths benchmark, in the NAT lab (bench/netlab.ts) with delay on both
 * routers' wan links (../shared/netlab/delaylink.py). In one run:
 *
 *   - time to first response for a new `beam connect` visitor, per NAT
 *     scenario (cone<->cone, symmetric<->symmetric, UDP blocked);
 *   - bulk download throughput per path: direct, TURN (symmetric NATs,
 *     --relay never), and Beam's relay
 *     (`--relay always`), at each round-trip time;
 *   - the relayed baselines for the same work: localtunnel (its server in
 *     the wan, its client next to the origin), when LT_SERVER_DIR
 *     names a checkout of github.com/localtunnel/server with its npm
 *     dependencies installed (its server is not on npm; the checkout brings
 *     the `localtunnel` client too); and a plain TCP relay in the wan (the
 *     shape of localtunnel at its best: one TCP leg from each side).
 *
 * Prints a table and the ratio the NAT traversal issue sets: direct
 * throughput / relayed baseline at 50 ms RTT (target >= 1).
 *
 *   npm run build && node dist/bench/paths.js [--rtt 20,50] [--mib 32] [--reps 3]
 *
 * Needs root (network namespaces), coturn, iptables, python3.
 */
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { NetLab, type SideOptions, WAN_SERVER } from '../test/helpers/netlab.js';
import { beam, FETCH, LT_FETCH, LT_PORT, median, ORIGIN, root, startLocaltunnel, TCP_RELAY } from './lab.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? def) : def;
};
const RTTS = opt('--rtt', '20,50').split(',').map(Number);
const MIB = Number(opt('--mib', '32'));
const REPS = Number(opt('--reps', '3'));
/** --only first|throughput runs one half. */
const ONLY = opt('--only', 'all');
const SECRET = 'bench-secret-0123456789abcdef';
const SERVER = `http://${WAN_SERVER}:7070`;

async function localtunnelThroughput(lab: NetLab, tunnelHost: string): Promise<number> {
  // The client's tunnel sockets connect just after it prints its URL: one small request first.
  await lab.node(lab.hb, LT_FETCH(WAN_SERVER, LT_PORT, tunnelHost, 1));
  const lines = await lab.node(lab.hb, LT_FETCH(WAN_SERVER, LT_PORT, tunnelHost, REPS));
  const rates = lines.map((l) => {
    if (l['status'] !== 200 || l['bytes'] !== MIB * 1024 * 1024) throw new Error(`short download through localtunnel: ${JSON.stringify(l)}`);
    return (MIB * 1024 * 1024) / 1e6 / ((l['ms'] as number) / 1000);
  });
  return median(rates);
}

function startOrigin(lab: NetLab): Promise<void> {
  return new Promise((resolve, reject) => {
    lab.node(lab.ha, ORIGIN(MIB * 1024 * 1024), () => resolve()).catch(reject);
  });
}

async function world(a: SideOptions, b: SideOptions): Promise<{ lab: NetLab; link: string }> {
  const lab = NetLab.create(a, b);
  try {
    return await populate(lab);
  } catch (err) {
    lab.destroy();
    throw err;
  }
}

async function populate(lab: NetLab): Promise<{ lab: NetLab; link: string }> {
  lab.startTurn(root, SECRET);
  const server = beam(lab, lab.wan, [
    'serve',
    '--host',
    WAN_SERVER,
    '--port',
    '7070',
    '--json',
    '--log-level',
    'warn',
    '--stun',
    `stun:${WAN_SERVER}:3478`,
    '--turn',
    `turn:${WAN_SERVER}:3478?transport=udp`,
    '--turn-secret',
    SECRET,
  ]);
  await server.waitFor('ready');
  await startOrigin(lab);
  const config = await mkdtemp(path.join(tmpdir(), 'beam-bench-'));
  const agent = beam(lab, lab.ha, ['http', '3000', '--server', SERVER, '--json'], { BEAM_CONFIG_DIR: config });
  const ready = await agent.waitFor('ready');
  return { lab, link: ready['link'] as string };
}

/** Starts `beam connect` in hb on `port`; ms from spawn to the first response, and the path. */
async function visitor(lab: NetLab, link: string, port: number, extra: string[]): Promise<{ firstMs: number; path: string }> {
  const started = performance.now();
  const v = beam(lab, lab.hb, ['connect', link, '--server', SERVER, '--port', String(port), '--json', ...extra]);
  const session = await v.waitFor('session');
  await v.waitFor('ready');
  const [first] = await lab.node(lab.hb, FETCH(`http://127.0.0.1:${port}/hello`, 1));
  if (first?.['status'] !== 200) throw new Error(`first request failed: ${JSON.stringify(first)}`);
  return { firstMs: performance.now() - started, path: String(session['path']) };
}

async function throughput(lab: NetLab, ns: string, url: string): Promise<number> {
  const lines = await lab.node(ns, FETCH(url, REPS));
  const rates = lines.map((l) => {
    if (l['bytes'] !== MIB * 1024 * 1024) throw new Error(`short download from ${url}: ${JSON.stringify(l)}`);
    return (MIB * 1024 * 1024) / 1e6 / ((l['ms'] as number) / 1000);
  });
  return median(rates);
}

interface Row {
  what: string;
  rtt: number;
  value: string;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const ratios: string[] = [];
  console.log(`# Beam paths benchmark: ${cpus().length} CPUs, Node ${process.version}, ${MIB} MiB downloads, median of ${REPS}`);

  // Time to first response per NAT scenario, at the largest RTT.
  const rttMax = Math.max(...RTTS);
  const d = rttMax / 4;
  for (const [name, a, b] of ONLY === 'throughput'
    ? []
    : ([
        ['cone<->cone', { nat: 'cone', delayMs: d }, { nat: 'cone', delayMs: d }],
        ['symmetric<->symmetric', { nat: 'symmetric', delayMs: d }, { nat: 'symmetric', delayMs: d }],
        ['UDP blocked (agent side)', { nat: 'cone', delayMs: d, udpBlocked: true }, { nat: 'cone', delayMs: d }],
      ] as Array<[string, SideOptions, SideOptions]>)) {
    const { lab, link } = await world(a, b);
    try {
      const times: number[] = [];
      let pathTaken = '';
      for (let i = 0; i < REPS; i++) {
        const r = await visitor(lab, link, 8100 + i, []);
        times.push(r.firstMs);
        pathTaken = r.path;
      }
      rows.push({ what: `time to first response, ${name} (${pathTaken})`, rtt: rttMax, value: `${Math.round(median(times))} ms` });
    } finally {
      lab.destroy();
    }
  }

  // Throughput per path, per RTT.
  for (const rtt of ONLY === 'first' ? [] : RTTS) {
    const { lab, link } = await world({ nat: 'cone', delayMs: rtt / 4 }, { nat: 'cone', delayMs: rtt / 4 });
    try {
      const direct = await visitor(lab, link, 8200, ['--relay', 'never']);
      const directRate = await throughput(lab, lab.hb, 'http://127.0.0.1:8200/file');
      rows.push({ what: `download, Beam ${direct.path}`, rtt, value: `${directRate.toFixed(1)} MB/s` });
      await visitor(lab, link, 8201, ['--relay', 'always']);
      const relayRate = await throughput(lab, lab.hb, 'http://127.0.0.1:8201/file');
      rows.push({ what: 'download, Beam relay', rtt, value: `${relayRate.toFixed(1)} MB/s` });
      // The relayed baseline: the agent side's router forwards port 3000 to the origin; a TCP relay in the wan.
      lab.forwardPort(lab.ra, 3000, '198.19.1.2');
      await new Promise<void>((resolve, reject) => {
        lab.node(lab.wan, TCP_RELAY('198.18.0.11'), () => resolve()).catch(reject);
      });
      const tcpRate = await throughput(lab, lab.hb, `http://${WAN_SERVER}:9000/file`);
      rows.push({ what: 'download, plain TCP relay in the wan (baseline)', rtt, value: `${tcpRate.toFixed(1)} MB/s` });
      const lt = await startLocaltunnel(lab);
      const ltRate = lt ? await localtunnelThroughput(lab, lt) : undefined;
      rows.push({ what: 'download, localtunnel (baseline)', rtt, value: ltRate ? `${ltRate.toFixed(1)} MB/s` : 'missing (set LT_SERVER_DIR)' });
      const vsLt = ltRate
        ? `direct / localtunnel = ${(directRate / ltRate).toFixed(2)}x, Beam relay / localtunnel = ${(relayRate / ltRate).toFixed(2)}x, `
        : '';
      ratios.push(
        `RTT ${rtt} ms: ${vsLt}direct / TCP relay = ${(directRate / tcpRate).toFixed(2)}x, Beam relay / TCP relay = ${(relayRate / tcpRate).toFixed(2)}x`,
      );
    } finally {
      lab.destroy();
    }
  }

  // TURN: symmetric NATs, Beam's relay off.
  for (const rtt of ONLY === 'first' ? [] : RTTS) {
    const { lab, link } = await world({ nat: 'symmetric', delayMs: rtt / 4 }, { nat: 'symmetric', delayMs: rtt / 4 });
    try {
      const turn = await visitor(lab, link, 8300, ['--relay', 'never']);
      const turnRate = await throughput(lab, lab.hb, 'http://127.0.0.1:8300/file');
      rows.push({ what: `download, Beam ${turn.path} (symmetric NATs)`, rtt, value: `${turnRate.toFixed(1)} MB/s` });
    } finally {
      lab.destroy();
    }
  }

  console.log('\n| measurement | RTT | value |\n|---|---|---|');
  for (const r of rows) console.log(`| ${r.what} | ${r.rtt} ms | ${r.value} |`);
  console.log('');
  for (const r of ratios) console.log(r);
  console.log('Target (NAT traversal issue): direct / relayed baseline >= 1 at 50 ms RTT.');
}

await main();
process.exit(0);
