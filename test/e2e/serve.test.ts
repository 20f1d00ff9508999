/** `beam serve` as operators see it: health checks, and a SIGTERM that cuts no in-flight request. */

import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
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

  it('serves Prometheus metrics on its own host that move with traffic, and never on a share host', async () => {
    const server = await startServer();
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server);
    const own = `127.0.0.1:${server.port}`;
    /** Parses the text format: every sample line is `name{labels} value`. */
    const scrape = async (): Promise<Map<string, number>> => {
      const res = await request(server.port, own, '/metrics');
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toContain('text/plain');
      const samples = new Map<string, number>();
      for (const line of res.body.toString().split('\n')) {
        if (!line || line.startsWith('#')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
        expect(m, line).not.toBeNull();
        samples.set(m![1]!, Number(m![2]));
      }
      return samples;
    };
    try {
      const before = await scrape();
      expect(before.get('beam_shares')).toBe(1);
      for (let i = 0; i < 7; i++) expect((await request(server.port, agent.host, `/m${i}`)).status).toBe(200);
      const after = await scrape();
      expect((after.get('beam_gateway_requests_total{status="2xx"}') ?? 0) - (before.get('beam_gateway_requests_total{status="2xx"}') ?? 0)).toBe(7);
      expect((after.get('beam_gateway_request_duration_seconds_count') ?? 0) - (before.get('beam_gateway_request_duration_seconds_count') ?? 0)).toBe(7);
      expect(after.get('beam_gateway_peer_bytes_total{direction="received"}')).toBeGreaterThan(7 * 20);
      expect(after.get('beam_sessions{visitor="gateway"}')).toBe(1);
      // One link to the one agent, on one path.
      const links = ['direct', 'turn', 'relay'].map((p) => after.get(`beam_gateway_links{path="${p}"}`) ?? 0);
      expect(before.get('beam_gateway_links{path="direct"}') ?? 0).toBe(0);
      expect(links.reduce((x, y) => x + y, 0)).toBe(1);
      // Exported (a loaded machine may time a direct attempt out even on loopback: the link is then on the relay).
      expect(after.get('beam_ice_failures_total')).toBeTypeOf('number');
      // A share's own /metrics belongs to the app.
      expect((await request(server.port, agent.host, '/metrics')).body.toString()).toBe('hello from /metrics');
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
