/** The command line as a user meets it: the embedded default, the JSON contract, human output and bad input. */

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lanAddress } from '../../app/lan.js';
import { patternStream, request } from '../helpers/http.js';
import { LanLab } from '../helpers/netlab.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, ROOT, startAgent, startServer } from '../helpers/procs.js';
import { freePort } from '../helpers/services.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await origin?.close();
});

describe('beam <port> on the embedded default', () => {
  it('starts its own server, prints ready with the link and the LAN form, serves both, and ends with closed', async () => {
    const started = performance.now();
    const proc = new BeamProcess([String(origin.port), '--json']);
    try {
      const ready = await proc.waitFor('ready');
      const readyMs = performance.now() - started;
      console.log(`embedded ready after ${readyMs.toFixed(0)} ms`);
      expect(proc.events[0]?.event).toBe('ready');
      const url = new URL(ready['url'] as string);
      expect(url.hostname).toBe(`${ready['name'] as string}.localhost`);
      const port = Number(url.port);
      const res = await request(port, url.host, '/embedded');
      expect(res.status, res.body.toString()).toBe(200);
      expect(res.body.toString()).toBe('hello from /embedded');

      const lan = lanAddress();
      if (lan) {
        // A teammate on the LAN types the bare address: it reaches the one share.
        expect(ready['lan']).toBe(`http://${lan}:${port}/`);
        const viaLan = await request(port, `${lan}:${port}`, '/lan');
        expect(viaLan.body.toString()).toBe('hello from /lan');
      }
      const session = await proc.waitFor('session');
      expect(session['path']).toBe('gateway');
    } finally {
      await proc.kill('SIGTERM');
    }
    expect(await proc.exited).toBe(0);
    expect(proc.events.at(-1)?.event).toBe('closed');
  });

  it('reaches its own agent in memory: beam-path says local, the visitor event says via local, every check still holds, browsers get the app itself', async () => {
    const proc = new BeamProcess([String(origin.port), '--json', '--no-inspect', '--auth', 'ann:secret1']);
    try {
      const ready = await proc.waitFor('ready');
      const url = new URL(ready['url'] as string);
      const port = Number(url.port);
      // The agent still decides who gets in: no credentials, 401 from Beam, and the origin never sees it.
      const before = origin.hits.get('/mem') ?? 0;
      const refused = await request(port, url.host, '/mem');
      expect(refused.status).toBe(401);
      expect(refused.headers['beam-error']).toBe('BEAM_ERR_UNAUTHORIZED');
      expect(origin.hits.get('/mem') ?? 0).toBe(before);
      const auth = { authorization: `Basic ${Buffer.from('ann:secret1').toString('base64')}` };
      const res = await request(port, url.host, '/mem', { headers: auth });
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('hello from /mem');
      expect(res.headers['beam-path']).toBe('gateway; via=local');
      // Bodies both ways, byte-exact, over the in-memory channel.
      const size = 8 * 1024 * 1024 + 5;
      const big = await request(port, url.host, `/download?size=${size}&seed=11`, { headers: auth });
      expect(big.status).toBe(200);
      const expected = patternStream(size, 11);
      expected.stream.resume();
      expect(sha256(big.body)).toBe(await expected.hash);
      const upload = patternStream(size, 12);
      const up = await request(port, url.host, '/upload', { method: 'POST', body: upload.stream, headers: { ...auth, 'content-length': String(size) } });
      expect(JSON.parse(up.body.toString())).toEqual({ bytes: size, sha256: await upload.hash });
      // A browser navigation gets the app straight from the gateway: no bootstrap page for a peer connection back here.
      const page = await request(port, url.host, '/mem', {
        headers: { ...auth, accept: 'text/html', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' },
      });
      expect(page.body.toString()).toBe('hello from /mem');
      const session = await proc.waitFor('session');
      expect(session).toMatchObject({ path: 'gateway', via: 'local' });
    } finally {
      await proc.kill('SIGTERM');
    }
    expect(await proc.exited).toBe(0);
  });

  it('keeps sharing when its stdout reader goes away (`beam 3000 --json | head -1`), and still exits 0 on Ctrl+C', async () => {
    const proc = new BeamProcess([String(origin.port), '--json']);
    try {
      const ready = await proc.waitFor('ready');
      const url = new URL(ready['url'] as string);
      // The reader closes its end: every later event write fails with EPIPE.
      proc.child.stdout!.destroy();
      for (const n of [1, 2]) {
        // The first request starts a session, whose event goes to the closed pipe.
        const res = await request(Number(url.port), url.host, `/after-reader-${n}`);
        expect(res.status, res.body.toString()).toBe(200);
        expect(res.body.toString()).toBe(`hello from /after-reader-${n}`);
      }
    } finally {
      await proc.kill('SIGINT');
    }
    expect(await proc.exited).toBe(0);
    expect(proc.stderr).not.toMatch(/EPIPE|Unhandled/);
  });

  it('prints the link, LAN address and a hint as plain lines without --json', async () => {
    const proc = new BeamProcess([String(origin.port)]);
    try {
      const link = await proc.waitFor((e) => e.event === 'text' && String(e['line']).includes('Link:'));
      expect(String(link['line'])).toMatch(/Link:\s+http:\/\/[a-z]+-[a-z]+-\d{3}\.localhost:\d+\//);
      await proc.waitFor((e) => e.event === 'text' && String(e['line']).includes('Ctrl+C'));
      // Not a terminal: no colours, no spinner, no QR code.
      const text = proc.events.map((e) => String(e['line'])).join('\n');
      expect(text).not.toMatch(/\x1b|[▄▀█⠋]/);
    } finally {
      await proc.kill();
    }
  });
});

describe('beam with no port', () => {
  it('detects the dev server from package.json, waits for it to open, says so, then serves it', async () => {
    const server = await startServer();
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'beam-noport-'));
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ devDependencies: { vite: '^5' }, scripts: { dev: `vite --port ${port}` } }));
    const proc = new BeamProcess(['--server', server.url, '--json', '--no-inspect'], {}, { cwd: dir });
    let late: http.Server | undefined;
    try {
      const detected = await proc.waitFor('detected');
      expect(detected).toMatchObject({ framework: 'Vite', port, from: 'package.json' });
      expect(proc.events[0]?.event).toBe('detected');
      const ready = await proc.waitFor('ready');
      expect(ready['origin']).toBe(`localhost:${port}`);
      await proc.waitFor('origin-unreachable');
      const host = new URL(ready['url'] as string).host;
      expect((await request(server.port, host, '/')).headers['beam-error']).toBe('BEAM_ERR_ORIGIN_UNREACHABLE');
      // The dev server starts late: Beam notices and serves it.
      late = http.createServer((_req, res) => res.end('vite is up'));
      await new Promise<void>((resolve) => late!.listen(port, 'localhost', resolve));
      await proc.waitFor('origin-ready');
      const res = await request(server.port, host, '/');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('vite is up');
    } finally {
      await proc.kill();
      late?.close();
      await server.proc.kill();
    }
  });

  it('with no package.json, shares the one usual dev port that is listening', async () => {
    const server = await startServer();
    const dev = http.createServer((_req, res) => res.end('found by listening'));
    // The usual dev ports (cli/detect.ts COMMON_DEV_PORTS) may be taken on this machine: the test names its own list.
    const port = await freePort();
    const silent = await freePort();
    await new Promise<void>((resolve) => dev.listen(port, '127.0.0.1', resolve));
    const dir = mkdtempSync(path.join(tmpdir(), 'beam-noport-'));
    const proc = new BeamProcess(['--server', server.url, '--json', '--no-inspect', '--dev-ports', `${silent},${port}`], {}, { cwd: dir });
    try {
      expect(await proc.waitFor('detected')).toMatchObject({ port, from: 'listening' });
      const ready = await proc.waitFor('ready');
      const res = await request(server.port, new URL(ready['url'] as string).host, '/');
      expect(res.body.toString()).toBe('found by listening');
    } finally {
      await proc.kill();
      dev.close();
      await server.proc.kill();
    }
  });

  it('with nothing to find, fails with BEAM_ERR_BAD_OPTION saying how to name a port', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'beam-noport-'));
    const proc = new BeamProcess(['--json', '--server', 'http://127.0.0.1:1', '--dev-ports', String(await freePort())], {}, { cwd: dir });
    const err = await proc.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(err['message']).toContain('beam 3000');
    expect(await proc.exited).toBe(1);
    // A bad list is said as such.
    const bad = new BeamProcess(['--json', '--dev-ports', '80,nope'], {}, { cwd: dir });
    expect((await bad.waitFor('error'))['message']).toContain('--dev-ports');
    expect(await bad.exited).toBe(1);
  });
});

