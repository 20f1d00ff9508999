/**
 * The gateway's own answers (shared/error-page.ts renders them), with the
 * code in a `beam-error` header.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { render } from '../shared/error-page.js';
import { ERRORS, type ErrorCode } from '../shared/errors.js';

export function sendError(reqHeaders: IncomingHttpHeaders, res: ServerResponse, code: ErrorCode, detail?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { type, text } = render(reqHeaders, code, detail);
  res.writeHead(ERRORS[code].status, {
    'content-type': type,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'beam-error': code,
  });
  res.end(text);
}

/** The same for a connection taken over by an upgrade request (no ServerResponse there). */
export function sendRawError(reqHeaders: IncomingHttpHeaders, socket: Duplex, code: ErrorCode, detail?: string): void {
  const { type, text } = render(reqHeaders, code, detail);
  const status = ERRORS[code].status;
  socket.end(
    `HTTP/1.1 ${status} ${code}\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(text)}\r\n` +
      `beam-error: ${code}\r\nconnection: close\r\n\r\n${text}`,
  );
}
