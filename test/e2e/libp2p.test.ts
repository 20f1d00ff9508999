/**
 * The libp2p backend (`--via libp2p`) in the NAT lab (test/helpers/netlab.ts),
 * with no Beam server anywhere: a stock js-libp2p circuit relay v2 node on
 * the wan (test/helpers/lab-scripts.ts, LIBP2P_RELAY), coturn there for STUN,
 * agents behind one NAT and `beam connect` visitors behind the other. One lab
 * across two cone NATs serves most tests (each with agents and visitors of
 * its own, on ports of its own), one across two symmetric NATs the rest.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FETCH, LIBP2P_RELAY, ORIGIN, UDP_ECHO, UDP_ROUND_TRIPS } from '../helpers/lab-scripts.js';
import { type NatKind, NetLab, WAN_SERVER, WAN_SERVER_2 } from '../helpers/netlab.js';
import { BeamProcess, type JsonEvent, ROOT } from '../helpers/procs.js';

const STUN = `stun:${WAN_SERVER}:3478`;
const DOCTOR = (relay: string): string[] => [
  'doctor',
  '--via',
  'libp2p',
  '--bootstrap',
  relay,
  '--stun',
  STUN,
  '--stun',
  `stun:${WAN_SERVER_2}:3478`,
  '--json',
];

interface Lab {
  lab: NetLab;
  relay: string;
  originHash: string;
}

/** Beam processes a test started: killed when it ends. */
const live: BeamProcess[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((p) => p.kill('SIGKILL')));
});

/** Both sides behind `nat`; the relay and coturn on the wan; the origin (4 MiB at /file) behind NAT A. */
async function makeLab(nat: NatKind): Promise<Lab> {
  const lab = NetLab.create({ nat }, { nat });
  lab.startTurn(ROOT, 'lab-secret-libp2p');
  const relay = await new Promise<string>((resolve, reject) => {
    lab.node(lab.wan, LIBP2P_RELAY(WAN_SERVER), (line) => resolve(line['relay'] as string)).catch(reject);
  });
  const originHash = await new Promise<string>((resolve, reject) => {
    lab.node(lab.ha, ORIGIN(4 * 1024 * 1024), (line) => resolve(line['hash'] as string)).catch(reject);
  });
  return { lab, relay, originHash };
}

function beam(ns: string, args: string[], env: NodeJS.ProcessEnv = {}): BeamProcess {
  const proc = new BeamProcess(args, env, { netns: ns });
  live.push(proc);
  return proc;
}

/** `beam <kind> 3000 --via libp2p` behind NAT A, with a key of its own; resolves with its ready event. */
async function agent(s: Lab, args: string[] = [], kind: 'http' | 'tcp' | 'udp' = 'http'): Promise<{ proc: BeamProcess; ready: JsonEvent }> {
  const proc = beam(s.lab.ha, [kind, '3000', '--via', 'libp2p', '--bootstrap', s.relay, '--stun', STUN, '--json', '--log-level', 'info', ...args], {
    BEAM_CONFIG_DIR: await mkdtemp(path.join(tmpdir(), 'beam-libp2p-')),
  });
  return { proc, ready: await proc.waitFor('ready') };
}

let nextPort = 8080;
/** `beam connect <link>` behind NAT B on a port of its own. */
function visit(s: Lab, link: string): { proc: BeamProcess; port: number } {
  const port = nextPort++;
  return { proc: beam(s.lab.hb, ['connect', link, '--stun', STUN, '--port', String(port), '--json', '--log-level', 'info']), port };
}

async function fetchIn(s: Lab, port: number): Promise<Record<string, unknown>> {
  const lines = await s.lab.node(s.lab.hb, FETCH(`http://127.0.0.1:${port}/file`));
  return lines[lines.length - 1] ?? {};
}