describe('beam doctor with no server', () => {
  it('checks what the embedded default would give: its relay and STUN, the LAN address, and whether *.localhost resolves', async () => {
    // On a LAN of its own: the doctor also asks the network for Beam shares by mDNS, which tests keep off the machine's network.
    const lab = LanLab.create();
    try {
      const proc = new BeamProcess(['doctor', '--json'], {}, { netns: lab.a });
      const report = await proc.waitFor('doctor');
      expect(await proc.exited).toBe(0);
      expect(report['server']).toMatchObject({ ok: true });
      expect(report['relay']).toMatchObject({ ok: true });
      expect(report['udp']).toMatchObject({ ok: true });
      expect(report['likely']).toBe('direct');
      expect(report['lan']).toMatchObject({ address: LanLab.A, ok: true });
      expect(typeof (report['localhost'] as { ok: unknown }).ok).toBe('boolean');
      // In plain lines too.
      const plain = new BeamProcess(['doctor'], {}, { netns: lab.a });
      expect(await plain.exited).toBe(0);
      const text = plain.events.map((e) => String(e['line'])).join('\n');
      expect(text).toMatch(/^ok {3}server {3}the embedded default/m);
      expect(text).toMatch(new RegExp(`^ok {3}LAN {6}${LanLab.A.replace(/\./g, '\\.')} answers`, 'm'));
      expect(text).toMatch(/^ok {3}relay/m);
      expect(text).toMatch(/^ok {3}UDP/m);
      expect(text).toMatch(/^ {5}mDNS {5}no Beam share answered/m);
    } finally {
      lab.destroy();
    }
  });
});

