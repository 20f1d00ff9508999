/**
 * Every visitor's sessions, one per share, over one signaling connection:
 * the server's gateway, `beam connect` and the browser page all hold their
 * sessions here. The pool routes each signal to its session by id, detaches
 * every session when signaling drops (their paths carry on while the agents
 * answer), and counts what the sessions carried.
 *
 *   open(share)     the session with a share, set up if there is none (at once);
 *                   in memory when the share's agent runs in this process (localLinks)
 *   connect(share)  the same, once a path is up
 *
 * A session that lost signaling is retired once the share's resume grace is
 * over: the name may belong to someone else by then, so new requests start a
 * new session and the old one finishes what it carries. A session pinned to
 * a peer ID (a `beam connect` link) can reach no one else, and stays.
 *
 * A pooled share (`--pool`, several agents under one name) gets a session
 * with each member: new streams take turns among those that are up, and
 * every POOL_PROBE_MS the pool asks signaling for a member it has no
 * session with yet (one that joined since). A member the server says is
 * gone leaves the rotation at once; its streams in flight finish, or fail
 * and are the caller's to send again (gateway/gateway.ts).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { POOL_PROBE_MS, POOL_REPROBE_MAX_MS, POOL_SILENT_MS, SHARE_RESUME_GRACE_MS } from '../shared/constants.js';
import type { BeamError } from '../shared/errors.js';
import type { PathKind } from '../shared/paths.js';
import type { Handshake } from '../shared/signaling.js';
import type { WebRtcEngine } from './engine.js';
import type { Identity } from './identity.js';
import { type LocalLink, localAgent } from './local-agents.js';
import { ServerBackend } from './server-backend.js';
import { type PathInfo, VisitorSession, type VisitorSessionOptions } from './session.js';
import type { Reconnect } from './signaling-client.js';

export interface SessionPoolComponents {
  engine: WebRtcEngine;
  logger: Logger;
  /** This visitor's key for Noise, or how to make one when a path first needs it. */
  identity: Identity | (() => Promise<Identity>);
}

export interface SessionPoolOptions {
  /** The signaling server (its relay too). */
  server: string;
  /** The visitor's handshake beyond the protocol version: a gateway token, a browser's client kind. */
  handshake?: Pick<Handshake, 'gatewayToken' | 'client'>;
  /** How the signaling connection comes back (transport/signaling-client.ts). */
  reconnect: Reconnect;
  /** Every session's options but the share. */
  session: Omit<VisitorSessionOptions, 'share' | 'server' | 'local'>;
  /**
   * The server's own gateway: a share whose agent runs in this process is
   * reached in memory (transport/local.ts), not through signaling. Default false.
   */
  localLinks?: boolean;
  /**
   * A network backend instead of signaling (`--via libp2p`): each session's
   * one path is what this dials for the share (transport/backend.ts,
   * dialSecured), and `server` is unused.
   */
  dial?: (share: string) => Promise<LocalLink>;
}

export interface SessionPoolEvents {
  /** A session's path changed (or its first came up). */
  path: [string, PathInfo];
  /** A direct attempt of a session failed (it may go on over TURN or the relay). */
  'direct-failed': [string, BeamError];
}

export class SessionPool extends EventEmitter<SessionPoolEvents> {
  private readonly c: SessionPoolComponents;
  private readonly options: SessionPoolOptions;
  private readonly log: Logger;
  /** The server that pairs this visitor's sessions (transport/server-backend.ts); none with another network backend (`dial`). */
  readonly server: ServerBackend | undefined;
  /** The sessions each share's new streams take: one, or one per member of a pooled share. */
  private readonly byShare = new Map<string, VisitorSession[]>();
  /** Pooled shares: when this pool last asked signaling for a member it has no session with. */
  private readonly probedAt = new Map<string, number>();
  /** Pooled shares whose looks for a member failed: how many in a row. */
  private readonly fails = new Map<string, number>();
  /** Whose turn it is among a pool's members. */
  private turn = 0;
  /** Every session by its signaling id (a retired one too, until it closes): where signals go. */
  private readonly byId = new Map<string, VisitorSession>();
  /** Direct (ICE) attempts that failed, ever: the sessions then went on over TURN or the relay, or not at all. */
  directFailures = 0;
  /** Bytes of sessions already closed, so totals never go down. */
  private closedBytes = { sent: 0, received: 0 };

