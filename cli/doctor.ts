/**
 * `beam doctor`: what path a visitor is likely to get from this network.
 *
 * - the server: reachable over HTTP(S)?
 * - the relay: does its WebSocket endpoint answer? (A made-up ticket must be
 *   refused with BEAM_ERR_RELAY_REFUSED: that proves the relay is there.)
 * - UDP: does a STUN binding request to the server's STUN addresses come back?
 * - NAT mapping: from one local socket, do two STUN servers at different
 *   addresses see the same public address and port (endpoint-independent
 *   mapping: hole punching works) or not (endpoint-dependent: "symmetric")?
 */
import dgram from 'node:dgram';
import stun from '@msimerson/stun';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { LIBP2P_DEFAULT_STUN, RELAY_PATH } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { loadLibp2p } from '../transport/backend.js';

export type Mapping = 'none' | 'endpoint-independent' | 'endpoint-dependent' | 'unknown';
export type LikelyPath = 'direct' | 'direct-or-relay' | 'relay';

export interface DoctorReport {
  server: { url: string; ok: boolean; detail?: string };
  /** With no --server: what the embedded default gives. The LAN address teammates would open, and whether it answers. */
  lan?: { address: string | undefined; ok: boolean; detail?: string };
  /** With no --server: whether `<name>.localhost` resolves through the system (browsers and curl resolve it themselves; other tools ask the system). */
  localhost?: { ok: boolean; detail: string };
  /** With no --server: the Beam shares that answer on this network by mDNS (`beam --lan`), asked for DOCTOR_MDNS_MS. */
  mdns?: { shares: Array<{ name: string; server: string; kind: string; private: boolean }>; detail: string };
  relay: { ok: boolean; detail?: string };
  udp: { ok: boolean; servers: Array<{ url: string; mapped?: string; error?: string }> };
  nat: { mapping: Mapping; detail: string };
  likely: LikelyPath;
  advice: string;
}

/** What `GET /.beam/doctor` answers: public facts, no credentials. */
export interface DoctorInfo {
  stun: string[];
  turn: boolean;
  /** The UDP port of the server's own STUN, when it answers STUN itself. */
  stunPort?: number;
}

const STUN_TIMEOUT_MS = 500;
const STUN_RETRIES = 2;

async function probeRelay(server: string): Promise<{ ok: boolean; detail?: string }> {
  const url = new URL(RELAY_PATH, server);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '?session=doctor-probe&role=visitor&token=doctor-probe-token';
  return new Promise((resolve) => {
    const ws = new WebSocket(url.href, { handshakeTimeout: 5_000 });
    ws.on('unexpected-response', (_req, res) => {
      ws.terminate();
      const code = res.headers['beam-error'];
      resolve(code === 'BEAM_ERR_RELAY_REFUSED' ? { ok: true } : { ok: false, detail: `answered ${res.statusCode}${code ? ` ${String(code)}` : ''}` });
    });
    ws.on('open', () => {
      ws.terminate();
      resolve({ ok: false, detail: 'accepted a made-up ticket: not a Beam relay' });
    });
    ws.on('error', (err) => resolve({ ok: false, detail: err.message }));
  });
}

/** `stun:host:port` → `host:port` for the STUN client. */
function stunTarget(url: string): string {
  return url.replace(/^stun:/, '').replace(/^\[|\](?=:)/g, '');
}

