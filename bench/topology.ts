/**
 * Where peer to peer wins: the topology benchmark. In the NAT lab the two
 * peers are near each other (each router's link to the bridge adds --near
 * ms each way, so NAT to NAT is 2 x near) and the server is far away (its own
 * delay link adds --far ms each way). In one run, a `beam connect` visitor
 * (in hb) reaches an agent (in ha) and the same origin is measured:
 *
 *   - Beam direct    (`beam connect --relay never`: hole-punched WebRTC)
 *   - Beam relay     (`beam connect --relay always`: through the far server)
 *   - Beam gateway   (plain HTTP to the far server's gateway, as curl would, its link on the relay;
 *                     and on a second server whose gateway's link is direct WebRTC, --gateway-relay never)
 *   - localtunnel    (its server where Beam's is), when
 *                    LT_SERVER_DIR names a checkout (bench/lab.ts)
 *
 * For each: the p50 of sequential requests on one keep-alive connection
 * (a small pause between them) and the time of a 1 MiB download, medians
 * over --reps. Prints the table and the ratio the issue sets: Beam direct's
 * sequential p50 / localtunnel's (target <= 0.25).
 *
 *   npm run build && node dist/bench/topology.js [--near 1.25] [--far 40] [--requests 40] [--reps 5]
 *
 * Needs root (network namespaces), iptables, python3 and ethtool (the delay links).
 */
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { NetLab, WAN_SERVER } from '../test/helpers/netlab.js';
import { numberArg } from '../test/helpers/services.js';
import { beam, LT_PORT, median, ORIGIN, startLocaltunnel } from './lab.js';
import { atMost, reportTargets } from './targets.js';

const NEAR = numberArg('--near', 1.25);
const FAR = numberArg('--far', 40);
const REQUESTS = numberArg('--requests', 40);
const REPS = numberArg('--reps', 5);
const FILE_BYTES = 1024 * 1024;
const SERVER = `http://${WAN_SERVER}:7070`;

/**
 * Run inside a namespace: `requests` sequential GETs of /hello on one
 * keep-alive connection (2 ms apart, after 5 to warm up), then `reps`
 * downloads of /file on it. Prints {seq: [ms...], file: [ms...]}.
 */
const MEASURE = (host: string, port: number, hostHeader: string): string => `
import http from 'node:http';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = (path) => new Promise((resolve, reject) => {
  const t = performance.now();
  http.get({ host: ${JSON.stringify(host)}, port: ${port}, path, agent, headers: { host: ${JSON.stringify(hostHeader)} } }, (res) => {
    let bytes = 0;
    res.on('data', (c) => (bytes += c.length));
    res.on('end', () => resolve({ status: res.statusCode, bytes, ms: performance.now() - t }));
    res.on('error', reject);
  }).on('error', reject);
});
const pause = () => new Promise((r) => setTimeout(r, 2));
for (let i = 0; i < 5; i++) await get('/hello');
const seq = [];
for (let i = 0; i < ${REQUESTS}; i++) {
  const r = await get('/hello');
  if (r.status !== 200) throw new Error('status ' + r.status);
  seq.push(r.ms);
  await pause();
}
const file = [];
for (let i = 0; i < ${REPS}; i++) {
  const r = await get('/file');
  if (r.status !== 200 || r.bytes !== ${FILE_BYTES}) throw new Error('short download: ' + JSON.stringify(r));
  file.push(r.ms);
}
console.log(JSON.stringify({ seq, file }));
agent.destroy();
`;

interface Result {
  p50: number;
  file: number;
}

async function measure(lab: NetLab, host: string, port: number, hostHeader: string): Promise<Result> {
  const [line] = await lab.node(lab.hb, MEASURE(host, port, hostHeader));
  const seq = line?.['seq'] as number[];
  const file = line?.['file'] as number[];
  return { p50: median(seq), file: median(file) };
}

/** `beam connect` in hb on `port`; resolves once its first session is on a path. */
async function connectVisitor(lab: NetLab, link: string, port: number, relay: string): Promise<string> {
  const v = beam(lab, lab.hb, ['connect', link, '--server', SERVER, '--port', String(port), '--relay', relay, '--json']);
  await v.waitFor('ready');
  const session = await v.waitFor('session');
  return String(session['path']);
}

