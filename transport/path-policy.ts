/**
 * When a session sets up, retries, replaces and gives up its paths, as one
 * pure function for both ends: `step(state, event)` returns the next state
 * and the actions its shell carries out. No socket, no timer, no clock: the
 * visitor's session (transport/session.ts) and the agent's
 * (peer-agent/agent-session.ts) own those, report what happened as events,
 * and do what the actions say. Tested in memory, transition by transition
 * and with random event sequences (test/path-policy.test.ts).
 *
 * The visitor leads (it opens every path):
 *
 *   open ──► start-direct (first attempt without TURN, when the server offers it),
 *            and with relayFirst the relay at once beside it (new streams move to direct when it is up;
 *            or, where the session's PathSet ranks the relay first, stay there, direct standing by)
 *        ├─► arm direct-timeout ──► no pair yet: direct again with TURN, and the relay ('auto')
 *        └─► arm connect ──► still no path: reject, close
 *   up ──► ready (the first), supersede TURN once direct is up, retry direct
 *          every `retryDelay` while direct is not up (TURN or the relay carry the session)
 *   direct-failed ──► the relay ('auto', no path), direct again (LINK_SETUP_ATTEMPTS
 *          while none is up), or a slower retry beside a working path
 *   down ──► the relay ('auto') and direct again (reopen), or give up
 *
 * The agent follows (it answers what the visitor opens): a session with no
 * path for AGENT_CONNECT_TIMEOUT_MS ends (setup timer).
 *
 * A session on the in-memory path (local: the agent runs in this process)
 * has no network to try: it is up at once, retries nothing, and ends with
 * that path. So does a session that signaling never opened, whose one path
 * a network backend handed over (transport/backend.ts): its next is a new dial.
 *
 * Both ends lose signaling alike: no new path can be set up, so the attempt
 * being set up goes, the paths up must answer a fresh PING (probe), and the
 * session ends with its last path.
 */
import {
  AGENT_CONNECT_TIMEOUT_MS,
  DIRECT_ATTEMPT_TIMEOUT_MS,
  DIRECT_PATH_TIMEOUT_MS,
  DIRECT_RETRY_MS,
  LINK_SETUP_ATTEMPTS,
  MAX_DIRECT_RETRY_MS,
} from '../shared/constants.js';
import { BeamError, type ErrorCode } from '../shared/errors.js';
import { bestPath, type PathKind } from '../shared/paths.js';
import type { RelayMode } from '../shared/signaling.js';

/** The timers a session's shell keeps for the policy; arming one that runs replaces it. */
export type PathTimer =
  /** Visitor: no path at all within AGENT_CONNECT_TIMEOUT_MS fails the session. */
  | 'connect'
  /** Visitor: no direct path within the direct timeout: TURN, and the relay. */
  | 'direct-timeout'
  /** Visitor: try direct again while the session rides TURN or the relay. */
  | 'retry'
  /** Visitor: set direct up again after a WebRTC path died. */
  | 'reopen'
  /** Visitor: a direct attempt beside a working path gives up after AGENT_CONNECT_TIMEOUT_MS. */
  | 'attempt'
  /** Agent: a session with no path for AGENT_CONNECT_TIMEOUT_MS ends. */
  | 'setup';

export interface PathPolicyState {
  readonly role: 'visitor' | 'agent';
  /** The session's relay mode (relayPolicy of both sides). */
  readonly mode: RelayMode;
  /** The server's ICE servers include TURN (so the first direct attempt leaves it out). */
  readonly turnOffered: boolean;
  readonly directTimeoutMs: number;
  /** Visitor: the relay starts with direct, not after it failed (PathPolicyOptions.relayFirst). */
  readonly relayFirst: boolean;
  /** Signaling opened the session. */
  readonly opened: boolean;
  /** The paths up, in the order they came. */
  readonly up: readonly PathKind[];
  /** Visitor: the direct attempt being set up (`attempt` numbers them from 1). */
  readonly direct: { readonly pending: boolean; readonly stunOnly: boolean; readonly attempts: number };
  /** Visitor: the relay is tried once per session: idle, then pending, then done (up or failed). */
  readonly relay: 'idle' | 'pending' | 'done';
  /** Visitor: the wait before the next retry of direct (doubles per failed retry). */
  readonly retryDelay: number;
  readonly timers: readonly PathTimer[];
  /** Visitor: `ready` settled (resolved or rejected). */
  readonly settled: boolean;
  /** Signaling for the session is gone: the paths up carry on, no new one starts. */
  readonly detached: boolean;
  readonly closed: boolean;
  /** What went wrong last, for the error a failed session reports. */
  readonly lastError: BeamError | undefined;
}