export async function doctor(server: string): Promise<DoctorReport> {
  let info: DoctorInfo;
  try {
    const res = await fetch(new URL('/.beam/doctor', server), { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) throw new Error(`answered ${res.status}`);
    info = (await res.json()) as DoctorInfo;
  } catch (err) {
    throw new BeamError('BEAM_ERR_SERVER_UNREACHABLE', `${server}: ${(err as Error).message}`);
  }
  // The server's own STUN first, at the host this machine reaches it by: what a session here would be handed.
  if (info.stunPort !== undefined) info.stun = [`stun:${new URL(server).host.replace(/:\d+$/, '')}:${info.stunPort}`, ...info.stun];
  const relay = await probeRelay(server);
  const { udp, nat } = await probeStun(info.stun, { none: 'the server lists no STUN server', two: 'beam serve --stun A --stun B' });
  const udpOk = udp.ok;
  let likely: LikelyPath;
  let advice: string;
  if (!udpOk) {
    likely = 'relay';
    advice = relay.ok
      ? 'UDP does not get out: visitors will use the relay (end-to-end encrypted).'
      : 'Neither UDP nor the relay works: check the server URL and your firewall.';
  } else if (nat.mapping === 'endpoint-dependent') {
    likely = 'direct-or-relay';
    advice =
      'Your NAT maps each destination to a new port ("symmetric"): direct works when the other side has an easy NAT; otherwise TURN or the relay carries it.';
  } else {
    likely = 'direct';
    advice =
      nat.mapping === 'unknown'
        ? 'UDP works: direct is likely (the mapping could not be checked).'
        : 'UDP works and your NAT keeps one mapping per socket: direct paths are likely.';
  }
  return { server: { url: server, ok: true }, relay, udp, nat, likely, advice };
}

/**
 * UDP and the NAT's mapping: from one local socket, a STUN binding request
 * to each server at once; two servers at different addresses that see the
 * same public address and port mean one mapping per socket (hole punching
 * works).
 */
async function probeStun(urls: readonly string[], how: { none: string; two: string }): Promise<{ udp: DoctorReport['udp']; nat: DoctorReport['nat'] }> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, () => resolve()));
  let servers: DoctorReport['udp']['servers'];
  try {
    // All from the one socket, at once: the mapping is compared per socket.
    servers = await Promise.all(
      urls.map(async (url) => {
        try {
          const res = await stun.request(stunTarget(url), { socket, timeout: STUN_TIMEOUT_MS, retries: STUN_RETRIES });
          const mapped = res.getXorAddress() ?? res.getAddress();
          return { url, mapped: mapped ? `${mapped.address}:${mapped.port}` : undefined };
        } catch (err) {
          return { url, error: (err as Error).message };
        }
      }),
    );
  } finally {
    socket.close();
  }
  const answered = servers.filter((s) => s.mapped);
  const udpOk = answered.length > 0;
  let nat: DoctorReport['nat'];
  const distinctServers = new Set(answered.map((s) => stunTarget(s.url).replace(/:\d+$/, '')));
  if (!udpOk) nat = { mapping: 'unknown', detail: urls.length ? 'no STUN answer over UDP' : how.none };
  else if (distinctServers.size < 2) nat = { mapping: 'unknown', detail: `needs two STUN servers at different addresses (${how.two})` };
  else {
    const mapped = new Set(answered.map((s) => s.mapped));
    nat =
      mapped.size === 1
        ? { mapping: 'endpoint-independent', detail: `both STUN servers saw ${answered[0]!.mapped}` }
        : { mapping: 'endpoint-dependent', detail: `STUN servers saw ${[...mapped].join(' and ')}` };
  }
  return { udp: { ok: udpOk, servers }, nat };
}

export interface Libp2pDoctorReport {
  via: 'libp2p';
  /** What each bootstrap peer answered. */
  bootstrap: Array<{ address: string; ok: boolean; detail?: string }>;
  /** Whether a circuit relay among them gave a reservation, and the relayed address it gave. */
  relay: { ok: boolean; address?: string; detail?: string };
  udp: DoctorReport['udp'];
  nat: DoctorReport['nat'];
  /** direct: the hole punch is likely to work; maybe: only toward a visitor behind an easy NAT; none: it cannot. */
  likely: 'direct' | 'maybe' | 'none';
  advice: string;
}

/** `beam doctor --via libp2p`: joins the network as an agent would (a throwaway key), and checks UDP and the NAT with the hole punch's STUN servers. */
export async function doctorLibp2p(options: { bootstrap?: string[] | undefined; stun?: string[] | undefined; logger: Logger }): Promise<Libp2pDoctorReport> {
  const { Libp2pBackend } = await loadLibp2p();
  const backend = new Libp2pBackend(options);
  const [joined, stun] = await Promise.all([
    backend.probe().finally(() => backend.close()),
    probeStun(options.stun?.length ? options.stun : LIBP2P_DEFAULT_STUN, { none: 'no STUN server', two: 'beam doctor --via libp2p --stun A --stun B' }),
  ]);
  let likely: Libp2pDoctorReport['likely'];
  let advice: string;
  if (!joined.relay.ok) {
    likely = 'none';
    advice = `No circuit relay gave a reservation, so no visitor can reach a share here through libp2p: ${joined.relay.detail ?? ''}`;
  } else if (!stun.udp.ok) {
    likely = 'none';
    advice = 'UDP does not get out, and the hole punch needs it: share through a Beam server (its relay passes any firewall).';
  } else if (stun.nat.mapping === 'endpoint-dependent') {
    likely = 'maybe';
    advice =
      'Your NAT maps each destination to a new port ("symmetric"): the hole punch works only toward visitors behind an easy NAT; else BEAM_ERR_HOLE_PUNCH_FAILED.';
  } else {
    likely = 'direct';
    advice = `A relay holds a reservation (${joined.relay.address ?? ''}) and UDP gets out: visitors behind an easy NAT get a direct path.`;
  }
  return { via: 'libp2p', bootstrap: joined.bootstrap, relay: joined.relay, udp: stun.udp, nat: stun.nat, likely, advice };
}

export function describeLibp2pReport(r: Libp2pDoctorReport): string {
  const mark = (ok: boolean): string => (ok ? 'ok  ' : 'FAIL');
  return [
    ...r.bootstrap.map((b) => `${mark(b.ok)} peer     ${b.address}${b.ok ? '' : ` (${b.detail ?? ''})`}`),
    `${mark(r.relay.ok)} relay    ${r.relay.ok ? `reservation: ${r.relay.address ?? ''}` : (r.relay.detail ?? '')}`,
    `${mark(r.udp.ok)} UDP      ${r.udp.servers.map((s) => `${s.url} ${s.mapped ? `-> ${s.mapped}` : `(${s.error})`}`).join('; ')}`,
    `     NAT      ${r.nat.mapping}: ${r.nat.detail}`,
    `     likely   ${r.likely}. ${r.advice}`,
  ].join('\n');
}

