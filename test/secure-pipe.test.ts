/**
 * The Noise layer over a pipe (transport/secure.ts): what it queued while its
 * pipe was full leaves, once the pipe drains, in messages the far side takes.
 * The relay's WebSockets close on a message past RELAY_MAX_MESSAGE_BYTES, so a
 * backlog sent whole as one message would end the relayed session.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_FRAME_PAYLOAD, MAX_MESSAGE_BYTES, RELAY_MAX_MESSAGE_BYTES, SECURE_PIPE_MESSAGE_BYTES, SECURE_WRITE_BYTES } from '../shared/constants.js';
import { decodeMessage, encodeMessage, FrameType } from '../shared/frames.js';
import { ephemeralIdentity } from '../transport/identity.js';
import { lengthOrMore, type Pipe, SecureFrameChannel, secure } from '../transport/secure.js';

/** Two pipes joined in memory; `a.full` makes a's send say "wait" (it still delivers), `a.drain()` says "go on". */
function pipePair(split?: (n: number) => number): { a: Pipe & { full: boolean; sizes: number[]; drain(): void }; b: Pipe } {
  let sent = 0;
  const make = (): Pipe & { peer?: Pipe; deliver(bytes: Uint8Array): void; drains: Array<() => void>; full: boolean; sizes: number[]; drain(): void } => {
    let onMessage: ((bytes: Uint8Array) => void) | undefined;
    const early: Uint8Array[] = [];
    const closes: Array<() => void> = [];
    const side = {
      peer: undefined as (Pipe & { deliver(bytes: Uint8Array): void }) | undefined,
      drains: [] as Array<() => void>,
      full: false,
      sizes: [] as number[],
      deliver(bytes: Uint8Array): void {
        if (onMessage) onMessage(bytes);
        else early.push(bytes);
      },
      send(bytes: Uint8Array): boolean {
        side.sizes.push(bytes.byteLength);
        const copy = Uint8Array.from(bytes);
        // `split`: each message reaches the far side as two chunks, cut where it says.
        const at = split === undefined ? copy.byteLength : Math.min(split(sent++), copy.byteLength);
        queueMicrotask(() => {
          side.peer?.deliver(copy.subarray(0, at));
          if (at < copy.byteLength) side.peer?.deliver(copy.subarray(at));
        });
        return !side.full;
      },
      bufferedAmount: () => 0,
      onDrain: (cb: () => void) => side.drains.push(cb),
      onMessage: (cb: (bytes: Uint8Array) => void) => {
        onMessage = cb;
        for (const m of early.splice(0)) cb(m);
      },
      onClose: (cb: () => void) => closes.push(cb),
      close: () => {
        for (const cb of closes) cb();
      },
      drain(): void {
        side.full = false;
        for (const cb of side.drains) cb();
      },
    };
    return side;
  };
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return { a, b };
}

