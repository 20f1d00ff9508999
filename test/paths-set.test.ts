/**
 * PathSet (transport/paths.ts), in memory: paths over MemoryChannel pairs,
 * real multiplexers on both ends, no socket. Which path new streams take,
 * what each event says, byte totals that never go down, replacement, and the
 * probe that decides which paths outlive signaling.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StreamProtocol } from '../shared/frames.js';
import { Mux } from '../shared/mux.js';
import { PATH_ORDER, type PathKind, RELAY_PREFERRED_ORDER } from '../shared/paths.js';
import { type PathDown, PathSet } from '../transport/paths.js';
import { channelPair } from './helpers/memory-channel.js';

/** A path: the set's end (initiator) and the peer's (responder), which answers PINGs. */
function path(): { near: Mux; far: Mux } {
  const [a, b] = channelPair();
  return { near: new Mux(a, { role: 'initiator', ping: false }), far: new Mux(b, { role: 'responder', ping: false }) };
}

function watch(set: PathSet): { changes: Array<PathKind | undefined>; downs: PathDown[] } {
  const changes: Array<PathKind | undefined> = [];
  const downs: PathDown[] = [];
  set.on('change', (k) => changes.push(k));
  set.on('down', (d) => downs.push(d));
  return { changes, downs };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('PathSet', () => {
  it('new streams take the best path up: direct, then turn, then relay', () => {
    const set = new PathSet();
    const { changes } = watch(set);
    const relay = path();
    const turn = path();
    const direct = path();
    set.add('relay', relay.near);
    set.add('turn', turn.near);
    set.add('direct', direct.near);
    expect(set.best).toBe('direct');
    expect(changes).toEqual(['relay', 'turn', 'direct']);
    direct.near.close('BEAM_ERR_PEER_GONE');
    expect(set.best).toBe('turn');
    turn.near.close();
    relay.near.close();
    expect(set.best).toBeUndefined();
    expect(changes).toEqual(['relay', 'turn', 'direct', 'turn', 'relay', undefined]);
  });

  it("relay preferred (the server's own gateway): the relay takes new streams over direct, which stands by and takes over when the relay goes", () => {
    const set = new PathSet(RELAY_PREFERRED_ORDER);
    const { changes } = watch(set);
    const relay = path();
    const direct = path();
    set.add('direct', direct.near);
    set.add('relay', relay.near);
    expect(set.best).toBe('relay');
    expect(set.has('direct')).toBe(true);
    relay.near.close('BEAM_ERR_PEER_GONE');
    expect(set.best).toBe('direct');
    expect(changes).toEqual(['direct', 'relay', 'direct']);
  });

  it('a worse path coming up changes nothing; a path going down says which and why', () => {
    const set = new PathSet();
    const { changes, downs } = watch(set);
    const direct = path();
    const relay = path();
    set.add('direct', direct.near);
    set.add('relay', relay.near);
    expect(changes).toEqual(['direct']);
    relay.near.close('BEAM_ERR_STREAM_RESET');
    expect(downs).toEqual([{ kind: 'relay', mux: relay.near, code: 'BEAM_ERR_STREAM_RESET', replaced: false }]);
    expect(changes).toEqual(['direct']);
  });

  it('a path of a kind already up replaces it: the old one closes, counted as replaced', () => {
    const set = new PathSet();
    const { downs } = watch(set);
    const first = path();
    const second = path();
    set.add('direct', first.near);
    set.add('direct', second.near);
    expect(first.near.isClosed).toBe(true);
    expect(set.get('direct')).toBe(second.near);
    expect(downs).toEqual([{ kind: 'direct', mux: first.near, code: 'BEAM_ERR_PEER_GONE', replaced: true }]);
  });

  it('supersede: the path takes no new streams, finishes the open ones, then goes down as replaced', async () => {
    const set = new PathSet();
    const { downs } = watch(set);
    const turn = path();
    set.add('turn', turn.near);
    const stream = turn.near.openStream(StreamProtocol.HTTP);
    const direct = path();
    set.add('direct', direct.near);
    set.supersede('turn');
    expect(set.isSuperseded('turn')).toBe(true);
    expect(turn.near.isClosed).toBe(false);
    stream.destroy();
    await tick();
    await tick();
    expect(turn.near.isClosed).toBe(true);
    expect(downs.map((d) => [d.kind, d.replaced])).toEqual([['turn', true]]);
    expect(set.best).toBe('direct');
  });

  it('byte totals count closed paths too, so they never go down', async () => {
    const set = new PathSet();
    const relay = path();
    set.add('relay', relay.near);
    // Streams the close below cuts short end in an error nobody needs.
    relay.far.on('stream', (st) => st.on('error', () => {}).resume());
    const s = relay.near.openStream(StreamProtocol.HTTP);
    s.on('error', () => {});
    s.end(Buffer.alloc(10_000));
    await tick();
    await tick();
    const before = set.bytes;
    expect(before.sent).toBeGreaterThanOrEqual(10_000);
    relay.near.close();
    expect(set.bytes).toEqual(before);
  });

  it('probe: a path whose peer answers stays, one whose peer is gone closes, and onDead names it', async () => {
    const set = new PathSet();
    const { downs } = watch(set);
    const alive = path();
    const [a] = channelPair();
    // The far end of this one is never read: nothing answers its PING.
    const dead = new Mux(a, { role: 'initiator', ping: false });
    (a as unknown as { peer: undefined }).peer = undefined;
    set.add('direct', alive.near);
    set.add('relay', dead);
    const named: PathKind[] = [];
    await set.probe(300, (k) => named.push(k));
    expect(named).toEqual(['relay']);
    expect(set.kinds()).toEqual(['direct']);
    expect(downs.map((d) => d.kind)).toEqual(['relay']);
    expect(alive.near.isClosed).toBe(false);
  });

  it('close: every path closes and the set is empty', () => {
    const set = new PathSet();
    const paths = PATH_ORDER.map((k) => [k, path()] as const);
    for (const [k, p] of paths) set.add(k, p.near);
    set.close();
    expect(set.size).toBe(0);
    expect(set.best).toBeUndefined();
    for (const [, p] of paths) expect(p.near.isClosed).toBe(true);
  });

  it('property: after any sequence of adds, closes and supersedes, best is the first of PATH_ORDER up, and every change was announced', () => {
    const op = fc.oneof(
      fc.record({ op: fc.constant('add' as const), kind: fc.constantFrom(...PATH_ORDER) }),
      fc.record({ op: fc.constant('close' as const), kind: fc.constantFrom(...PATH_ORDER) }),
      fc.record({ op: fc.constant('supersede' as const), kind: fc.constantFrom(...PATH_ORDER) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
        const set = new PathSet();
        const { changes } = watch(set);
        for (const { op: what, kind } of ops) {
          if (what === 'add') set.add(kind, path().near);
          else if (what === 'close') set.get(kind)?.close();
          else set.supersede(kind);
        }
        const expected = PATH_ORDER.find((k) => set.has(k));
        expect(set.best).toBe(expected);
        expect(changes.at(-1)).toBe(changes.length ? expected : undefined);
        // No change is announced twice in a row.
        for (let i = 1; i < changes.length; i++) expect(changes[i]).not.toBe(changes[i - 1]);
        set.close();
      }),
      { numRuns: 300 },
    );
  });
});
