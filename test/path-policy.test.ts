/**
 * The path policy (transport/path-policy.ts) in memory: every transition the
 * NAT lab drives end to end (first attempt without TURN, the direct timeout,
 * retries beside a working path with their backoff, the relay once per
 * session, paths dying and coming back, signaling lost), each as a unit, and
 * random event sequences a shell could feed it, checked against the rules
 * that must hold whatever happens.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AGENT_CONNECT_TIMEOUT_MS,
  DIRECT_ATTEMPT_TIMEOUT_MS,
  DIRECT_PATH_TIMEOUT_MS,
  DIRECT_RETRY_MS,
  LINK_SETUP_ATTEMPTS,
  MAX_DIRECT_RETRY_MS,
} from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { type PathKind, RELAY_PREFERRED_ORDER } from '../shared/paths.js';
import type { RelayMode } from '../shared/signaling.js';
import {
  bestOf as bestIn,
  bestOf,
  initialPathState,
  type PathAction,
  type PathEvent,
  type PathPolicyState,
  type PathTimer,
  step,
} from '../transport/path-policy.js';

/** Runs events from a state; returns the last state and every action, in order. */
function run(state: PathPolicyState, ...events: PathEvent[]): { state: PathPolicyState; actions: PathAction[] } {
  const actions: PathAction[] = [];
  for (const event of events) {
    const next = step(state, event);
    state = next.state;
    actions.push(...next.actions);
  }
  return { state, actions };
}

const visitor = (directTimeoutMs?: number): PathPolicyState =>
  initialPathState({ role: 'visitor', ...(directTimeoutMs !== undefined ? { directTimeoutMs } : {}) });
const open = (mode: RelayMode = 'auto', turnOffered = true): PathEvent => ({ type: 'open', mode, turnOffered });
const up = (kind: PathKind): PathEvent => ({ type: 'up', kind });
const down = (kind: PathKind, replaced = false): PathEvent => ({ type: 'down', kind, replaced });
const timer = (name: PathTimer, attempt?: number): PathEvent =>
  attempt === undefined ? { type: 'timer', timer: name } : { type: 'timer', timer: name, attempt };
const unreachable = new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'peer connection failed');
const directFailed = (attempt: number, error: BeamError = unreachable): PathEvent => ({ type: 'direct-failed', attempt, error });
const types = (actions: PathAction[]): string[] => actions.map((a) => (a.type === 'arm' || a.type === 'disarm' ? `${a.type}:${a.timer}` : a.type));
const starts = (actions: PathAction[]): PathAction[] => actions.filter((a) => a.type === 'start-direct' || a.type === 'start-relay');

