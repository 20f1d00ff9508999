/**
 * The libp2p backend (`--via libp2p`) in the NAT lab (test/helpers/netlab.ts),
 * with no Beam server anywhere: a stock js-libp2p circuit relay v2 node on
 * the wan (test/helpers/lab-scripts.ts, LIBP2P_RELAY), coturn there for STUN,
 * the agent behind one NAT and the `beam connect` visitor behind another.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { FETCH, LIBP2P_RELAY, ORIGIN } from '../helpers/lab-scripts.js';
import { NetLab, type SideOptions, WAN_SERVER, WAN_SERVER_2 } from '../helpers/netlab.js';
import { BeamProcess, type JsonEvent, ROOT } from '../helpers/procs.js';

const STUN = `stun:${WAN_SERVER}:3478`;

let lab: NetLab | undefined;
afterEach(() => {
  lab?.destroy();
  lab = undefined;
});

interface Lab {
  lab: NetLab;
  relay: string;
  agent: BeamProcess;
  ready: JsonEvent;
  originHash: string;
}

/** The relay and coturn on the wan, the origin and `beam --via libp2p` behind NAT A. */
async function start(a: SideOptions, b: SideOptions, agentArgs: string[] = [], size = 4 * 1024 * 1024, kind: 'http' | 'tcp' = 'http'): Promise<Lab> {
  lab = NetLab.create(a, b);
  const l = lab;
  l.startTurn(ROOT, 'lab-secret-libp2p');
  const relay = await new Promise<string>((resolve, reject) => {
    l.node(l.wan, LIBP2P_RELAY(WAN_SERVER), (line) => resolve(line['relay'] as string)).catch(reject);
  });
  const originHash = await new Promise<string>((resolve, reject) => {
    l.node(l.ha, ORIGIN(size), (line) => resolve(line['hash'] as string)).catch(reject);
  });
  const config = await mkdtemp(path.join(tmpdir(), 'beam-libp2p-'));
  const agent = new BeamProcess(
    [kind, '3000', '--via', 'libp2p', '--bootstrap', relay, '--stun', STUN, '--json', '--log-level', 'info', ...agentArgs],
    { BEAM_CONFIG_DIR: config },
    { netns: l.ha },
  );
  own(l, agent);
  const ready = await agent.waitFor('ready');
  return { lab: l, relay, agent, ready, originHash };
}

/** Kills `proc` with the lab (it is a child of this process, not of the lab's `ip`). */
function own(l: NetLab, proc: BeamProcess): void {
  const destroy = l.destroy.bind(l);
  l.destroy = () => {
    void proc.kill('SIGKILL');
    destroy();
  };
}

function visit(s: Lab, link: string, extra: string[] = []): BeamProcess {
  const visitor = new BeamProcess(['connect', link, '--stun', STUN, '--port', '8080', '--json', '--log-level', 'info', ...extra], {}, { netns: s.lab.hb });
  own(s.lab, visitor);
  return visitor;
}

async function fetchIn(s: Lab, target: string): Promise<Record<string, unknown>> {
  const lines = await s.lab.node(s.lab.hb, FETCH(`http://127.0.0.1:8080${target}`));
  return lines[lines.length - 1] ?? {};
}

