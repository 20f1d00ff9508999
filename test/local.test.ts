/**
 * The in-process path (transport/local.ts): the in-memory channel under a
 * real multiplexer on each end, its backpressure and close, the registry
 * the server's gateway finds an agent of its own process in, and what the
 * path policy does with a path that has no network under it.
 */

import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MAX_HEAD_BYTES, MAX_STREAMS_PER_PEER } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { StreamProtocol } from '../shared/frames.js';
import { decodeResponseHead, encodeHead, exchange, type RequestHead, readHead, readRequestHead, writeHead } from '../shared/http-head.js';
import { Mux, type MuxStream } from '../shared/mux.js';
import { DirectStream, localAgent, localChannelPair, serveLocally } from '../transport/local.js';
import { initialPathState, step } from '../transport/path-policy.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('LocalChannel', () => {
  it('carries a stream both ways through two multiplexers, byte-exact and in order', async () => {
    const [a, b] = localChannelPair();
    const near = new Mux(a, { role: 'initiator', ping: false });
    const far = new Mux(b, { role: 'responder', ping: false });
    // The far end echoes every stream back.
    far.on('stream', (stream) => stream.pipe(stream));
    const body = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7919) % 251;
    const stream = near.openStream(StreamProtocol.TCP);
    const chunks: Buffer[] = [];
    const done = new Promise<void>((resolve) => stream.on('end', () => resolve()));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.end(body);
    await done;
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(body));
    near.close();
  });

  it('counts what the other end has not been handed, and says when it drained', async () => {
    const [a, b] = localChannelPair();
    const got: number[] = [];
    b.onMessage((m) => got.push(m[0] as number));
    let low = 0;
    a.setBufferedAmountLowThreshold(0);
    a.onBufferedAmountLow(() => low++);
    a.send(Uint8Array.of(1, 0, 0));
    a.send(Uint8Array.of(2));
    expect(a.bufferedAmount()).toBe(4);
    expect(got).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(got).toEqual([1, 2]);
    expect(a.bufferedAmount()).toBe(0);
    expect(low).toBe(1);
  });

  it('the sender may reuse its buffer once send returns', async () => {
    const [a, b] = localChannelPair();
    const got: number[] = [];
    b.onMessage((m) => got.push(m[0] as number));
    const buf = Uint8Array.of(5);
    a.send(buf);
    buf[0] = 9;
    await new Promise((resolve) => setImmediate(resolve));
    expect(got).toEqual([5]);
  });

  it('closing one end closes the other, drops what was queued, and refuses more', async () => {
    const [a, b] = localChannelPair();
    let closedB = 0;
    const got: Uint8Array[] = [];
    b.onClose(() => closedB++);
    b.onMessage((m) => got.push(m));
    a.send(Uint8Array.of(1));
    a.close();
    expect(closedB).toBe(1);
    await new Promise((resolve) => setImmediate(resolve));
    expect(got).toEqual([]);
    expect(() => a.send(Uint8Array.of(2))).toThrow(/closed/);
  });
});

/** Two multiplexers over a direct pair (the agent's link to its own server's gateway), every message on the channel recorded. */
function directPair(): { near: Mux; far: Mux; sent: Uint8Array[] } {
  const [a, b] = localChannelPair(true);
  const sent: Uint8Array[] = [];
  for (const end of [a, b]) {
    const send = end.send.bind(end);
    end.send = (m) => {
      sent.push(m.slice());
      send(m);
    };
  }
  const near = new Mux(a, { role: 'initiator', ping: false });
  const far = new Mux(b, { role: 'responder', ping: false });
  // Streams still open when a test closes its pair fail with PEER_GONE, and a destroy with an error fails its own stream:
  // the tests assert the errors they expect with errorOf, and no other goes unheard.
  far.on('stream', (s) => s.on('error', () => {}));
  const open = near.openStream.bind(near);
  near.openStream = (protocol) => open(protocol).on('error', () => {});
  return { near, far, sent };
}

const nextStream = (mux: Mux): Promise<MuxStream> => once(mux, 'stream').then(([s]) => s as MuxStream);
const errorOf = (stream: Duplex): Promise<BeamError> => once(stream, 'error').then(([e]) => e as BeamError);
const GET: RequestHead = { method: 'GET', target: '/x', headers: [['Host', 'share']], upgrade: false, body: false };