describe('path policy: a visitor opening a session', () => {
  it('starts direct without TURN when the server offers TURN, with the connect and direct deadlines', () => {
    const { state, actions } = run(visitor(), open('auto', true));
    expect(actions).toEqual([
      { type: 'arm', timer: 'connect', ms: AGENT_CONNECT_TIMEOUT_MS },
      { type: 'start-direct', attempt: 1, stunOnly: true },
      { type: 'arm', timer: 'direct-timeout', ms: DIRECT_PATH_TIMEOUT_MS },
    ]);
    expect(state.direct).toEqual({ pending: true, stunOnly: true, attempts: 1 });
  });

  it('brings whatever ICE servers there are when none is TURN', () => {
    const { actions } = run(visitor(), open('auto', false));
    expect(starts(actions)).toEqual([{ type: 'start-direct', attempt: 1, stunOnly: false }]);
  });

  it('--relay always: the relay alone, no direct attempt or direct deadline', () => {
    const { actions } = run(visitor(), open('always'));
    expect(types(actions)).toEqual(['arm:connect', 'start-relay']);
  });

  it('a second open changes nothing', () => {
    const first = run(visitor(), open());
    expect(step(first.state, open('always')).actions).toEqual([]);
  });

  it('the direct timeout brings TURN into a new attempt and adds the relay', () => {
    const { state, actions } = run(visitor(1500), open(), timer('direct-timeout'));
    expect(starts(actions).slice(1)).toEqual([
      { type: 'start-direct', attempt: 2, stunOnly: false, reason: 'no direct pair yet; trying again with TURN' },
      { type: 'start-relay', reason: 'no direct path within 1500 ms; adding the relay' },
    ]);
    expect(state.relay).toBe('pending');
  });

  it('--relay never: an attempt not up within DIRECT_ATTEMPT_TIMEOUT_MS gives way to a new one, LINK_SETUP_ATTEMPTS in all; the session then says it found no path in time', () => {
    let { state, actions } = run(visitor(), open('never', false));
    expect(actions).toContainEqual({ type: 'arm', timer: 'attempt', ms: DIRECT_ATTEMPT_TIMEOUT_MS, attempt: 1 });
    for (let attempt = 1; attempt < LINK_SETUP_ATTEMPTS; attempt++) {
      ({ state, actions } = run(state, timer('attempt', attempt)));
      expect(types(actions)).toEqual(['abort-direct', 'start-direct', 'arm:attempt']);
      expect(starts(actions)).toEqual([{ type: 'start-direct', attempt: attempt + 1, stunOnly: false }]);
      expect(state.lastError?.detail).toBe(`no direct pair within ${DIRECT_ATTEMPT_TIMEOUT_MS} ms`);
    }
    // The last attempt is still under way when the session's own deadline comes.
    const end = run(state, timer('connect'));
    const reject = end.actions.find((a) => a.type === 'reject');
    expect(reject?.type === 'reject' && reject.error.detail).toBe(`no path to the agent within ${AGENT_CONNECT_TIMEOUT_MS} ms`);
  });

  it("with the relay to come (auto), a first attempt has no deadline but the session's", () => {
    const { actions } = run(visitor(), open('auto', false));
    expect(types(actions)).not.toContain('arm:attempt');
  });

  it('the direct timeout with --relay never tries TURN but never the relay', () => {
    const { actions } = run(visitor(), open('never'), timer('direct-timeout'));
    expect(starts(actions).map((a) => a.type)).toEqual(['start-direct', 'start-direct']);
  });

  it('the direct timeout is nothing once a WebRTC path is up', () => {
    const { state } = run(visitor(), open(), up('direct'));
    expect(step(state, timer('direct-timeout')).actions).toEqual([]);
  });

  it('no path within the connect deadline: reject with the last error, then close', () => {
    const mismatch = new BeamError('BEAM_ERR_HANDSHAKE_FAILED', 'x');
    const { state } = run(visitor(), open('never', false), timer('direct-timeout'));
    const after = run(state, directFailed(2, mismatch), timer('connect'));
    expect(after.state.closed).toBe(true);
    const reject = after.actions.find((a) => a.type === 'reject');
    expect(reject).toBeDefined();
    expect(after.actions.at(-1)).toEqual({ type: 'close' });
  });

  it('the connect deadline names AGENT_CONNECT_TIMEOUT_MS when nothing failed', () => {
    const { actions } = run(visitor(), open('never', false), timer('connect'));
    const reject = actions.find((a) => a.type === 'reject');
    expect(reject?.type === 'reject' && reject.error.code).toBe('BEAM_ERR_AGENT_UNREACHABLE');
    expect(reject?.type === 'reject' && reject.error.detail).toContain(String(AGENT_CONNECT_TIMEOUT_MS));
  });
});

describe('path policy: relay first', () => {
  const relayFirst = (): PathPolicyState => initialPathState({ role: 'visitor', relayFirst: true });

  it('starts the relay at once beside direct; the first path up resolves ready', () => {
    const { state, actions } = run(relayFirst(), open('auto', true));
    expect(starts(actions)).toEqual([
      { type: 'start-relay', reason: 'relay first; direct in the background' },
      { type: 'start-direct', attempt: 1, stunOnly: true },
    ]);
    const relayUp = run(state, up('relay'));
    expect(relayUp.actions).toContainEqual({ type: 'ready' });
    // Direct still comes: when it is up, it is the best path, and the relay stays as a standby.
    const direct = run(relayUp.state, up('direct'));
    expect(bestOf(direct.state)).toBe('direct');
    expect(direct.actions.some((a) => a.type === 'supersede' && a.kind === 'relay')).toBe(false);
    // Direct dies later: the relay is still up, and direct is tried again.
    const lost = run(direct.state, down('direct'));
    expect(bestOf(lost.state)).toBe('relay');
    expect(lost.actions).toContainEqual({ type: 'arm', timer: 'reopen', ms: DIRECT_RETRY_MS });
  });

  it('keeps --relay never direct-only and --relay always relay-only', () => {
    expect(starts(run(relayFirst(), open('never', true)).actions).map((a) => a.type)).toEqual(['start-direct']);
    expect(starts(run(relayFirst(), open('always', true)).actions).map((a) => a.type)).toEqual(['start-relay']);
  });
});

