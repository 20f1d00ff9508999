/**
 * A share on one LAN with no Beam server anywhere (issue 22, LAN discovery):
 * two hosts on one bridge (test/helpers/netlab.ts, LanLab), multicast flooded
 * between them. `beam 3000 --lan` on host a runs the embedded server and
 * announces the share by mDNS; `beam connect` on host b finds it by name, or
 * by the `*.localhost` link that names a's machine, and connects peer to peer.
 */

import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LAN_FIND_TIMEOUT_MS, LOCAL_CA_PATH } from '../../shared/constants.js';
import { FETCH, FETCH_LOCAL_NAME, ORIGIN } from '../helpers/lab-scripts.js';
import { LanLab } from '../helpers/netlab.js';
import { BeamProcess, type JsonEvent, onPath, ROOT } from '../helpers/procs.js';

let lab: LanLab | undefined;
const procs: BeamProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await p.kill('SIGKILL');
  lab?.destroy();
  lab = undefined;
});

/** A Beam process on a host of the lab. Each gets a config directory of its own: its own agent key, as on a machine of its own. */
function beam(ns: string, args: string[], env: NodeJS.ProcessEnv = {}): BeamProcess {
  const config = mkdtempSync(path.join(tmpdir(), 'beam-lan-config-'));
  const p = new BeamProcess([...args, '--json', '--log-level', 'info'], { BEAM_CONFIG_DIR: config, ...env }, { netns: ns });
  procs.push(p);
  return p;
}

/** `beam doctor --json` on a host of the lab (no server: the embedded default's checks). */
function doctorOn(ns: string): BeamProcess {
  const p = new BeamProcess(['doctor', '--json'], {}, { netns: ns });
  procs.push(p);
  return p;
}

/** The origin on host a, and `beam 3000 --lan` sharing it; resolves with the origin's sha256 and the agent's ready event. */
async function shareOnA(l: LanLab, extra: string[] = []): Promise<{ hash: string; agent: BeamProcess; ready: JsonEvent }> {
  const hash = await new Promise<string>((resolve, reject) => {
    l.node(l.a, ORIGIN(3 * 1024 * 1024), (line) => resolve(line['hash'] as string)).catch(reject);
  });
  const agent = beam(l.a, ['http', '3000', '--lan', ...extra]);
  const ready = await agent.waitFor('ready');
  return { hash, agent, ready };
}

/** GETs /file through `beam connect`'s local port on host b. */
async function fetchOnB(l: LanLab, port: number): Promise<Record<string, unknown>> {
  const lines = await l.node(l.b, FETCH(`http://127.0.0.1:${port}/file`));
  return lines[lines.length - 1] ?? {};
}

