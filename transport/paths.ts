/**
 * A session's paths, on either end: which are up, which one new streams
 * take, what each carried, and what happens when one closes or signaling
 * goes. It owns no socket and sets up no path; the visitor's session
 * (transport/session.ts) and the agent's (peer-agent/agent.ts) add the paths
 * they set up and act on the events. Tested in memory (test/paths-set.test.ts).
 *
 *   add(kind, mux)   a path is up (one of a kind: a new one replaces the old)
 *   'change'         the best path changed (undefined: none is up)
 *   'down'           a path closed; `replaced` when a better one took over
 *   supersede(kind)  the path takes no new streams and closes once idle
 *   probe(ms)        signaling is gone: keep the paths that answer a fresh PING
 *
 * PathPolicyRunner, below, runs the path policy for a shell: its state and timers.
 */
import { EventEmitter } from 'node:events';
import type { ErrorCode } from '../shared/errors.js';
import type { Mux } from '../shared/mux.js';
import { bestPath, PATH_ORDER, type PathKind } from '../shared/paths.js';
import { initialPathState, type PathAction, type PathEvent, type PathPolicyOptions, type PathPolicyState, type PathTimer, step } from './path-policy.js';

export interface PathDown {
  kind: PathKind;
  mux: Mux;
  /** Why it closed, as its multiplexer said. */
  code: ErrorCode | undefined;
  /** It closed because a better path replaced it (supersede): no loss. */
  replaced: boolean;
}

export interface PathSetEvents {
  /** The path new streams take changed; undefined when none is up. */
  change: [PathKind | undefined];
  down: [PathDown];
}

export class PathSet extends EventEmitter<PathSetEvents> {
  private readonly paths = new Map<PathKind, Mux>();

  private readonly superseded = new WeakSet<Mux>();
  private current: PathKind | undefined;
  /** Bytes of paths already closed, so totals never go down. */
  private closedBytes = { sent: 0, received: 0 };

  /** `order`: best first (shared/paths.ts PATH_ORDER, or RELAY_PREFERRED_ORDER). */
  constructor(readonly order: readonly PathKind[] = PATH_ORDER) {
    super();
  }

  /** The path new streams take now. */
  get best(): PathKind | undefined {
    return this.current;
  }

  get size(): number {
    return this.paths.size;
  }

  has(kind: PathKind): boolean {
    return this.paths.has(kind);
  }

  get(kind: PathKind): Mux | undefined {
    return this.paths.get(kind);
  }

  kinds(): PathKind[] {
    return [...this.paths.keys()];
  }

  entries(): Array<[PathKind, Mux]> {
    return [...this.paths.entries()];
  }

  /** Milliseconds since the best path last heard from the other side; undefined with no path. */
  get silentMs(): number | undefined {
    return this.current ? this.paths.get(this.current)?.silentMs : undefined;
  }

  /** Round-trip time of the best path, once measured. */
  get rtt(): number | undefined {
    return this.current ? this.paths.get(this.current)?.rtt : undefined;
  }

  /** Bytes sent and received so far, over every path this set held. */
  get bytes(): { sent: number; received: number } {
    let { sent, received } = this.closedBytes;
    for (const mux of this.paths.values()) {
      sent += mux.bytesSent;
      received += mux.bytesReceived;
    }
    return { sent, received };
  }

  /** A path is up. One of the same kind already there is closed (BEAM_ERR_PEER_GONE). */
  add(kind: PathKind, mux: Mux): void {
    const old = this.paths.get(kind);
    if (old) {
      // Out of the set first, so its close is the replacement's doing, not a path lost.
      this.paths.delete(kind);
      this.closedBytes.sent += old.bytesSent;
      this.closedBytes.received += old.bytesReceived;
      old.close('BEAM_ERR_PEER_GONE');
      this.emit('down', { kind, mux: old, code: 'BEAM_ERR_PEER_GONE', replaced: true });
    }
    this.paths.set(kind, mux);
    mux.on('close', (code?: ErrorCode) => {
      if (this.paths.get(kind) !== mux) return;
      this.paths.delete(kind);
      this.closedBytes.sent += mux.bytesSent;
      this.closedBytes.received += mux.bytesReceived;
      // The best path is chosen again first: whoever hears 'down' reads the one new streams take now.
      this.choose();
      this.emit('down', { kind, mux, code, replaced: this.superseded.has(mux) });
    });
    this.choose();
  }

  /** The path takes no new streams (a better one is up); it closes once its streams are done. */
  supersede(kind: PathKind): void {
    const mux = this.paths.get(kind);
    if (!mux || this.superseded.has(mux)) return;
    this.superseded.add(mux);
    mux.closeWhenIdle();
  }

  isSuperseded(kind: PathKind): boolean {
    const mux = this.paths.get(kind);
    return mux !== undefined && this.superseded.has(mux);
  }

  /**
   * Signaling is gone, so no path can be set up or told apart from a dead
   * one but by its own traffic: each path must answer a fresh PING within
   * `timeoutMs` (Mux.probe), or it is closed (BEAM_ERR_PEER_GONE) and
   * `onDead` hears of it. Resolves once every probe settled.
   */
  async probe(timeoutMs: number, onDead?: (kind: PathKind) => void): Promise<void> {
    await Promise.all(
      this.entries().map(async ([kind, mux]) => {
        const alive = await mux.probe(timeoutMs);
        if (alive || mux.isClosed) return;
        onDead?.(kind);
        mux.close('BEAM_ERR_PEER_GONE');
      }),
    );
  }

  /** Closes every path. */
  close(code: ErrorCode = 'BEAM_ERR_PEER_GONE'): void {
    for (const mux of [...this.paths.values()]) mux.close(code);
  }

  private choose(): void {
    const best = bestPath((k) => this.paths.has(k), this.order);
    if (best === this.current) return;
    this.current = best;
    this.emit('change', best);
  }
}

/**
 * Runs the path policy (transport/path-policy.ts) for a session's shell:
 * keeps its state and its timers (arm, disarm, and the 'timer' event when
 * one runs out), and hands every other action to `perform`. Actions run in
 * order; one that makes another event happen at once (a path closing) is
 * fed to the policy then, from the state already moved on.
 */
export class PathPolicyRunner {
  private current: PathPolicyState;
  private readonly timers = new Map<PathTimer, NodeJS.Timeout>();

  constructor(
    options: PathPolicyOptions,
    private readonly perform: (action: Exclude<PathAction, { type: 'arm' | 'disarm' }>) => void,
  ) {
    this.current = initialPathState(options);
  }

  get state(): PathPolicyState {
    return this.current;
  }

  dispatch(event: PathEvent): void {
    const { state, actions } = step(this.current, event);
    this.current = state;
    for (const action of actions) {
      if (action.type === 'arm') this.arm(action.timer, action.ms, action.attempt);
      else if (action.type === 'disarm') this.disarm(action.timer);
      else this.perform(action);
    }
  }

  private arm(name: PathTimer, ms: number, attempt: number | undefined): void {
    clearTimeout(this.timers.get(name));
    const timer = setTimeout(() => {
      if (this.timers.get(name) !== timer) return;
      this.timers.delete(name);
      this.dispatch(attempt === undefined ? { type: 'timer', timer: name } : { type: 'timer', timer: name, attempt });
    }, ms);
    timer.unref();
    this.timers.set(name, timer);
  }

  private disarm(which: PathTimer | 'all'): void {
    for (const [name, timer] of this.timers) {
      if (which !== 'all' && which !== name) continue;
      clearTimeout(timer);
      this.timers.delete(name);
    }
  }
}