export type PathEvent =
  /** Visitor: signaling opened the session. Agent: a session came in. */
  | { type: 'open'; mode: RelayMode; turnOffered: boolean }
  /** A path came up (the shell added it to its PathSet). */
  | { type: 'up'; kind: PathKind }
  /** A path closed; `replaced` when a better one superseded it. */
  /** `code`: why, when the other end or the server said (the relay's cap): what the session fails with if it was the last. */
  | { type: 'down'; kind: PathKind; replaced: boolean; code?: ErrorCode | undefined }
  /** Visitor: direct attempt `attempt` failed. */
  | { type: 'direct-failed'; attempt: number; error: BeamError }
  /** Visitor: the relay could not be set up. */
  | { type: 'relay-failed'; error: BeamError }
  /** A timer the policy armed ran out (`attempt` for the attempt timer). */
  | { type: 'timer'; timer: PathTimer; attempt?: number }
  /** Signaling for the session is gone (this side lost the server, or the other side did). */
  | { type: 'signaling-lost' }
  /** End the session; `code` says why the other side or the server ended it. */
  | { type: 'close'; code?: ErrorCode };

export type PathAction =
  /** Set up a new peer connection (attempt `attempt`), leaving TURN out when `stunOnly`; close an earlier one that carries no path. */
  | { type: 'start-direct'; attempt: number; stunOnly: boolean; reason?: string }
  /** Close the peer connection being set up (one that carries no path). */
  | { type: 'abort-direct' }
  | { type: 'start-relay'; reason?: string }
  /** The path takes no new streams and closes once idle. */
  | { type: 'supersede'; kind: PathKind }
  | { type: 'arm'; timer: PathTimer; ms: number; attempt?: number }
  | { type: 'disarm'; timer: PathTimer | 'all' }
  /** Every path up must answer a fresh PING within PATH_PROBE_MS, or close. */
  | { type: 'probe' }
  /** The first path is up: resolve `ready`. */
  | { type: 'ready' }
  /** The session failed before a path came up: reject `ready` with this. */
  | { type: 'reject'; error: BeamError }
  /** Close every path and the peer connections, tell signaling. */
  | { type: 'close'; code?: ErrorCode };

export interface PathPolicyOptions {
  role: 'visitor' | 'agent';
  directTimeoutMs?: number;
  /**
   * Visitor, relay mode 'auto': start the relay at once beside direct, as
   * Tailscale and iroh do, so the first request waits for no ICE or DTLS;
   * new streams move to direct when it is up, and the relay stays as a
   * standby (its tokens are one-time: it could not come back). Default false.
   */
  relayFirst?: boolean;
}

export function initialPathState(options: PathPolicyOptions): PathPolicyState {
  return {
    role: options.role,
    mode: 'auto',
    turnOffered: false,
    directTimeoutMs: options.directTimeoutMs ?? DIRECT_PATH_TIMEOUT_MS,
    relayFirst: options.relayFirst ?? false,
    opened: false,
    up: [],
    direct: { pending: false, stunOnly: false, attempts: 0 },
    relay: 'idle',
    retryDelay: DIRECT_RETRY_MS,
    timers: [],
    settled: false,
    detached: false,
    closed: false,
    lastError: undefined,
  };
}

/** The wait before the next retry of direct once one failed: double, at most MAX_DIRECT_RETRY_MS. */
export function nextDirectRetryDelay(delayMs: number): number {
  return Math.min(delayMs * 2, MAX_DIRECT_RETRY_MS);
}