describe('a share on the LAN, no server anywhere (--lan, mDNS)', () => {
  it('beam connect <name> on another host finds the share by mDNS and goes peer to peer; the bytes are exact', async () => {
    lab = LanLab.create();
    const { hash, agent, ready } = await shareOnA(lab);
    const name = ready['name'] as string;
    expect(ready['announced']).toBe(`${name}._beam._tcp.local`);
    const visitor = beam(lab.b, ['connect', name, '--port', '8081']);
    const connected = await visitor.waitFor('ready');
    expect(connected['found']).toBe('lan');
    expect(connected['server']).toBe(`http://${LanLab.A}:${(ready['server'] as string).split(':').pop()}`);
    // Found by name, the agent's key is the one the LAN named: beam connect says which, for its user to compare.
    expect(connected['peer']).toBe(new URL(ready['link'] as string).hash.match(/peer=([^&]+)/)?.[1]);
    await visitor.waitFor(onPath('direct'));
    const r = await fetchOnB(lab, 8081);
    expect(r['status']).toBe(200);
    expect(r['hash']).toBe(hash);
    expect((await agent.waitFor(onPath('direct', 'cli')))['visitor']).toBe('cli');
    // A browser on host b opens http://<name>.local:<port>/ with no address: mDNS resolves the name to host a.
    const port = Number((ready['server'] as string).split(':').pop());
    expect(ready['lanUrl']).toBe(`http://${name}.local:${port}/`);
    const byName = await lab.node(lab.b, FETCH_LOCAL_NAME(`${name}.local`, port, ROOT));
    expect(byName).toEqual([{ address: LanLab.A }, { status: 200, hash }]);
  });

  it("the link beam printed (<name>.localhost, the sharer's machine) works on another host of the LAN, pinned to the agent's peer ID", async () => {
    lab = LanLab.create();
    const { hash, ready } = await shareOnA(lab);
    const visitor = beam(lab.b, ['connect', ready['link'] as string, '--port', '8082']);
    const connected = await visitor.waitFor('ready');
    expect(connected['found']).toBe('lan');
    await visitor.waitFor(onPath('direct'));
    const r = await fetchOnB(lab, 8082);
    expect(r['hash']).toBe(hash);
    // A link that pins another key finds no share of that name with it: nothing else on the LAN is taken instead.
    const wrong = (ready['link'] as string).replace(/peer=[^&]+/, 'peer=12D3KooWEfYgkDvR5cNrGBBaXaY5WWmoTPrgh5d2boMNXM3GQz8A');
    const stranger = beam(lab.b, ['connect', wrong, '--port', '8083']);
    expect((await stranger.waitFor('error'))['code']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    expect(await stranger.exited).toBe(1);
  });

  it('a name no one announces fails with BEAM_ERR_SHARE_NOT_FOUND once the LAN has had its time to answer, saying what to check', async () => {
    lab = LanLab.create();
    await shareOnA(lab);
    const started = performance.now();
    const visitor = beam(lab.b, ['connect', 'nobody-here-001']);
    const error = await visitor.waitFor('error');
    const took = performance.now() - started;
    expect(error['code']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    expect(String(error['message'])).toMatch(/mDNS/);
    expect(await visitor.exited).toBe(1);
    expect(took).toBeGreaterThanOrEqual(LAN_FIND_TIMEOUT_MS);
  });

  it("two shares answering to one name are refused by name (the full link says which); the link reaches its own, past a Beam of the visitor's machine", async () => {
    lab = LanLab.create();
    const { hash, ready } = await shareOnA(lab, ['--name', 'twin-share-01']);
    // The same name on host b: its own embedded server, a different agent key.
    const other = beam(lab.b, ['http', '3000', '--lan', '--name', 'twin-share-01']);
    await other.waitFor('ready');
    const byName = beam(lab.b, ['connect', 'twin-share-01']);
    const error = await byName.waitFor('error');
    expect(error['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(error['message'])).toMatch(/2 shares answer to "twin-share-01"/);
    expect(String(error['message'])).toContain(`http://${LanLab.A}:`);
    expect(String(error['message'])).toContain(`http://${LanLab.B}:`);
    // Host b's own Beam answers on the link's *.localhost port with another agent of that name: the link's pin sends beam connect on to the LAN.
    const withLink = beam(lab.b, ['connect', ready['link'] as string, '--port', '8087']);
    expect((await withLink.waitFor('ready'))['server']).toMatch(new RegExp(`^http://${LanLab.A.replace(/\./g, '\\.')}:`));
    expect((await fetchOnB(lab, 8087))['hash']).toBe(hash);
  });

  it('a private share is announced without its secret: by name it is refused with BEAM_ERR_PRIVATE, its full link gets in', async () => {
    lab = LanLab.create();
    const { hash, ready } = await shareOnA(lab, ['--private']);
    const byName = beam(lab.b, ['connect', ready['name'] as string]);
    const error = await byName.waitFor('error');
    expect(error['code']).toBe('BEAM_ERR_PRIVATE');
    expect(await byName.exited).toBe(1);
    expect(ready['link']).toContain('secret=');
    const withLink = beam(lab.b, ['connect', ready['link'] as string, '--port', '8084']);
    await withLink.waitFor('ready');
    const r = await fetchOnB(lab, 8084);
    expect(r['hash']).toBe(hash);
  });
});

describe('a --tls share on the LAN', () => {
  it("beam connect by name says how to trust the sharer's local authority; trusted (NODE_EXTRA_CA_CERTS), it connects byte-exact", async () => {
    lab = LanLab.create();
    const { hash, ready } = await shareOnA(lab, ['--tls']);
    const port = Number((ready['lan'] as string).split(':').pop()?.replace('/', ''));
    expect(ready['lanUrl']).toBe(`https://${String(ready['name'])}.local:${port}/`);
    const untrusting = beam(lab.b, ['connect', ready['name'] as string]);
    const error = await untrusting.waitFor('error');
    expect(error['code']).toBe('BEAM_ERR_SERVER_UNREACHABLE');
    expect(String(error['message'])).toContain(`https://${LanLab.A}:${port}${LOCAL_CA_PATH}`);
    expect(String(error['message'])).toContain('NODE_EXTRA_CA_CERTS');
    expect(await untrusting.exited).toBe(1);
    const ca = ready['ca'] as { file: string };
    const trusting = beam(lab.b, ['connect', ready['name'] as string, '--port', '8088'], { NODE_EXTRA_CA_CERTS: ca.file });
    expect((await trusting.waitFor('ready'))['server']).toBe(`https://${LanLab.A}:${port}`);
    expect((await fetchOnB(lab, 8088))['hash']).toBe(hash);
    // A browser that trusts the authority opens https://<name>.local:<port>/: the server signs that name for it.
    expect(await lab.node(lab.b, FETCH_LOCAL_NAME(`${String(ready['name'])}.local`, port, ROOT, ca.file))).toEqual([
      { address: LanLab.A },
      { status: 200, hash },
    ]);
  });
});

describe('beam doctor on the LAN', () => {
  it('with no server, lists the Beam shares that answer on this network by mDNS, and says so when none does', async () => {
    lab = LanLab.create();
    const quiet = doctorOn(lab.b);
    const none = await quiet.waitFor('doctor');
    expect(none['mdns']).toEqual({ shares: [], detail: expect.stringMatching(/^no Beam share answered/) });
    const { ready } = await shareOnA(lab, ['--private']);
    const report = await doctorOn(lab.b).waitFor('doctor');
    const port = Number((ready['server'] as string).split(':').pop());
    expect((report['mdns'] as { shares: unknown[] }).shares).toEqual([
      { name: ready['name'], server: `http://${LanLab.A}:${port}`, kind: 'http', private: true },
    ]);
  });
});

describe('beam.yml with lan: true', () => {
  it('beam start announces every share of its embedded server: an HTTP and a TCP share, each found by name on another host', async () => {
    lab = LanLab.create();
    const hash = await new Promise<string>((resolve, reject) => {
      lab?.node(lab.a, ORIGIN(1024 * 1024), (line) => resolve(line['hash'] as string)).catch(reject);
    });
    const dir = await mkdtemp(path.join(tmpdir(), 'beam-lan-'));
    const config = path.join(dir, 'beam.yml');
    // The TCP share is the same origin, spoken to as raw TCP: an HTTP request written on the socket.
    await writeFile(config, 'lan: true\ninspect: false\nshares:\n  web:\n    http: 3000\n  raw:\n    tcp: 3000\n');
    const start = beam(lab.a, ['start', '--config', config]);
    const web = await start.waitFor((e) => e.event === 'ready' && e['share'] === 'web');
    const raw = await start.waitFor((e) => e.event === 'ready' && e['share'] === 'raw');
    expect(web['announced']).toBe(`${String(web['name'])}._beam._tcp.local`);
    expect(raw['announced']).toBe(`${String(raw['name'])}._beam._tcp.local`);
    // No share takes every Host here: <name>.local names the HTTP share, resolved by mDNS as a browser would.
    const port = Number((web['server'] as string).split(':').pop());
    expect(web['lanUrl']).toBe(`http://${String(web['name'])}.local:${port}/`);
    expect(raw['lanUrl']).toBeUndefined();
    expect(await lab.node(lab.b, FETCH_LOCAL_NAME(`${String(web['name'])}.local`, port, ROOT))).toEqual([{ address: LanLab.A }, { status: 200, hash }]);
    const httpVisitor = beam(lab.b, ['connect', web['name'] as string, '--port', '8085']);
    expect((await httpVisitor.waitFor('ready'))['found']).toBe('lan');
    expect((await fetchOnB(lab, 8085))['hash']).toBe(hash);
    const tcpVisitor = beam(lab.b, ['connect', raw['name'] as string, '--port', '8086']);
    expect((await tcpVisitor.waitFor('ready'))['url']).toBe('tcp://127.0.0.1:8086');
    const lines = await lab.node(
      lab.b,
      `
import net from 'node:net';
import { createHash } from 'node:crypto';
const socket = net.connect(8086, '127.0.0.1', () => socket.end('GET /file HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'));
const chunks = [];
socket.on('data', (c) => chunks.push(c));
socket.on('close', () => {
  const all = Buffer.concat(chunks);
  const body = all.subarray(all.indexOf('\\r\\n\\r\\n') + 4);
  console.log(JSON.stringify({ hash: createHash('sha256').update(body).digest('hex') }));
});
`,
    );
    expect(lines[0]?.['hash']).toBe(hash);
  });
});

describe('--lan with no network but loopback', () => {
  it('the announcement has nowhere to go, and the share starts and serves all the same', async () => {
    const ns = `llo${process.pid % 100000}x${Math.floor(Math.random() * 1000)}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      const origin = `import http from 'node:http'; http.createServer((q, s) => s.end('hello ' + q.url)).listen(3000, '127.0.0.1', () => console.log('up'));`;
      const originProc = spawn('ip', ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', origin], { stdio: ['ignore', 'pipe', 'ignore'] });
      try {
        await once(originProc.stdout, 'data');
        const agent = beam(ns, ['http', '3000', '--lan']);
        const ready = await agent.waitFor('ready');
        expect(ready['announced']).toBe(`${String(ready['name'])}._beam._tcp.local`);
        const port = Number(new URL(ready['url'] as string).port);
        const got = execFileSync('ip', [
          'netns',
          'exec',
          ns,
          process.execPath,
          '--input-type=module',
          '-e',
          `const r = await fetch('http://127.0.0.1:${port}/alone'); console.log(r.status, await r.text());`,
        ]).toString();
        expect(got.trim()).toBe('200 hello /alone');
      } finally {
        originProc.kill('SIGKILL');
      }
    } finally {
      for (const p of procs.splice(0)) await p.kill('SIGKILL');
      execFileSync('ip', ['netns', 'del', ns]);
    }
  });
});

describe('--lan refusals', () => {
  it('with --server: the share is found through that server, so --lan is refused with what to do', async () => {
    const p = new BeamProcess(['http', '3000', '--lan', '--server', 'http://127.0.0.1:9', '--json']);
    procs.push(p);
    const error = await p.waitFor('error');
    expect(error['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(error['message'])).toMatch(/--lan announces the embedded server/);
    expect(await p.exited).toBe(1);
  });
});
