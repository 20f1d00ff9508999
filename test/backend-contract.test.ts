/**
 * What an agent does with a network backend's visitors (transport/backend.ts,
 * peer-agent/agent.ts listenOn): a backend of this test's own hands it pipes
 * in memory, as libp2p hands it streams, so the contract any backend (Tor,
 * I2P, ...) relies on is checked with nothing else in the way: Noise with the
 * agent's key and a private share's secret, a session on the pipe's path,
 * and the cap on handshakes under way.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Agent, type SessionInfo } from '../peer-agent/agent.js';
import type { BackendListening, BackendPipe, BackendShare, BackendVisitors, NetworkBackend } from '../shared/backend.js';
import { HANDSHAKE_TIMEOUT_MS, MAX_PENDING_HANDSHAKES } from '../shared/constants.js';
import type { BeamError } from '../shared/errors.js';
import { Mux } from '../shared/mux.js';
import { dialSecured } from '../transport/backend.js';
import { ephemeralIdentity, type Identity } from '../transport/identity.js';
import { loadEngine } from '../transport/index.js';
import type { Pipe } from '../transport/secure.js';

/** Two pipes joined in memory: what one sends the other receives, a turn later, in order. */
interface TestPipe extends Pipe {
  closed: boolean;
  peer?: TestPipe;
  messageCb?: (bytes: Uint8Array) => void;
  closeCbs: Array<() => void>;
}