/** The relay policy of a session: 'always' or 'never' from either side wins over 'auto'. */
export function relayPolicy(visitor: RelayMode, agent: RelayMode): RelayMode {
  if (visitor === agent || agent === 'auto') return visitor;
  if (visitor === 'auto') return agent;
  throw new BeamError(
    'BEAM_ERR_RELAY_REFUSED',
    agent === 'never'
      ? 'the share allows no relay (--relay never) and this side asked for --relay always'
      : 'the share asks for --relay always and this side allows no relay',
  );
}

/** Errors that end a session at once: trying another path can't fix them. */
const FATAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['BEAM_ERR_PEER_MISMATCH', 'BEAM_ERR_PRIVATE']);

/** The best path up in `state`, in `order` (the session's PathSet's: shared/paths.ts). */
export function bestOf(state: PathPolicyState, order?: readonly PathKind[]): PathKind | undefined {
  return bestPath((kind) => state.up.includes(kind), order);
}

/** One transition: the next state, and what the shell must do, in order. */
export function step(state: PathPolicyState, event: PathEvent): { state: PathPolicyState; actions: PathAction[] } {
  const t = new Transition(state);
  t.on(event);
  return { state: t.s, actions: t.actions };
}

/** Builds one step: `s` moves forward as the rules run, `actions` collects what they ask for. */
class Transition {
  readonly actions: PathAction[] = [];

  constructor(public s: PathPolicyState) {}

  private set(patch: Partial<PathPolicyState>): void {
    this.s = { ...this.s, ...patch };
  }

  private do(action: PathAction): void {
    this.actions.push(action);
  }

  private arm(timer: PathTimer, ms: number, attempt?: number): void {
    this.set({ timers: [...this.s.timers.filter((x) => x !== timer), timer] });
    this.do(attempt === undefined ? { type: 'arm', timer, ms } : { type: 'arm', timer, ms, attempt });
  }

  private disarm(timer: PathTimer | 'all'): void {
    this.set({ timers: timer === 'all' ? [] : this.s.timers.filter((x) => x !== timer) });
    this.do({ type: 'disarm', timer });
  }

  private has(kind: PathKind): boolean {
    return this.s.up.includes(kind);
  }

  on(event: PathEvent): void {
    // A timer that ran out is no longer armed, whatever happens next.
    if (event.type === 'timer') this.set({ timers: this.s.timers.filter((x) => x !== event.timer) });
    if (this.s.closed) return;
    switch (event.type) {
      case 'open':
        this.open(event.mode, event.turnOffered);
        break;
      case 'up':
        this.up(event.kind);
        break;
      case 'down':
        this.down(event.kind, event.replaced, event.code);
        break;
      case 'direct-failed':
        if (this.s.direct.pending && event.attempt === this.s.direct.attempts) this.directFailed(event.error);
        break;
      case 'relay-failed':
        this.relayFailed(event.error);
        break;
      case 'timer':
        this.timer(event.timer, event.attempt);
        // A deadline that started nothing may have been the last thing under way.
        this.maybeGiveUp();
        break;
      case 'signaling-lost':
        this.detach();
        break;
      case 'close':
        this.close(event.code);
        break;
    }
  }

  private open(mode: RelayMode, turnOffered: boolean): void {
    if (this.s.opened) return;
    this.set({ opened: true, mode, turnOffered });
    if (this.s.role === 'agent') {
      this.arm('setup', AGENT_CONNECT_TIMEOUT_MS);
      return;
    }
    this.arm('connect', AGENT_CONNECT_TIMEOUT_MS);
    if (mode === 'always') {
      this.startRelay();
      return;
    }
    if (mode === 'auto' && this.s.relayFirst) this.startRelay('relay first; direct in the background');
    this.startDirect();
    this.arm('direct-timeout', this.s.directTimeoutMs);
  }

