/**
 * The Beam server as a network backend (transport/server-backend.ts), both
 * ends through the NetworkBackend interface against a real server in this
 * process: what the server learns of a share, the signaled session's channel
 * both ways, a refusal's code, the end of a session, and the name freed on
 * close.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BeamServer, startBeamServer } from '../gateway/server.js';
import type { BackendShare, NetworkBackend, SignaledHandlers, SignaledVisitor, VisitorHandlers } from '../shared/backend.js';
import { AGENT_CONNECT_TIMEOUT_MS, LINK_SETUP_ATTEMPTS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import type { Signal } from '../shared/signaling.js';
import { ephemeralIdentity } from '../transport/identity.js';
import { loadEngine } from '../transport/index.js';
import { ServerBackend } from '../transport/server-backend.js';
import { directVisitor } from './helpers/visitor.js';

const logger = pino({ level: 'silent' });
let server: BeamServer;
let url: string;

beforeAll(async () => {
  server = await startBeamServer(
    { engine: await loadEngine('node-datachannel'), logger },
    { port: 0, host: '127.0.0.1', stun: false, metrics: false, warmLinks: 0, warmUp: false },
  );
  url = server.localUrl;
});
afterAll(async () => {
  await server.close();
});

async function share(name: string): Promise<BackendShare> {
  const identity = await ephemeralIdentity();
  return { name, kind: 'http', private: false, peerId: identity.peerId.toString(), key: async () => identity };
}

/** An agent's signaled sessions, as the backend hands them in: each with the handlers the test gives back. */
function agentSide(refuse = false): {
  visitors: { pipe: () => void; signaled: (v: SignaledVisitor) => SignaledHandlers | undefined };
  incoming: Promise<SignaledVisitor>;
  signals: Signal[];
  ended: Promise<void>;
} {
  const signals: Signal[] = [];
  let took: (v: SignaledVisitor) => void = () => {};
  let end: () => void = () => {};
  const incoming = new Promise<SignaledVisitor>((resolve) => {
    took = resolve;
  });
  const ended = new Promise<void>((resolve) => {
    end = resolve;
  });
  return {
    incoming,
    signals,
    ended,
    visitors: {
      pipe: () => {
        throw new Error('a server hands in signaled sessions, not pipes');
      },
      signaled: (v) => {
        took(v);
        if (refuse) {
          v.close('BEAM_ERR_MAX_VISITORS');
          return undefined;
        }
        return { signal: (s) => signals.push(s), detach: () => {}, end };
      },
    },
  };
}

function visitorHandlers(): { handlers: VisitorHandlers; signals: Signal[]; closed: Promise<string> } {
  const signals: Signal[] = [];
  let close: (code: string) => void = () => {};
  const closed = new Promise<string>((resolve) => {
    close = resolve;
  });
  return { handlers: { signal: (s) => signals.push(s), detach: () => {}, closed: (code) => close(code) }, signals, closed };
}