describe('Noise over a pipe', () => {
  it(`sends what it queued while the pipe was full in messages of at most SECURE_PIPE_MESSAGE_BYTES (${SECURE_PIPE_MESSAGE_BYTES}), byte-exact`, async () => {
    expect(SECURE_PIPE_MESSAGE_BYTES).toBeLessThanOrEqual(RELAY_MAX_MESSAGE_BYTES);
    const { a, b } = pipePair();
    const [ia, ib] = await Promise.all([ephemeralIdentity(), ephemeralIdentity()]);
    const [sa, sb] = await Promise.all([secure(a, { role: 'initiator', identity: ia, remotePeer: ib.peerId }), secure(b, { role: 'responder', identity: ib })]);
    const got: Buffer[] = [];
    let received = 0;
    const total = 1024 * 1024;
    const all = new Promise<void>((resolve) => {
      sb.stream.addEventListener('message', (evt) => {
        const chunk = Buffer.from(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray());
        got.push(chunk);
        received += chunk.length;
        if (received >= total) resolve();
      });
    });
    // The pipe is full: the first write goes, the rest queue in the Noise layer.
    a.full = true;
    a.sizes.length = 0;
    const chunks = Array.from({ length: total / (16 * 1024) }, (_, i) => Buffer.alloc(16 * 1024, i % 251));
    for (const chunk of chunks) sa.stream.send(chunk);
    expect(sa.stream.writeBufferLength).toBeGreaterThan(RELAY_MAX_MESSAGE_BYTES);
    a.drain();
    await all;
    expect(Math.max(...a.sizes)).toBeLessThanOrEqual(SECURE_PIPE_MESSAGE_BYTES);
    const digest = (bufs: Buffer[]): string => createHash('sha256').update(Buffer.concat(bufs)).digest('hex');
    expect(digest(got)).toBe(digest(chunks));
  });

  it(`a secured channel writes one turn's messages to the pipe together, in messages of at most SECURE_PIPE_MESSAGE_BYTES, and the far side gets every frame byte-exact`, async () => {
    const { a, b } = pipePair();
    const [ia, ib] = await Promise.all([ephemeralIdentity(), ephemeralIdentity()]);
    const [sa, sb] = await Promise.all([secure(a, { role: 'initiator', identity: ia, remotePeer: ib.peerId }), secure(b, { role: 'responder', identity: ib })]);
    const tx = new SecureFrameChannel(sa);
    const rx = new SecureFrameChannel(sb);
    const count = 64;
    const sent = Array.from({ length: count }, (_, i) =>
      encodeMessage([{ type: FrameType.DATA, streamId: 1, data: Buffer.alloc(MAX_FRAME_PAYLOAD - (i % 7) * 100, i % 251) }]),
    );
    expect(Math.max(...sent.map((m) => m.byteLength))).toBe(MAX_MESSAGE_BYTES);
    const got: Uint8Array[] = [];
    const all = new Promise<void>((resolve) => {
      rx.onMessage((message) => {
        got.push(Uint8Array.from(message));
        if (got.length === count) resolve();
      });
    });
    a.sizes.length = 0;
    // One loop turn, as the multiplexer's flush sends.
    for (const m of sent) tx.send(m);
    await all;
    // 64 messages of up to 16 KiB left as a quarter as many pipe messages, none past the limit.
    const bytes = sent.reduce((n, m) => n + m.byteLength, 0);
    expect(a.sizes.length).toBeLessThanOrEqual(Math.ceil(bytes / (SECURE_WRITE_BYTES - MAX_MESSAGE_BYTES)));
    expect(Math.max(...a.sizes)).toBeLessThanOrEqual(SECURE_PIPE_MESSAGE_BYTES);
    const digest = (list: Uint8Array[]): string => createHash('sha256').update(Buffer.concat(list)).digest('hex');
    expect(digest(got)).toBe(digest(sent));
    expect(got.map((m) => decodeMessage(m).length)).toEqual(sent.map(() => 1));
  });

  it('reads message lengths cut anywhere, even after one byte of the prefix, without throwing an error per chunk, byte-exact', async () => {
    expect(lengthOrMore(Uint8Array.of(0x12, 0x34, 9))).toBe(0x1234);
    expect(lengthOrMore(Uint8Array.of(0x12))).toBeGreaterThan(1);
    // Cut 0, 1, 2, 3 ... 9 bytes into each message: the length prefix split, whole, or with a little of the data.
    const { a, b } = pipePair((n) => n % 10);
    const [ia, ib] = await Promise.all([ephemeralIdentity(), ephemeralIdentity()]);
    const [sa, sb] = await Promise.all([secure(a, { role: 'initiator', identity: ia, remotePeer: ib.peerId }), secure(b, { role: 'responder', identity: ib })]);
    const count = 2_000;
    const sent = Array.from({ length: count }, (_, i) => Buffer.alloc(1 + ((i * 37) % 3000), i % 251));
    const total = sent.reduce((n, m) => n + m.byteLength, 0);
    const got: Buffer[] = [];
    let received = 0;
    const all = new Promise<void>((resolve) => {
      sb.stream.addEventListener('message', (evt) => {
        const chunk = Buffer.from(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray());
        got.push(chunk);
        received += chunk.length;
        if (received >= total) resolve();
      });
    });
    // Every RangeError made while the messages cross (the library's decoder made one per chunk).
    const original = globalThis.RangeError;
    let made = 0;
    globalThis.RangeError = new Proxy(original, {
      apply: (target, self, args) => {
        made++;
        return Reflect.apply(target, self, args);
      },
      construct: (target, args, newTarget) => {
        made++;
        return Reflect.construct(target, args, newTarget);
      },
    });
    try {
      for (const m of sent) {
        sa.stream.send(m);
        await new Promise((resolve) => setImmediate(resolve));
      }
      await all;
    } finally {
      globalThis.RangeError = original;
    }
    const digest = (bufs: Buffer[]): string => createHash('sha256').update(Buffer.concat(bufs)).digest('hex');
    expect(digest(got)).toBe(digest(sent));
    expect(made).toBe(0);
  });
});
