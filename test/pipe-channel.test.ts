/**
 * The server's own gateway's relay link without Noise (transport/pipe-channel.ts):
 * the stream protocol straight over a pipe, a turn's frames as one message,
 * each end's hello before it calls the link up, and when a link
 * counts as private enough to go without Noise (shared/signaling.ts
 * isPrivateLink).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES, SECURE_WRITE_BYTES } from '../shared/constants.js';
import { StreamProtocol } from '../shared/frames.js';
import { Mux } from '../shared/mux.js';
import { isPrivateLink } from '../shared/signaling.js';
import { PipeFrameChannel } from '../transport/pipe-channel.js';
import type { Pipe } from '../transport/secure.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

type TestPipe = Pipe & { sizes: number[]; inject(bytes: Uint8Array): void; closeWith(code?: 'BEAM_ERR_RELAY_TIMEOUT'): void };

/** Two pipes joined in memory, messages whole and in order (as the relay's WebSockets carry them). */
function pipePair(): [TestPipe, TestPipe] {
  const make = (): TestPipe & { peer?: TestPipe } => {
    let onMessage: ((bytes: Uint8Array) => void) | undefined;
    const early: Uint8Array[] = [];
    const closes: Array<() => void> = [];
    let closed = false;
    let code: 'BEAM_ERR_RELAY_TIMEOUT' | undefined;
    const side: TestPipe & { peer?: TestPipe } = {
      sizes: [],
      inject(bytes) {
        if (onMessage) onMessage(bytes);
        else early.push(bytes);
      },
      send(bytes) {
        if (closed) return true;
        side.sizes.push(bytes.byteLength);
        const copy = Uint8Array.from(bytes);
        queueMicrotask(() => side.peer?.inject(copy));
        return true;
      },
      bufferedAmount: () => 0,
      onDrain: () => {},
      onMessage(cb) {
        onMessage = cb;
        for (const m of early.splice(0)) cb(m);
      },
      onClose: (cb) => closes.push(cb),
      closeCode: () => code,
      closeWith(c) {
        if (closed) return;
        closed = true;
        code = c;
        for (const cb of closes) cb();
      },
      close() {
        side.closeWith();
        side.peer?.closeWith();
      },
    };
    return side;
  };
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

describe('PipeFrameChannel', () => {
  it('carries streams both ways through two multiplexers, byte-exact, a turn of frames in one message', async () => {
    const [gatewayPipe, agentPipe] = pipePair();
    const [gatewayEnd, agentEnd] = await Promise.all([PipeFrameChannel.open(gatewayPipe), PipeFrameChannel.open(agentPipe)]);
    // What the multiplexers hand the channels.
    const handed: number[] = [];
    for (const end of [gatewayEnd, agentEnd]) {
      const send = end.send.bind(end);
      end.send = (message: Uint8Array): void => {
        handed.push(message.byteLength);
        send(message);
      };
    }
    const near = new Mux(gatewayEnd, { role: 'initiator', ping: false });
    const far = new Mux(agentEnd, { role: 'responder', ping: false });
    far.on('stream', (stream) => stream.pipe(stream));
    const bodies = [0, 1, 2].map((n) => {
      const body = Buffer.alloc(1024 * 1024 + n * 4099);
      for (let i = 0; i < body.length; i++) body[i] = (i * 7919 + n) % 251;
      return body;
    });
    const echoed = await Promise.all(
      bodies.map(async (body) => {
        const stream = near.openStream(StreamProtocol.TCP);
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        const ended = once(stream, 'end');
        stream.end(body);
        await ended;
        return Buffer.concat(chunks);
      }),
    );
    for (const [i, body] of bodies.entries()) expect(sha256(echoed[i] as Buffer)).toBe(sha256(body));
    // Each end's hello, then messages that each hold a turn's frames, none past a Noise write's size.
    expect([gatewayPipe.sizes[0], agentPipe.sizes[0]]).toEqual([1, 1]);
    const messages = [...gatewayPipe.sizes.slice(1), ...agentPipe.sizes.slice(1)];
    expect(Math.max(...messages)).toBeLessThanOrEqual(SECURE_WRITE_BYTES);
    // The multiplexer packs for this channel past an SCTP message's size (maxMessageBytes): a flush's frames in one message, not joined again.
    expect(Math.max(...handed)).toBeGreaterThan(MAX_MESSAGE_BYTES);
    expect(Math.max(...handed)).toBeLessThanOrEqual(SECURE_WRITE_BYTES);
    // ~6.3 MiB both ways in 16 KiB frames: far fewer messages than frames.
    expect(messages.length).toBeLessThan((2 * 3.1 * 1024 * 1024) / (16 * 1024) / 2);
    near.close();
    far.close();
  });

  it("each end is up only once the other's hello came, not when the relay took its WebSocket; whoever joins later waits no round trip", async () => {
    const [gatewayPipe, agentPipe] = pipePair();
    let up = false;
    const opening = PipeFrameChannel.open(gatewayPipe).then((c) => {
      up = true;
      return c;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(up).toBe(false);
    // The gateway's hello waited for the agent; the agent's end is up on it at once.
    await PipeFrameChannel.open(agentPipe);
    await opening;
    expect(up).toBe(true);
  });

  it("fails the link with the relay's code when it closes before the agent is on it (the agent went to another node's relay)", async () => {
    const [gatewayPipe] = pipePair();
    const opening = PipeFrameChannel.open(gatewayPipe);
    gatewayPipe.closeWith('BEAM_ERR_RELAY_TIMEOUT');
    await expect(opening).rejects.toMatchObject({ code: 'BEAM_ERR_RELAY_TIMEOUT' });
  });

  it('fails the link with BEAM_ERR_HANDSHAKE_FAILED when its first message is no hello (a Noise handshake, say), and closes it', async () => {
    const [gatewayPipe, agentPipe] = pipePair();
    const opening = PipeFrameChannel.open(gatewayPipe);
    agentPipe.send(new Uint8Array(32).fill(7));
    await expect(opening).rejects.toMatchObject({ code: 'BEAM_ERR_HANDSHAKE_FAILED' });
    // Its own hello, and nothing after it.
    expect(gatewayPipe.sizes).toEqual([1]);
  });

  it('closes on a message that ends inside a frame: the multiplexer ends with its own code, nothing is delivered as a stream', async () => {
    const [gatewayPipe, agentPipe] = pipePair();
    const [, agentEnd] = await Promise.all([PipeFrameChannel.open(gatewayPipe), PipeFrameChannel.open(agentPipe)]);
    const far = new Mux(agentEnd, { role: 'responder', ping: false });
    let streams = 0;
    far.on('stream', () => streams++);
    const closed = once(far, 'close');
    // A frame header promising 100 bytes of payload, and 3 of them.
    const cut = Buffer.alloc(9 + 3);
    cut[0] = 1;
    cut.writeUInt32BE(1, 1);
    cut.writeUInt32BE(100, 5);
    gatewayPipe.send(cut);
    const [code] = await closed;
    expect(code).toMatch(/^BEAM_ERR_/);
    expect(streams).toBe(0);
  });
});

describe("isPrivateLink: where the gateway's relay link may go without Noise", () => {
  it('takes TLS and loopback, and nothing else', () => {
    for (const url of [
      'https://beam.example.com',
      'wss://beam.example.com/x',
      'http://127.0.0.1:8080',
      'http://127.9.0.1',
      'http://localhost:3000',
      'http://[::1]:80',
      'ws://127.0.0.1:1',
    ]) {
      expect(isPrivateLink(url), url).toBe(true);
    }
    for (const url of [
      'http://beam.example.com',
      'http://10.0.0.5:8080',
      'http://0.0.0.0:8080',
      'http://[::ffff:127.0.0.1]',
      'http://localhost.example.com',
      'http://127.0.0.1.nip.io',
      'ftp://127.0.0.1',
      'not a url',
    ]) {
      expect(isPrivateLink(url), url).toBe(false);
    }
  });
});
