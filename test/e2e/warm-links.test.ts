/**
 * Warm links: the server's gateway opens its link to each HTTP share as the
 * share registers (GATEWAY_WARM_LINKS, `beam serve --warm-links`), so the
 * share's first visitor waits for no session setup.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { type ServerHandle, serveRefusal, startAgent, startServer } from '../helpers/procs.js';

let origin: Origin;
let server: ServerHandle;

beforeAll(async () => {
  origin = await startOrigin();
  server = await startServer();
});
afterAll(async () => {
  await server?.proc.kill();
  await origin?.close();
});

describe('warm links', () => {
  it("opens the gateway's link to an HTTP share as it registers: announced before any visitor, and the first request rides it", async () => {
    const agent = await startAgent(origin.port, server);
    try {
      // Nobody has asked for the share yet: the gateway's session is already there.
      const warm = await agent.proc.waitFor((e) => e.event === 'session' && e['visitor'] === 'gateway');
      expect(warm['path']).toBe('gateway');
      const mark = agent.proc.events.length;
      const res = await request(server.port, agent.host, '/first');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('hello from /first');
      expect(res.headers['beam-path']).toMatch(/^gateway; via=(relay|direct)$/);
      // It rode the link opened at registration: no other session was set up for it.
      expect(agent.proc.events.slice(mark).filter((e) => e.event === 'session')).toEqual([]);
    } finally {
      await agent.proc.kill();
    }
  });

  it.each([
    [['--warm-links', 'many'], /--warm-links must be a whole number/],
    [['--warm-links', '-1'], /--warm-links must be a whole number/],
  ])('beam serve %j is BEAM_ERR_BAD_OPTION', async (args, message) => {
    expect(await serveRefusal(args)).toEqual({ code: 'BEAM_ERR_BAD_OPTION', message: expect.stringMatching(message), exit: 1 });
  });

  it("a browser's navigation to a cold share opens the gateway's link while its page loads, before the page asks for anything", async () => {
    const cold = await startServer(['--warm-links', '0']);
    try {
      const agent = await startAgent(origin.port, cold);
      try {
        const mark = agent.proc.events.length;
        const page = await request(cold.port, agent.host, '/', {
          headers: { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'sec-fetch-site': 'none', accept: 'text/html' },
        });
        expect(page.status).toBe(200);
        expect(page.body.toString()).toContain('id="beam-config"');
        // Nothing but the page was asked for: the link opened for it.
        const warm = await agent.proc.waitFor((e) => e.event === 'session' && e['visitor'] === 'gateway', mark);
        expect(warm['path']).toBe('gateway');
        const next = agent.proc.events.length;
        const res = await request(cold.port, agent.host, '/app');
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe('hello from /app');
        expect(agent.proc.events.slice(next).filter((e) => e.event === 'session')).toEqual([]);
      } finally {
        await agent.proc.kill();
      }
    } finally {
      await cold.proc.kill();
    }
  });

  it('--warm-links 0 starts, and its shares are served at their first visitor', async () => {
    const cold = await startServer(['--warm-links', '0']);
    try {
      const agent = await startAgent(origin.port, cold);
      try {
        const res = await request(cold.port, agent.host, '/cold');
        expect(res.status).toBe(200);
        expect(res.body.toString()).toBe('hello from /cold');
      } finally {
        await agent.proc.kill();
      }
    } finally {
      await cold.proc.kill();
    }
  });
});