  constructor(components: SessionPoolComponents, options: SessionPoolOptions) {
    super();
    this.c = components;
    this.options = options;
    this.log = components.logger;
    if (options.dial) return;
    this.server = new ServerBackend({
      server: options.server,
      logger: this.log,
      visitor: { ...(options.handshake ? { handshake: options.handshake } : {}), reconnect: options.reconnect },
    });
  }

  /** Whether signaling is connected now (for /readyz). */
  get connected(): boolean {
    return this.server?.connected ?? true;
  }

  /** Resolves once signaling is connected. */
  ready(): Promise<void> {
    return this.server?.ready() ?? Promise.resolve();
  }

  /** Shares with a session (up, or being set up). */
  get size(): number {
    return this.byShare.size;
  }

  /** The session new streams to `share` take, if there is one (a pool's first). */
  get(share: string): VisitorSession | undefined {
    return this.byShare.get(share)?.[0];
  }

  /** Takes a session out of its share's rotation; true if it was one of a pool's several. */
  private leaveRotation(session: VisitorSession): boolean {
    const list = this.byShare.get(session.share);
    if (!list || session.poolSize === undefined || list.length < 2 || !list.includes(session)) return false;
    this.remove(session.share, session);
    return true;
  }

  private remove(share: string, session: VisitorSession): void {
    const list = this.byShare.get(share);
    if (!list) return;
    const at = list.indexOf(session);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) {
      this.byShare.delete(share);
      this.probedAt.delete(share);
      this.fails.delete(share);
    }
  }

  /**
   * The session with a share, set up (in the background) if there is none.
   * For a pooled share: the next member's that is up, not `avoid` (a
   * session whose stream just failed); undefined when `avoid` is given and
   * no other member's session is up.
   */
  open(share: string): VisitorSession;
  open(share: string, avoid: VisitorSession): VisitorSession | undefined;
  open(share: string, avoid?: VisitorSession): VisitorSession | undefined {
    for (const session of this.byShare.get(share) ?? []) {
      if ((session.detachedMs ?? 0) > SHARE_RESUME_GRACE_MS && !this.options.session.expectPeer) {
        this.remove(share, session);
        session.retire();
      }
    }
    const list = this.byShare.get(share);
    if (!list) return avoid ? undefined : this.create(share, false);
    const first = list[0] as VisitorSession;
    // One agent's share (or one not open yet): its one session.
    if (first.poolSize === undefined && list.length === 1) return avoid ? undefined : first;
    // A pooled share looks for members it has no session with (a one-agent share has two only while one is renewed).
    if (list.some((s) => s.poolSize !== undefined)) this.probe(share, list);
    const up = list.filter((s) => s !== avoid && s.path !== undefined && s.detachedMs === undefined);
    // A member gone silent (a frozen process, a cut link: no PONG for a while) gets no new streams while another answers.
    const answering = up.filter((s) => (s.silentMs ?? 0) < POOL_SILENT_MS);
    if (answering.length > 0) return answering[this.turn++ % answering.length];
    if (up.length > 0) return up[this.turn++ % up.length];
    return avoid ? undefined : first;
  }

  /** A member joined `share`'s pool (the server saw it register): look for it now if the share is pooled. */
  joined(share: string): void {
    const list = this.byShare.get(share);
    if (!list?.some((s) => s.poolSize !== undefined)) return;
    this.probedAt.delete(share);
    this.probe(share, list);
  }

  /**
   * A one-agent share's agent registered again after it lost the server.
   * Its sessions lost signaling with it: they serve on over the paths still
   * up, but can set up none again (the gateway's relay link went with the
   * agent's connection, leaving the direct path that stood by). A new
   * session takes the share's new streams once it is up; the old ones finish
   * theirs and close.
   */
  renew(share: string): void {
    const list = this.byShare.get(share);
    if (!list || list.some((s) => s.poolSize !== undefined)) return;
    const stale = list.filter((s) => s.detachedMs !== undefined);
    // None cut off, or a new one already on its way.
    if (stale.length === 0 || stale.length < list.length) return;
    this.log.info({ share, sessions: stale.length }, 'the agent is back: a new session replaces the one cut off from signaling');
    const fresh = this.create(share, false);
    fresh.ready.then(
      () => {
        for (const session of stale) {
          this.remove(share, session);
          session.retire();
        }
      },
      // It failed (the agent went again): the old ones serve on while they can, and the next registration tries again.
      () => {},
    );
  }

  /** A pooled share: asks signaling for a member with no session yet, at most one at a time and every POOL_PROBE_MS. */
  private probe(share: string, list: VisitorSession[]): void {
    if (list.some((s) => s.path === undefined && s.detachedMs === undefined)) return;
    const known = Math.max(...list.map((s) => s.poolSize ?? 1));
    const now = performance.now();
    const wait = known > list.length ? POOL_PROBE_MS / 10 : POOL_PROBE_MS;
    if (now - (this.probedAt.get(share) ?? Number.NEGATIVE_INFINITY) < wait) return;
    this.probedAt.set(share, now);
    this.create(share, true);
  }

  /**
   * A look for a pool's next member failed (its path never came up): look
   * again, without waiting for a request, while the server counts more
   * members than this side has sessions with (`members`, what it said for
   * the failed look). POOL_PROBE_MS / 10, doubling to POOL_REPROBE_MAX_MS.
   */
  private reprobe(share: string, members: number): void {
    const fails = (this.fails.get(share) ?? 0) + 1;
    this.fails.set(share, fails);
    this.log.debug({ share, members, fails }, 'a pool member has no session yet; looking again');
    setTimeout(
      () => {
        const list = this.byShare.get(share);
        if (!list || members <= list.length) return;
        this.probedAt.delete(share);
        this.probe(share, list);
      },
      Math.min((POOL_PROBE_MS / 20) * 2 ** fails, POOL_REPROBE_MAX_MS),
    ).unref();
  }

  private create(share: string, spread: boolean): VisitorSession {
    const local = this.options.dial ? () => this.options.dial?.(share) : this.options.localLinks ? localAgent(this.options.server, share) : undefined;
    const created = new VisitorSession(
      { engine: this.c.engine, logger: this.log, server: this.server, identity: this.c.identity },
      { ...this.options.session, share, server: this.options.server, ...(local ? { local: local() } : {}), ...(spread ? { spread } : {}) },
    );
    created.on('path', (info) => this.emit('path', share, info));
    created.on('direct-failed', (err) => {
      this.directFailures++;
      this.emit('direct-failed', share, err);
    });
    created.once('opened', (id) => this.byId.set(id, created));
    // A pool member the server lost: the others take new streams; its own finish if it still answers.
    created.on('agent-lost', () => {
      if (this.leaveRotation(created)) created.retire();
    });
    created.once('close', () => {
      if (created.sessionId !== undefined && this.byId.get(created.sessionId) === created) this.byId.delete(created.sessionId);
      this.closedBytes.sent += created.bytes.sent;
      this.closedBytes.received += created.bytes.received;
      this.remove(share, created);
    });
    // A session that never came up (no such share yet, agent gone, a pool with no new member) is not kept: the next request asks again.
    created.ready.then(
      () => {
        // A pooled share's session is up: set one up with the next member too, without waiting for a request.
        const list = this.byShare.get(share);
        if (spread) this.fails.delete(share);
        if (list?.includes(created) && created.poolSize !== undefined) this.probe(share, list);
      },
      () => {
        this.remove(share, created);
        created.close();
        // The server counted the members when this session opened (none said: covered, or no such share).
        if (spread && created.poolSize) this.reprobe(share, created.poolSize);
      },
    );
    const list = this.byShare.get(share);
    if (list) list.push(created);
    else this.byShare.set(share, [created]);
    return created;
  }

  /** The session with a share, once a path is up; rejects with a BeamError. */
  async connect(share: string): Promise<VisitorSession> {
    const session = this.open(share);
    await session.ready;
    return session;
  }

  /** Sessions, by the path new streams take. */
  paths(): Record<PathKind, number> {
    const counts: Record<PathKind, number> = { local: 0, direct: 0, turn: 0, relay: 0 };
    for (const list of this.byShare.values()) for (const session of list) if (session.path) counts[session.path]++;
    return counts;
  }

  /** Bytes exchanged over every session, ever. */
  bytes(): { sent: number; received: number } {
    let { sent, received } = this.closedBytes;
    for (const session of this.byId.values()) {
      sent += session.bytes.sent;
      received += session.bytes.received;
    }
    return { sent, received };
  }

  close(): void {
    for (const session of [...[...this.byShare.values()].flat(), ...this.byId.values()]) session.close();
    void this.server?.close();
  }
}
