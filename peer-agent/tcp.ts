/**
 * Serves one TCP stream from the share's origin, and only there: each stream
 * is one TCP connection. Half-close is kept both ways (a FIN on the stream
 * ends the origin socket's write side and the reverse), and an error on
 * either side becomes a reset on the other, never a silent close.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { TCP_KEEPALIVE_MS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { splice } from '../transport/splice.js';
import type { Origin } from './origin.js';

export function serveTcp(stream: Duplex, origin: Origin, onUnreachable: (err: NodeJS.ErrnoException) => void): void {
  const socket = net.connect({ host: origin.host, port: origin.port, allowHalfOpen: true, autoSelectFamilyAttemptTimeout: 2_000 } as net.NetConnectOpts);
  socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
  socket.setNoDelay(true);
  let connected = false;
  socket.once('connect', () => {
    connected = true;
  });
  splice(stream, socket, (err) => {
    if (connected) return new BeamError('BEAM_ERR_STREAM_RESET', `origin: ${err.code ?? err.message}`);
    onUnreachable(err);
    return new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE', `${origin.host}:${origin.port} (${err.code ?? err.message})`);
  });
}
