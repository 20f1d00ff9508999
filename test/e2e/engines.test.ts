/**
 * Engine interop: a werift agent behind a node-datachannel gateway, and a
 * node-datachannel agent behind a werift gateway, with the same checks.
 */

import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patternStream, request, sha256 } from '../helpers/http.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { startAgent, startServer } from '../helpers/procs.js';

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin();
});
afterAll(async () => {
  await origin?.close();
});

describe.each([
  { gateway: 'node-datachannel', agent: 'werift' },
  { gateway: 'werift', agent: 'node-datachannel' },
])('a $agent agent behind a $gateway gateway', ({ gateway, agent: agentEngine }) => {
  it('serves GET, a 4 MiB upload and download byte-exact, and 50 concurrent requests', async () => {
    const server = await startServer(['--engine', gateway]);
    const agent = await startAgent(`127.0.0.1:${origin.port}`, server, ['--engine', agentEngine]);
    try {
      const hello = await request(server.port, agent.host, '/interop');
      expect(hello.status).toBe(200);
      expect(hello.body.toString()).toBe('hello from /interop');

      const size = 4 * 1024 * 1024;
      const { stream, hash } = patternStream(size, 5);
      const up = await request(server.port, agent.host, '/upload', { method: 'POST', body: stream, headers: { 'content-length': String(size) } });
      expect(JSON.parse(up.body.toString())).toEqual({ bytes: size, sha256: await hash });

      const down = await request(server.port, agent.host, `/download?size=${size}&seed=9`);
      const expected = patternStream(size, 9);
      expected.stream.resume();
      expect(sha256(down.body)).toBe(await expected.hash);

      const many = new http.Agent({ keepAlive: true, maxSockets: 50 });
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => request(server.port, agent.host, `/c${i}`, { agent: many })));
      expect(replies.every((r, i) => r.status === 200 && r.body.toString() === `hello from /c${i}`)).toBe(true);
      many.destroy();
    } finally {
      await agent.proc.kill();
      await server.proc.kill();
    }
  });
});
