/**
 * The client end of the gateway's relay: a WebSocket to RELAY_PATH that the
 * server splices to the other party of the same signaling session. What
 * travels on it is Noise ciphertext (transport/secure.ts), but for the server's
 * own gateway's link over TLS or loopback (transport/pipe-channel.ts).
 */
import WebSocket from 'ws';
import { RELAY_HIGH_WATER_BYTES, RELAY_LOW_WATER_BYTES, RELAY_MAX_MESSAGE_BYTES, RELAY_PAIR_TIMEOUT_MS, RELAY_PATH } from '../shared/constants.js';
import { BeamError, type ErrorCode, isErrorCode } from '../shared/errors.js';
import type { Pipe } from './secure.js';

export interface RelayTicket {
  sessionId: string;
  role: 'visitor' | 'agent';
  token: string;
}

/** ws:// or wss:// URL of the relay of the server at `server` (http or https). */
export function relayUrl(server: string, ticket: RelayTicket): string {
  const url = new URL(RELAY_PATH, server);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = new URLSearchParams({ session: ticket.sessionId, role: ticket.role, token: ticket.token }).toString();
  return url.href;
}

/**
 * Where a session's relay is: the node that set the session up, when the
 * server names one (several nodes behind a load balancer: both sides must
 * reach the same node), else the server itself. A node is accepted only on
 * the server's own host name or below it (node1.beam.example.com for
 * beam.example.com), over http(s): the server cannot send the agent's
 * connections anywhere else.
 */
export function relayServerFor(server: string, node: string | undefined): string {
  if (node === undefined) return server;
  let url: URL;
  try {
    url = new URL(node);
  } catch {
    return server;
  }
  const host = new URL(server).hostname;
  const ok = (url.protocol === 'http:' || url.protocol === 'https:') && (url.hostname === host || url.hostname.endsWith(`.${host}`));
  return ok ? url.origin : server;
}

/**
 * Relays in this process, by their server's origin (gateway/server.ts): the
 * server's own gateway joins its sessions there in memory, with no
 * WebSocket to itself over loopback (its framing, masking and a socket pair
 * for every message both ways). The relay checks the ticket as for any side.
 */
const inProcess = new Map<string, (ticket: RelayTicket) => Pipe>();

/** Offers the relay of `server` to sides in this process; returns how to take it back. */
export function serveRelayInProcess(server: string, attach: (ticket: RelayTicket) => Pipe): () => void {
  const key = new URL(server).origin;
  inProcess.set(key, attach);
  return () => {
    if (inProcess.get(key) === attach) inProcess.delete(key);
  };
}

/**
 * The relay's client frames go unmasked (an all-zero key, which ws then skips
 * applying): masking keeps a browser's script from choosing the bytes a
 * proxy on the way sees (RFC 6455, 10.3), and everything on the relay is
 * Noise ciphertext, which nobody can choose, but for the server's own
 * gateway's link without Noise (SessionOpened.plainLink), which runs only
 * inside TLS or over loopback, where no proxy on the way sees any byte.
 * Masking cost the agent about a third of its CPU on a relayed download
 * (copying each message to mask it).
 */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

/** Opens the relay WebSocket; resolves once it is open (the relay may still be waiting for the other side). */
export function connectRelay(server: string, ticket: RelayTicket): Promise<Pipe> {
  const attach = inProcess.get(new URL(server).origin);
  if (attach) return new Promise((resolve) => resolve(attach(ticket)));
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(relayUrl(server, ticket), {
      maxPayload: RELAY_MAX_MESSAGE_BYTES,
      handshakeTimeout: RELAY_PAIR_TIMEOUT_MS,
      perMessageDeflate: false,
      generateMask: zeroMask,
    });
    ws.on('unexpected-response', (_req, res) => {
      const code = res.headers['beam-error'];
      ws.terminate();
      reject(new BeamError(isErrorCode(code) ? code : 'BEAM_ERR_RELAY_REFUSED', `relay answered ${res.statusCode}`));
    });
    ws.once('error', (err) => reject(new BeamError('BEAM_ERR_SERVER_UNREACHABLE', `relay: ${err.message}`)));
    // Made now: the other side's first message can arrive in the same read as the upgrade response.
    const pipe = wsPipe(ws);
    ws.once('open', () => resolve(pipe));
  });
}

/** A Pipe over a ws WebSocket, with backpressure from bufferedAmount. */
export function wsPipe(ws: WebSocket): Pipe {
  const drainCbs: Array<() => void> = [];
  let waiting = false;
  // Messages that arrive before anybody listens are kept, not dropped.
  let early: Buffer[] | undefined = [];
  let messageCb: ((bytes: Uint8Array) => void) | undefined;
  // Listened for first, so the code is known to whoever hears of the close.
  let closeCode: ErrorCode | undefined;
  ws.on('close', (_code: number, reason: Buffer | undefined) => {
    const text = reason?.toString();
    if (isErrorCode(text)) closeCode = text;
  });
  ws.on('message', (data: Buffer) => {
    if (messageCb) messageCb(data);
    else early?.push(data);
  });
  const written = (): void => {
    if (waiting && ws.bufferedAmount <= RELAY_LOW_WATER_BYTES) {
      waiting = false;
      for (const cb of drainCbs) cb();
    }
  };
  ws.on('error', () => {
    // 'close' follows; the secured stream sees it there.
  });
  return {
    send(bytes) {
      if (ws.readyState !== WebSocket.OPEN) return true;
      ws.send(bytes, written);
      if (ws.bufferedAmount < RELAY_HIGH_WATER_BYTES) return true;
      waiting = true;
      return false;
    },
    bufferedAmount: () => ws.bufferedAmount,
    onDrain: (cb) => drainCbs.push(cb),
    onMessage: (cb) => {
      messageCb = cb;
      for (const m of early ?? []) cb(m);
      early = undefined;
    },
    onClose: (cb) => ws.on('close', () => cb()),
    closeCode: () => closeCode,
    close: () => ws.close(),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
}
