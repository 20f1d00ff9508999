/** Joining a multiplexed stream and a TCP socket, for TCP shares on both ends (agent and `beam connect`). */
import type net from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Joins a stream and a TCP socket: bytes both ways with backpressure, FIN
 * both ways, and resets both ways (`socketError` says what the stream is reset
 * with when the socket fails; a failed stream resets the socket with RST).
 */
export function splice(stream: Duplex, socket: net.Socket, socketError: (err: NodeJS.ErrnoException) => Error): void {
  stream.pipe(socket);
  socket.pipe(stream);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    stream.unpipe(socket);
    stream.destroy(socketError(err));
  });
  stream.on('error', () => {
    socket.unpipe(stream);
    if (!socket.destroyed) socket.resetAndDestroy();
  });
}
