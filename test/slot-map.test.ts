/** shared/slot-map.ts: a Map's semantics, for a multiplexer's streams. */
import { describe, expect, it } from 'vitest';
import { SlotMap } from '../shared/slot-map.js';

describe('SlotMap', () => {
  it('gets, sets, replaces and deletes as a Map does, and counts what it holds', () => {
    const map = new SlotMap<number, string>();
    expect(map.size).toBe(0);
    expect(map.get(1)).toBeUndefined();
    map.set(1, 'a');
    map.set(3, 'b');
    map.set(1, 'c');
    expect(map.size).toBe(2);
    expect(map.get(1)).toBe('c');
    expect(map.has(3)).toBe(true);
    expect(map.delete(3)).toBe(true);
    expect(map.delete(3)).toBe(false);
    expect(map.has(3)).toBe(false);
    expect(map.get(3)).toBeUndefined();
    expect(map.size).toBe(1);
  });

  it('keeps up through many entries coming and going, as a multiplexer streams', () => {
    const map = new SlotMap<number, { id: number }>();
    const live = new Map<number, { id: number }>();
    for (let id = 1; id < 20_000; id += 2) {
      const value = { id };
      map.set(id, value);
      live.set(id, value);
      // Up to 16 open at once, closing in an order of their own.
      if (live.size > 16) {
        const gone = [...live.keys()][(id >> 1) % live.size] as number;
        expect(map.delete(gone)).toBe(true);
        live.delete(gone);
      }
    }
    expect(map.size).toBe(live.size);
    for (const [id, value] of live) expect(map.get(id)).toBe(value);
    expect(map.values().sort((x, y) => x.id - y.id)).toEqual([...live.values()].sort((x, y) => x.id - y.id));
  });

  it('values() is a copy: what runs over it may delete entries (a closing multiplexer abandons its streams)', () => {
    const map = new SlotMap<number, string>();
    for (let id = 1; id <= 5; id++) map.set(id, `s${id}`);
    const seen: string[] = [];
    for (const value of map.values()) {
      seen.push(value);
      map.delete(Number(value.slice(1)));
    }
    expect(seen).toEqual(['s1', 's2', 's3', 's4', 's5']);
    expect(map.size).toBe(0);
  });

  it('clear() empties it', () => {
    const map = new SlotMap<string, number>();
    map.set('a', 1);
    map.set('b', 2);
    map.clear();
    expect(map.size).toBe(0);
    expect(map.get('a')).toBeUndefined();
    expect(map.values()).toEqual([]);
  });
});