describe('the libp2p backend across two cone NATs, no Beam server', () => {
  let s: Lab;
  beforeAll(async () => {
    s = await makeLab('cone');
  });
  afterAll(() => s?.lab.destroy());

  it('the link names the relay and pins the agent; beam connect punches a direct path, byte-exact', async () => {
    const { proc, ready } = await agent(s);
    const link = ready['link'] as string;
    const relayId = s.relay.split('/p2p/')[1] as string;
    expect(ready['via']).toBe('libp2p');
    // beam+libp2p://<name>/<relay's multiaddr>/p2p-circuit/p2p/<agent>: the relay the agent holds a reservation on, and its own peer ID.
    expect(link).toMatch(new RegExp(`^beam\\+libp2p://${ready['name'] as string}/ip4/${WAN_SERVER}/tcp/4001/p2p/${relayId}/p2p-circuit/p2p/12D3Koo\\w+$`));
    const visitor = visit(s, link);
    expect(await visitor.proc.waitFor('ready')).toMatchObject({ via: 'libp2p', peer: link.split('/p2p/').at(-1) });
    expect((await visitor.proc.waitFor('session'))['path']).toBe('direct');
    // 4 MiB, past the 128 KiB a stock relay lets a relayed connection carry: these bytes took the direct path.
    const r = await fetchIn(s, visitor.port);
    expect(r['status']).toBe(200);
    expect(r['hash']).toBe(s.originHash);
    // The agent saw a beam connect visitor on the direct path.
    expect(await proc.waitFor((e) => e['event'] === 'session')).toMatchObject({ visitor: 'cli', path: 'direct', via: 'direct' });
    // A link whose agent holds no reservation, or that names a share the agent does not serve, finds nothing.
    const otherPeer = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN';
    const wrong = [link.replace(/p2p-circuit\/p2p\/\w+/, `p2p-circuit/p2p/${otherPeer}`), link.replace(`//${ready['name'] as string}/`, '//no-such-share-1/')];
    await Promise.all(
      wrong.map(async (text) => {
        const refused = visit(s, text);
        expect((await refused.proc.waitFor('error'))['code']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
        expect(await refused.proc.exited).not.toBe(0);
      }),
    );
  });

  it('a private share: the link with its secret gets in; without it or with another, BEAM_ERR_PRIVATE', async () => {
    const { ready } = await agent(s, ['--private']);
    const link = ready['link'] as string;
    expect(link).toMatch(/#secret=/);
    const visitor = visit(s, link);
    await Promise.all(
      [link.replace(/#.*$/, ''), link.replace(/#secret=.*$/, '#secret=not-the-secret')].map(async (wrong) => {
        const refused = visit(s, wrong);
        expect((await refused.proc.waitFor('error'))['code']).toBe('BEAM_ERR_PRIVATE');
        expect(await refused.proc.exited).not.toBe(0);
      }),
    );
    await visitor.proc.waitFor('ready');
    const r = await fetchIn(s, visitor.port);
    expect(r['status']).toBe(200);
    expect(r['hash']).toBe(s.originHash);
  });

  it('--max-visitors 1: the second beam connect is turned away with BEAM_ERR_MAX_VISITORS and exits 1; the first keeps its place', async () => {
    const { ready } = await agent(s, ['--max-visitors', '1']);
    const first = visit(s, ready['link'] as string);
    expect((await first.proc.waitFor('session'))['path']).toBe('direct');
    const second = visit(s, ready['link'] as string);
    expect((await second.proc.waitFor('error'))['code']).toBe('BEAM_ERR_MAX_VISITORS');
    expect(await second.proc.exited).toBe(1);
    const r = await fetchIn(s, first.port);
    expect(r['status']).toBe(200);
    expect(r['hash']).toBe(s.originHash);
  });

  it('a UDP share: the link says so (#kind=udp), and beam connect opens a local UDP port; 300 datagrams round-trip byte-exact over the direct path', async () => {
    await new Promise<void>((resolve, reject) => {
      // UDP's port 3000, beside the HTTP origin's TCP port 3000.
      s.lab.node(s.lab.ha, UDP_ECHO(3000), () => resolve()).catch(reject);
    });
    const { ready } = await agent(s, [], 'udp');
    expect(ready['link']).toMatch(/#kind=udp$/);
    const visitor = visit(s, ready['link'] as string);
    expect((await visitor.proc.waitFor('ready'))['url']).toBe(`udp://127.0.0.1:${visitor.port}`);
    expect((await visitor.proc.waitFor('session'))['path']).toBe('direct');
    const [r] = await s.lab.node(s.lab.hb, UDP_ROUND_TRIPS(visitor.port, 300));
    expect(r?.['got']).toBe(r?.['sent']);
  });

  it('a TCP share: the link says so (#kind=tcp), and beam connect opens a local TCP port to it, byte-exact', async () => {
    const { ready } = await agent(s, [], 'tcp');
    expect(ready['kind']).toBe('tcp');
    expect(ready['link']).toMatch(/#kind=tcp$/);
    const visitor = visit(s, ready['link'] as string);
    expect((await visitor.proc.waitFor('ready'))['url']).toBe(`tcp://127.0.0.1:${visitor.port}`);
    // The origin speaks HTTP; through a TCP share it is just bytes.
    expect((await fetchIn(s, visitor.port))['hash']).toBe(s.originHash);
  });

  it('an agent with no relay to reach fails at start with BEAM_ERR_SERVER_UNREACHABLE, saying to pass --bootstrap', async () => {
    // A bootstrap peer that is not there: nothing listens on that port of the wan.
    const proc = beam(
      s.lab.ha,
      ['http', '3000', '--via', 'libp2p', '--bootstrap', `/ip4/${WAN_SERVER}/tcp/4009/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN`, '--json'],
      { BEAM_CONFIG_DIR: await mkdtemp(path.join(tmpdir(), 'beam-libp2p-')) },
    );
    const error = await proc.waitFor('error');
    expect(error['code']).toBe('BEAM_ERR_SERVER_UNREACHABLE');
    expect(String(error['message'])).toMatch(/--bootstrap/);
    expect(await proc.exited).not.toBe(0);
  });

  it('beam doctor --via libp2p behind a cone NAT: the bootstrap peer answered, a relay gave a reservation, direct is likely', async () => {
    const doctor = beam(s.lab.ha, DOCTOR(s.relay));
    const report = await doctor.waitFor('doctor');
    expect(report).toMatchObject({
      via: 'libp2p',
      bootstrap: [{ address: s.relay, ok: true }],
      relay: { ok: true },
      nat: { mapping: 'endpoint-independent' },
      likely: 'direct',
    });
    expect((report['relay'] as { address: string }).address).toMatch(/\/p2p-circuit\/p2p\/12D3Koo/);
    expect(await doctor.exited).toBe(0);
  });

  it('beam.yml with via: libp2p: one node serves every share, each under its own name; beam connect reaches both, byte-exact', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-libp2p-'));
    const config = path.join(dir, 'beam.yml');
    await writeFile(config, `via: libp2p\nbootstrap: [${s.relay}]\nstun: [${STUN}]\ninspect: false\nshares:\n  web:\n    http: 3000\n  raw:\n    tcp: 3000\n`);
    const start = beam(s.lab.ha, ['start', '--config', config, '--json'], { BEAM_CONFIG_DIR: dir });
    const web = await start.waitFor((e) => e.event === 'ready' && e['share'] === 'web');
    const raw = await start.waitFor((e) => e.event === 'ready' && e['share'] === 'raw');
    const agentOf = (link: unknown): string => String(link).replace(/#.*$/, '').split('/p2p/').at(-1) as string;
    expect(agentOf(web['link'])).toBe(agentOf(raw['link']));
    expect(web['name']).not.toBe(raw['name']);
    expect(raw['link']).toMatch(/#kind=tcp$/);
    const httpVisitor = visit(s, web['link'] as string);
    await httpVisitor.proc.waitFor('ready');
    expect((await fetchIn(s, httpVisitor.port))['hash']).toBe(s.originHash);
    const tcpVisitor = visit(s, raw['link'] as string);
    expect((await tcpVisitor.proc.waitFor('ready'))['url']).toBe(`tcp://127.0.0.1:${tcpVisitor.port}`);
    expect((await fetchIn(s, tcpVisitor.port))['hash']).toBe(s.originHash);
  });

  it('the relay goes away: the agent takes a reservation on another bootstrap relay and says its new link; beam connect on it, byte-exact', async () => {
    const l = s.lab;
    const relayAt = (port: number): Promise<{ address: string; proc: ChildProcess }> =>
      new Promise((resolve, reject) => {
        const proc = l.spawn(l.wan, process.execPath, ['--input-type=module', '-e', LIBP2P_RELAY(WAN_SERVER, port)]);
        createInterface({ input: proc.stdout! }).once('line', (line) => resolve({ address: JSON.parse(line).relay as string, proc }));
        proc.once('exit', (code) => reject(new Error(`relay exited ${code}`)));
      });
    const [first, second] = await Promise.all([relayAt(4002), relayAt(4003)]);
    const proc = beam(
      l.ha,
      ['http', '3000', '--via', 'libp2p', '--bootstrap', first.address, '--bootstrap', second.address, '--stun', STUN, '--json', '--log-level', 'info'],
      { BEAM_CONFIG_DIR: await mkdtemp(path.join(tmpdir(), 'beam-libp2p-')) },
    );
    const ready = await proc.waitFor('ready');
    const held = [first, second].find((r) => String(ready['link']).includes(r.address.split('/p2p/')[1] as string));
    const other = held === first ? second : first;
    expect(held).toBeDefined();
    held?.proc.kill('SIGKILL');
    const moved = await proc.waitFor((e) => e['event'] === 'ready' && e['resumed'] === true, 0, 40_000);
    expect(moved['link']).toContain(`/p2p/${other.address.split('/p2p/')[1] as string}/p2p-circuit/`);
    const visitor = visit(s, moved['link'] as string);
    await visitor.proc.waitFor('ready');
    expect((await fetchIn(s, visitor.port))['hash']).toBe(s.originHash);
  }, 60_000);
});

describe('the libp2p backend across two symmetric NATs', () => {
  let s: Lab;
  beforeAll(async () => {
    s = await makeLab('symmetric');
  });
  afterAll(() => s?.lab.destroy());

  it('no hole to punch: beam connect says so with BEAM_ERR_HOLE_PUNCH_FAILED', async () => {
    const { ready } = await agent(s);
    const visitor = visit(s, ready['link'] as string);
    const error = await visitor.proc.waitFor('error', 0, 40_000);
    expect(error['code']).toBe('BEAM_ERR_HOLE_PUNCH_FAILED');
    expect(await visitor.proc.exited).not.toBe(0);
  }, 60_000);

  it('beam doctor --via libp2p behind a symmetric NAT: the relay answers, but the hole punch is only maybe', async () => {
    const doctor = beam(s.lab.hb, DOCTOR(s.relay));
    expect(await doctor.waitFor('doctor')).toMatchObject({ relay: { ok: true }, nat: { mapping: 'endpoint-dependent' }, likely: 'maybe' });
    expect(await doctor.exited).toBe(0);
  });
});