function pipePair(): [TestPipe, TestPipe] {
  const make = (): TestPipe => ({
    closed: false,
    closeCbs: [],
    send(bytes) {
      const copy = bytes.slice();
      setImmediate(() => {
        if (!this.closed && this.peer && !this.peer.closed) this.peer.messageCb?.(copy);
      });
      return true;
    },
    bufferedAmount: () => 0,
    onDrain: () => {},
    onMessage(cb) {
      this.messageCb = cb;
    },
    onClose(cb) {
      this.closeCbs.push(cb);
    },
    close() {
      if (this.closed) return;
      this.closed = true;
      for (const cb of this.closeCbs) cb();
      this.peer?.close();
    },
  });
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** A backend whose visitors are whoever the test hands in. */
class TestBackend implements NetworkBackend {
  readonly name = 'libp2p' as const;
  readonly paths = ['direct'] as const;
  visitors: BackendVisitors | undefined;
  share: BackendShare | undefined;
  async listen(share: BackendShare, visitors: BackendVisitors): Promise<BackendListening> {
    this.share = share;
    this.visitors = visitors;
    return { link: 'test://', address: 'test', addresses: [], onAddress: () => {}, close: async () => {} };
  }
  /** A visitor's pipe: the other end goes to the agent. */
  async dial(): Promise<BackendPipe> {
    const [visitor, agent] = pipePair();
    this.visitors?.pipe({ pipe: agent, path: 'direct', address: '192.0.2.9' });
    return { pipe: visitor, path: 'direct', address: undefined };
  }
  async close(): Promise<void> {}
}

async function agentOn(backend: TestBackend, secret?: string, maxVisitors?: number): Promise<{ agent: Agent; identity: Identity }> {
  const identity = await ephemeralIdentity();
  const agent = new Agent(
    { engine: await loadEngine('node-datachannel'), logger: pino({ level: 'silent' }), identity },
    { origin: { host: '127.0.0.1', port: 9 }, kind: 'tcp', ...(secret !== undefined ? { secret } : {}), ...(maxVisitors !== undefined ? { maxVisitors } : {}) },
  );
  await agent.listenOn(backend, 'contract-test');
  return { agent, identity };
}

describe("a network backend's visitors at the agent", () => {
  it('the backend learns the share and the agent key, never the secret; a visitor with the key and the secret gets a session on the pipe’s path', async () => {
    const backend = new TestBackend();
    const { agent, identity } = await agentOn(backend, 's3cret');
    expect(backend.share).toMatchObject({ name: 'contract-test', kind: 'tcp', private: true });
    expect(backend.share?.peerId).toBe(identity.peerId.toString());
    expect((await backend.share?.key())?.peerId.equals(identity.peerId)).toBe(true);
    expect(JSON.stringify(backend.share)).not.toContain('s3cret');
    const session = new Promise<SessionInfo>((resolve) => agent.once('session', resolve));
    const { channel, path } = await dialSecured(await backend.dial(), { identity: await ephemeralIdentity(), peer: identity.peerId, secret: 's3cret' });
    expect(path).toBe('direct');
    expect(await session).toMatchObject({ visitor: 'cli', path: 'direct', via: 'direct' });
    channel.close();
    await agent.close();
  });

  it('a wrong secret is BEAM_ERR_PRIVATE, another agent key BEAM_ERR_PEER_MISMATCH; neither gets a session', async () => {
    const backend = new TestBackend();
    const { agent, identity } = await agentOn(backend, 's3cret');
    let sessions = 0;
    agent.on('session', () => sessions++);
    const visitor = await ephemeralIdentity();
    const wrongSecret = await dialSecured(await backend.dial(), { identity: visitor, peer: identity.peerId, secret: 'nope' }).catch((e: BeamError) => e);
    expect((wrongSecret as BeamError).code).toBe('BEAM_ERR_PRIVATE');
    const noSecret = await dialSecured(await backend.dial(), { identity: visitor, peer: identity.peerId, secret: undefined }).catch((e: BeamError) => e);
    expect((noSecret as BeamError).code).toBe('BEAM_ERR_PRIVATE');
    const other = await ephemeralIdentity();
    const wrongPeer = await dialSecured(await backend.dial(), { identity: visitor, peer: other.peerId, secret: 's3cret' }).catch((e: BeamError) => e);
    expect((wrongPeer as BeamError).code).toBe('BEAM_ERR_PEER_MISMATCH');
    expect(sessions).toBe(0);
    await agent.close();
  });

  it('over --max-visitors: the agent turns the visitor away after Noise with BEAM_ERR_MAX_VISITORS (not a bare close); a place freed lets the next in', async () => {
    const backend = new TestBackend();
    const { agent, identity } = await agentOn(backend, undefined, 1);
    const sessions: SessionInfo[] = [];
    agent.on('session', (info) => sessions.push(info));
    const dial = async (): Promise<Awaited<ReturnType<typeof dialSecured>>> =>
      dialSecured(await backend.dial(), { identity: await ephemeralIdentity(), peer: identity.peerId, secret: undefined });
    const first = await dial();
    const refused = await dial().catch((e: BeamError) => e);
    expect((refused as BeamError).code).toBe('BEAM_ERR_MAX_VISITORS');
    expect(sessions).toHaveLength(1);
    // The first visitor's channel works: a multiplexer on it gets the agent's PING answered, the frame that let it in included.
    const mux = new Mux(first.channel, { role: 'initiator' });
    expect(await mux.probe(2_000)).toBe(true);
    const closed = new Promise<void>((resolve) => agent.once('session-closed', () => resolve()));
    mux.close();
    await closed;
    const third = await dial();
    expect(sessions).toHaveLength(2);
    third.channel.close();
    await agent.close();
  });

  it(`at most MAX_PENDING_HANDSHAKES (${MAX_PENDING_HANDSHAKES}) handshakes at once: past it a pipe is closed at once; a silent one is closed after HANDSHAKE_TIMEOUT_MS and frees its place`, async () => {
    const backend = new TestBackend();
    const { agent } = await agentOn(backend);
    const silent = Array.from({ length: MAX_PENDING_HANDSHAKES + 6 }, () => pipePair());
    for (const [, agentEnd] of silent) backend.visitors?.pipe({ pipe: agentEnd, path: 'direct', address: undefined });
    const closedAtOnce = silent.filter(([, agentEnd]) => agentEnd.closed).length;
    expect(closedAtOnce).toBe(6);
    // Each silent visitor waits out its handshake timeout, then its place is free again.
    await new Promise((resolve) => setTimeout(resolve, HANDSHAKE_TIMEOUT_MS + 500));
    expect(silent.every(([, agentEnd]) => agentEnd.closed)).toBe(true);
    const [, late] = pipePair();
    backend.visitors?.pipe({ pipe: late, path: 'direct', address: undefined });
    expect(late.closed).toBe(false);
    late.close();
    await agent.close();
  }, 15_000);
});
