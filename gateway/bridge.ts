/**
 * The page's bridge (BRIDGE_PATH): a share's browser page runs its
 * multiplexer on a WebSocket to the gateway while its peer connection comes
 * up, so the app's first requests wait for no WebRTC. The page's requests
 * keep the page's ways (its cookie jar, its redirects, its WebSockets) as on
 * the data channel; new ones move to the data channel once it is up.
 *
 * Each of the page's streams becomes one stream to the share's agent over
 * the gateway's own session with it. The gateway reads the request head and
 * writes it again as its HTTP path would: the page never claims where it
 * came from (X-Forwarded-* and the request id are the gateway's), nor where
 * the agent connects (the target is origin-form). The rest of the stream,
 * both ways, passes as it is. Like the gateway's HTTP path, the server reads
 * what the bridge carries: see docs/security.md.
 */
import type { IncomingMessage } from 'node:http';
import { finished } from 'node:stream';
import type { WebSocket } from 'ws';
import { BRIDGE_HEADER, BRIDGE_HIGH_WATER_BYTES, BRIDGE_LOW_WATER_BYTES } from '../shared/constants.js';
import { type ErrorCode, errorCodeOf } from '../shared/errors.js';
import { FrameChannelBase } from '../shared/frame-channel.js';
import { decodeRequestHead, encodeHead, endToEndPairs, FORWARDING_HEADERS, type RequestHead, readHead } from '../shared/http-head.js';
import type { MuxStream } from '../shared/mux.js';

/** A FrameChannel over the server's end of the bridge's WebSocket: one message a frame, with backpressure from bufferedAmount. */
export class SocketChannel extends FrameChannelBase {
  private readonly ws: WebSocket;
  private waiting = false;

  constructor(ws: WebSocket) {
    super();
    this.ws = ws;
    ws.on('message', (data: Buffer) => this.deliver(data));
    ws.on('close', () => this.markClosed());
    ws.on('error', () => ws.terminate());
  }

  send(message: Uint8Array): void {
    if (this.closed || this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(message, () => {
      if (this.waiting && this.ws.bufferedAmount <= Math.max(this.lowThreshold, BRIDGE_LOW_WATER_BYTES)) {
        this.waiting = false;
        this.drained();
      }
    });
    if (this.ws.bufferedAmount > BRIDGE_HIGH_WATER_BYTES) this.waiting = true;
  }

  bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  close(): void {
    this.ws.close();
  }
}

/** Where the page's requests come from, as the gateway saw its WebSocket. */
export interface BridgeClient {
  address: string;
  proto: 'http' | 'https';
  host: string;
}

/**
 * The page's request head as the gateway's HTTP path would send it: the
 * page's own forwarding headers and request id go, the gateway's come.
 */
export function bridgedHead(head: RequestHead, client: BridgeClient, requestId: string): RequestHead {
  const headers = endToEndPairs(head.headers, FORWARDING_HEADERS).filter(([k]) => {
    const lower = k.toLowerCase();
    return lower !== 'x-request-id' && lower !== BRIDGE_HEADER;
  });
  headers.push(
    ['X-Forwarded-For', client.address],
    ['X-Forwarded-Proto', client.proto],
    ['X-Forwarded-Host', client.host],
    ['X-Request-Id', requestId],
    // The agent answers a browser page's way (it tells the page the origin's address).
    [BRIDGE_HEADER, '1'],
  );
  return { ...head, headers, remoteAddress: client.address };
}

/**
 * Carries one of the page's streams to the agent: `open` gives a stream to
 * the share's agent. A failure before the agent has the request is answered
 * on the page's stream with its code, as the agent would. `settled` is
 * called once the request and its response have ended, both whole (the
 * stream's place is free then, though the page has yet to read the tail).
 */
export async function bridgeStream(
  page: MuxStream,
  client: BridgeClient,
  requestId: string,
  open: () => Promise<MuxStream>,
  settled: () => void = () => {},
): Promise<ErrorCode | undefined> {
  page.on('error', () => {});
  let head: RequestHead;
  try {
    head = decodeRequestHead(await readHead(page));
  } catch (err) {
    page.destroy();
    return errorCodeOf(err) ?? 'BEAM_ERR_BAD_MESSAGE';
  }
  let agent: MuxStream;
  try {
    agent = await open();
  } catch (err) {
    const code = errorCodeOf(err) ?? 'BEAM_ERR_AGENT_UNREACHABLE';
    page.end(encodeHead({ kind: 'error', code }));
    page.resume();
    return code;
  }
  // A side that fails, or closes before it has ended both ways (the page went, a path died), resets the other. A side
  // that ended cleanly leaves the other to finish: the page's stream may still hold the response's tail for the page.
  agent.on('error', () => {});
  finished(agent, (err) => {
    if (err) page.destroy();
  });
  finished(page, (err) => {
    if (err) agent.destroy();
  });
  let ends = 0;
  const ended = (): void => {
    if (++ends === 2) settled();
  };
  page.once('end', ended);
  agent.once('end', ended);
  agent.write(encodeHead(bridgedHead(head, client, requestId)));
  page.pipe(agent);
  agent.pipe(page);
  return undefined;
}

/** The scheme and host the page's WebSocket came by, when its Origin is the share's own (a page of another site gets no bridge). */
export function bridgeClient(req: IncomingMessage, encrypted: boolean, trustProxy: boolean): BridgeClient | undefined {
  const host = req.headers.host;
  if (!host) return undefined;
  let proto: 'http' | 'https' = encrypted ? 'https' : 'http';
  let address = req.socket.remoteAddress ?? '';
  if (trustProxy) {
    const scheme = req.headers['x-forwarded-proto']?.toString().split(',').at(-1)?.trim().toLowerCase();
    if (scheme === 'https' || scheme === 'http') proto = scheme;
    const forwarded = req.headers['x-forwarded-for']?.toString().split(',').at(-1)?.trim();
    if (forwarded) address = forwarded;
  }
  if (req.headers.origin !== `${proto}://${host}`) return undefined;
  return { address, proto, host };
}