describe("path policy: relay preferred (the server's own gateway)", () => {
  // The policy is relay first's; the session's PathSet ranks the paths (RELAY_PREFERRED_ORDER).
  const preferred = (): PathPolicyState => initialPathState({ role: 'visitor', relayFirst: true });
  const bestOf = (state: PathPolicyState): PathKind | undefined => bestIn(state, RELAY_PREFERRED_ORDER);

  it('starts the relay and direct at once; direct up changes no best path: it stands by, and nothing is retried', () => {
    const { state, actions } = run(preferred(), open('auto', true));
    expect(starts(actions)).toEqual([
      { type: 'start-relay', reason: 'relay first; direct in the background' },
      { type: 'start-direct', attempt: 1, stunOnly: true },
    ]);
    const both = run(state, up('relay'), up('direct'));
    expect(bestOf(both.state)).toBe('relay');
    expect(both.actions.filter((a) => a.type === 'supersede')).toEqual([]);
    expect(both.state.timers).not.toContain('retry');
    // Direct up first (the relay still coming): it carries the session until the relay is up.
    const directFirst = run(state, up('direct'));
    expect(bestOf(directFirst.state)).toBe('direct');
    expect(bestOf(run(directFirst.state, up('relay')).state)).toBe('relay');
  });

  it('the relay gone (the agent lost the server): direct carries the session', () => {
    const { state } = run(preferred(), open('auto', true), up('relay'), up('direct'));
    const lost = run(state, down('relay'));
    expect(bestOf(lost.state)).toBe('direct');
    expect(lost.state.closed).toBe(false);
    expect(lost.actions.filter((a) => a.type === 'close' || a.type === 'start-relay')).toEqual([]);
  });

  it('the standby lost while the relay carries on: direct is set up again, then retried with backoff', () => {
    const { state } = run(preferred(), open('auto', true), up('relay'), up('direct'));
    const lost = run(state, down('direct'));
    expect(bestOf(lost.state)).toBe('relay');
    expect(lost.actions).toContainEqual({ type: 'arm', timer: 'reopen', ms: DIRECT_RETRY_MS });
    // No direct pair at all (UDP blocked): the relay carries on, and direct is retried now and then.
    const failed = run(preferred(), open('auto', false), up('relay'), directFailed(1), directFailed(2), directFailed(3));
    expect(bestOf(failed.state)).toBe('relay');
    expect(failed.state.timers).toContain('retry');
  });

  it('keeps --relay never direct-only and --relay always relay-only', () => {
    expect(starts(run(preferred(), open('never', true)).actions).map((a) => a.type)).toEqual(['start-direct']);
    expect(starts(run(preferred(), open('always', true)).actions).map((a) => a.type)).toEqual(['start-relay']);
  });
});

describe('path policy: paths coming up', () => {
  it('the first path resolves ready once; direct arms no retry', () => {
    const { state, actions } = run(visitor(), open(), up('direct'));
    expect(types(actions).filter((t) => t === 'ready')).toHaveLength(1);
    expect(state.direct.pending).toBe(false);
    expect(state.timers).not.toContain('retry');
    expect(step(state, up('relay')).actions.some((a) => a.type === 'ready')).toBe(false);
  });

  it('on the relay, direct is retried after DIRECT_RETRY_MS', () => {
    // Every setup attempt failed while the relay came up.
    const { state, actions } = run(visitor(), open('auto'), timer('direct-timeout'), directFailed(2), directFailed(3), up('relay'));
    expect(actions).toContainEqual({ type: 'arm', timer: 'retry', ms: DIRECT_RETRY_MS });
    expect(bestOf(state)).toBe('relay');
    // From the relay, the retry may bring TURN.
    expect(starts(step(state, timer('retry')).actions)).toEqual([{ type: 'start-direct', attempt: 4, stunOnly: false, reason: 'trying direct again' }]);
  });

  it('from TURN, the retry leaves TURN out so that only a direct pair wins it', () => {
    const { state } = run(visitor(), open(), timer('direct-timeout'), up('turn'));
    expect(state.timers).toContain('retry');
    const retry = step(state, timer('retry'));
    expect(starts(retry.actions)).toEqual([{ type: 'start-direct', attempt: 3, stunOnly: true, reason: 'trying direct again' }]);
    // That attempt runs beside a working path, so it has a deadline of its own.
    expect(retry.actions).toContainEqual({ type: 'arm', timer: 'attempt', ms: AGENT_CONNECT_TIMEOUT_MS, attempt: 3 });
  });

  it('direct beside TURN supersedes TURN and resets the retry wait', () => {
    let { state } = run(visitor(), open(), timer('direct-timeout'), up('turn'), timer('retry'), directFailed(3));
    expect(state.retryDelay).toBe(DIRECT_RETRY_MS * 2);
    ({ state } = run(state, timer('retry')));
    const { state: after, actions } = run(state, up('direct'));
    expect(actions).toContainEqual({ type: 'supersede', kind: 'turn' });
    expect(after.retryDelay).toBe(DIRECT_RETRY_MS);
    expect(bestOf(after)).toBe('direct');
  });

  it('no retry is scheduled while one is already armed', () => {
    const { state } = run(visitor(), open('always'), up('relay'));
    // --relay always never retries direct.
    expect(state.timers).not.toContain('retry');
    const auto = run(visitor(), open(), timer('direct-timeout'), up('turn'));
    const again = step(auto.state, up('relay'));
    expect(again.actions.filter((a) => a.type === 'arm' && a.timer === 'retry')).toEqual([]);
  });
});

