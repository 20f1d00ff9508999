/**
 * Layer 4: real `beam serve` and `beam http` processes, real WebRTC between
 * them over loopback, a real origin, and plain HTTP clients.
 */

import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { patternStream, request, sha256 } from '../helpers/http.js';
import { type Origin, type Stack, startStack } from '../helpers/origin.js';
import { type AgentHandle, type ServerHandle, startAgent } from '../helpers/procs.js';

let stack: Stack;
let origin: Origin;
let server: ServerHandle;
let agent: AgentHandle;

beforeAll(async () => {
  stack = await startStack();
  ({ origin, server, agent } = stack);
});

afterAll(async () => {
  await stack?.stop();
});

async function expectedHash(size: number, seed: number): Promise<string> {
  const { stream, hash } = patternStream(size, seed);
  stream.resume();
  return hash;
}

describe('through the gateway', () => {
  it('prints a ready event with a readable, DNS-safe name and its URL', () => {
    expect(agent.name).toMatch(/^[a-z]+-[a-z]+-\d{3}$/);
    expect(agent.url).toBe(`http://${agent.name}.localhost:${server.port}/`);
  });

  it.each([0, 1, 16_375, 16_376, 1024 * 1024 + 3, 100 * 1024 * 1024])('downloads %i bytes, sha256-equal', async (size) => {
    const res = await request(server.port, agent.host, `/download?size=${size}&seed=${size % 97}`);
    expect(res.status).toBe(200);
    expect(res.body.byteLength).toBe(size);
    expect(sha256(res.body)).toBe(await expectedHash(size, size % 97));
  });

  it.each([0, 1, 65_537, 10 * 1024 * 1024, 100 * 1024 * 1024])('uploads %i bytes, sha256-equal at the origin', async (size) => {
    const { stream, hash } = patternStream(size, 3);
    const res = await request(server.port, agent.host, '/upload', { method: 'POST', body: stream, headers: { 'content-length': String(size) } });
    expect(res.status).toBe(200);
    const got = JSON.parse(res.body.toString()) as { bytes: number; sha256: string };
    expect(got.bytes).toBe(size);
    expect(got.sha256).toBe(await hash);
  });

  it('uploads a chunked body of unknown length', async () => {
    const { stream, hash } = patternStream(3 * 1024 * 1024 + 1, 11);
    const res = await request(server.port, agent.host, '/upload', { method: 'PUT', body: stream });
    expect(JSON.parse(res.body.toString())).toEqual({ bytes: 3 * 1024 * 1024 + 1, sha256: await hash });
  });

  it('streams chunked responses chunk by chunk', async () => {
    const arrivals: number[] = [];
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path: '/chunked', headers: { host: agent.host } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => {
            arrivals.push(performance.now());
            text += c.toString();
          });
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    expect(body).toBe('chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
    // Five writes 50 ms apart arrive as several reads, not one buffered blob.
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
  });

  it('delivers a server-sent event before the response ends', async () => {
    const events: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path: '/sse', headers: { host: agent.host, accept: 'text/event-stream' } }, (res) => {
          expect(res.headers['content-type']).toBe('text/event-stream');
          res.on('data', (c: Buffer) => {
            events.push(c.toString());
            // The origin sends the second event only once released: seeing the first
            // one here, while the response is still open, is the proof of streaming.
            if (events.join('').includes('data: first') && events.length === 1) {
              void request(server.port, agent.host, '/sse-release');
            }
          });
          res.on('end', () => resolve());
        })
        .on('error', reject);
    });
    await done;
    expect(events.join('')).toBe('data: first\n\ndata: second\n\n');
  });

  it('serves 500 concurrent requests', async () => {
    const many = new http.Agent({ keepAlive: true, maxSockets: 500 });
    const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => request(server.port, agent.host, `/item-${i}`, { agent: many })));
    expect(replies.map((r) => r.status)).toEqual(Array(500).fill(200));
    expect(replies.every((r, i) => r.body.toString() === `hello from /item-${i}`)).toBe(true);
    many.destroy();
  });

  it('tunnels a WebSocket: text and binary frames echo back intact', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`, { headers: { host: agent.host } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const binary = Buffer.alloc(200_000).map((_, i) => (i * 7) & 0xff);
    const replies: Array<{ data: Buffer; isBinary: boolean }> = [];
    const got = new Promise<void>((resolve) =>
      ws.on('message', (data: Buffer, isBinary) => {
        replies.push({ data, isBinary });
        if (replies.length === 2) resolve();
      }),
    );
    ws.send('hello über beam');
    ws.send(binary);
    await got;
    expect(replies[0]?.isBinary).toBe(false);
    expect(replies[0]?.data.toString()).toBe('hello über beam');
    expect(replies[1]?.isBinary).toBe(true);
    expect(sha256(replies[1]!.data)).toBe(sha256(binary));
    ws.close();
  });

  it('strips hop-by-hop headers both ways and sets X-Forwarded-* itself', async () => {
    const res = await request(server.port, agent.host, '/headers', {
      headers: {
        connection: 'keep-alive, x-secret',
        'x-secret': 'must not pass',
        'keep-alive': 'timeout=1',
        te: 'trailers',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'x-forwarded-for': '6.6.6.6',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'https',
        forwarded: 'for=6.6.6.6',
        'x-kept': 'yes',
      },
    });
    const seen = (JSON.parse(res.body.toString()) as { headers: Record<string, string> }).headers;
    expect(seen['x-secret']).toBeUndefined();
    expect(seen['te']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen['forwarded']).toBeUndefined();
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-host']).toBe(agent.host);
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-kept']).toBe('yes');
    // Response side: hop-by-hop headers from the origin don't reach the client; Set-Cookie stays two headers.
    expect(res.headers['x-remove-me']).toBeUndefined();
    expect(res.headers['keep-alive']).not.toBe('timeout=99');
    expect(res.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
  });

  it('an origin that sends 103 Early Hints first: the visitor gets its final answer whole', async () => {
    const res = await request(server.port, agent.host, '/early-hints');
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('after the hints');
    expect(res.headers['link']).toBeUndefined();
  });

  it('says how a request travelled in a beam-path header, which the origin cannot set', async () => {
    const res = await request(server.port, agent.host, '/headers');
    // The server's gateway carries its link to an agent on the relay (direct stands by).
    expect(res.headers['beam-path']).toBe('gateway; via=relay');
  });

  it("rewrites Host to the origin's own by default", async () => {
    const res = await request(server.port, agent.host, '/headers');
    const seen = (JSON.parse(res.body.toString()) as { headers: Record<string, string> }).headers;
    expect(seen['host']).toBe(`127.0.0.1:${origin.port}`);
  });

  it('keeps the visitor out of choosing the destination: an absolute-form target reaches the origin as a path', async () => {
    const before = origin.hits.get('/evil') ?? 0;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, '127.0.0.1', () => {
        socket.write(`GET http://127.0.0.1:1/evil?x=1 HTTP/1.1\r\nHost: ${agent.host}\r\nConnection: close\r\n\r\n`);
      });
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 200/);
    expect(raw).toContain('hello from /evil');
    expect(origin.hits.get('/evil')).toBe(before + 1);
  });

  it('passes redirects and status codes through', async () => {
    const res = await request(server.port, agent.host, '/redirect');
    expect(res.status).toBe(302);
    expect(res.headers['location']).toBe('/headers');
    expect((await request(server.port, agent.host, '/status?code=418')).status).toBe(418);
    expect((await request(server.port, agent.host, '/status?code=204')).status).toBe(204);
  });

  it('answers an unknown share with 404 BEAM_ERR_SHARE_NOT_FOUND: JSON for clients, HTML for browsers', async () => {
    const json = await request(server.port, `no-such-share-000.localhost:${server.port}`, '/');
    expect(json.status).toBe(404);
    expect(json.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    expect((JSON.parse(json.body.toString()) as { error: { code: string } }).error.code).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    const html = await request(server.port, `no-such-share-000.localhost:${server.port}`, '/', { headers: { accept: 'text/html,*/*' } });
    expect(html.status).toBe(404);
    expect(html.headers['content-type']).toContain('text/html');
    expect(html.headers['beam-error']).toBe('BEAM_ERR_SHARE_NOT_FOUND');
    expect(html.body.toString()).toContain('BEAM_ERR_SHARE_NOT_FOUND');
  });
});

describe('origin timeouts', () => {
  it('answers 504 BEAM_ERR_ORIGIN_TIMEOUT when the origin is too slow', async () => {
    const slow = await startAgent(`127.0.0.1:${origin.port}`, server, ['--origin-timeout', '300']);
    try {
      const res = await request(server.port, slow.host, '/hang');
      expect(res.status).toBe(504);
      expect(res.headers['beam-error']).toBe('BEAM_ERR_ORIGIN_TIMEOUT');
    } finally {
      await slow.proc.kill();
    }
  });
});