  private timer(timer: PathTimer, attempt: number | undefined): void {
    switch (timer) {
      case 'connect': {
        if (this.s.up.length > 0) return;
        const late = new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `no path to the agent within ${AGENT_CONNECT_TIMEOUT_MS} ms`);
        // An attempt still under way is the news, not why an earlier one ended.
        this.fail(this.s.direct.pending || this.s.relay === 'pending' ? late : (this.s.lastError ?? late));
        return;
      }
      case 'setup':
        if (this.s.up.length === 0) this.close();
        return;
      case 'direct-timeout':
        if (this.has('direct') || this.has('turn')) return;
        // The first attempt left TURN out so that a direct pair would win; now TURN may carry it.
        if (this.s.direct.pending && this.s.direct.stunOnly) {
          this.set({ direct: { ...this.s.direct, pending: false } });
          this.startDirect(undefined, 'no direct pair yet; trying again with TURN');
        }
        if (this.s.mode === 'auto') this.startRelay(`no direct path within ${this.s.directTimeoutMs} ms; adding the relay`);
        return;
      case 'retry':
        if (this.has('direct') || this.s.direct.pending) return;
        // With TURN up only a direct pair may win the retry; beside the relay alone, TURN may too.
        this.startDirect(this.has('turn'), 'trying direct again');
        return;
      case 'reopen':
        if (!this.has('direct') && !this.has('turn')) this.startDirect();
        return;
      case 'attempt':
        if (this.s.direct.pending && attempt === this.s.direct.attempts) {
          const ms = this.s.up.length > 0 || this.s.mode !== 'never' ? AGENT_CONNECT_TIMEOUT_MS : DIRECT_ATTEMPT_TIMEOUT_MS;
          this.do({ type: 'abort-direct' });
          this.directFailed(new BeamError('BEAM_ERR_AGENT_UNREACHABLE', `no direct pair within ${ms} ms`));
        }
        return;
    }
  }

  /** `stunOnly`: leave TURN out (default: on the first attempt only, when the server offers TURN). */
  private startDirect(stunOnly?: boolean, reason?: string): void {
    const s = this.s;
    if (s.role !== 'visitor' || s.detached || s.direct.pending || !s.opened || s.mode === 'always') return;
    const attempt = s.direct.attempts + 1;
    const leaveTurnOut = s.turnOffered && (stunOnly ?? attempt === 1);
    this.set({ direct: { pending: true, stunOnly: leaveTurnOut, attempts: attempt } });
    this.do(
      reason === undefined ? { type: 'start-direct', attempt, stunOnly: leaveTurnOut } : { type: 'start-direct', attempt, stunOnly: leaveTurnOut, reason },
    );
    // A retry beside a working path has its own deadline: ICE alone may take long to give up.
    if (s.up.length > 0) this.arm('attempt', AGENT_CONNECT_TIMEOUT_MS, attempt);
    // So has an attempt with nothing else to come (--relay never): one that hangs gives way to a new one.
    else if (s.mode === 'never') this.arm('attempt', DIRECT_ATTEMPT_TIMEOUT_MS, attempt);
  }

  private directFailed(error: BeamError): void {
    this.set({ direct: { ...this.s.direct, pending: false }, lastError: error });
    if (FATAL.has(error.code)) {
      this.fail(error);
      return;
    }
    const hasPath = this.s.up.length > 0;
    if (this.s.mode === 'auto' && !hasPath) this.startRelay();
    // One failed DTLS handshake (seen under load) should not cost the direct path.
    if (!hasPath && this.s.direct.attempts < LINK_SETUP_ATTEMPTS) {
      this.startDirect();
      return;
    }
    if (hasPath || this.s.relay === 'pending') {
      if (hasPath) this.set({ retryDelay: nextDirectRetryDelay(this.s.retryDelay) });
      this.scheduleRetry();
      return;
    }
    this.maybeGiveUp();
  }

  /** While direct is not up (the session rides TURN or the relay), direct again after retryDelay (NAT mappings and firewalls change). */
  private scheduleRetry(): void {
    const s = this.s;
    // In memory (local) there is no network to try.
    if (s.detached || s.timers.includes('retry') || s.mode === 'always' || this.has('direct') || this.has('local')) return;
    this.arm('retry', s.retryDelay);
  }

  private startRelay(reason?: string): void {
    const s = this.s;
    if (s.role !== 'visitor' || s.detached || s.relay !== 'idle' || !s.opened || s.mode === 'never') return;
    this.set({ relay: 'pending' });
    this.do(reason === undefined ? { type: 'start-relay' } : { type: 'start-relay', reason });
  }

  private relayFailed(error: BeamError): void {
    if (this.s.relay !== 'pending') return;
    this.set({ relay: 'done', lastError: error });
    if (FATAL.has(error.code)) this.fail(error);
    else this.maybeGiveUp();
  }

  private up(kind: PathKind): void {
    this.set({ up: [...this.s.up.filter((k) => k !== kind), kind] });
    if (kind === 'relay' && this.s.relay === 'pending') this.set({ relay: 'done' });
    if ((kind === 'direct' || kind === 'turn') && this.s.direct.pending) this.set({ direct: { ...this.s.direct, pending: false } });
    if (this.s.role === 'agent') {
      if (this.s.timers.includes('setup')) this.disarm('setup');
      return;
    }
    if (!this.s.settled) {
      this.set({ settled: true });
      this.do({ type: 'ready' });
    }
    if (kind === 'direct') {
      this.set({ retryDelay: DIRECT_RETRY_MS });
      // Direct is what a retry looks for.
      if (this.s.timers.includes('retry')) this.disarm('retry');
    }
    // TURN once direct is up: its streams finish there, then it closes (it holds a TURN allocation).
    if (this.has('direct') && this.has('turn')) this.do({ type: 'supersede', kind: 'turn' });
    if (!this.has('direct')) this.scheduleRetry();
  }

  private down(kind: PathKind, replaced: boolean, code?: ErrorCode): void {
    this.set({ up: this.s.up.filter((k) => k !== kind) });
    if (replaced) return;
    if (code && code !== 'BEAM_ERR_PEER_GONE') this.set({ lastError: new BeamError(code) });
    // The in-memory path closes when the agent in this process goes: the session goes with it. A backend's one path likewise.
    if (kind === 'local' || !this.s.opened) {
      this.close('BEAM_ERR_PEER_GONE');
      return;
    }
    if (this.s.detached) {
      // No signaling to set up another: the session ends with its last path.
      if (this.s.up.length === 0) this.close('BEAM_ERR_SIGNALING_LOST');
      return;
    }
    if (this.s.role === 'agent') {
      // The visitor sets up the next one; a session left with none waits for it, for a while.
      if (this.s.up.length === 0) this.arm('setup', AGENT_CONNECT_TIMEOUT_MS);
      return;
    }
    if (kind !== 'relay' && this.s.mode === 'auto') this.startRelay();
    if (kind !== 'relay' && this.s.mode !== 'always') this.arm('reopen', this.s.up.length > 0 ? DIRECT_RETRY_MS : 0);
    this.maybeGiveUp();
  }

  /**
   * Ends the session when no path is up and none is being tried. A session
   * that had a path waits only for a reopen (direct again, at once): one left
   * with nothing but a later retry would hold requests with no path for
   * DIRECT_RETRY_MS or more, while a new session (a fresh relay ticket, a
   * new attempt) is a request away.
   */
  private maybeGiveUp(): void {
    const s = this.s;
    if (s.role !== 'visitor' || s.closed || s.up.length > 0 || s.direct.pending || s.relay === 'pending') return;
    if (s.settled && s.timers.includes('reopen')) return;
    this.fail(s.lastError ?? new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'no path to the agent'));
  }

  private detach(): void {
    if (this.s.detached) return;
    this.set({ detached: true, direct: { ...this.s.direct, pending: false } });
    if (this.s.timers.length > 0) this.disarm('all');
    // An attempt still being set up needs signaling to finish.
    this.do({ type: 'abort-direct' });
    if (this.s.up.length === 0) this.close('BEAM_ERR_SIGNALING_LOST');
    else this.do({ type: 'probe' });
  }

  private fail(error: BeamError): void {
    if (!this.s.settled && this.s.role === 'visitor') {
      this.set({ settled: true });
      this.do({ type: 'reject', error });
    }
    this.close();
  }

  private close(code?: ErrorCode): void {
    const lastError = code !== undefined && !this.s.lastError ? new BeamError(code) : this.s.lastError;
    this.set({ closed: true, lastError });
    if (this.s.timers.length > 0) this.disarm('all');
    if (!this.s.settled && this.s.role === 'visitor') {
      this.set({ settled: true });
      this.do({ type: 'reject', error: lastError ?? new BeamError('BEAM_ERR_PEER_GONE') });
    }
    this.do(code === undefined ? { type: 'close' } : { type: 'close', code });
  }
}