describe('path policy: direct attempts failing', () => {
  it('with no path: the relay at once, and direct again up to LINK_SETUP_ATTEMPTS', () => {
    let { state, actions } = run(visitor(), open('auto', false), directFailed(1));
    expect(starts(actions).map((a) => a.type)).toEqual(['start-direct', 'start-relay', 'start-direct']);
    for (let attempt = 2; attempt < LINK_SETUP_ATTEMPTS; attempt++) ({ state } = run(state, directFailed(attempt)));
    // The last attempt failed while the relay is still coming: a retry, not a give-up.
    ({ state, actions } = run(state, directFailed(LINK_SETUP_ATTEMPTS)));
    expect(state.closed).toBe(false);
    expect(types(actions)).toContain('arm:retry');
  });

  it('--relay never: every attempt failed and nothing pending ends the session with the last error', () => {
    const err = new BeamError('BEAM_ERR_AGENT_UNREACHABLE', 'peer connection failed');
    let state = run(visitor(), open('never', false)).state;
    let actions: PathAction[] = [];
    for (let attempt = 1; attempt <= LINK_SETUP_ATTEMPTS; attempt++) ({ state, actions } = run(state, directFailed(attempt, err)));
    expect(state.closed).toBe(true);
    expect(actions).toContainEqual({ type: 'reject', error: err });
  });

  it('a session left with no path and nothing under way ends at once, not at a deadline that would start nothing', () => {
    // --relay never: direct came up and died, the reopened attempt failed; the direct deadline and the attempt's are still armed.
    const before = run(visitor(), open('never', false), directFailed(1), up('direct'), timer('connect'), down('direct'), timer('reopen'));
    expect(before.state.timers).toEqual(['direct-timeout', 'attempt']);
    const { state, actions } = run(before.state, directFailed(3));
    expect(state.closed).toBe(true);
    expect(state.timers).toEqual([]);
    expect(actions.at(-1)).toEqual({ type: 'close' });
  });

  it('a session whose only path went down ends with the code it went down with (the relay cap), not after a retry minutes away', () => {
    // auto: direct failed, the session rides the relay with a retry armed; the relay ends at the server's cap.
    const riding = run(visitor(), open(), directFailed(1), directFailed(2), directFailed(3), up('relay'));
    expect(riding.state.timers).toContain('retry');
    const { state, actions } = run(riding.state, { type: 'down', kind: 'relay', replaced: false, code: 'BEAM_ERR_RELAY_CAPPED' });
    expect(state.closed).toBe(true);
    expect(state.lastError?.code).toBe('BEAM_ERR_RELAY_CAPPED');
    expect(actions.at(-1)).toEqual({ type: 'close' });
  });

  it('a stale attempt failing changes nothing', () => {
    const { state } = run(visitor(), open(), timer('direct-timeout'));
    expect(step(state, directFailed(1)).actions).toEqual([]);
  });

  it('a wrong peer or secret ends the session at once, whatever else is up', () => {
    for (const code of ['BEAM_ERR_PEER_MISMATCH', 'BEAM_ERR_PRIVATE'] as const) {
      const { state, actions } = run(visitor(), open(), directFailed(1, new BeamError(code)));
      expect(state.closed).toBe(true);
      expect(starts(actions)).toHaveLength(1);
      expect(actions.find((a) => a.type === 'reject')).toMatchObject({ error: { code } });
      const relay = run(visitor(), open('always'), { type: 'relay-failed', error: new BeamError(code) });
      expect(relay.state.closed).toBe(true);
    }
  });

  it('beside a working path, each failed retry doubles the wait up to MAX_DIRECT_RETRY_MS', () => {
    let { state } = run(visitor(), open('auto', false), directFailed(1), up('relay'));
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      const retry = run(state, timer('retry'));
      const attempt = retry.state.direct.attempts;
      const failed = run(retry.state, directFailed(attempt));
      const arm = failed.actions.find((a) => a.type === 'arm' && a.timer === 'retry');
      waits.push(arm?.type === 'arm' ? arm.ms : -1);
      state = failed.state;
    }
    expect(waits[0]).toBe(DIRECT_RETRY_MS * 2);
    for (let i = 1; i < waits.length; i++) expect(waits[i]).toBe(Math.min((waits[i - 1] as number) * 2, MAX_DIRECT_RETRY_MS));
    expect(waits.at(-1)).toBe(MAX_DIRECT_RETRY_MS);
  });

  it('the attempt deadline aborts only the attempt it was armed for', () => {
    const { state } = run(visitor(), open('auto', false), directFailed(1), up('relay'), directFailed(2), timer('retry'));
    expect(state.direct.attempts).toBe(3);
    expect(step(state, timer('attempt', 2)).actions).toEqual([]);
    const { state: after, actions } = run(state, timer('attempt', 3));
    expect(types(actions).slice(0, 2)).toEqual(['abort-direct', 'arm:retry']);
    expect(after.direct.pending).toBe(false);
    expect(after.lastError?.detail).toContain(`${AGENT_CONNECT_TIMEOUT_MS} ms`);
  });
});

