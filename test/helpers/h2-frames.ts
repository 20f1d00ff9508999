/**
 * A hand-rolled HTTP/2 client for attacks no well-behaved client library
 * will send: raw frames on a TCP socket (RFC 9113 section 4.1), header
 * blocks as HPACK literals without indexing or Huffman (RFC 7541 section
 * 6.2.2). It reads the server's frames and reports GOAWAY, RST_STREAM and the
 * connection's end, so a test can assert how the server dealt with it.
 */
import net from 'node:net';

export const FrameType = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const ErrorCode = { NO_ERROR: 0, PROTOCOL_ERROR: 1, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.byteLength, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 section 5.1). */
function integer(value: number, prefixBits: number, firstByte = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return Buffer.from(out);
}

/** A header block of literal fields (never indexed, no Huffman). */
export function headerBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([0x00]), integer(n.byteLength, 7), n, integer(v.byteLength, 7), v);
  }
  return Buffer.concat(parts);
}

export function rstStream(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FrameType.RST_STREAM, 0, streamId, payload);
}

export interface ServerFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export class RawH2 {
  readonly socket: net.Socket;
  readonly frames: ServerFrame[] = [];
  /** The GOAWAY's error code, once one came. */
  goaway: number | undefined;
  readonly closed: Promise<void>;
  private buffered: Buffer = Buffer.alloc(0);
  private waiters: Array<{ match: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.byteLength >= 9) {
        const length = this.buffered.readUIntBE(0, 3);
        if (this.buffered.byteLength < 9 + length) break;
        const f: ServerFrame = {
          type: this.buffered.readUInt8(3),
          flags: this.buffered.readUInt8(4),
          streamId: this.buffered.readUInt32BE(5) & 0x7fffffff,
          payload: this.buffered.subarray(9, 9 + length),
        };
        this.buffered = this.buffered.subarray(9 + length);
        if (f.type === FrameType.GOAWAY) this.goaway = f.payload.readUInt32BE(4);
        // A SETTINGS from the server is acknowledged, as a client must.
        if (f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0 && !socket.destroyed) socket.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
        this.frames.push(f);
        for (const w of [...this.waiters]) {
          if (w.match(f)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(f);
          }
        }
      }
    });
  }

  /** Connects, sends the preface and an empty SETTINGS. */
  static async open(port: number): Promise<RawH2> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawH2(socket);
    socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
    return client;
  }

  /** Writes, ignoring a connection the server already closed. */
  send(bytes: Buffer): boolean {
    if (this.socket.destroyed) return false;
    return this.socket.write(bytes);
  }

  /** A GET's HEADERS for `authority` and `path`, ending the stream; `extra` fields after the pseudo-headers. */
  get(streamId: number, authority: string, path: string, extra: ReadonlyArray<readonly [string, string]> = []): Buffer {
    const block = headerBlock([[':method', 'GET'], [':scheme', 'http'], [':authority', authority], [':path', path], ...extra]);
    return frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, streamId, block);
  }

  /** The first frame (past or future) that matches. */
  next(match: (f: ServerFrame) => boolean): Promise<ServerFrame> {
    const seen = this.frames.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** The status of a response's HEADERS on `streamId` (the server's encoder may index it: a few known forms are read). */
  async status(streamId: number): Promise<number | 'reset'> {
    const f = await this.next((x) => x.streamId === streamId && (x.type === FrameType.HEADERS || x.type === FrameType.RST_STREAM));
    if (f.type === FrameType.RST_STREAM) return 'reset';
    // Indexed :status from the static table (RFC 7541 appendix A): 8..14.
    const first = f.payload[0] as number;
    const statics: Record<number, number> = { 136: 200, 137: 204, 138: 206, 139: 304, 140: 400, 141: 404, 142: 500 };
    if (statics[first] !== undefined) return statics[first] as number;
    // Literal with an indexed :status name (index 8..14): the value follows as a 3-digit string.
    const valueLength = (f.payload[1] as number) & 0x7f;
    return Number(f.payload.subarray(2, 2 + valueLength).toString('latin1'));
  }

  close(): void {
    this.socket.destroy();
  }
}
