/**
 * The server's own STUN: it answers binding requests on a UDP port (the
 * server's own port number by default), so a plain `beam serve` gives both
 * peers their server-reflexive addresses and direct paths form across NATs
 * with no coturn, as Tailscale's DERP servers and iroh's relays do. Binding
 * requests only (RFC 8489, no authentication: a binding response says
 * nothing the requester can't see), at most STUN_REQUESTS_PER_SECOND from
 * one address, the rest dropped.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import { STUN_REQUESTS_PER_SECOND } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { RateLimiterMemory } from '../shared/limiter.js';

export interface StunServer {
  readonly port: number;
  close(): void;
}

export async function startStunServer(options: { host: string; port: number; logger: Logger }): Promise<StunServer> {
  const socket = dgram.createSocket({ type: isIPv6(options.host) ? 'udp6' : 'udp4', reuseAddr: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new BeamError('BEAM_ERR_BAD_OPTION', `UDP port ${options.port} is in use: pick another with --stun-port, or --no-stun`)
          : err,
      ),
    );
    socket.bind(options.port, options.host, () => resolve());
  });
  // The STUN codec loads with the server's STUN, not with every module that names it.
  const { default: stun } = await import('@msimerson/stun');
  const server = stun.createServer({ type: isIPv6(options.host) ? 'udp6' : 'udp4', socket });
  const budget = new RateLimiterMemory({ points: STUN_REQUESTS_PER_SECOND, duration: 1 });
  const { STUN_BINDING_RESPONSE, STUN_EVENT_BINDING_REQUEST } = stun.constants;
  server.on(STUN_EVENT_BINDING_REQUEST, (request, rinfo) => {
    budget.consume(rinfo.address).then(
      () => {
        const response = stun.createMessage(STUN_BINDING_RESPONSE, request.transactionId);
        response.addXorAddress(rinfo.address, rinfo.port);
        server.send(response, rinfo.port, rinfo.address);
      },
      () => {
        // Over the budget: dropped, as a lost datagram would be.
      },
    );
  });
  server.on('error', (err: Error) => options.logger.debug({ err: err.message }, 'stun: a malformed datagram'));
  return {
    port: socket.address().port,
    close: () => socket.close(),
  };
}
