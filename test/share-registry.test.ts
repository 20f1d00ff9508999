/**
 * The in-memory name registry (signaling/registry.ts): a name held for an
 * owner that dropped says for how long, goes back to its token at once, and
 * a token kept on disk (heldOnly) never takes a name from a live owner.
 */
import { describe, expect, it } from 'vitest';
import { MemoryShareRegistry } from '../signaling/registry.js';

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