describe('path policy: paths dying', () => {
  it('direct dies: the relay at once (auto) and direct again straight away when nothing else is up', () => {
    const { state } = run(visitor(), open(), up('direct'));
    const { actions } = run(state, down('direct'));
    expect(actions).toContainEqual({ type: 'start-relay' });
    expect(actions).toContainEqual({ type: 'arm', timer: 'reopen', ms: 0 });
    const reopened = run(state, down('direct'), timer('reopen'));
    expect(starts(reopened.actions).at(-1)).toMatchObject({ type: 'start-direct', attempt: 2 });
  });

  it('direct dies beside another path: direct again after DIRECT_RETRY_MS', () => {
    const { state } = run(visitor(), open(), timer('direct-timeout'), up('relay'), timer('retry'), up('direct'));
    const { actions } = run(state, down('direct'));
    expect(actions).toContainEqual({ type: 'arm', timer: 'reopen', ms: DIRECT_RETRY_MS });
    expect(actions.some((a) => a.type === 'start-relay')).toBe(false);
  });

  it('the relay is tried once per session: --relay always ends with it', () => {
    const riding = run(visitor(), open('always'), up('relay')).state;
    const { state, actions } = step(riding, down('relay'));
    expect(state.closed).toBe(true);
    expect(starts(actions)).toEqual([]);
    expect(run(visitor(), open('always'), up('relay'), timer('connect'), down('relay')).state.closed).toBe(true);
    const auto = run(visitor(), open(), timer('direct-timeout'), up('relay'), up('direct'), down('direct'));
    expect(auto.actions.filter((a) => a.type === 'start-relay')).toHaveLength(1);
  });

  it('a replaced path closing is no loss', () => {
    const { state } = run(visitor(), open(), timer('direct-timeout'), up('turn'), up('direct'));
    const { state: after, actions } = run(state, down('turn', true));
    expect(actions).toEqual([]);
    expect(after.up).toEqual(['direct']);
  });

  it('--relay never, last path down, a reopen armed: the session waits for it rather than giving up', () => {
    const { state } = run(visitor(), open('never', false), up('direct'), down('direct'));
    expect(state.closed).toBe(false);
    expect(state.timers).toContain('reopen');
  });
});

