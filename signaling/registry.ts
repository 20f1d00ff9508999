/**
 * The name registry: which share names are live, and which are held for
 * their owner during the resume grace period. In memory; the interface is
 * async so a Redis-backed registry can take its place for many nodes.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { SHARE_RESUME_GRACE_MS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { randomName, validateName } from '../shared/names.js';

export interface Claim {
  name: string;
  /** Returned to the owner once; only its hash is kept. */
  resumeToken: string;
  resumed: boolean;
}

/** What visitors learn of a share's agent when they open a session: kept with the name, so any node can answer. */
export interface AgentInfo {
  peerId: string;
  relay: 'auto' | 'never' | 'always';
  kind: 'http' | 'tcp' | 'udp';
  private: boolean;
  /** The HTTP head codec it speaks; absent is 1. */
  http?: number | undefined;
  /** Its visitors sign in (--oidc). */
  signIn?: boolean | undefined;
  /** It joins a pool (--pool): one name, several agents. */
  pool?: boolean | undefined;
  /** Its link to the server is private (Handshake.plainGatewayLink). */
  plainGatewayLink?: boolean | undefined;
  /** The id of the server token it registered with (--token-file): a pool takes members of one token only. */
  tokenId?: string | undefined;
}

/** One agent serving a name: its connection, and what visitors learn of it. */
export interface Member {
  owner: string;
  agent: AgentInfo;
}

export interface ShareRegistry {
  /** Claims `name` (or a random one) for `owner`. A held name goes back to whoever shows its token. */
  /** `heldOnly`: a token resumes only a name held for a dropped owner, never one a live owner has. */
  claim(owner: string, name: string | undefined, resumeToken: string | undefined, agent?: AgentInfo, heldOnly?: boolean): Promise<Claim>;
  /** The agent behind a live name (its owner's registration; a pool's first member), if any. */
  agentOf(name: string): Promise<AgentInfo | undefined>;
  /** Every agent serving a live name: one, or a pool's members. */
  membersOf(name: string): Promise<Member[]>;
  /** The owner went away: its names are held for the grace period, then freed. */
  release(owner: string): Promise<void>;
  /** The owner closed the share on purpose: the name is freed at once. */
  drop(owner: string, name: string): Promise<void>;
  /** Who serves `name` now, if anyone. */
  ownerOf(name: string): Promise<string | undefined>;
  /** Whether `name` is held for an owner that dropped and may resume. */
  isHeld(name: string): Promise<boolean>;
  /** How long `name` stays held for the owner that dropped, in ms; undefined when it is not held. */
  heldFor(name: string): Promise<number | undefined>;
  namesOf(owner: string): string[];
  /** Live shares (held names not counted). */
  liveCount(): Promise<number>;
  close(): void;
}

