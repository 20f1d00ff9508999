/**
 * The in-process path (transport/local.ts): the in-memory channel under a
 * real multiplexer on each end, its backpressure and close, the registry
 * the server's gateway finds an agent of its own process in, and what the
 * path policy does with a path that has no network under it.
 */

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StreamProtocol } from '../shared/frames.js';
import { Mux } from '../shared/mux.js';
import { localAgent, localChannelPair, serveLocally } from '../transport/local.js';
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