describe('path policy: signaling lost', () => {
  it('with paths up: every timer goes, the attempt being set up goes, the paths are probed, nothing new starts', () => {
    const { state } = run(visitor(), open(), timer('direct-timeout'), up('relay'));
    const { state: after, actions } = run(state, { type: 'signaling-lost' });
    expect(types(actions)).toEqual(['disarm:all', 'abort-direct', 'probe']);
    expect(after.timers).toEqual([]);
    for (const event of [down('relay'), timer('retry'), directFailed(2)]) {
      const next = step(after, event);
      expect(starts(next.actions)).toEqual([]);
    }
    // The last path closing ends the session.
    const end = step(after, down('relay'));
    expect(end.actions.at(-1)).toEqual({ type: 'close', code: 'BEAM_ERR_SIGNALING_LOST' });
  });

  it('with no path: the session ends at once, and a waiting ready hears BEAM_ERR_SIGNALING_LOST', () => {
    const { state, actions } = run(visitor(), open(), { type: 'signaling-lost' });
    expect(state.closed).toBe(true);
    expect(actions.find((a) => a.type === 'reject')).toMatchObject({ error: { code: 'BEAM_ERR_SIGNALING_LOST' } });
  });

  it('a second loss changes nothing', () => {
    const { state } = run(visitor(), open(), up('direct'), { type: 'signaling-lost' });
    expect(step(state, { type: 'signaling-lost' }).actions).toEqual([]);
  });
});

describe('path policy: closing', () => {
  it('rejects a waiting ready with the code given, disarms, and then ignores everything', () => {
    const { state, actions } = run(visitor(), open(), { type: 'close', code: 'BEAM_ERR_SHARE_NOT_FOUND' });
    expect(types(actions).slice(-3)).toEqual(['disarm:all', 'reject', 'close']);
    expect(actions.find((a) => a.type === 'reject')).toMatchObject({ error: { code: 'BEAM_ERR_SHARE_NOT_FOUND' } });
    for (const event of [open(), up('direct'), timer('connect'), { type: 'signaling-lost' } as const, { type: 'close' } as const])
      expect(step(state, event).actions).toEqual([]);
  });

  it('a settled session closing does not reject again', () => {
    const { state } = run(visitor(), open(), up('direct'));
    expect(types(step(state, { type: 'close' }).actions)).toEqual(['disarm:all', 'close']);
  });
});

describe('path policy: the agent', () => {
  const agent = (): PathPolicyState => initialPathState({ role: 'agent' });

  it('waits AGENT_CONNECT_TIMEOUT_MS for a first path, and never starts one itself', () => {
    const { actions } = run(agent(), open(), timer('setup'));
    expect(actions).toEqual([{ type: 'arm', timer: 'setup', ms: AGENT_CONNECT_TIMEOUT_MS }, { type: 'close' }]);
  });

  it('a path disarms the wait; losing the last arms it again', () => {
    const { state, actions } = run(agent(), open(), up('direct'));
    expect(types(actions)).toEqual(['arm:setup', 'disarm:setup']);
    const lost = run(state, down('direct'));
    expect(types(lost.actions)).toEqual(['arm:setup']);
    expect(step(lost.state, up('relay')).actions).toEqual([{ type: 'disarm', timer: 'setup' }]);
  });

  it('the setup timer is nothing once a path is up', () => {
    const { state } = run(agent(), open(), up('relay'));
    expect(step(state, timer('setup')).actions).toEqual([]);
  });

  it('signaling lost: probe, and end with the last path', () => {
    const { state, actions } = run(agent(), open(), up('direct'), up('relay'), { type: 'signaling-lost' });
    expect(types(actions).slice(-2)).toEqual(['abort-direct', 'probe']);
    const after = run(state, down('relay'), down('direct'));
    expect(after.actions).toEqual([{ type: 'close', code: 'BEAM_ERR_SIGNALING_LOST' }]);
    expect(run(agent(), open(), { type: 'signaling-lost' }).state.closed).toBe(true);
  });

  it('an agent never rejects: it has no ready to settle', () => {
    const { actions } = run(agent(), open(), timer('setup'), { type: 'close' });
    expect(actions.some((a) => a.type === 'reject' || a.type === 'ready')).toBe(false);
  });
});

/**
 * Random sequences of what a shell can report: paths come up only when an
 * attempt is pending, go down only when up, a timer runs out only when
 * armed, failures name the current attempt or a stale one.
 */
