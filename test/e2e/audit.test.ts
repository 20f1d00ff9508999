/**
 * The audit log: pino JSON on the server and on the agent, with an `audit`
 * field, for registrations, sessions, auth failures and limit hits.
 */

import { io as connectSocket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SIGNALING_PATH, SIGNALING_PROTOCOL_VERSION } from '../../shared/constants.js';
import { request } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess } from '../helpers/procs.js';

let origin: Origin;
let server: BeamProcess;
let port: number;
beforeAll(async () => {
  origin = await startOrigin();
  server = new BeamProcess(['serve', '--port', '0', '--host', '127.0.0.1', '--json', '--log-level', 'info']);
  port = (await server.waitFor('ready'))['port'] as number;
});
afterAll(async () => {
  await server?.kill();
  await origin?.close();
});

describe('audit log', () => {
  it('records registrations, sessions, auth failures and limit hits, on the server and on the agent', async () => {
    const agent = new BeamProcess([
      'http',
      String(origin.port),
      '--server',
      `http://127.0.0.1:${port}`,
      '--json',
      '--no-inspect',
      '--log-level',
      'info',
      '--auth',
      'ann:pw',
      '--rate-limit',
      '2/min',
      '--name',
      'audited-1',
    ]);
    try {
      await agent.waitFor('ready');
      const registered = await server.waitForLog({ audit: 'share.registered', share: 'audited-1' });
      expect(registered['address']).toBe('127.0.0.1');
      expect(registered['level']).toBe(30);
      await agent.waitForLog({ audit: 'share.registered', share: 'audited-1' });

      const host = `audited-1.localhost:${port}`;
      expect((await request(port, host, '/private?token=secret')).status).toBe(401);
      const refused = await agent.waitForLog({ audit: 'auth.refused', code: 'BEAM_ERR_UNAUTHORIZED' });
      expect(refused).toMatchObject({ visitor: '127.0.0.1', path: 'gateway', method: 'GET', target: '/private' });
      expect(JSON.stringify(refused)).not.toContain('token=secret');
      await server.waitForLog({ audit: 'session.opened', share: 'audited-1', visitor: 'gateway' });

      const auth = { authorization: `Basic ${Buffer.from('ann:pw').toString('base64')}` };
      const statuses: number[] = [];
      for (let i = 0; i < 2; i++) statuses.push((await request(port, host, '/ok', { headers: auth })).status);
      expect(statuses).toEqual([200, 429]);
      expect(await agent.waitForLog({ audit: 'limit.hit', code: 'BEAM_ERR_RATE_LIMITED' })).toMatchObject({ visitor: '127.0.0.1' });

      // A signaling client with a forged gateway token: refused, and on the record.
      const forged = connectSocket(`http://127.0.0.1:${port}`, {
        path: SIGNALING_PATH,
        transports: ['websocket'],
        reconnection: false,
        auth: { protocol: SIGNALING_PROTOCOL_VERSION, role: 'visitor', gatewayToken: 'forged' },
      });
      await new Promise<void>((resolve) => forged.once('connect_error', () => resolve()));
      forged.close();
      expect(await server.waitForLog({ audit: 'auth.refused', code: 'BEAM_ERR_UNAUTHORIZED' })).toMatchObject({ address: '127.0.0.1' });

      // Two agents asking for one name: the second is refused, on the record.
      const second = new BeamProcess(['http', String(origin.port), '--server', `http://127.0.0.1:${port}`, '--json', '--no-inspect', '--name', 'audited-1']);
      expect((await second.waitFor('error'))['code']).toBe('BEAM_ERR_NAME_TAKEN');
      await server.waitForLog({ audit: 'auth.refused', code: 'BEAM_ERR_NAME_TAKEN' });

      const mark = agent.events.length;
      expect(await agent.kill()).toBe(0);
      expect(agent.events.slice(mark).at(-1)?.event).toBe('closed');
      await server.waitForLog({ audit: 'share.closed' });
      await server.waitForLog({ audit: 'session.closed', share: 'audited-1' });
    } finally {
      await agent.kill();
    }
  });
});

describe('request ids', () => {
  it('one id follows a request from the gateway to the agent to the origin, and back in the response', async () => {
    const agent = new BeamProcess([
      'http',
      String(origin.port),
      '--server',
      `http://127.0.0.1:${port}`,
      '--json',
      '--no-inspect',
      '--log-level',
      'debug',
      '--name',
      'traced-1',
    ]);
    try {
      await agent.waitFor('ready');
      const host = `traced-1.localhost:${port}`;
      const res = await request(port, host, '/headers?secret=1');
      const id = res.headers['x-request-id'] as string;
      expect(id).toMatch(/^[0-9a-f]{16}$/);
      const seen = JSON.parse(res.body.toString()) as { headers: Record<string, string> };
      expect(seen.headers['x-request-id']).toBe(id);
      const gatewayLine = await server.waitForLog({ msg: 'request', req: id });
      expect(gatewayLine).toMatchObject({ share: 'traced-1', method: 'GET', target: '/headers', status: 200 });
      expect(await agent.waitForLog({ msg: 'forwarded', req: id })).toMatchObject({ path: 'gateway', status: 200 });

      // A client's own well-formed id is kept (a chain of proxies keeps one id); anything else is replaced.
      const kept = await request(port, host, '/headers', { headers: { 'x-request-id': 'upstream-id-42' } });
      expect(kept.headers['x-request-id']).toBe('upstream-id-42');
      const replaced = await request(port, host, '/headers', { headers: { 'x-request-id': 'bad id' } });
      expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f]{16}$/);
      expect((JSON.parse(replaced.body.toString()) as { headers: Record<string, string> }).headers['x-request-id']).toBe(replaced.headers['x-request-id']);
    } finally {
      await agent.kill();
    }
  });
});