describe('version and the embedded port', () => {
  it('beam --version, -V and beam version print the package version and exit 0', async () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const args of [['--version'], ['-V'], ['version']]) {
      const proc = new BeamProcess(args);
      expect(await proc.exited, args.join(' ')).toBe(0);
      expect(proc.events.map((e) => e['line'])).toEqual([version]);
    }
  });

  it('--port puts the embedded server on that port; a taken one, or --port with --server, is BEAM_ERR_BAD_OPTION', async () => {
    const port = await freePort();
    const proc = new BeamProcess([String(origin.port), '--json', '--no-inspect', '--port', String(port)]);
    try {
      const ready = await proc.waitFor('ready');
      expect(new URL(ready['url'] as string).port).toBe(String(port));
      expect((await request(port, new URL(ready['url'] as string).host, '/on-port')).body.toString()).toBe('hello from /on-port');
      // The same port again: taken, and said so, with no quiet move to another.
      const second = new BeamProcess([String(origin.port), '--json', '--no-inspect', '--port', String(port)]);
      const err = await second.waitFor('error');
      expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
      expect(err['message']).toContain(`--port ${port} is in use`);
      expect(await second.exited).toBe(1);
    } finally {
      await proc.kill('SIGTERM');
    }
    const both = new BeamProcess([String(origin.port), '--json', '--port', String(port), '--server', 'http://127.0.0.1:1']);
    expect((await both.waitFor('error'))['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(await both.exited).toBe(1);
  });
});

