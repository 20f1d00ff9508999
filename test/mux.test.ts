/** Layer 2: the multiplexer over an in-memory channel pair. */

import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { EARLY_STREAM_WINDOW, EARLY_WINDOW_RTT_MS, INITIAL_STREAM_WINDOW, MAX_CONNECTION_WINDOW_GROWTH, MAX_STREAMS_PER_PEER } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { decodeMessage, encodeMessage, FrameType, StreamProtocol } from '../shared/frames.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import { sha256 } from './helpers/http.js';
import { channelPair } from './helpers/memory-channel.js';

const muxes: Mux[] = [];
function pair(): { a: Mux; b: Mux; ca: ReturnType<typeof channelPair>[0]; cb: ReturnType<typeof channelPair>[1] } {
  const [ca, cb] = channelPair();
  const a = new Mux(ca, { role: 'initiator', ping: false });
  const b = new Mux(cb, { role: 'responder', ping: false });
  muxes.push(a, b);
  return { a, b, ca, cb };
}
afterEach(() => {
  for (const m of muxes.splice(0)) m.close();
});

function collect(stream: MuxStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.resume();
  return new Promise((resolve, reject) => {
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

describe('mux', () => {
  it('carries 1,000 concurrent streams, each byte-exact', async () => {
    const { a, b } = pair();
    b.on('stream', (s) => s.pipe(s));
    const results = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const s = a.openStream(StreamProtocol.HTTP);
        const body = Buffer.alloc(1000 + i, i & 0xff);
        const got = collect(s);
        s.end(body);
        return sha256(await got) === sha256(body);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    expect(a.streamCount).toBe(0);
  });

  it('closeWhenIdle lets open streams finish byte-exact, then closes; with no stream it closes at once', async () => {
    const { a, b } = pair();
    b.on('stream', (s) => s.pipe(s));
    const s = a.openStream(StreamProtocol.HTTP);
    const body = Buffer.alloc(3 * INITIAL_STREAM_WINDOW + 5, 9);
    const got = collect(s);
    const closed = once(a, 'close');
    s.write(body.subarray(0, 1000));
    a.closeWhenIdle();
    expect(a.isClosed).toBe(false);
    s.end(body.subarray(1000));
    expect(sha256(await got)).toBe(sha256(body));
    await closed;
    expect(a.isClosed).toBe(true);
    const { a: idle } = pair();
    idle.closeWhenIdle();
    expect(idle.isClosed).toBe(true);
  });

  it('a stream opened and reset before its OPEN left is never heard of: the peer keeps the connection, and later streams work', async () => {
    const { a, b, ca } = pair();
    const seen: number[] = [];
    b.on('stream', (s) => {
      seen.push(s.id);
      s.pipe(s);
    });
    const sent: number[] = [];
    const send = ca.send.bind(ca);
    ca.send = (m: Uint8Array) => {
      for (const f of decodeMessage(m)) sent.push(f.type);
      send(m);
    };
    // Opened and cancelled in one turn, 500 times (a client's rapid reset through a gateway).
    for (let i = 0; i < 500; i++) {
      const cancelled = a.openStream(StreamProtocol.HTTP);
      cancelled.on('error', () => {});
      cancelled.destroy(new BeamError('BEAM_ERR_STREAM_RESET'));
    }
    const s = a.openStream(StreamProtocol.HTTP);
    const got = collect(s);
    s.end(Buffer.from('still here'));
    expect((await got).toString()).toBe('still here');
    expect(a.isClosed || b.isClosed).toBe(false);
    expect(seen).toEqual([s.id]);
    expect(sent.filter((t) => t === FrameType.RESET)).toHaveLength(0);
  });

  it('half-closes: a side that sent FIN still receives', async () => {
    const { a, b } = pair();
    const accepted = once(b, 'stream') as Promise<[MuxStream]>;
    const s = a.openStream(StreamProtocol.TCP);
    const closed = once(s, 'close');
    s.end(Buffer.from('request'));
    const [remote] = await accepted;
    const request = await collect(remote); // b sees FIN after the bytes
    expect(request.toString()).toBe('request');
    const reply = collect(s);
    remote.write(Buffer.from('reply after your FIN'));
    remote.end();
    expect((await reply).toString()).toBe('reply after your FIN');
    await closed;
    expect(s.resetCode).toBeUndefined();
  });

  it('resets: the other side fails with the reset code', async () => {
    const { a, b } = pair();
    const accepted = once(b, 'stream') as Promise<[MuxStream]>;
    const s = a.openStream(StreamProtocol.HTTP);
    s.write('x');
    const [remote] = await accepted;
    const failed = once(remote, 'error') as Promise<[BeamError]>;
    s.on('error', () => {});
    s.destroy(new BeamError('BEAM_ERR_ORIGIN_UNREACHABLE'));
    const [err] = await failed;
    expect(err.code).toBe('BEAM_ERR_ORIGIN_UNREACHABLE');
  });

  it('bounds what a sender can push into a receiver that does not read (credit)', async () => {
    const { a, b } = pair();
    const accepted = once(b, 'stream') as Promise<[MuxStream]>;
    const s = a.openStream(StreamProtocol.TCP);
    s.write(Buffer.alloc(1));
    const [remote] = await accepted;
    remote.pause();
    // Write 8 windows' worth; the receiver never reads.
    let accepted_ = 0;
    const chunk = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 8 * (INITIAL_STREAM_WINDOW / chunk.length); i++) {
      s.write(chunk, () => {
        accepted_ += chunk.length;
      });
    }
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    while (remote.readableLength < INITIAL_STREAM_WINDOW) await turn();
    // The sender is out of credit: let every queued message drain, then look again.
    for (let i = 0; i < 20; i++) await turn();
    expect(remote.readableLength).toBe(INITIAL_STREAM_WINDOW);
    expect(accepted_).toBeLessThan(8 * INITIAL_STREAM_WINDOW);
    // Once the receiver reads, everything flows.
    s.end();
    const got = await collect(remote);
    expect(got.byteLength).toBe(1 + 8 * INITIAL_STREAM_WINDOW);
    const closed = once(s, 'close');
    remote.end();
    s.resume();
    await closed;
  });

  it(`on a path with a round trip of EARLY_WINDOW_RTT_MS or more, a new stream's window opens at EARLY_STREAM_WINDOW at once, both ways, and a reader that stalls holds exactly that`, async () => {
    const { a, b } = pair();
    a.rtt = EARLY_WINDOW_RTT_MS;
    b.rtt = EARLY_WINDOW_RTT_MS;
    const accepted = once(b, 'stream') as Promise<[MuxStream]>;
    const s = a.openStream(StreamProtocol.TCP);
    s.write(Buffer.alloc(1));
    const [remote] = await accepted;
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    const chunk = Buffer.alloc(64 * 1024, 5);
    // Neither side reads: each may send the early window, and no more.
    remote.pause();
    s.pause();
    for (let i = 0; i < (2 * EARLY_STREAM_WINDOW) / chunk.length; i++) {
      s.write(chunk);
      remote.write(chunk);
    }
    while (remote.readableLength < EARLY_STREAM_WINDOW || s.readableLength < EARLY_STREAM_WINDOW) await turn();
    for (let i = 0; i < 20; i++) await turn();
    expect(remote.readableLength).toBe(EARLY_STREAM_WINDOW);
    expect(s.readableLength).toBe(EARLY_STREAM_WINDOW);
    // Each stream's growth came from its connection's budget...
    expect(a.takeWindowGrowth(MAX_CONNECTION_WINDOW_GROWTH)).toBe(MAX_CONNECTION_WINDOW_GROWTH - (EARLY_STREAM_WINDOW - INITIAL_STREAM_WINDOW));
    a.takeWindowGrowth(-MAX_CONNECTION_WINDOW_GROWTH);
    // ...and once the readers read, everything arrives.
    s.end();
    remote.end();
    const [there, back] = await Promise.all([collect(remote), collect(s)]);
    expect(there.byteLength).toBe(1 + 2 * EARLY_STREAM_WINDOW);
    expect(back.byteLength).toBe(2 * EARLY_STREAM_WINDOW);
  });

  it('below EARLY_WINDOW_RTT_MS (or before the first round trip is known) a stream opens at INITIAL_STREAM_WINDOW; with the budget spent, too', async () => {
    for (const rtt of [undefined, EARLY_WINDOW_RTT_MS - 1, 'spent'] as const) {
      const { a, b } = pair();
      b.rtt = rtt === 'spent' ? EARLY_WINDOW_RTT_MS : rtt;
      if (rtt === 'spent') b.takeWindowGrowth(MAX_CONNECTION_WINDOW_GROWTH);
      const accepted = once(b, 'stream') as Promise<[MuxStream]>;
      const s = a.openStream(StreamProtocol.TCP);
      s.write(Buffer.alloc(1));
      const [remote] = await accepted;
      remote.pause();
      const chunk = Buffer.alloc(64 * 1024, 6);
      for (let i = 0; i < (2 * EARLY_STREAM_WINDOW) / chunk.length; i++) s.write(chunk);
      const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
      while (remote.readableLength < INITIAL_STREAM_WINDOW) await turn();
      for (let i = 0; i < 20; i++) await turn();
      expect(remote.readableLength).toBe(INITIAL_STREAM_WINDOW);
      // Left unread: closing the pair fails them, which is expected here.
      for (const x of [s, remote]) x.on('error', () => {});
    }
  });

  it('grows the window of a stream whose consumer keeps up, beyond the initial window', async () => {
    const { a, b, cb } = pair();
    const accepted = once(b, 'stream') as Promise<[MuxStream]>;
    const s = a.openStream(StreamProtocol.TCP);
    s.write(Buffer.alloc(1));
    const [remote] = await accepted;
    const got = collect(remote);
    const total = 16 * INITIAL_STREAM_WINDOW;
    const chunk = Buffer.alloc(64 * 1024, 3);
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!s.write(chunk)) await once(s, 'drain');
    }
    s.end();
    expect((await got).byteLength).toBe(1 + total);
    // Credit granted by the receiver exceeded the bytes it consumed: the window grew.
    const { decodeMessage } = await import('../shared/frames.js');
    const granted = cb.sent.flatMap((m) => decodeMessage(m)).reduce((sum, f) => sum + (f.type === FrameType.WINDOW ? f.credit : 0), 0);
    expect(granted + INITIAL_STREAM_WINDOW).toBeGreaterThan(1 + total + INITIAL_STREAM_WINDOW);
    const closed = once(s, 'close');
    remote.end();
    s.resume();
    await closed;
  });

  it('closes the connection on a DATA frame beyond credit', async () => {
    const { b, cb } = pair();
    const accepted = once(b, 'stream') as Promise<[MuxStream]>;
    cb.inject(encodeMessage([{ type: FrameType.OPEN, streamId: 1, protocol: StreamProtocol.HTTP }]));
    const [remote] = await accepted;
    const failed = once(remote, 'error') as Promise<[BeamError]>;
    const big = new Uint8Array(16 * 1024 - 9);
    for (let sent = 0; sent <= INITIAL_STREAM_WINDOW; sent += big.byteLength) {
      cb.inject(encodeMessage([{ type: FrameType.DATA, streamId: 1, data: big }]));
    }
    const [err] = await failed;
    expect(err.code).toBe('BEAM_ERR_FLOW_CONTROL');
  });

  it('closes on a malformed message from the peer, failing its streams with the code', async () => {
    const { a, ca } = pair();
    const s = a.openStream(StreamProtocol.HTTP);
    const failed = once(s, 'error') as Promise<[BeamError]>;
    const closed = once(a, 'close');
    ca.inject(new Uint8Array([99, 0, 0, 0, 1, 0, 0, 0, 0]));
    expect((await closed)[0]).toBe('BEAM_ERR_FRAME_UNKNOWN');
    expect((await failed)[0].code).toBe('BEAM_ERR_FRAME_UNKNOWN');
  });

  it('goAway: the other side closes with its code; the sender refuses new streams with it and closes once the other side hangs up', async () => {
    const { a, b } = pair();
    const sideClosed = once(a, 'close');
    const goerClosed = once(b, 'close');
    // Opened just before the GOAWAY arrives: b refuses it with the same code.
    const s = a.openStream(StreamProtocol.HTTP);
    const failed = once(s, 'error') as Promise<[BeamError]>;
    b.goAway('BEAM_ERR_MAX_VISITORS');
    expect((await sideClosed)[0]).toBe('BEAM_ERR_MAX_VISITORS');
    expect((await failed)[0].code).toBe('BEAM_ERR_MAX_VISITORS');
    // a hung up on it: b closes long before GOAWAY_LINGER_MS.
    expect((await goerClosed)[0]).toBe('BEAM_ERR_MAX_VISITORS');
  });

  it('refuses streams past MAX_STREAMS_PER_PEER with BEAM_ERR_TOO_MANY_STREAMS', () => {
    const { a } = pair();
    const streams = Array.from({ length: MAX_STREAMS_PER_PEER }, () => a.openStream(StreamProtocol.HTTP));
    expect(streams.length).toBe(MAX_STREAMS_PER_PEER);
    let code: string | undefined;
    try {
      a.openStream(StreamProtocol.HTTP);
    } catch (err) {
      code = (err as BeamError).code;
    }
    expect(code).toBe('BEAM_ERR_TOO_MANY_STREAMS');
    for (const s of streams) s.on('error', () => {});
  });

  it('coalesces small frames into few messages and never sends one over 16 KiB', async () => {
    const { a, b, ca } = pair();
    b.on('stream', (s) => s.pipe(s));
    await Promise.all(
      Array.from({ length: 50 }, async () => {
        const s = a.openStream(StreamProtocol.HTTP);
        const got = collect(s);
        s.end('hi');
        await got;
      }),
    );
    // 50 streams x (OPEN + DATA + FIN + FIN_ACK) = 200 frames.
    expect(ca.sent.length).toBeLessThan(50);
    expect(Math.max(...ca.sent.map((m) => m.byteLength))).toBeLessThanOrEqual(16 * 1024);
  });

  it('probe: true once the peer answers a fresh PING; false when it does not answer, and an answer to an older PING does not count', async () => {
    const { a, ca, cb } = pair();
    expect(await a.probe(2_000)).toBe(true);
    // The peer stops answering (its process gone while the link still carries packets).
    cb.onMessage(() => {});
    a.ping();
    await new Promise((resolve) => setImmediate(resolve));
    const older = decodeMessage(ca.sent.at(-1)!).find((f) => f.type === FrameType.PING);
    expect(older).toBeDefined();
    const probed = a.probe(300);
    // The answer to the PING sent before the probe arrives now: it proves nothing about now.
    ca.inject(encodeMessage([{ type: FrameType.PONG, streamId: 0, nonce: (older as { nonce: Uint8Array }).nonce }]));
    expect(await probed).toBe(false);
    // The caller decides what a failed probe means: the mux stays open.
    expect(a.isClosed).toBe(false);
    a.close();
    expect(await a.probe(1_000)).toBe(false);
  });

  it('probe: a process stalled past its own deadline does not take a live peer for dead: it reads what arrived, and looks again', async () => {
    const { a } = pair();
    const probed = a.probe(200);
    // This process is busy (a loaded machine) until after the deadline: the PING has not even gone out.
    const until = performance.now() + 320;
    while (performance.now() < until) {
      // stalled
    }
    expect(await probed).toBe(true);
    // A peer that is gone is still found out: the second look is half a window.
    const { a: lone, cb } = pair();
    cb.onMessage(() => {});
    const started = performance.now();
    const dead = lone.probe(200);
    const later = performance.now() + 320;
    while (performance.now() < later) {
      // stalled
    }
    expect(await dead).toBe(false);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('probe: a peer whose process is too busy to answer counts as alive while its transport takes what this side sends', async () => {
    const { a, cb } = pair();
    // The peer's JavaScript answers nothing (no PONG, no credit)...
    cb.onMessage(() => {});
    const probed = a.probe(400);
    const started = performance.now();
    // ...but its transport keeps taking this side's download: the send queue drains below its low-water mark.
    const stream = a.openStream(StreamProtocol.HTTP);
    // The mux closes under it when the test ends: that is expected here.
    stream.on('error', () => {});
    const chunk = Buffer.alloc(8 * 1024, 1);
    // Past the channel's high-water mark each time, so the queue drains from it.
    const timer = setInterval(() => {
      for (let i = 0; i < 160; i++) a.enqueue({ type: FrameType.DATA, streamId: stream.id, data: chunk });
    }, 20);
    try {
      expect(await probed).toBe(true);
    } finally {
      clearInterval(timer);
    }
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
  });

  it('probe: a peer whose PONG is stuck behind its own sending counts as alive while its messages keep arriving', async () => {
    const { a, ca, cb } = pair();
    // The peer answers no PING (its PONG queued behind a download)...
    cb.onMessage(() => {});
    const probed = a.probe(400);
    const started = performance.now();
    // ...but its messages still arrive, past the first half of the window.
    const timer = setInterval(() => ca.inject(encodeMessage([{ type: FrameType.PING, streamId: 0, nonce: new Uint8Array(8) }])), 50);
    expect(await probed).toBe(true);
    clearInterval(timer);
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
    // Messages only early in the window (in flight when the peer died) prove nothing.
    const early = a.probe(400);
    ca.inject(encodeMessage([{ type: FrameType.PING, streamId: 0, nonce: new Uint8Array(8) }]));
    expect(await early).toBe(false);
    a.close();
  });

  it('measures RTT with PING/PONG', async () => {
    const [ca, cb] = channelPair();
    const a = new Mux(ca, { role: 'initiator' });
    const b = new Mux(cb, { role: 'responder', ping: false });
    muxes.push(a, b);
    const [rtt] = (await once(a, 'rtt')) as [number];
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(a.rtt).toBe(rtt);
  });
});
