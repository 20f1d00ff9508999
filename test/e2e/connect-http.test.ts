/**
 * `beam connect` on an HTTP share: the app on a local port, peer to peer,
 * with bodies, WebSockets, and no more trust than any other direct visitor.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { request, sha256 } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/origin.js';
import { BeamProcess, onPath } from '../helpers/procs.js';

let stack: Stack;
let connect: BeamProcess;
let port: number;

beforeAll(async () => {
  stack = await startStack();
  const link = (await stack.agent.proc.waitFor('ready'))['link'] as string;
  connect = new BeamProcess(['connect', link, '--server', stack.server.url, '--json']);
  const ready = await connect.waitFor('ready');
  expect(ready['url']).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  port = Number(new URL(ready['url'] as string).port);
});
afterAll(async () => {
  await connect?.kill();
  await stack?.stop();
});

describe('beam connect on an HTTP share', () => {
  it('is announced by both sides as a cli visitor on the direct path', async () => {
    // Direct first, or right after the relay when a loaded machine slows the DTLS handshake.
    expect((await connect.waitFor(onPath('direct')))['via']).toBe('direct');
    const session = await stack.agent.proc.waitFor(onPath('direct', 'cli'));
    expect(session['visitor']).toBe('cli');
  });

  it('--json starts with ready, then the session on its path', () => {
    expect(connect.events[0]?.event).toBe('ready');
    expect(connect.events.findIndex((e) => e.event === 'session')).toBeGreaterThan(0);
  });

  it('says what a visitor needs in plain lines: the share it reached, the local address, the path', async () => {
    const link = (await stack.agent.proc.waitFor('ready'))['link'] as string;
    const name = (await stack.agent.proc.waitFor('ready'))['name'] as string;
    const plain = new BeamProcess(['connect', link, '--server', stack.server.url]);
    try {
      await plain.waitFor((e) => e.event === 'text' && e['line'] === 'Press Ctrl+C to stop.');
      const lines = plain.events.map((e) => String(e['line']));
      expect(lines[0]).toMatch(new RegExp(`^Connected to ${name} \\(http://${name}\\.localhost:\\d+/\\)$`));
      expect(lines[1]).toMatch(/^ {2}Local: http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(lines[2]).toMatch(/^ {2}Path: {2}(direct|relay)/);
      // Nothing reads as if this side were sharing.
      expect(lines.join('\n')).not.toMatch(/Sharing|visitor/);
    } finally {
      await plain.kill('SIGINT');
    }
    expect(await plain.exited).toBe(0);
    expect(plain.events.at(-1)?.['line']).toBe('Stopped.');
  });

  it('Ctrl+C the instant the ready lines are out stops cleanly, every time: exit 0 and "Stopped."', async () => {
    const link = (await stack.agent.proc.waitFor('ready'))['link'] as string;
    const exits: Array<{ code: number | null; last: unknown }> = [];
    for (let i = 0; i < 8; i++) {
      const plain = new BeamProcess(['connect', link, '--server', stack.server.url]);
      await plain.waitFor((e) => e.event === 'text' && e['line'] === 'Press Ctrl+C to stop.');
      const code = await plain.kill('SIGINT');
      exits.push({ code, last: plain.events.at(-1)?.['line'] });
    }
    // Before the fix, the handler was set after the lines: about one stop in four died of the signal (exit null).
    expect(exits).toEqual(Array.from({ length: 8 }, () => ({ code: 0, last: 'Stopped.' })));
  });

  it('serves downloads and uploads byte-exact on localhost', async () => {
    const size = 8 * 1024 * 1024;
    const down = await request(port, `127.0.0.1:${port}`, `/download?size=${size}&seed=5`);
    expect(down.status).toBe(200);
    expect(down.body.length).toBe(size);
    expect(down.headers['beam-path']).toBe('direct');
    const body = Buffer.from(Buffer.alloc(3 * 1024 * 1024).map((_, i) => (i * 31) & 0xff));
    const up = await request(port, `127.0.0.1:${port}`, '/upload', { method: 'POST', body });
    expect(up.status).toBe(200);
    expect(JSON.parse(up.body.toString())).toMatchObject({ bytes: body.length, sha256: sha256(body) });
  });

  it('tunnels a WebSocket', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const reply = new Promise<Buffer>((resolve) => ws.once('message', (d: Buffer) => resolve(d)));
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send('hello through beam connect');
    expect((await reply).toString()).toBe('hello through beam connect');
    ws.close();
  });

  it('gets no forwarding headers believed: the agent drops them from a direct visitor', async () => {
    const res = await request(port, `127.0.0.1:${port}`, '/headers', { headers: { 'x-forwarded-for': '6.6.6.6' } });
    const seen = (JSON.parse(res.body.toString()) as { headers: Record<string, string> }).headers;
    expect(seen['x-forwarded-for']).toBeUndefined();
    expect(seen['host']).toBe(`127.0.0.1:${stack.origin.port}`);
  });
});
