/**
 * The gateway compresses text for clients that accept it (brotli, else
 * gzip), byte-exact once decoded, and leaves alone what it should: binary,
 * small, already-encoded, HEAD, SSE, no-transform, and clients that don't ask.
 */
import http from 'node:http';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, sha256 } from '../helpers/http.js';
import { type Stack, startStack } from '../helpers/origin.js';
import { BeamProcess } from '../helpers/procs.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const get = (path: string, headers: Record<string, string> = {}, method = 'GET') => request(stack.server.port, stack.agent.host, path, { headers, method });
/** What the origin sends for /text?size=N, uncompressed. */
const plain = async (size: number) => (await get(`/text?size=${size}`)).body;

describe('gateway compression', () => {
  it('brotli when accepted, byte-exact once decoded, with Vary and no Content-Length', async () => {
    const expected = await plain(200_000);
    expect(expected.byteLength).toBe(200_000);
    const res = await get('/text?size=200000', { 'accept-encoding': 'gzip, deflate, br' });
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBe('br');
    expect(res.headers['content-length']).toBeUndefined();
    expect(res.headers['vary']).toBe('Accept-Encoding');
    expect(res.body.byteLength).toBeLessThan(expected.byteLength / 10);
    expect(sha256(zlib.brotliDecompressSync(res.body))).toBe(sha256(expected));
  });

  it('gzip when that is what the client prefers, and a strong ETag becomes weak', async () => {
    const expected = await plain(50_000);
    const res = await get('/text?size=50000&etag=v1', { 'accept-encoding': 'gzip;q=1, br;q=0.5' });
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(res.headers['etag']).toBe('W/"v1"');
    expect(sha256(zlib.gunzipSync(res.body))).toBe(sha256(expected));
  });

  it('leaves alone: clients that do not ask, binary types, small bodies, encoded bodies, HEAD, no-transform', async () => {
    const none = await get('/text?size=50000');
    expect(none.headers['content-encoding']).toBeUndefined();
    expect(none.headers['content-length']).toBe('50000');
    const ae = { 'accept-encoding': 'br, gzip' };
    expect((await get('/text?size=50000&type=image/png', ae)).headers['content-encoding']).toBeUndefined();
    const small = await get('/text?size=500', ae);
    expect(small.headers['content-encoding']).toBeUndefined();
    expect(small.body.byteLength).toBe(500);
    const pre = await get('/pre-gzipped', ae);
    expect(pre.headers['content-encoding']).toBe('gzip');
    expect(zlib.gunzipSync(pre.body).toString()).toBe('already compressed by the app '.repeat(100));
    const head = await get('/text?size=50000', ae, 'HEAD');
    expect(head.headers['content-encoding']).toBeUndefined();
    expect(head.headers['content-length']).toBe('50000');
    expect((await get('/text?size=50000', { 'accept-encoding': 'identity' })).headers['content-encoding']).toBeUndefined();
    expect((await get('/text?size=50000&cc=no-transform', ae)).headers['content-encoding']).toBeUndefined();
  });

  it('does not hold back Server-Sent Events from a client that accepts gzip', async () => {
    const first = await new Promise<string>((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port: stack.server.port, path: '/sse', headers: { host: stack.agent.host, 'accept-encoding': 'gzip, br' } },
        (res) => {
          expect(res.headers['content-encoding']).toBeUndefined();
          res.once('data', (c: Buffer) => {
            resolve(c.toString());
            req.destroy();
          });
        },
      );
      req.on('error', reject);
    });
    expect(first).toBe('data: first\n\n');
    await get('/sse-release');
  });

  it('beam serve --no-compress sends bytes as the origin sent them', async () => {
    const server = new BeamProcess(['serve', '--port', '0', '--host', '127.0.0.1', '--json', '--no-compress']);
    const port = (await server.waitFor('ready'))['port'] as number;
    const agent = new BeamProcess(['http', String(stack.origin.port), '--server', `http://127.0.0.1:${port}`, '--json', '--no-inspect']);
    try {
      const name = (await agent.waitFor('ready'))['name'] as string;
      const res = await request(port, `${name}.localhost:${port}`, '/text?size=50000', { headers: { 'accept-encoding': 'br, gzip' } });
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.body.byteLength).toBe(50_000);
    } finally {
      await agent.kill();
      await server.kill();
    }
  });
});
