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
}

export interface ShareRegistry {
  /** Claims `name` (or a random one) for `owner`. A held name goes back to whoever shows its token. */
  /** `heldOnly`: a token resumes only a name held for a dropped owner, never one a live owner has. */
  claim(owner: string, name: string | undefined, resumeToken: string | undefined, agent?: AgentInfo, heldOnly?: boolean): Promise<Claim>;
  /** The agent behind a live name (its owner's registration), if any. */
  agentOf(name: string): Promise<AgentInfo | undefined>;
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
    if (requested !== undefined) {
      const name = validateName(requested);
      const entry = this.entries.get(name);
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
    if (!entry || entry.owner !== owner) return;
    if (entry.graceTimer) clearTimeout(entry.graceTimer);
    this.entries.delete(name);
    this.byOwner.get(owner)?.delete(name);
  }

  async ownerOf(name: string): Promise<string | undefined> {
    return this.entries.get(name.toLowerCase())?.owner;
  }

  async agentOf(name: string): Promise<AgentInfo | undefined> {
    const entry = this.entries.get(name.toLowerCase());
    return entry?.owner !== undefined ? entry.agent : undefined;
  }

  async isHeld(name: string): Promise<boolean> {
    const entry = this.entries.get(name.toLowerCase());
    return entry !== undefined && entry.owner === undefined;
  }

  async heldFor(name: string): Promise<number | undefined> {
    const entry = this.entries.get(name.toLowerCase());
    if (!entry || entry.owner !== undefined || entry.heldUntil === undefined) return undefined;
    return Math.max(0, entry.heldUntil - Date.now());
  }

  namesOf(owner: string): string[] {
    return [...(this.byOwner.get(owner) ?? [])];
  }

  async liveCount(): Promise<number> {
    let n = 0;
    for (const entry of this.entries.values()) if (entry.owner !== undefined) n++;
    return n;
  }

  close(): void {
    for (const entry of this.entries.values()) if (entry.graceTimer) clearTimeout(entry.graceTimer);
    this.entries.clear();
    this.byOwner.clear();
  }
}
