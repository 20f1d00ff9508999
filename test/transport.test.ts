/** Layer 3: real WebRTC engines in one process. */
import { describe, expect, it } from 'vitest';
import type { PeerSignal } from '../shared/signaling.js';
import { type EngineName, loadEngine, type Peer } from '../transport/index.js';

async function connect(offerer: EngineName, answerer: EngineName): Promise<{ ms: number; close(): void }> {
  const a = (await loadEngine(offerer)).createPeer({ iceServers: [] });
  const b = (await loadEngine(answerer)).createPeer({ iceServers: [] });
  // A signaling server is never instant: a millisecond of delay each way is
  // what exposes ordering races between the two sides.
  const relay = (to: Peer) => (s: PeerSignal) => {
    setTimeout(() => void to.signal(s), 1);
  };
  a.onSignal(relay(b));
  b.onSignal(relay(a));
  const started = performance.now();
  const channel = a.createDataChannel('beam/1');
  await new Promise<void>((resolve) => channel.onOpen(resolve));
  return {
    ms: performance.now() - started,
    close: () => {
      a.close();
      b.close();
    },
  };
}

describe('peer connection setup', () => {
  it('twenty node-datachannel connections in a row all open', async () => {
    let opened = 0;
    for (let i = 0; i < 20; i++) {
      const pair = await connect('node-datachannel', 'node-datachannel');
      opened++;
      pair.close();
      expect(pair.ms).toBeLessThan(5_000);
    }
    expect(opened).toBe(20);
  });

  it.each([
    ['node-datachannel', 'werift'],
    ['werift', 'node-datachannel'],
  ] as const)('a %s offerer connects to a %s answerer', async (offerer, answerer) => {
    const pair = await connect(offerer, answerer);
    pair.close();
    expect(pair.ms).toBeLessThan(5_000);
  });
});
