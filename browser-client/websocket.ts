/**
 * One of the app's WebSockets, carried through the page's session (page.ts
 * opens the stream; this module, loaded with the app's first WebSocket, does
 * the rest): the agent opens the WebSocket to the origin, and both sides pass
 * whole messages (shared/ws-messages.ts).
 */
import type { exchange } from '../shared/http-head.js';
import type { MuxStream } from '../shared/mux.js';
import { decodeWsClose, encodeWsClose, encodeWsMessage, WsKind, WsMessageReader } from '../shared/ws-messages.js';
import type { HeaderList } from './messages.js';

/** Where the socket's events go (the app shim's WebSocket). */
export interface WsSink {
  open(protocol: string): void;
  message(kind: 'text' | 'binary', data: string | ArrayBuffer): void;
  close(code: number, reason: string, wasClean: boolean): void;
  error(): void;
}

/** What the app shim's WebSocket sends through. */
export interface WsCarrier {
  send(kind: 'text' | 'binary', data: string | ArrayBuffer): void;
  close(code: number, reason: string): void;
}

const toArrayBuffer = (chunk: Uint8Array): ArrayBuffer => chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) as ArrayBuffer;

/**
 * Asks the agent for the WebSocket on `stream` (with the page's `exchange`: a chunk
 * of its own would split the code the two share) and carries its messages;
 * `keepCookies` takes the upgrade's Set-Cookie.
 */
export function carryWebSocket(
  send: typeof exchange,
  stream: MuxStream,
  target: string,
  headers: HeaderList,
  sink: WsSink,
  keepCookies: (setCookies: string[]) => Promise<void>,
): WsCarrier {
  const response = send(stream, { method: 'GET', target, headers, upgrade: false, body: false, websocket: true }, undefined, { end: false });
  let closed = false;
  const finish = (code: number, reason: string, clean: boolean): void => {
    if (closed) return;
    closed = true;
    if (!clean) sink.error();
    sink.close(code, reason, clean);
  };
  void (async () => {
    let head;
    try {
      head = await response;
    } catch {
      finish(1006, '', false);
      stream.destroy();
      return;
    }
    if (head.kind === 'error' || head.status !== 101) {
      finish(1006, '', false);
      stream.destroy();
      return;
    }
    await keepCookies(head.headers.filter(([k]) => k.toLowerCase() === 'set-cookie').map(([, v]) => v));
    sink.open(head.headers.find(([k]) => k.toLowerCase() === 'sec-websocket-protocol')?.[1] ?? '');
    const reader = new WsMessageReader();
    stream.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, (kind, payload) => {
          if (kind === WsKind.CLOSE) {
            const { code, reason } = decodeWsClose(payload);
            finish(code, reason, true);
          } else if (kind === WsKind.TEXT) sink.message('text', payload.toString('utf8'));
          else sink.message('binary', toArrayBuffer(payload));
        });
      } catch {
        stream.destroy();
        finish(1006, '', false);
      }
    });
    // Ended without a close message: the path or the agent went away.
    stream.on('close', () => finish(1006, '', false));
    // readHead listened for 'readable'; the browser's streams (readable-stream 3) stay paused after that until told.
    stream.resume();
  })();
  return {
    send(kind, data) {
      if (closed) return;
      try {
        stream.write(
          encodeWsMessage(
            kind === 'text' ? WsKind.TEXT : WsKind.BINARY,
            kind === 'text' ? Buffer.from(data as string, 'utf8') : Buffer.from(data as ArrayBuffer),
          ),
        );
      } catch {
        // over MAX_WS_MESSAGE_BYTES: the socket fails, as a browser's would on a message too big for the server
        stream.destroy();
        finish(1009, 'message too big', false);
      }
    },
    close(code, reason) {
      // The agent closes the origin's socket and answers with the origin's close.
      if (!closed) stream.write(encodeWsClose(code, reason));
    },
  };
}
