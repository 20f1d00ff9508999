/**
 * `beam start`: a config file declaring three shares of different kinds
 * (HTTP with basic auth, a private TCP share, UDP), run as one process, each
 * reached the way a teammate would; and config errors that name the key.
 */

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, sha256 } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess, type JsonEvent, type ServerHandle, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;
let tcpEcho: net.Server;
let udpEcho: dgram.Socket;
const dir = mkdtempSync(path.join(tmpdir(), 'beam-start-'));

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
  tcpEcho = net.createServer((s) => s.pipe(s));
  await new Promise<void>((resolve) => tcpEcho.listen(0, '127.0.0.1', resolve));
  udpEcho = dgram.createSocket('udp4');
  udpEcho.on('message', (msg, rinfo) => udpEcho.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((resolve) => udpEcho.bind(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await server?.proc.kill();
  await origin?.close();
  tcpEcho?.close();
  udpEcho?.close();
});

function configFile(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

async function connectLocal(link: string): Promise<{ proc: BeamProcess; url: URL }> {
  const proc = new BeamProcess(['connect', link, '--json']);
  const ready = await proc.waitFor('ready');
  return { proc, url: new URL(ready['url'] as string) };
}

describe('beam start', () => {
  it('runs an HTTP, a TCP and a UDP share from one beam.yml; each works; Ctrl+C frees all three names', async () => {
    const file = configFile(
      'beam.yml',
      `# three shares, three kinds
server: ${server.url}
inspect: 0
shares:
  web:
    http: 127.0.0.1:${origin.port}
    name: start-web-1
    auth: alice:s3cret
  db:
    tcp: ${(tcpEcho.address() as net.AddressInfo).port}
    name: start-db-1
    private: true
  dns:
    udp: 127.0.0.1:${udpEcho.address().port}
    name: start-dns-1
`,
    );
    const proc = new BeamProcess(['start', '--config', file, '--json']);
    const locals: BeamProcess[] = [];
    try {
      const ready = new Map<string, JsonEvent>();
      for (const label of ['web', 'db', 'dns']) ready.set(label, await proc.waitFor((e) => e.event === 'ready' && e['share'] === label));
      expect(ready.get('web')).toMatchObject({ name: 'start-web-1', server: server.url });
      expect(ready.get('web')?.['inspect']).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(ready.get('db')).toMatchObject({ name: 'start-db-1', kind: 'tcp' });
      expect(ready.get('db')?.['inspect']).toBeUndefined();
      expect(ready.get('dns')).toMatchObject({ name: 'start-dns-1', kind: 'udp' });

      // HTTP, with the auth the file asks for.
      const host = `start-web-1.localhost:${server.port}`;
      expect((await request(server.port, host, '/from-yml')).status).toBe(401);
      const ok = await request(server.port, host, '/from-yml', { headers: { authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}` } });
      expect(ok.status).toBe(200);
      expect(ok.body.toString()).toBe('hello from /from-yml');

      // TCP: private, so the link carries its secret.
      expect(ready.get('db')?.['link']).toMatch(/&secret=/);
      const db = await connectLocal(ready.get('db')?.['link'] as string);
      locals.push(db.proc);
      const payload = randomBytes(200_000);
      const echoed = await new Promise<Buffer>((resolve, reject) => {
        const socket = net.connect({ host: db.url.hostname, port: Number(db.url.port) });
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => {
          chunks.push(c);
          if (Buffer.concat(chunks).byteLength >= payload.byteLength) {
            socket.end();
            resolve(Buffer.concat(chunks));
          }
        });
        socket.on('error', reject);
        socket.write(payload);
      });
      expect(sha256(echoed)).toBe(sha256(payload));

      // UDP.
      const dns = await connectLocal(ready.get('dns')?.['link'] as string);
      locals.push(dns.proc);
      const client = dgram.createSocket('udp4');
      await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
      const datagram = randomBytes(512);
      const reply = new Promise<Buffer>((resolve) => client.once('message', resolve));
      client.send(datagram, Number(dns.url.port), dns.url.hostname);
      expect(sha256(await reply)).toBe(sha256(datagram));
      client.close();

      expect(await proc.kill('SIGTERM')).toBe(0);
      expect(proc.events.at(-1)?.event).toBe('closed');
      const gone = await request(server.port, host, '/');
      expect(gone.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    } finally {
      for (const p of locals) await p.kill();
      await proc.kill();
    }
  });

  it('in plain lines, each share says its link under its label, and how to stop is said once', async () => {
    const file = configFile(
      'plain.yml',
      `server: ${server.url}
inspect: false
shares:
  web:
    http: 127.0.0.1:${origin.port}
  db:
    tcp: ${(tcpEcho.address() as net.AddressInfo).port}
`,
    );
    const proc = new BeamProcess(['start', '--config', file]);
    try {
      await proc.waitFor((e) => e.event === 'text' && e['line'] === 'Press Ctrl+C to stop.');
      const lines = proc.events.map((e) => String(e['line']));
      expect(lines.filter((l) => l.includes('Press Ctrl+C'))).toEqual(['Press Ctrl+C to stop.']);
      const stopAt = lines.indexOf('Press Ctrl+C to stop.');
      for (const label of ['web', 'db']) {
        const link = lines.findIndex((l) => l.startsWith(`[${label}]   Link:`));
        expect(link, label).toBeGreaterThanOrEqual(0);
        expect(link, label).toBeLessThan(stopAt);
      }
    } finally {
      await proc.kill('SIGINT');
    }
    expect(await proc.exited).toBe(0);
  });

  it('refuses a bad config with BEAM_ERR_CONFIG naming the file and the key, and starts nothing', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['typo.yml', 'shares:\n  web:\n    http: 3000\n    nmae: x\n', /typo\.yml: shares\.web: unknown key "nmae"/],
      ['two-kinds.yml', 'shares:\n  web:\n    http: 3000\n    tcp: 22\n', /shares\.web: each share needs exactly one of http, tcp or udp/],
      ['bad-port.yml', 'shares:\n  web:\n    http: 70000\n', /shares\.web\.http: .*70000/],
      ['broken.yml', 'shares:\n  web:\n    http: [3000\n', /broken\.yml:\d+: /],
      ['empty.yml', 'shares: {}\n', /shares: declare at least one share/],
      ['missing.yml', '', /missing\.yml does not exist/],
    ];
    for (const [name, text, expected] of cases) {
      const file = name === 'missing.yml' ? path.join(dir, name) : configFile(name, text);
      const proc = new BeamProcess(['start', '--config', file, '--server', server.url, '--json']);
      const err = await proc.waitFor('error');
      expect(err['code'], name).toBe('BEAM_ERR_CONFIG');
      expect(err['message'], name).toMatch(expected);
      expect(await proc.exited).toBe(1);
      expect(proc.events.filter((e) => e.event === 'ready')).toEqual([]);
    }
  });

  it('stops the shares it started when a later one fails (a taken name), and says which', async () => {
    const holder = new BeamProcess(['http', String(origin.port), '--server', server.url, '--name', 'start-taken-1', '--json', '--no-inspect']);
    await holder.waitFor('ready');
    try {
      const file = configFile(
        'taken.yml',
        `inspect: false\nshares:\n  first:\n    http: ${origin.port}\n    name: start-first-1\n  second:\n    http: ${origin.port}\n    name: start-taken-1\n`,
      );
      const proc = new BeamProcess(['start', '--config', file, '--server', server.url, '--json']);
      const err = await proc.waitFor('error');
      expect(err['code']).toBe('BEAM_ERR_NAME_TAKEN');
      expect(err['message']).toContain('share "second"');
      expect(await proc.exited).toBe(1);
      const first = await request(server.port, `start-first-1.localhost:${server.port}`, '/');
      expect(first.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    } finally {
      await holder.kill();
    }
  });
});
