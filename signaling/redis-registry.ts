/**
 * The name registry on Redis, for several server nodes (`beam serve
 * --redis`). A name is one hash, `beam:name:<name>`:
 *
 *   owner  the socket.io id of the agent's connection ("" while held for resume)
 *   token  SHA-256 of the resume token, hex
 *   agent  JSON AgentInfo (peer ID, relay policy, kind, private)
 *
 * A pool (`--pool`) is the same hash with `pool` 1, `tok` (the server token
 * id its members share, or ""), and one field per member, `m:<owner>`, whose
 * value is `<until ms>|<agent JSON>`: its node renews `until` with every
 * heartbeat, so a member whose node died drops out within NAME_TTL_MS while
 * the others keep the name. An empty pool is held for the grace period.
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
import type { AgentInfo, Claim, Member, ShareRegistry } from './registry.js';

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

/**
 * A member joins a pool: 'created', 'joined', or why not ('single': one
 * agent's name; 'token': another token's pool). KEYS[1]; ARGV owner, agent,
 * ttl, token id, token hash, now.
 */
const JOIN = `
local cur = redis.call('HGET', KEYS[1], 'token')
if cur then
  if redis.call('HGET', KEYS[1], 'pool') ~= '1' then return 'single' end
  if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[4] then return 'token' end
else
  redis.call('HSET', KEYS[1], 'token', ARGV[5], 'pool', '1', 'tok', ARGV[4], 'owner', '')
end
redis.call('HSET', KEYS[1], 'm:' .. ARGV[1], (tonumber(ARGV[6]) + tonumber(ARGV[3])) .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if cur then return 'joined' end
return 'created'`;