/**
 * `beam doctor` with no server: checks what the embedded default
 * (`npx beam 3000`) would give, on a server of its own started here for the
 * check (on a free port): its relay and STUN as any server's, whether the
 * LAN address answers, and whether `*.localhost` links resolve on this
 * system.
 */
export async function doctorEmbedded(
  start: () => Promise<{ url: string; port: number; close(): Promise<void> }>,
  lan: string | undefined,
): Promise<DoctorReport> {
  const server = await start();
  try {
    const report = await doctor(server.url);
    report.server = { url: 'the embedded default (a server in this process)', ok: true };
    // Teammates on the LAN reach this machine with no NAT between: a mapping measured on loopback would say nothing.
    report.nat = { mapping: 'unknown', detail: 'on your LAN no NAT is in the way; across the internet, share through a beam serve both sides can reach' };
    report.lan =
      lan === undefined
        ? { address: undefined, ok: false, detail: 'no network address but loopback: teammates cannot reach this machine' }
        : await reach(lan, server.port);
    report.localhost = await resolvesLocalhost();
    report.mdns = await lanShares();
    const notes: string[] = [];
    if (!report.lan.ok)
      notes.push(
        `Teammates on your network can't reach ${lan ?? 'this machine'}${report.lan.detail ? ` (${report.lan.detail})` : ''}: check the firewall for TCP and UDP ${server.port}, or run a server they can reach (beam serve) and share with --server.`,
      );
    if (!report.localhost.ok)
      notes.push(`${report.localhost.detail}: browsers open the link anyway; for curl use the LAN link, or send the share's Host to 127.0.0.1.`);
    report.advice = [report.advice, ...notes].join(' ');
    return report;
  } finally {
    await server.close();
  }
}

/** How long `beam doctor` listens for shares announced on the LAN. */
const DOCTOR_MDNS_MS = 1_500;

async function lanShares(): Promise<NonNullable<DoctorReport['mdns']>> {
  const { browseShares } = await import('../transport/lan.js');
  let found: Awaited<ReturnType<typeof browseShares>>;
  try {
    found = await browseShares(DOCTOR_MDNS_MS);
  } catch (err) {
    return { shares: [], detail: `could not ask (${(err as Error).message})` };
  }
  const shares = found.map((s) => ({ name: s.name, server: s.server, kind: s.kind, private: s.private }));
  return {
    shares,
    detail:
      shares.length === 0
        ? `no Beam share answered within ${DOCTOR_MDNS_MS} ms (none runs with --lan here, or the network drops multicast)`
        : shares.map((s) => `${s.name} (${s.kind}${s.private ? ', private' : ''}) at ${s.server}`).join('; '),
  };
}

async function reach(address: string, port: number): Promise<{ address: string; ok: boolean; detail?: string }> {
  try {
    const res = await fetch(`http://${address}:${port}/.beam/healthz`, { signal: AbortSignal.timeout(3_000) });
    return res.ok ? { address, ok: true } : { address, ok: false, detail: `answered ${res.status}` };
  } catch (err) {
    return { address, ok: false, detail: (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message };
  }
}

async function resolvesLocalhost(): Promise<{ ok: boolean; detail: string }> {
  const { lookup } = await import('node:dns/promises');
  const name = 'beam-doctor-check.localhost';
  try {
    const found = await lookup(name);
    return found.address === '127.0.0.1' || found.address === '::1'
      ? { ok: true, detail: `${name} resolves to ${found.address}` }
      : { ok: false, detail: `${name} resolves to ${found.address}, not this machine` };
  } catch (err) {
    return { ok: false, detail: `${name} does not resolve on this system (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
}

export function describeReport(r: DoctorReport): string {
  const mark = (ok: boolean): string => (ok ? 'ok  ' : 'FAIL');
  return [
    `${mark(r.server.ok)} server   ${r.server.url}`,
    ...(r.lan ? [`${mark(r.lan.ok)} LAN      ${r.lan.address ?? 'none'}${r.lan.ok ? ' answers' : r.lan.detail ? ` (${r.lan.detail})` : ''}`] : []),
    ...(r.localhost ? [`${r.localhost.ok ? 'ok  ' : 'warn'} links    ${r.localhost.detail}`] : []),
    ...(r.mdns ? [`     mDNS     ${r.mdns.detail}`] : []),
    `${mark(r.relay.ok)} relay    ${r.relay.ok ? 'reachable over WebSocket' : (r.relay.detail ?? '')}`,
    `${mark(r.udp.ok)} UDP      ${r.udp.servers.map((s) => `${s.url} ${s.mapped ? `-> ${s.mapped}` : `(${s.error})`}`).join('; ') || 'no STUN server listed'}`,
    `     NAT      ${r.nat.mapping}: ${r.nat.detail}`,
    `     likely   ${r.likely}. ${r.advice}`,
  ].join('\n');
}