describe('direct streams (localChannelPair(true))', () => {
  it('carry a stream both ways as objects: byte-exact, in order, and not one message on the channel', async () => {
    const { near, far, sent } = directPair();
    far.on('stream', (stream) => stream.pipe(stream));
    const body = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7919) % 251;
    const stream = near.openStream(StreamProtocol.TCP);
    expect(stream).toBeInstanceOf(DirectStream);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.end(body);
    await once(stream, 'end');
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(body));
    expect(sent).toEqual([]);
    expect(near.bytesSent).toBe(body.length);
    expect(far.bytesReceived).toBe(body.length);
    // Ended both ways: both multiplexers forget it.
    await new Promise((resolve) => setImmediate(resolve));
    expect([near.streamCount, far.streamCount]).toEqual([0, 0]);
    near.close();
  });

  it("hold a writer back while the reader's buffer is full, and let it go as the reader reads", async () => {
    const { near, far } = directPair();
    const arrived = nextStream(far);
    const stream = near.openStream(StreamProtocol.TCP);
    const chunk = Buffer.alloc(64 * 1024, 1);
    let writes = 0;
    while (stream.write(chunk)) writes++;
    expect(writes).toBeLessThan(4);
    const reader = await arrived;
    await new Promise((resolve) => setImmediate(resolve));
    // Nothing runs away: what the reader holds stays near its high-water mark, however long the writer waited.
    expect(reader.readableLength).toBeLessThanOrEqual(reader.readableHighWaterMark + chunk.length);
    const drained = once(stream, 'drain');
    reader.resume();
    await drained;
    near.close();
  });

  it('a reader that reads its whole buffer at each turn gets every byte of a writer that waits for drain', async () => {
    // Node asks for more (_read) before it takes what it reads: a writer held back then must go on, or both wait forever.
    const { near, far } = directPair();
    const size = 8 * 1024 * 1024;
    far.on('stream', (s) => {
      const chunk = Buffer.alloc(64 * 1024, 3);
      let sent = 0;
      const go = (): void => {
        while (sent < size) {
          sent += chunk.length;
          if (!s.write(chunk)) {
            s.once('drain', go);
            return;
          }
        }
        s.end();
      };
      go();
    });
    const stream = near.openStream(StreamProtocol.TCP);
    let got = 0;
    stream.on('readable', () =>
      setImmediate(() => {
        let c: Buffer | null;
        while ((c = stream.read() as Buffer | null) !== null) got += c.length;
      }),
    );
    await once(stream, 'end');
    expect(got).toBe(size);
    near.close();
  });

  it('a reset reaches the other end with its code; a destroy without one as BEAM_ERR_STREAM_RESET', async () => {
    const { near, far } = directPair();
    const arrived = nextStream(far);
    const stream = near.openStream(StreamProtocol.HTTP);
    const agent = await arrived;
    const seen = errorOf(stream);
    agent.destroy(new BeamError('BEAM_ERR_ORIGIN_TIMEOUT'));
    expect((await seen).code).toBe('BEAM_ERR_ORIGIN_TIMEOUT');
    expect(stream.resetCode).toBe('BEAM_ERR_ORIGIN_TIMEOUT');

    const arrived2 = nextStream(far);
    const visitor = near.openStream(StreamProtocol.HTTP);
    const agent2 = await arrived2;
    const seen2 = errorOf(agent2);
    visitor.destroy();
    expect((await seen2).code).toBe('BEAM_ERR_STREAM_RESET');
    near.close();
  });

  it('are refused past MAX_STREAMS_PER_PEER and after a GOAWAY, as an OPEN would be, and fail with their path', async () => {
    const { near, far } = directPair();
    // The far end answers each stream and never reads it: it keeps counting them; the near end, done with them, does not.
    far.on('stream', (s) => s.end());
    const done: Promise<unknown>[] = [];
    for (let i = 0; i < MAX_STREAMS_PER_PEER; i++) {
      const s = near.openStream(StreamProtocol.HTTP);
      s.end();
      s.resume();
      done.push(once(s, 'close'));
    }
    await Promise.all(done);
    expect([near.streamCount, far.streamCount]).toEqual([0, MAX_STREAMS_PER_PEER]);
    const over = near.openStream(StreamProtocol.HTTP);
    expect((await errorOf(over)).code).toBe('BEAM_ERR_TOO_MANY_STREAMS');
    near.close();

    const pair = directPair();
    pair.far.goAway('BEAM_ERR_RATE_LIMITED');
    const late = pair.near.openStream(StreamProtocol.HTTP);
    expect((await errorOf(late)).code).toBe('BEAM_ERR_RATE_LIMITED');

    const third = directPair();
    const arrived = nextStream(third.far);
    const open = third.near.openStream(StreamProtocol.HTTP);
    const agent = await arrived;
    const gone = [errorOf(open), errorOf(agent)];
    third.far.close();
    expect((await Promise.all(gone)).map((e) => e.code)).toEqual(['BEAM_ERR_PEER_GONE', 'BEAM_ERR_PEER_GONE']);
  });

  it('pass HTTP heads as objects, checked by the schema and held to MAX_HEAD_BYTES', async () => {
    const { near, far, sent } = directPair();
    far.on('stream', (stream) => {
      void readRequestHead(stream).then(
        (head) => writeHead(stream, { kind: 'response', status: 200, statusText: 'OK', headers: [['X-Target', head.target]] }, true),
        (err: BeamError) => stream.destroy(err),
      );
    });
    const ok = await exchange(near.openStream(StreamProtocol.HTTP), GET);
    expect(ok).toEqual({ kind: 'response', status: 200, statusText: 'OK', headers: [['X-Target', '/x']] });
    expect(sent).toEqual([]);
    // A header name the schema refuses is refused on this path too.
    const bad = exchange(near.openStream(StreamProtocol.HTTP), { ...GET, headers: [['X'.repeat(300), 'v']] });
    await expect(bad).rejects.toMatchObject({ code: 'BEAM_ERR_BAD_MESSAGE' });
    // A head whose encoding would pass MAX_HEAD_BYTES is refused before it goes, as encodeHead refuses it.
    const big = exchange(near.openStream(StreamProtocol.HTTP), { ...GET, headers: [['X-Big', '\u0001'.repeat(MAX_HEAD_BYTES / 6 + 10)]] });
    await expect(big).rejects.toMatchObject({ code: 'BEAM_ERR_HEAD_TOO_LARGE' });
    near.close();
  });

  it("a head written as bytes (the bridge relays a page's) is read so, and answered in bytes", async () => {
    const { near, far } = directPair();
    far.on('stream', (stream) => {
      void readRequestHead(stream).then((head) => writeHead(stream, { kind: 'response', status: 204, headers: [['X-Method', head.method]] }, true));
    });
    const stream = near.openStream(StreamProtocol.HTTP);
    stream.end(encodeHead(GET));
    const head = decodeResponseHead(await readHead(stream));
    expect(head).toEqual({ kind: 'response', status: 204, headers: [['X-Method', 'GET']] });
    near.close();
  });

  it('a stream that ends or goes before its head fails the reader with a code, never hangs', async () => {
    const { near, far } = directPair();
    const arrived = nextStream(far);
    near.openStream(StreamProtocol.HTTP).end();
    await expect(readRequestHead(await arrived)).rejects.toMatchObject({ code: 'BEAM_ERR_BAD_MESSAGE' });
    const arrived2 = nextStream(far);
    const visitor = near.openStream(StreamProtocol.HTTP);
    const agent = await arrived2;
    agent.on('error', () => {});
    const reading = readRequestHead(agent);
    visitor.destroy(new BeamError('BEAM_ERR_STREAM_RESET'));
    await expect(reading).rejects.toMatchObject({ code: 'BEAM_ERR_STREAM_RESET' });
    near.close();
  });
});