describe('the libp2p backend, no Beam server', () => {
  it('cone <-> cone: the link names the relay and pins the agent; beam connect punches a direct path, byte-exact', async () => {
    const s = await start({ nat: 'cone' }, { nat: 'cone' });
    const link = s.ready['link'] as string;
    const relayId = s.relay.split('/p2p/')[1] as string;
    expect(s.ready['via']).toBe('libp2p');
    // beam+libp2p://<name>/<relay's multiaddr>/p2p-circuit/p2p/<agent>: the relay the agent holds a reservation on, and its own peer ID.
    expect(link).toMatch(new RegExp(`^beam\\+libp2p://${s.ready['name'] as string}/ip4/${WAN_SERVER}/tcp/4001/p2p/${relayId}/p2p-circuit/p2p/12D3Koo\\w+$`));
    const visitor = visit(s, link);
    const ready = await visitor.waitFor('ready');
    expect(ready).toMatchObject({ via: 'libp2p', peer: link.split('/p2p/').at(-1) });
    expect((await visitor.waitFor('session'))['path']).toBe('direct');
    // 4 MiB, past the 128 KiB a stock relay lets a relayed connection carry: these bytes took the direct path.
    const r = await fetchIn(s, '/file');
    expect(r['status']).toBe(200);
    expect(r['hash']).toBe(s.originHash);
    // The agent saw a beam connect visitor on the direct path.
    expect(await s.agent.waitFor((e) => e['event'] === 'session')).toMatchObject({ visitor: 'cli', path: 'direct', via: 'direct' });
  });

  it('symmetric <-> symmetric: no hole to punch, and beam connect says so with BEAM_ERR_HOLE_PUNCH_FAILED', async () => {
    const s = await start({ nat: 'symmetric' }, { nat: 'symmetric' });
    const visitor = visit(s, s.ready['link'] as string);
    const error = await visitor.waitFor('error', 0, 40_000);
    expect(error['code']).toBe('BEAM_ERR_HOLE_PUNCH_FAILED');
    expect(await visitor.exited).not.toBe(0);
  }, 60_000);

  it('a private share: the link with its secret gets in; without it or with another, BEAM_ERR_PRIVATE', async () => {
    const s = await start({ nat: 'cone' }, { nat: 'cone' }, ['--private'], 64 * 1024);
    const link = s.ready['link'] as string;
    expect(link).toMatch(/#secret=/);
    for (const wrong of [link.replace(/#.*$/, ''), link.replace(/#secret=.*$/, '#secret=not-the-secret')]) {
      const refused = visit(s, wrong);
      expect((await refused.waitFor('error'))['code']).toBe('BEAM_ERR_PRIVATE');
      expect(await refused.exited).not.toBe(0);
    }
    const visitor = visit(s, link);
    await visitor.waitFor('ready');
    const r = await fetchIn(s, '/file');
    expect(r['status']).toBe(200);
    expect(r['hash']).toBe(s.originHash);
  });

  it('a TCP share: the link says so (#kind=tcp), and beam connect opens a local TCP port to it, byte-exact', async () => {
    const s = await start({ nat: 'cone' }, { nat: 'cone' }, [], 1024 * 1024, 'tcp');
    expect(s.ready['kind']).toBe('tcp');
    expect(s.ready['link']).toMatch(/#kind=tcp$/);
    const visitor = visit(s, s.ready['link'] as string);
    expect((await visitor.waitFor('ready'))['url']).toBe('tcp://127.0.0.1:8080');
    // The origin speaks HTTP; through a TCP share it is just bytes.
    const r = await fetchIn(s, '/file');
    expect(r['hash']).toBe(s.originHash);
  });

  it('a link whose agent holds no reservation, or that names a share the agent does not serve: BEAM_ERR_SHARE_NOT_FOUND', async () => {
    const s = await start({ nat: 'cone' }, { nat: 'cone' }, [], 1024);
    const link = s.ready['link'] as string;
    const name = s.ready['name'] as string;
    const otherPeer = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN';
    for (const wrong of [link.replace(/p2p-circuit\/p2p\/\w+/, `p2p-circuit/p2p/${otherPeer}`), link.replace(`//${name}/`, '//no-such-share-1/')]) {
      const visitor = visit(s, wrong);
      expect((await visitor.waitFor('error'))['code']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
      expect(await visitor.exited).not.toBe(0);
    }
  });

  it('an agent with no relay to reach fails at start with BEAM_ERR_SERVER_UNREACHABLE, saying to pass --bootstrap', async () => {
    lab = NetLab.create({ nat: 'cone' }, { nat: 'cone' });
    const config = await mkdtemp(path.join(tmpdir(), 'beam-libp2p-'));
    // A bootstrap peer that is not there: nothing listens on the wan.
    const agent = new BeamProcess(
      ['http', '3000', '--via', 'libp2p', '--bootstrap', `/ip4/${WAN_SERVER}/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN`, '--json'],
      { BEAM_CONFIG_DIR: config },
      { netns: lab.ha },
    );
    own(lab, agent);
    const error = await agent.waitFor('error');
    expect(error['code']).toBe('BEAM_ERR_SERVER_UNREACHABLE');
    expect(String(error['message'])).toMatch(/--bootstrap/);
    expect(await agent.exited).not.toBe(0);
  });

  it('beam doctor --via libp2p: the bootstrap peer answered, a relay gave a reservation; behind a cone NAT direct is likely, behind a symmetric one only maybe', async () => {
    const s = await start({ nat: 'cone' }, { nat: 'symmetric' }, [], 1024);
    const args = ['doctor', '--via', 'libp2p', '--bootstrap', s.relay, '--stun', STUN, '--stun', `stun:${WAN_SERVER_2}:3478`, '--json'];
    const cone = new BeamProcess(args, {}, { netns: s.lab.ha });
    own(s.lab, cone);
    const symmetric = new BeamProcess(args, {}, { netns: s.lab.hb });
    own(s.lab, symmetric);
    const [a, b] = await Promise.all([cone.waitFor('doctor'), symmetric.waitFor('doctor')]);
    expect(a).toMatchObject({
      via: 'libp2p',
      bootstrap: [{ address: s.relay, ok: true }],
      relay: { ok: true },
      nat: { mapping: 'endpoint-independent' },
      likely: 'direct',
    });
    expect((a['relay'] as { address: string }).address).toMatch(/\/p2p-circuit\/p2p\/12D3Koo/);
    expect(b).toMatchObject({ relay: { ok: true }, nat: { mapping: 'endpoint-dependent' }, likely: 'maybe' });
    expect(await cone.exited).toBe(0);
  });

  it('beam.yml with via: libp2p: one node serves every share, each under its own name; beam connect reaches both, byte-exact', async () => {
    const s = await start({ nat: 'cone' }, { nat: 'cone' }, [], 1024 * 1024);
    // The agent of start() holds the origin's port too; beam start is a second agent, with a key of its own.
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-libp2p-'));
    const config = path.join(dir, 'beam.yml');
    await writeFile(config, `via: libp2p\nbootstrap: [${s.relay}]\nstun: [${STUN}]\ninspect: false\nshares:\n  web:\n    http: 3000\n  raw:\n    tcp: 3000\n`);
    const startProc = new BeamProcess(['start', '--config', config, '--json'], { BEAM_CONFIG_DIR: dir }, { netns: s.lab.ha });
    own(s.lab, startProc);
    const web = await startProc.waitFor((e) => e.event === 'ready' && e['share'] === 'web');
    const raw = await startProc.waitFor((e) => e.event === 'ready' && e['share'] === 'raw');
    const agentOf = (link: unknown): string => String(link).replace(/#.*$/, '').split('/p2p/').at(-1) as string;
    expect(agentOf(web['link'])).toBe(agentOf(raw['link']));
    expect(web['name']).not.toBe(raw['name']);
    expect(raw['link']).toMatch(/#kind=tcp$/);
    const httpVisitor = visit(s, web['link'] as string);
    await httpVisitor.waitFor('ready');
    expect((await fetchIn(s, '/file'))['hash']).toBe(s.originHash);
    const tcpVisitor = new BeamProcess(['connect', raw['link'] as string, '--stun', STUN, '--port', '8081', '--json'], {}, { netns: s.lab.hb });
    own(s.lab, tcpVisitor);
    expect((await tcpVisitor.waitFor('ready'))['url']).toBe('tcp://127.0.0.1:8081');
    const lines = await s.lab.node(s.lab.hb, FETCH('http://127.0.0.1:8081/file'));
    expect(lines.at(-1)?.['hash']).toBe(s.originHash);
  });

  it('the relay goes away: the agent takes a reservation on another bootstrap relay and says its new link; beam connect on it, byte-exact', async () => {
    lab = NetLab.create({ nat: 'cone' }, { nat: 'cone' });
    const l = lab;
    l.startTurn(ROOT, 'lab-secret-libp2p');
    const relayAt = (port: number): Promise<{ address: string; proc: ChildProcess }> =>
      new Promise((resolve, reject) => {
        const proc = l.spawn(l.wan, process.execPath, ['--input-type=module', '-e', LIBP2P_RELAY(WAN_SERVER, port)]);
        createInterface({ input: proc.stdout! }).once('line', (line) => resolve({ address: JSON.parse(line).relay as string, proc }));
        proc.once('exit', (code) => reject(new Error(`relay exited ${code}`)));
      });
    const [first, second] = await Promise.all([relayAt(4001), relayAt(4002)]);
    const originHash = await new Promise<string>((resolve, reject) => {
      l.node(l.ha, ORIGIN(256 * 1024), (line) => resolve(line['hash'] as string)).catch(reject);
    });
    const agent = new BeamProcess(
      ['http', '3000', '--via', 'libp2p', '--bootstrap', first.address, '--bootstrap', second.address, '--stun', STUN, '--json', '--log-level', 'info'],
      { BEAM_CONFIG_DIR: await mkdtemp(path.join(tmpdir(), 'beam-libp2p-')) },
      { netns: l.ha },
    );
    own(l, agent);
    const ready = await agent.waitFor('ready');
    const held = [first, second].find((r) => String(ready['link']).includes(r.address.split('/p2p/')[1] as string));
    const other = held === first ? second : first;
    expect(held).toBeDefined();
    held?.proc.kill('SIGKILL');
    const moved = await agent.waitFor((e) => e['event'] === 'ready' && e['resumed'] === true, 0, 40_000);
    expect(moved['link']).toContain(`/p2p/${other.address.split('/p2p/')[1] as string}/p2p-circuit/`);
    const s: Lab = { lab: l, relay: other.address, agent, ready: moved, originHash };
    const visitor = visit(s, moved['link'] as string);
    await visitor.waitFor('ready');
    expect((await fetchIn(s, '/file'))['hash']).toBe(originHash);
  }, 60_000);
});