describe('path policy: random event sequences', () => {
  const choice = fc.record({
    pick: fc.nat(),
    kind: fc.constantFrom<PathKind>('direct', 'turn', 'relay'),
    fatal: fc.boolean(),
    stale: fc.boolean(),
    replaced: fc.boolean(),
  });
  type Choice = typeof choice extends fc.Arbitrary<infer T> ? T : never;

  /** The events a shell could report in `s`, chosen by `c`. */
  function eventFor(s: PathPolicyState, c: Choice): PathEvent {
    const options: PathEvent[] = [];
    if (s.direct.pending) {
      options.push(up(c.kind === 'relay' ? 'direct' : c.kind));
      const error = c.fatal && c.pick % 5 === 0 ? new BeamError('BEAM_ERR_PEER_MISMATCH') : unreachable;
      options.push(directFailed(c.stale ? Math.max(1, s.direct.attempts - 1) : s.direct.attempts, error));
    }
    if (s.relay === 'pending') {
      options.push(up('relay'));
      options.push({ type: 'relay-failed', error: c.fatal && c.pick % 5 === 0 ? new BeamError('BEAM_ERR_PRIVATE') : unreachable });
    }
    for (const kind of s.up) {
      // A path is replaced only by a better one being up.
      const better = bestOf(s) !== kind;
      options.push(down(kind, c.replaced && better));
    }
    for (const t of s.timers) options.push(timer(t, t === 'attempt' ? (c.stale ? s.direct.attempts - 1 : s.direct.attempts) : undefined));
    if (c.pick % 23 === 0) options.push({ type: 'signaling-lost' });
    if (c.pick % 41 === 0) options.push({ type: 'close' });
    return options[c.pick % Math.max(1, options.length)] ?? { type: 'close' };
  }

  it('keeps its rules whatever happens', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<'visitor' | 'agent'>('visitor', 'agent'),
        fc.constantFrom<RelayMode>('auto', 'never', 'always'),
        fc.boolean(),
        fc.boolean(),
        fc.array(choice, { minLength: 1, maxLength: 60 }),
        (role, mode, turnOffered, relayFirst, choices) => {
          let s = initialPathState({ role, relayFirst });
          let settles = 0;
          let relayStarts = 0;
          let lastAttempt = 0;
          let closedAt = -1;
          const first = step(s, open(mode, turnOffered));
          const all: PathAction[][] = [first.actions];
          s = first.state;
          for (const c of choices) {
            if (s.closed) break;
            const next = step(s, eventFor(s, c));
            all.push(next.actions);
            s = next.state;
          }
          all.forEach((actions, i) => {
            for (const a of actions) {
              // Nothing after the close.
              expect(closedAt).toBe(-1);
              if (a.type === 'close') closedAt = i;
              if (a.type === 'ready' || a.type === 'reject') settles++;
              if (a.type === 'start-relay') {
                relayStarts++;
                expect(mode).not.toBe('never');
                expect(role).toBe('visitor');
              }
              if (a.type === 'start-direct') {
                expect(mode).not.toBe('always');
                expect(role).toBe('visitor');
                // Attempts count up one by one, and leave TURN out only when the server offers it.
                expect(a.attempt).toBe(lastAttempt + 1);
                lastAttempt = a.attempt;
                if (!turnOffered) expect(a.stunOnly).toBe(false);
              }
            }
          });
          expect(settles).toBeLessThanOrEqual(1);
          expect(relayStarts).toBeLessThanOrEqual(1);
          if (role === 'agent') expect(settles).toBe(0);
          // The armed timers are a set.
          expect(new Set(s.timers).size).toBe(s.timers.length);
          if (s.closed) {
            expect(s.timers).toEqual([]);
            if (role === 'visitor') expect(settles).toBe(1);
            return;
          }
          // A session that goes on has a path, or something under way that will change that: for a visitor, an
          // attempt or a reopen (not a retry minutes away: requests would wait on a session with no path).
          const underWay =
            s.up.length > 0 || s.direct.pending || s.relay === 'pending' || (role === 'agent' ? s.timers.length > 0 : s.timers.includes('reopen'));
          expect(underWay).toBe(true);
          // Once signaling is gone, nothing new is under way: only the paths up.
          if (s.detached) {
            expect(s.up.length).toBeGreaterThan(0);
            expect(s.timers).toEqual([]);
            expect(s.direct.pending).toBe(false);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
