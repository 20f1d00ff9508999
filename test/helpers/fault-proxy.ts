/**
 * A TCP proxy that can cut every connection through it on demand: the fault
 * injector for "the agent's link to the server drops".
 */

import type { AddressInfo } from 'node:net';
import net from 'node:net';

export interface FaultProxy {
  port: number;
  /** Every byte that went through the proxy, both directions, in order. */
  seen(): Buffer;
  /** Destroys every open connection through the proxy (new ones still work). */
  cut(): void;
  close(): Promise<void>;
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const sockets = new Set<net.Socket>();
  const seen: Buffer[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (d: Buffer) => seen.push(d));
    upstream.on('data', (d: Buffer) => seen.push(d));
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cut = (): void => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    port: (server.address() as AddressInfo).port,
    seen: () => Buffer.concat(seen),
    cut,
    close() {
      cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
