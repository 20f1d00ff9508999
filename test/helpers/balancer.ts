/**
 * A plain TCP load balancer for cluster tests: each connection goes to the
 * next backend in turn, skipping those that refuse, as an L4 balancer with
 * health checks would. No stickiness.
 */
import net from 'node:net';

export interface Balancer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startBalancer(backends: number[]): Promise<Balancer> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.on('error', () => {});
    client.pause();
    const tryBackend = (left: number): void => {
      if (left === 0) {
        client.destroy();
        return;
      }
      const port = backends[next++ % backends.length] as number;
      const upstream = net.connect({ host: '127.0.0.1', port });
      upstream.once('connect', () => {
        sockets.add(upstream);
        upstream.once('close', () => sockets.delete(upstream));
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      upstream.once('error', () => tryBackend(left - 1));
    };
    tryBackend(backends.length);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
