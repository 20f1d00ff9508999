/**
 * UDP shares: `beam udp <port>` and `beam connect`, real processes. A UDP echo
 * round trip of 1,000 datagrams, byte-exact, on the direct path (an unordered,
 * unreliable data channel) and on the relay (records on a stream).
 */

import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BeamProcess, type ServerHandle, startServer } from '../helpers/procs.js';

let server: ServerHandle;
let echo: dgram.Socket;
let echoPort: number;
let agent: BeamProcess;
let link: string;
const echoed = { count: 0 };

beforeAll(async () => {
  echo = dgram.createSocket('udp4');
  echo.on('message', (msg, rinfo) => {
    echoed.count++;
    echo.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => echo.bind(0, '127.0.0.1', resolve));
  echoPort = echo.address().port;
  server = await startServer();
  agent = new BeamProcess(['udp', `127.0.0.1:${echoPort}`, '--server', server.url, '--json']);
  const ready = await agent.waitFor('ready');
  expect(ready['kind']).toBe('udp');
  link = ready['link'] as string;
});
afterAll(async () => {
  await agent?.kill();
  await server?.proc.kill();
  echo?.close();
});

/** Sends `n` datagrams one at a time through `port`, each answered before the next; what came back. */
async function roundTrips(port: number, n: number): Promise<{ sent: string[]; got: string[] }> {
  const client = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
  const sent: string[] = [];
  const got: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const payload = randomBytes(1 + (i % 1200));
      sent.push(createHash('sha256').update(payload).digest('hex'));
      const reply = new Promise<Buffer>((resolve) => client.once('message', resolve));
      client.send(payload, port, '127.0.0.1');
      got.push(
        createHash('sha256')
          .update(await reply)
          .digest('hex'),
      );
    }
  } finally {
    client.close();
  }
  return { sent, got };
}

async function connectUdp(extra: string[]): Promise<{ proc: BeamProcess; port: number }> {
  const proc = new BeamProcess(['connect', link, '--server', server.url, '--json', ...extra]);
  const ready = await proc.waitFor('ready');
  expect(ready['url']).toMatch(/^udp:\/\/127\.0\.0\.1:\d+$/);
  return { proc, port: Number(new URL(ready['url'] as string).port) };
}

describe('beam udp + beam connect', () => {
  it('round-trips 1,000 datagrams byte-exact over the direct path', async () => {
    const { proc, port } = await connectUdp(['--relay', 'never']);
    try {
      expect((await proc.waitFor('session'))['path']).toBe('direct');
      const before = echoed.count;
      const { sent, got } = await roundTrips(port, 1000);
      expect(got).toEqual(sent);
      expect(echoed.count - before).toBe(1000);
    } finally {
      await proc.kill();
    }
  });

  it('round-trips 1,000 datagrams byte-exact over the relay', async () => {
    const { proc, port } = await connectUdp(['--relay', 'always']);
    try {
      expect((await proc.waitFor('session'))['path']).toBe('relay');
      const { sent, got } = await roundTrips(port, 1000);
      expect(got).toEqual(sent);
    } finally {
      await proc.kill();
    }
  });

  it('keeps each client address its own flow: answers go back to the right one', async () => {
    const { proc, port } = await connectUdp([]);
    try {
      const clients = await Promise.all(
        [0, 1, 2].map(async () => {
          const c = dgram.createSocket('udp4');
          await new Promise<void>((resolve) => c.bind(0, '127.0.0.1', resolve));
          return c;
        }),
      );
      const replies = await Promise.all(
        clients.map((c, i) => {
          const reply = new Promise<string>((resolve) => c.once('message', (m) => resolve(m.toString())));
          c.send(`client-${i}`, port, '127.0.0.1');
          return reply;
        }),
      );
      expect(replies).toEqual(['client-0', 'client-1', 'client-2']);
      for (const c of clients) c.close();
    } finally {
      await proc.kill();
    }
  });
});
