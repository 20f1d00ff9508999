/**
 * The name registry on Redis, for several server nodes (`beam serve
 * --redis`). A name is one hash, `beam:name:<name>`:
 *
 *   owner  the socket.io id of the agent's connection ("" while held for resume)
 *   token  SHA-256 of the resume token, hex
 *   agent  JSON AgentInfo (peer ID, relay policy, kind, private)
 *
 * Every change is one Lua script, so two nodes racing for a name cannot both
 * win. A live name expires after NAME_TTL_MS unless the node holding its
 * agent refreshes it (every NAME_HEARTBEAT_MS): a node that dies frees its
 * names within seconds, except to their agents, which take them back with
 * their resume tokens on whichever node they land. After a Redis restart
 * the heartbeat writes the names back.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { NAME_HEARTBEAT_MS, NAME_TTL_MS, SHARE_RESUME_GRACE_MS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { randomName, validateName } from '../shared/names.js';
import type { AgentInfo, Claim, ShareRegistry } from './registry.js';

const KEY = (name: string): string => `beam:name:${name}`;
const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex');

/**
 * Claims a name: 'created' if it was free, 'resumed' if the token matches, else 'taken'.
 * KEYS[1]; ARGV owner, token hash, agent, ttl, held-only ('1': resume only a name held for a dropped owner).
 */
const CLAIM = `
local cur = redis.call('HGET', KEYS[1], 'token')
if not cur then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[2], 'agent', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 'created'
end
if ARGV[5] == '1' and redis.call('HGET', KEYS[1], 'owner') ~= '' then
  return 'taken'
end
if cur == ARGV[2] then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'agent', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 'resumed'
end
return 'taken'`;

/** Refreshes a name its owner still holds, or writes it back if Redis lost it: 1; another owner has it: 0. ARGV owner, token hash, agent, ttl. */
const REFRESH = `
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[2], 'agent', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
return 0`;

/** The owner left: hold the name for the grace period. ARGV owner, grace. */
const RELEASE = `
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', '')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

/** The owner closed on purpose: free the name. ARGV owner. */
const DROP = `
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

interface Local {
  tokenHash: string;
  agent: string;
}

export class RedisShareRegistry implements ShareRegistry {
  private readonly redis: Redis;
  private readonly log: Logger;
  private readonly ttlMs: number;
  private readonly graceMs: number;
  /** Names whose agents are connected to this node, by owner. */
  private readonly byOwner = new Map<string, Map<string, Local>>();
  private readonly heartbeat: NodeJS.Timeout;
  /** Told when a name this node's agent held was taken by another owner (while Redis was away). */
  onLost: (owner: string, name: string) => void = () => {};