describe('local agents', () => {
  const link = () => ({ channel: localChannelPair()[0], kind: 'http' as const });

  it('are found by the server origin and the share name, case aside', () => {
    const accept = link;
    const undo = serveLocally('http://127.0.0.1:7070', 'Swift-Otter-042', accept);
    expect(localAgent('http://127.0.0.1:7070/', 'swift-otter-042')).toBe(accept);
    // Another server of this process (another port) is another place.
    expect(localAgent('http://127.0.0.1:7071', 'swift-otter-042')).toBeUndefined();
    expect(localAgent('not a url', 'swift-otter-042')).toBeUndefined();
    undo();
    expect(localAgent('http://127.0.0.1:7070', 'swift-otter-042')).toBeUndefined();
  });

  it("an old agent's undo leaves the agent that took the name since", () => {
    const first = link;
    const second = (): ReturnType<typeof link> => link();
    const undoFirst = serveLocally('http://127.0.0.1:7070', 'name', first);
    const undoSecond = serveLocally('http://127.0.0.1:7070', 'name', second);
    undoFirst();
    expect(localAgent('http://127.0.0.1:7070', 'name')).toBe(second);
    undoSecond();
  });
});

describe('path policy: the in-memory path', () => {
  it('is ready at once, and tries no network path beside it', () => {
    const s = initialPathState({ role: 'visitor' });
    const { state, actions } = step(s, { type: 'up', kind: 'local' });
    expect(actions).toEqual([{ type: 'ready' }]);
    expect(state.timers).toEqual([]);
  });

  it('ends the session when it closes: the agent of this process went', () => {
    const up = step(initialPathState({ role: 'visitor' }), { type: 'up', kind: 'local' }).state;
    const { state, actions } = step(up, { type: 'down', kind: 'local', replaced: false });
    expect(state.closed).toBe(true);
    expect(actions.at(-1)).toEqual({ type: 'close', code: 'BEAM_ERR_PEER_GONE' });
  });
});