describe('options', () => {
  it('--host-header preserve keeps the visitor Host', async () => {
    const server = await startServer();
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server, ['--host-header', 'preserve']);
    try {
      const res = await request(server.port, agent.host, '/headers');
      expect((JSON.parse(res.body.toString()) as { headers: { host: string } }).headers.host).toBe(agent.host);
    } finally {
      await agent.proc.kill();
      await server.proc.kill();
    }
  });

  it('BEAM_SERVER picks the server when --server is absent', async () => {
    const server = await startServer();
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--json'], { BEAM_SERVER: server.url });
    try {
      const ready = await proc.waitFor('ready');
      expect(ready['server']).toBe(server.url);
      expect(ready['url']).toBe(`http://${ready['name'] as string}.localhost:${server.port}/`);
      expect(ready['lan']).toBeUndefined();
    } finally {
      await proc.kill();
      await server.proc.kill();
    }
  });

  it('every flag is a BEAM_* variable too: BEAM_JSON, BEAM_NAME, BEAM_INSPECT=off; a flag on the command line wins; a bad boolean is BEAM_ERR_BAD_OPTION', async () => {
    const server = await startServer();
    const proc = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--name', 'flag-wins-1'], {
      BEAM_SERVER: server.url,
      BEAM_JSON: '1',
      BEAM_NAME: 'env-loses-1',
      BEAM_INSPECT: 'off',
    });
    try {
      const ready = await proc.waitFor('ready');
      expect(ready['name']).toBe('flag-wins-1');
      expect(ready['inspect']).toBeUndefined();
      const bad = new BeamProcess(['http', `127.0.0.1:${origin.port}`, '--json'], { BEAM_SERVER: server.url, BEAM_PRIVATE: 'maybe' });
      const err = await bad.waitFor('error');
      expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
      expect(err['message']).toContain('BEAM_PRIVATE');
      expect(await bad.exited).toBe(1);
    } finally {
      await proc.kill();
      await server.proc.kill();
    }
  });

  it('serve prints where shares live, in plain text without --json', async () => {
    const proc = new BeamProcess(['serve', '--port', '0', '--host', '127.0.0.1', '--domain', 'tunnel.test']);
    try {
      const line = await proc.waitFor((e) => e.event === 'text');
      expect(String(line['line'])).toMatch(/^Beam server listening on 127\.0\.0\.1:\d+; shares are http:\/\/<name>\.tunnel\.test:\d+\/$/);
    } finally {
      await proc.kill();
    }
  });

  it('serve --domain and --public-url shape share URLs', async () => {
    const server = await startServer(['--public-url', 'https://beam.example.test']);
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    try {
      expect(agent.url).toBe(`https://${agent.name}.beam.example.test/`);
    } finally {
      await agent.proc.kill();
      await server.proc.kill();
    }
    const byDomain = await startServer(['--domain', 'tunnel.test']);
    const other = await startAgent(`127.0.0.1:${origin.port}`, byDomain);
    try {
      expect(other.url).toBe(`http://${other.name}.tunnel.test:${byDomain.port}/`);
      // Routing follows the domain.
      const res = await request(byDomain.port, `${other.name}.tunnel.test`, '/routed');
      expect(res.body.toString()).toBe('hello from /routed');
    } finally {
      await other.proc.kill();
      await byDomain.proc.kill();
    }
  });

  it.each([
    [['http', 'not-a-port', '--json'], 'BEAM_ERR_BAD_OPTION'],
    [['http', '70000', '--json'], 'BEAM_ERR_BAD_OPTION'],
    [['http', '3000', '--server', 'ftp://x', '--json'], 'BEAM_ERR_BAD_OPTION'],
    [['http', '3000', '--engine', 'nope', '--json'], 'BEAM_ERR_BAD_OPTION'],
    [['http', '3000', '--host-header', 'maybe', '--json'], 'BEAM_ERR_BAD_OPTION'],
    [['http', '3000', '--server', 'http://127.0.0.1:1', '--json'], 'BEAM_ERR_SERVER_UNREACHABLE'],
    [['serve', '--port', '99999', '--json'], 'BEAM_ERR_BAD_OPTION'],
  ])('beam %j fails with %s and exit code 1', async (args, code) => {
    const proc = new BeamProcess(args);
    const err = await proc.waitFor('error');
    expect(err['code']).toBe(code);
    expect(await proc.exited).toBe(1);
  });
});