  constructor(components: { redis: Redis; logger: Logger }, options: { ttlMs?: number; heartbeatMs?: number; graceMs?: number } = {}) {
    this.redis = components.redis;
    this.log = components.logger.child({ component: 'registry' });
    this.ttlMs = options.ttlMs ?? NAME_TTL_MS;
    this.graceMs = options.graceMs ?? SHARE_RESUME_GRACE_MS;
    this.heartbeat = setInterval(() => void this.refresh(), options.heartbeatMs ?? NAME_HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Runs a script; a Redis that is away is BEAM_ERR_STORE_UNAVAILABLE. */
  private async run(script: string, key: string, ...args: Array<string | number>): Promise<unknown> {
    try {
      return await this.redis.eval(script, 1, key, ...args);
    } catch (err) {
      throw new BeamError('BEAM_ERR_STORE_UNAVAILABLE', (err as Error).message);
    }
  }

  async claim(owner: string, requested: string | undefined, resumeToken: string | undefined, agent?: AgentInfo, heldOnly = false): Promise<Claim> {
    const agentJson = JSON.stringify(agent ?? null);
    const attempt = async (name: string, token: string, held = false): Promise<Claim | undefined> => {
      const result = await this.run(CLAIM, KEY(name), owner, hashToken(token), agentJson, this.ttlMs, held ? '1' : '0');
      if (result === 'taken') return undefined;
      this.own(owner, name, { tokenHash: hashToken(token), agent: agentJson });
      return { name, resumeToken: token, resumed: result === 'resumed' };
    };
    if (requested !== undefined) {
      const name = validateName(requested);
      const claimed = await attempt(name, resumeToken ?? randomBytes(24).toString('base64url'), heldOnly && resumeToken !== undefined);
      if (!claimed) throw new BeamError('BEAM_ERR_NAME_TAKEN', `"${name}"`);
      return claimed;
    }
    for (let i = 0; i < 50; i++) {
      const claimed = await attempt(randomName(), randomBytes(24).toString('base64url'));
      if (claimed) return claimed;
    }
    throw new BeamError('BEAM_ERR_LIMIT_REACHED', 'no free random name');
  }

  private own(owner: string, name: string, local: Local): void {
    let names = this.byOwner.get(owner);
    if (!names) this.byOwner.set(owner, (names = new Map()));
    names.set(name, local);
  }

  /**
   * The heartbeat: keeps this node's names alive, and writes them back if
   * Redis lost them. One pipeline a beat (10,000 names are one round trip,
   * not 10,000).
   */
  private async refresh(): Promise<void> {
    const entries: Array<[string, string, Local]> = [];
    for (const [owner, names] of this.byOwner) for (const [name, local] of names) entries.push([owner, name, local]);
    for (let i = 0; i < entries.length; i += 1_000) {
      const batch = entries.slice(i, i + 1_000);
      const pipeline = this.redis.pipeline();
      for (const [owner, name, local] of batch) pipeline.eval(REFRESH, 1, KEY(name), owner, local.tokenHash, local.agent, this.ttlMs);
      let results: Array<[Error | null, unknown]> | null;
      try {
        results = await pipeline.exec();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'heartbeat failed; retrying');
        return;
      }
      (results ?? []).forEach(([err, kept], j) => {
        const [owner, name] = batch[j] as [string, string, Local];
        if (err || kept !== 0) return;
        this.byOwner.get(owner)?.delete(name);
        this.log.warn({ share: name }, 'name lost to another agent while the store was away');
        this.onLost(owner, name);
      });
    }
  }

  async release(owner: string): Promise<void> {
    const names = this.byOwner.get(owner);
    this.byOwner.delete(owner);
    for (const name of names?.keys() ?? []) await this.run(RELEASE, KEY(name), owner, this.graceMs).catch(() => {});
  }

  async drop(owner: string, name: string): Promise<void> {
    this.byOwner.get(owner)?.delete(name);
    await this.run(DROP, KEY(name), owner);
  }

  async ownerOf(name: string): Promise<string | undefined> {
    const owner = await this.redis.hget(KEY(name.toLowerCase()), 'owner').catch((err: Error) => {
      throw new BeamError('BEAM_ERR_STORE_UNAVAILABLE', err.message);
    });
    return owner ? owner : undefined;
  }

  async agentOf(name: string): Promise<AgentInfo | undefined> {
    const [owner, agent] = await this.redis.hmget(KEY(name.toLowerCase()), 'owner', 'agent').catch((err: Error) => {
      throw new BeamError('BEAM_ERR_STORE_UNAVAILABLE', err.message);
    });
    if (!owner || !agent) return undefined;
    return (JSON.parse(agent) as AgentInfo | null) ?? undefined;
  }

  async heldFor(name: string): Promise<number | undefined> {
    const key = KEY(name.toLowerCase());
    const [owner, ttl] = await Promise.all([this.redis.hget(key, 'owner'), this.redis.pttl(key)]).catch(() => [null, -2] as const);
    return owner === '' && ttl >= 0 ? ttl : undefined;
  }

  async isHeld(name: string): Promise<boolean> {
    const owner = await this.redis.hget(KEY(name.toLowerCase()), 'owner').catch(() => null);
    return owner === '';
  }

  namesOf(owner: string): string[] {
    return [...(this.byOwner.get(owner)?.keys() ?? [])];
  }

  /** Live shares whose agents are on this node. */
  async liveCount(): Promise<number> {
    let n = 0;
    for (const names of this.byOwner.values()) n += names.size;
    return n;
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.byOwner.clear();
  }
}