/** Renews a member (or writes its pool back if Redis lost it): 1; the name is no longer this pool: 0. ARGV as JOIN. */
const REFRESH_MEMBER = `
local cur = redis.call('HGET', KEYS[1], 'token')
if not cur then
  redis.call('HSET', KEYS[1], 'token', ARGV[5], 'pool', '1', 'tok', ARGV[4], 'owner', '')
elseif redis.call('HGET', KEYS[1], 'pool') ~= '1' or redis.call('HGET', KEYS[1], 'tok') ~= ARGV[4] then
  return 0
end
redis.call('HSET', KEYS[1], 'm:' .. ARGV[1], (tonumber(ARGV[6]) + tonumber(ARGV[3])) .. '|' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

/**
 * A member leaves; members whose time ran out go too. With none left the
 * pool is held for ARGV grace ms, or freed when grace is '0'. ARGV owner, grace, now.
 */
const LEAVE = `
if redis.call('HGET', KEYS[1], 'pool') ~= '1' then return 0 end
redis.call('HDEL', KEYS[1], 'm:' .. ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'm:' then
    local v = all[i + 1]
    local bar = string.find(v, '|', 1, true)
    if bar and tonumber(string.sub(v, 1, bar - 1)) > tonumber(ARGV[3]) then live = live + 1 else redis.call('HDEL', KEYS[1], all[i]) end
  end
end
if live > 0 then return 1 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`;

interface Local {
  tokenHash: string;
  agent: string;
  /** A pool member: the token id its pool is bound to ("" for none). */
  pool?: string;
}

/** A name's hash as stored: one agent's, or a pool's with its live members. */
function parseEntry(fields: Record<string, string>, now: number): { pool: boolean; members: Member[] } {
  if (fields['pool'] === '1') {
    const members: Member[] = [];
    for (const [field, value] of Object.entries(fields)) {
      if (!field.startsWith('m:')) continue;
      const bar = value.indexOf('|');
      if (bar < 0 || Number(value.slice(0, bar)) <= now) continue;
      const agent = JSON.parse(value.slice(bar + 1)) as AgentInfo | null;
      if (agent) members.push({ owner: field.slice(2), agent });
    }
    // One order on every node: the owner's id.
    members.sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
    return { pool: true, members };
  }
  const agent = fields['owner'] && fields['agent'] ? (JSON.parse(fields['agent']) as AgentInfo | null) : null;
  return { pool: false, members: agent && fields['owner'] ? [{ owner: fields['owner'], agent }] : [] };
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
    if (agent?.pool) return this.join(owner, requested, agentJson, agent.tokenId ?? '');
    const attempt = async (name: string, token: string, held = false): Promise<Claim | undefined> => {
      const result = await this.run(CLAIM, KEY(name), owner, hashToken(token), agentJson, this.ttlMs, held ? '1' : '0');
      if (result === 'taken') return undefined;
      this.own(owner, name, { tokenHash: hashToken(token), agent: agentJson });
      return { name, resumeToken: token, resumed: result === 'resumed' };
    };
    if (requested !== undefined) {
      const name = validateName(requested);
      const claimed = await attempt(name, resumeToken ?? randomBytes(24).toString('base64url'), heldOnly && resumeToken !== undefined);
      if (!claimed) {
        if ((await this.redis.hget(KEY(name), 'pool').catch(() => null)) === '1')
          throw new BeamError('BEAM_ERR_POOL_MISMATCH', `"${name}" is a pool: start this agent with --pool to join it`);
        throw new BeamError('BEAM_ERR_NAME_TAKEN', `"${name}"`);
      }
      return claimed;
    }
    for (let i = 0; i < 50; i++) {
      const claimed = await attempt(randomName(), randomBytes(24).toString('base64url'));
      if (claimed) return claimed;
    }
    throw new BeamError('BEAM_ERR_LIMIT_REACHED', 'no free random name');
  }

  /** An agent joins the pool `requested` (made if it is free). */
  private async join(owner: string, requested: string | undefined, agentJson: string, tokenId: string): Promise<Claim> {
    if (requested === undefined) throw new BeamError('BEAM_ERR_BAD_OPTION', '--pool needs a name (--name) for the agents to share');
    const name = validateName(requested);
    const tokenHash = hashToken(randomBytes(24).toString('base64url'));
    const result = await this.run(JOIN, KEY(name), owner, agentJson, this.ttlMs, tokenId, tokenHash, Date.now());
    if (result === 'single') throw new BeamError('BEAM_ERR_POOL_MISMATCH', `"${name}" is served by one agent, not a pool`);
    if (result === 'token') throw new BeamError('BEAM_ERR_POOL_MISMATCH', `"${name}" is another token's pool`);
    this.own(owner, name, { tokenHash, agent: agentJson, pool: tokenId });
    return { name, resumeToken: randomBytes(24).toString('base64url'), resumed: result === 'joined' };
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
      const now = Date.now();
      for (const [owner, name, local] of batch) {
        if (local.pool !== undefined) pipeline.eval(REFRESH_MEMBER, 1, KEY(name), owner, local.agent, this.ttlMs, local.pool, local.tokenHash, now);
        else pipeline.eval(REFRESH, 1, KEY(name), owner, local.tokenHash, local.agent, this.ttlMs);
      }
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
    for (const [name, local] of names ?? []) {
      if (local.pool !== undefined) await this.run(LEAVE, KEY(name), owner, this.graceMs, Date.now()).catch(() => {});
      else await this.run(RELEASE, KEY(name), owner, this.graceMs).catch(() => {});
    }
  }

  async drop(owner: string, name: string): Promise<void> {
    const local = this.byOwner.get(owner)?.get(name);
    this.byOwner.get(owner)?.delete(name);
    if (local?.pool !== undefined) await this.run(LEAVE, KEY(name), owner, '0', Date.now());
    else await this.run(DROP, KEY(name), owner);
  }

  /** A name's hash, or undefined when there is none. */
  private async entry(name: string): Promise<{ pool: boolean; members: Member[] } | undefined> {
    const fields = await this.redis.hgetall(KEY(name.toLowerCase())).catch((err: Error) => {
      throw new BeamError('BEAM_ERR_STORE_UNAVAILABLE', err.message);
    });
    return fields['token'] === undefined ? undefined : parseEntry(fields, Date.now());
  }

  async membersOf(name: string): Promise<Member[]> {
    return (await this.entry(name))?.members ?? [];
  }

  async ownerOf(name: string): Promise<string | undefined> {
    return (await this.membersOf(name))[0]?.owner;
  }

  async agentOf(name: string): Promise<AgentInfo | undefined> {
    return (await this.membersOf(name))[0]?.agent;
  }

  async heldFor(name: string): Promise<number | undefined> {
    const key = KEY(name.toLowerCase());
    const [entry, ttl] = await Promise.all([this.entry(name), this.redis.pttl(key)]).catch(() => [undefined, -2] as const);
    return entry && entry.members.length === 0 && ttl >= 0 ? ttl : undefined;
  }

  async isHeld(name: string): Promise<boolean> {
    const entry = await this.entry(name).catch(() => undefined);
    return entry !== undefined && entry.members.length === 0;
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
