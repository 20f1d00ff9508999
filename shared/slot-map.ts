/**
 * A Map for short-lived values in a long-lived owner (a multiplexer's
 * streams): each value sits in a slot of its own, emptied before its entry
 * is deleted.
 *
 * Why: V8's Map keeps its entries in a hash table that it replaces as
 * entries come and go (it compacts, shrinks or grows the table), and the
 * table it replaced keeps pointing at the values it held then and at its
 * successor. Once one of those tables is in the old generation, the
 * young-generation collector treats what it points to as alive until the next
 * full collection, so every value that passed through the Map outlives its
 * use: on Node 24 and 26 (V8 13 and 14) a multiplexer's streams, with the
 * requests they held, were promoted to the old generation at about 3 MB a
 * scavenge, and a scavenge took 5 ms instead of 1. An emptied slot holds
 * nothing, so a replaced table keeps only small empty slots alive.
 * (docs/benchmarks.md, "A Map that keeps streams alive".)
 */
interface Slot<V> {
  value: V | undefined;
}

export class SlotMap<K, V> {
  private readonly slots = new Map<K, Slot<V>>();

  get size(): number {
    return this.slots.size;
  }

  get(key: K): V | undefined {
    return this.slots.get(key)?.value;
  }

  has(key: K): boolean {
    return this.slots.has(key);
  }

  set(key: K, value: V): void {
    const slot = this.slots.get(key);
    if (slot) slot.value = value;
    else this.slots.set(key, { value });
  }

  delete(key: K): boolean {
    const slot = this.slots.get(key);
    if (!slot) return false;
    slot.value = undefined;
    return this.slots.delete(key);
  }

  /** The values, as an array (a copy: the map may change while it is used). */
  values(): V[] {
    const out: V[] = [];
    for (const slot of this.slots.values()) if (slot.value !== undefined) out.push(slot.value);
    return out;
  }

  clear(): void {
    for (const slot of this.slots.values()) slot.value = undefined;
    this.slots.clear();
  }
}
