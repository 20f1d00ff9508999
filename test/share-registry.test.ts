/**
 * The in-memory name registry (signaling/registry.ts): a name held for an
 * owner that dropped says for how long, goes back to its token at once, and
 * a token kept on disk (heldOnly) never takes a name from a live owner.
 * Pools (--pool), on the in-memory registry and on Redis's.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { RedisShareRegistry } from '../signaling/redis-registry.js';
import { type AgentInfo, MemoryShareRegistry, type ShareRegistry } from '../signaling/registry.js';
import { startRedis } from './helpers/services.js';

describe('MemoryShareRegistry', () => {
  it("holds a dropped owner's name for the grace, says for how long, and gives it back to its token", async () => {
    const registry = new MemoryShareRegistry({ graceMs: 30_000 });
    const claim = await registry.claim('a', 'held-1', undefined);
    expect(await registry.heldFor('held-1')).toBeUndefined();
    await registry.release('a');
    const left = await registry.heldFor('held-1');
    expect(left).toBeGreaterThan(29_000);
    expect(left).toBeLessThanOrEqual(30_000);
    await expect(registry.claim('b', 'held-1', undefined)).rejects.toMatchObject({ code: 'BEAM_ERR_NAME_TAKEN' });
    const back = await registry.claim('c', 'held-1', claim.resumeToken, undefined, true);
    expect(back).toMatchObject({ name: 'held-1', resumed: true });
    expect(await registry.heldFor('held-1')).toBeUndefined();
    registry.close();
  });

  it('heldOnly: a token from disk takes nothing from a live owner, while a reconnecting agent may take its own back', async () => {
    const registry = new MemoryShareRegistry();
    const claim = await registry.claim('a', 'live-1', undefined);
    await expect(registry.claim('b', 'live-1', claim.resumeToken, undefined, true)).rejects.toMatchObject({ code: 'BEAM_ERR_NAME_TAKEN' });
    expect(await registry.ownerOf('live-1')).toBe('a');
    // The agent's own reconnect (its stale connection still there) presents the token without heldOnly.
    expect(await registry.claim('a2', 'live-1', claim.resumeToken)).toMatchObject({ resumed: true });
    expect(await registry.ownerOf('live-1')).toBe('a2');
    registry.close();
  });
});

const AGENT: AgentInfo = { peerId: 'p', relay: 'auto', kind: 'http', private: false };
const pooled = (peerId: string, tokenId?: string): AgentInfo => ({ ...AGENT, peerId, pool: true, tokenId });

/** The same pool rules on both registries: the one in memory, and Redis's for several nodes (a real redis-server). */
describe.each([
  ['MemoryShareRegistry', async () => ({ registry: new MemoryShareRegistry({ graceMs: 30_000 }) as ShareRegistry, stop: () => {} })],
  [
    'RedisShareRegistry',
    async () => {
      const server = await startRedis();
      const redis = new Redis({ port: server.port, host: '127.0.0.1', lazyConnect: false });
      const registry = new RedisShareRegistry({ redis, logger: pino({ level: 'silent' }) }, { graceMs: 30_000, heartbeatMs: 60_000 });
      return {
        registry: registry as ShareRegistry,
        stop: () => {
          registry.close();
          redis.disconnect();
          server.stop();
        },
      };
    },
  ],
])('%s: pools', (_name, make) => {
  it('takes members by name and token, keeps single shares and pools apart, and holds an empty pool for the grace', async () => {
    const { registry, stop } = await make();
    try {
      expect(await registry.claim('a', 'pool-1', undefined, pooled('pa', 't1'))).toMatchObject({ name: 'pool-1', resumed: false });
      expect(await registry.claim('b', 'pool-1', undefined, pooled('pb', 't1'))).toMatchObject({ name: 'pool-1', resumed: true });
      expect((await registry.membersOf('pool-1')).map((m) => m.agent.peerId).sort()).toEqual(['pa', 'pb']);
      // Another token's agent, or one not pooled, gets nothing; nor does a pool member take a single share's name.
      await expect(registry.claim('c', 'pool-1', undefined, pooled('pc', 't2'))).rejects.toMatchObject({ code: 'BEAM_ERR_POOL_MISMATCH' });
      await expect(registry.claim('c', 'pool-1', undefined, AGENT)).rejects.toMatchObject({ code: 'BEAM_ERR_POOL_MISMATCH' });
      await registry.claim('d', 'single-1', undefined, AGENT);
      await expect(registry.claim('e', 'single-1', undefined, pooled('pe', 't1'))).rejects.toMatchObject({ code: 'BEAM_ERR_POOL_MISMATCH' });
      await expect(registry.claim('e', undefined, undefined, pooled('pe', 't1'))).rejects.toMatchObject({ code: 'BEAM_ERR_BAD_OPTION' });
      // A member that drops leaves the others serving; the last one's drop holds the pool for the grace.
      await registry.release('a');
      expect((await registry.membersOf('pool-1')).map((m) => m.owner)).toEqual(['b']);
      expect(await registry.isHeld('pool-1')).toBe(false);
      await registry.release('b');
      expect(await registry.membersOf('pool-1')).toEqual([]);
      expect(await registry.isHeld('pool-1')).toBe(true);
      expect(await registry.heldFor('pool-1')).toBeGreaterThan(29_000);
      await expect(registry.claim('f', 'pool-1', undefined, AGENT)).rejects.toMatchObject({ code: 'BEAM_ERR_POOL_MISMATCH' });
      // A member comes back by name alone.
      await registry.claim('a3', 'pool-1', undefined, pooled('pa', 't1'));
      expect(await registry.ownerOf('pool-1')).toBe('a3');
      // Closed on purpose, the last member frees the name at once.
      await registry.drop('a3', 'pool-1');
      expect(await registry.isHeld('pool-1')).toBe(false);
      expect(await registry.claim('g', 'pool-1', undefined, AGENT)).toMatchObject({ resumed: false });
    } finally {
      stop();
    }
  });
});