describe('the Beam server as a NetworkBackend', () => {
  it('registers a share through listen and pairs a dialed visitor with it: a signaled session whose channel carries signals both ways and its end', async () => {
    const agentBackend: NetworkBackend = new ServerBackend({ server: url, logger, agent: { relay: 'auto', http: 2 } });
    expect(agentBackend.paths).toEqual(['direct', 'turn', 'relay']);
    const s = await share(`backend-${Date.now()}`);
    const agent = agentSide();
    const listening = await agentBackend.listen(s, agent.visitors);
    expect(listening.link).toBe(`http://${s.name}.localhost:${server.port}/`);
    const visitorBackend = new ServerBackend({ server: url, logger, visitor: { reconnect: 'none' } });
    try {
      await visitorBackend.ready();
      const v = visitorHandlers();
      const dialed = await visitorBackend.dial({ share: s.name as string }, { handlers: v.handlers, relayFirst: true });
      // What the server says of the agent is what the agent told it: its peer ID and its policy.
      expect(dialed.opened).toMatchObject({ agentPeerId: s.peerId, agentRelay: 'auto', kind: 'http', private: false, agentHttp: 2 });
      const incoming = await agent.incoming;
      expect(incoming).toMatchObject({ id: dialed.opened.sessionId, visitor: 'cli', relayFirst: true });
      expect(incoming.relayToken).not.toBe(dialed.opened.relayToken);
      // Signals cross, each way, on the session's own channel.
      dialed.signal({ type: 'relay' });
      await expect.poll(() => agent.signals).toEqual([{ type: 'relay' }]);
      incoming.signal({ type: 'candidate', candidate: 'candidate:1 1 UDP 1 192.0.2.1 9 typ host', mid: '0' });
      await expect.poll(() => v.signals.length).toBe(1);
      expect(v.signals[0]).toMatchObject({ type: 'candidate', mid: '0' });
      // The visitor's close is the agent's end.
      dialed.close();
      await agent.ended;
    } finally {
      await visitorBackend.close();
      await listening.close();
    }
    // Closed on purpose, the name is free at once: another agent takes it.
    const again = await agentBackend.listen({ ...(await share(s.name as string)) }, agentSide().visitors);
    expect(again.link).toBe(listening.link);
    await again.close();
  });

  it("an agent that turns a visitor away says why: the visitor's session closes with that code", async () => {
    const agentBackend = new ServerBackend({ server: url, logger, agent: { relay: 'auto', http: 2 } });
    const agent = agentSide(true);
    const listening = await agentBackend.listen(await share(`refuse-${Date.now()}`), agent.visitors);
    const visitorBackend = new ServerBackend({ server: url, logger, visitor: { reconnect: 'none' } });
    try {
      const v = visitorHandlers();
      await visitorBackend.dial({ share: listening.registered.name }, { handlers: v.handlers });
      expect(await v.closed).toBe('BEAM_ERR_MAX_VISITORS');
    } finally {
      await visitorBackend.close();
      await listening.close();
    }
  });

  it('a name already held is BEAM_ERR_NAME_TAKEN from listen; a share nobody serves is BEAM_ERR_SHARE_NOT_FOUND from dial', async () => {
    const name = `held-${Date.now()}`;
    const first = await new ServerBackend({ server: url, logger }).listen(await share(name), agentSide().visitors);
    try {
      const second = await new ServerBackend({ server: url, logger }).listen(await share(name), agentSide().visitors).catch((err: unknown) => err);
      expect(second).toBeInstanceOf(BeamError);
      expect((second as BeamError).code).toBe('BEAM_ERR_NAME_TAKEN');
    } finally {
      await first.close();
    }
    const visitorBackend = new ServerBackend({ server: url, logger, visitor: { reconnect: 'none' } });
    try {
      const err = await visitorBackend.dial({ share: `nobody-${Date.now()}` }, { handlers: visitorHandlers().handlers }).catch((e: unknown) => e);
      expect((err as BeamError).code).toBe('BEAM_ERR_SHARE_NOT_FOUND');
      // A visitor's dial needs its handlers: where the session's signals would go.
      expect(((await visitorBackend.dial({ share: 'x' }).catch((e: unknown) => e)) as BeamError).code).toBe('BEAM_ERR_INTERNAL');
    } finally {
      await visitorBackend.close();
    }
  });

  it("an agent's first registration waits for its warm-up (registerAfter): connected first, registered only once it is done", async () => {
    let warmedUp: () => void = () => {};
    const warm = new Promise<void>((resolve) => {
      warmedUp = resolve;
    });
    const upgraded = new Promise<void>((resolve) => server.http.once('upgrade', () => resolve()));
    const name = `gated-${Date.now()}`;
    let settled = false;
    const gated = new ServerBackend({ server: url, logger, agent: { relay: 'auto', http: 2, registerAfter: warm } })
      .listen(await share(name), agentSide().visitors)
      .finally(() => {
        settled = true;
      });
    // Its connection is up at the server; a second agent, connected after it with no warm-up, registers.
    await upgraded;
    const other = await new ServerBackend({ server: url, logger, agent: { relay: 'auto', http: 2 } }).listen(
      await share(`ungated-${Date.now()}`),
      agentSide().visitors,
    );
    try {
      expect(settled).toBe(false);
      const visitorBackend = new ServerBackend({ server: url, logger, visitor: { reconnect: 'none' } });
      try {
        const err = await visitorBackend.dial({ share: name }, { handlers: visitorHandlers().handlers }).catch((e: unknown) => e);
        expect((err as BeamError).code).toBe('BEAM_ERR_SHARE_NOT_FOUND');
        warmedUp();
        const listening = await gated;
        expect(listening.registered.name).toBe(name);
        expect(listening.registered.resumed).toBe(false);
        const v = visitorHandlers();
        const dialed = await visitorBackend.dial({ share: name }, { handlers: v.handlers });
        expect(dialed.opened.sessionId).toBeTruthy();
        dialed.close();
        await listening.close();
      } finally {
        await visitorBackend.close();
      }
    } finally {
      await other.close();
    }
  });

  it(
    'a visitor whose agent never answers makes LINK_SETUP_ATTEMPTS fresh attempts, then fails after AGENT_CONNECT_TIMEOUT_MS with BEAM_ERR_AGENT_UNREACHABLE, saying how far the last got',
    async () => {
      const agentBackend = new ServerBackend({ server: url, logger, agent: { relay: 'auto', http: 2 } });
      const agent = agentSide();
      const listening = await agentBackend.listen(await share(`silent-${Date.now()}`), agent.visitors);
      try {
        const started = performance.now();
        const err = await directVisitor(url, listening.registered.name, { relay: 'never' }).catch((e: unknown) => e);
        expect(performance.now() - started).toBeGreaterThanOrEqual(AGENT_CONNECT_TIMEOUT_MS - 50);
        expect(err).toBeInstanceOf(BeamError);
        expect((err as BeamError).code).toBe('BEAM_ERR_AGENT_UNREACHABLE');
        expect((err as BeamError).detail).toBe(
          `no path to the agent within ${AGENT_CONNECT_TIMEOUT_MS} ms (direct attempt ${LINK_SETUP_ATTEMPTS} sent its offer; no answer from the agent)`,
        );
        // The agent got each attempt's offer (a new peer connection each, DIRECT_ATTEMPT_TIMEOUT_MS apart): the step that hung was its side.
        expect(agent.signals.filter((sig) => sig.type === 'offer')).toHaveLength(LINK_SETUP_ATTEMPTS);
      } finally {
        await listening.close();
      }
    },
    AGENT_CONNECT_TIMEOUT_MS + 20_000,
  );

  it('an unreachable server is BEAM_ERR_SERVER_UNREACHABLE from listen, naming it', async () => {
    const err = (await new ServerBackend({ server: 'http://127.0.0.1:9', logger })
      .listen(await share('nowhere'), agentSide().visitors)
      .catch((e: unknown) => e)) as BeamError;
    expect(err.code).toBe('BEAM_ERR_SERVER_UNREACHABLE');
    expect(err.message).toContain('http://127.0.0.1:9');
  });
});