async function main(): Promise<void> {
  console.log(
    `# Topology benchmark: ${cpus().length} CPUs, Node ${process.version}; peers ${2 * NEAR} ms apart each way, the server ${NEAR + FAR} ms from each each way; ` +
      `${REQUESTS} sequential requests (p50), 1 MiB download (median of ${REPS})\n`,
  );
  const lab = NetLab.create({ nat: 'cone', delayMs: NEAR }, { nat: 'cone', delayMs: NEAR }, { delayMs: FAR });
  const rows: Array<[string, Result | undefined, string?]> = [];
  try {
    const server = beam(lab, lab.serverNs, ['serve', '--host', WAN_SERVER, '--port', '7070', '--json', '--log-level', 'warn']);
    await server.waitFor('ready');
    await new Promise<void>((resolve, reject) => {
      lab.node(lab.ha, ORIGIN(FILE_BYTES), () => resolve()).catch(reject);
    });
    const config = await mkdtemp(path.join(tmpdir(), 'beam-topology-'));
    const agent = beam(lab, lab.ha, ['http', '3000', '--server', SERVER, '--json'], { BEAM_CONFIG_DIR: config });
    const ready = await agent.waitFor('ready');
    const link = ready['link'] as string;
    const name = ready['name'] as string;

    const directPath = await connectVisitor(lab, link, 8400, 'never');
    rows.push([`Beam ${directPath} (beam connect --relay never)`, await measure(lab, '127.0.0.1', 8400, '127.0.0.1:8400')]);
    const relayPath = await connectVisitor(lab, link, 8401, 'always');
    rows.push([`Beam ${relayPath} (beam connect --relay always, through the far server)`, await measure(lab, '127.0.0.1', 8401, '127.0.0.1:8401')]);
    rows.push(['Beam gateway (HTTP to the far server)', await measure(lab, WAN_SERVER, 7070, `${name}.localhost:7070`)]);
    const lt = await startLocaltunnel(lab);
    rows.push(['localtunnel (its server at the far server)', lt ? await measure(lab, WAN_SERVER, LT_PORT, lt) : undefined, 'set LT_SERVER_DIR']);
    // The same far server with its gateway's link on direct WebRTC alone (the default carries it on the relay, direct standing by).
    const relayServer = beam(lab, lab.serverNs, ['serve', '--host', WAN_SERVER, '--port', '7071', '--gateway-relay', 'never', '--json', '--log-level', 'warn']);
    await relayServer.waitFor('ready');
    const config2 = await mkdtemp(path.join(tmpdir(), 'beam-topology-'));
    const agent2 = beam(lab, lab.ha, ['http', '3000', '--server', `http://${WAN_SERVER}:7071`, '--json'], { BEAM_CONFIG_DIR: config2 });
    const name2 = (await agent2.waitFor('ready'))['name'] as string;
    rows.push([
      'Beam gateway, `beam serve --gateway-relay never`: its link on direct WebRTC (HTTP to the far server)',
      await measure(lab, WAN_SERVER, 7071, `${name2}.localhost:7071`),
    ]);
  } finally {
    lab.destroy();
  }
  console.log('| path | sequential p50 | 1 MiB download |');
  console.log('|---|---|---|');
  for (const [what, r, missing] of rows)
    console.log(r ? `| ${what} | ${r.p50.toFixed(1)} ms | ${r.file.toFixed(0)} ms |` : `| ${what} | missing (${missing}) | missing |`);
  const direct = rows[0]?.[1];
  const relay = rows[1]?.[1];
  const lt = rows[3]?.[1];
  console.log('');
  if (direct && relay)
    console.log(`Beam direct / Beam relay: sequential p50 ${(direct.p50 / relay.p50).toFixed(2)}x, 1 MiB ${(direct.file / relay.file).toFixed(2)}x`);
  if (direct && lt)
    console.log(
      `Beam direct / localtunnel: sequential p50 ${(direct.p50 / lt.p50).toFixed(2)}x (target <= 0.25), 1 MiB ${(direct.file / lt.file).toFixed(2)}x`,
    );
  else console.log('Beam direct / localtunnel: missing (set LT_SERVER_DIR)');
  reportTargets([atMost('topology: Beam direct sequential p50 / localtunnel', direct && lt ? direct.p50 / lt.p50 : Number.NaN, 0.25, 'ratio')]);
}

await main();
process.exit(0);
