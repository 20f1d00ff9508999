/** `beam serve` as operators see it: health checks, and a SIGTERM that cuts no in-flight request. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { request } from '../helpers/http.js';
import { startOrigin, type Origin } from '../helpers/origin.js';
import { startAgent, startServer } from '../helpers/procs.js';

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await origin?.close();
});

describe('beam serve', () => {
  it('answers /healthz and /readyz on its own host, /.beam/… on share hosts, and leaves a share’s /healthz to the app', async () => {
    const server = await startServer();
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    try {
      const own = `127.0.0.1:${server.port}`;
      for (const path of ['/healthz', '/readyz', '/.beam/healthz', '/.beam/readyz']) {
        const res = await request(server.port, own, path);
        expect(res.status, path).toBe(200);
        expect(JSON.parse(res.body.toString())).toEqual({ status: 'ok' });
      }
      expect((await request(server.port, agent.host, '/.beam/readyz')).status).toBe(200);
      const app = await request(server.port, agent.host, '/healthz');
      expect(app.body.toString()).toBe('hello from /healthz');
    } finally {
      await agent.proc.kill();
      await server.proc.kill();
    }
  });

  it('on SIGTERM stops accepting, lets an in-flight request finish, then exits 0', async () => {
    const server = await startServer();
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    try {
      // An SSE response that stays open until the origin is told to finish it.
      let received = '';
      let firstEvent!: () => void;
      const gotFirst = new Promise<void>((resolve) => (firstEvent = resolve));
      const finished = new Promise<number>((resolve) => {
        http.get({ host: '127.0.0.1', port: server.port, path: '/sse', headers: { host: agent.host } }, (r) => {
          r.on('data', (c: Buffer) => {
            received += c.toString();
            firstEvent();
          });
          r.on('end', () => resolve(r.statusCode ?? 0));
        });
      });
      await gotFirst;

      const mark = server.proc.events.length;
      server.proc.child.kill('SIGTERM');
      const draining = await server.proc.waitFor('draining', mark);
      expect(draining['requests']).toBe(1);
      // No new connections once draining.
      await expect(request(server.port, `127.0.0.1:${server.port}`, '/healthz', { agent: false })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      // The in-flight response still completes: release it at the origin directly.
      await request(origin.port, `127.0.0.1:${origin.port}`, '/sse-release', { agent: false });
      expect(await finished).toBe(200);
      expect(received).toBe('data: first\n\ndata: second\n\n');
      expect(await server.proc.exited).toBe(0);
      expect(server.proc.events.at(-1)?.event).toBe('closed');
    } finally {
      await agent.proc.kill();
      await server.proc.kill();
    }
  });
});