interface Entry {
  owner: string | undefined;
  agent: AgentInfo | undefined;
  /** A pool's members by owner (owner and agent above stay undefined); held while empty. */
  pool?: { tokenId: string | undefined; members: Map<string, AgentInfo> };
  tokenHash: Buffer;
  graceTimer: NodeJS.Timeout | undefined;
  /** While held (owner undefined): when the grace ends (Date.now() ms). */
  heldUntil?: number;
}

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export class MemoryShareRegistry implements ShareRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly byOwner = new Map<string, Set<string>>();
  private readonly graceMs: number;

  constructor(options: { graceMs?: number } = {}) {
    this.graceMs = options.graceMs ?? SHARE_RESUME_GRACE_MS;
  }

  async claim(owner: string, requested: string | undefined, resumeToken: string | undefined, agent?: AgentInfo, heldOnly = false): Promise<Claim> {
    if (agent?.pool) return this.join(owner, requested, agent);
    if (requested !== undefined) {
      const name = validateName(requested);
      const entry = this.entries.get(name);
      if (entry?.pool) throw new BeamError('BEAM_ERR_POOL_MISMATCH', `"${name}" is a pool: start this agent with --pool to join it`);
      if (entry) {
        const presented = resumeToken ? hashToken(resumeToken) : undefined;
        if (!presented || !timingSafeEqual(presented, entry.tokenHash) || (heldOnly && entry.owner !== undefined)) {
          throw new BeamError('BEAM_ERR_NAME_TAKEN', `"${name}"`);
        }
        // The token holder takes the name back, even from a stale connection of its own.
        if (entry.graceTimer) clearTimeout(entry.graceTimer);
        if (entry.owner && entry.owner !== owner) this.byOwner.get(entry.owner)?.delete(name);
        entry.owner = owner;
        entry.agent = agent;
        entry.graceTimer = undefined;
        this.own(owner, name);
        return { name, resumeToken: resumeToken as string, resumed: true };
      }
      return this.create(owner, name, agent);
    }
    for (let attempt = 0; attempt < 50; attempt++) {
      const name = randomName();
      if (!this.entries.has(name)) return this.create(owner, name, agent);
    }
    throw new BeamError('BEAM_ERR_LIMIT_REACHED', 'no free random name');
  }

  /** An agent joins the pool `requested` (made if it is free). */
  private join(owner: string, requested: string | undefined, agent: AgentInfo): Claim {
    if (requested === undefined) throw new BeamError('BEAM_ERR_BAD_OPTION', '--pool needs a name (--name) for the agents to share');
    const name = validateName(requested);
    let entry = this.entries.get(name);
    if (entry && (!entry.pool || entry.pool.tokenId !== agent.tokenId))
      throw new BeamError('BEAM_ERR_POOL_MISMATCH', entry.pool ? `"${name}" is another token's pool` : `"${name}" is served by one agent, not a pool`);
    const resumed = entry !== undefined;
    if (!entry) {
      entry = {
        owner: undefined,
        agent: undefined,
        tokenHash: hashToken(randomBytes(24).toString('base64url')),
        graceTimer: undefined,
        pool: { tokenId: agent.tokenId, members: new Map() },
      };
      this.entries.set(name, entry);
    }
    if (entry.graceTimer) clearTimeout(entry.graceTimer);
    entry.graceTimer = undefined;
    delete entry.heldUntil;
    entry.pool?.members.set(owner, agent);
    this.own(owner, name);
    // A member needs no token to come back: it joins again by name.
    return { name, resumeToken: randomBytes(24).toString('base64url'), resumed };
  }

  /** A member left a pool: an empty pool is held for the grace period (`hold`), or freed. */
  private leave(name: string, entry: Entry, owner: string, hold: boolean): void {
    const pool = entry.pool;
    if (!pool?.members.delete(owner) || pool.members.size > 0) return;
    if (!hold) {
      this.entries.delete(name);
      return;
    }
    entry.heldUntil = Date.now() + this.graceMs;
    entry.graceTimer = setTimeout(() => {
      if (this.entries.get(name) === entry && pool.members.size === 0) this.entries.delete(name);
    }, this.graceMs);
    entry.graceTimer.unref();
  }

  private create(owner: string, name: string, agent: AgentInfo | undefined): Claim {
    const resumeToken = randomBytes(24).toString('base64url');
    this.entries.set(name, { owner, agent, tokenHash: hashToken(resumeToken), graceTimer: undefined });
    this.own(owner, name);
    return { name, resumeToken, resumed: false };
  }

  private own(owner: string, name: string): void {
    let names = this.byOwner.get(owner);
    if (!names) this.byOwner.set(owner, (names = new Set()));
    names.add(name);
  }

  async release(owner: string): Promise<void> {
    const names = this.byOwner.get(owner);
    this.byOwner.delete(owner);
    for (const name of names ?? []) {
      const entry = this.entries.get(name);
      if (entry?.pool) {
        this.leave(name, entry, owner, true);
        continue;
      }
      if (!entry || entry.owner !== owner) continue;
      entry.owner = undefined;
      entry.heldUntil = Date.now() + this.graceMs;
      entry.graceTimer = setTimeout(() => {
        if (this.entries.get(name) === entry && entry.owner === undefined) this.entries.delete(name);
      }, this.graceMs);
      entry.graceTimer.unref();
    }
  }

  async drop(owner: string, name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (entry?.pool) {
      this.byOwner.get(owner)?.delete(name);
      this.leave(name, entry, owner, false);
      return;
    }
    if (!entry || entry.owner !== owner) return;
    if (entry.graceTimer) clearTimeout(entry.graceTimer);
    this.entries.delete(name);
    this.byOwner.get(owner)?.delete(name);
  }

  async ownerOf(name: string): Promise<string | undefined> {
    const entry = this.entries.get(name.toLowerCase());
    return entry?.pool ? (await this.membersOf(name))[0]?.owner : entry?.owner;
  }

  async agentOf(name: string): Promise<AgentInfo | undefined> {
    return (await this.membersOf(name))[0]?.agent;
  }

  async membersOf(name: string): Promise<Member[]> {
    const entry = this.entries.get(name.toLowerCase());
    if (entry?.pool) return [...entry.pool.members].map(([owner, agent]) => ({ owner, agent }));
    return entry?.owner !== undefined && entry.agent ? [{ owner: entry.owner, agent: entry.agent }] : [];
  }

  /** Held: a name whose owner dropped, or a pool with no member left, within the grace period. */
  private held(entry: Entry | undefined): boolean {
    return entry !== undefined && (entry.pool ? entry.pool.members.size === 0 : entry.owner === undefined);
  }

  async isHeld(name: string): Promise<boolean> {
    return this.held(this.entries.get(name.toLowerCase()));
  }

  async heldFor(name: string): Promise<number | undefined> {
    const entry = this.entries.get(name.toLowerCase());
    if (!entry || !this.held(entry) || entry.heldUntil === undefined) return undefined;
    return Math.max(0, entry.heldUntil - Date.now());
  }

  namesOf(owner: string): string[] {
    return [...(this.byOwner.get(owner) ?? [])];
  }

  async liveCount(): Promise<number> {
    let n = 0;
    for (const entry of this.entries.values()) if (!this.held(entry)) n++;
    return n;
  }

  close(): void {
    for (const entry of this.entries.values()) if (entry.graceTimer) clearTimeout(entry.graceTimer);
    this.entries.clear();
    this.byOwner.clear();
  }
}
