/** Layer 3: real WebRTC engines in one process. */
import { describe, expect, it } from 'vitest';
import { loadEngine, type EngineName, type Peer } from '../transport/index.js';
import type { Signal } from '../shared/signaling.js';

async function connect(offerer: EngineName, answerer: EngineName, onOffer?: (s: Signal) => void): Promise<{ ms: number; close(): void }> {
  const a = (await loadEngine(offerer)).createPeer({ iceServers: [] });
  const b = (await loadEngine(answerer)).createPeer({ iceServers: [] });
  // A signaling server is never instant: a millisecond of delay each way is
  // what exposes ordering races between the two sides.
  const relay = (to: Peer) => (s: Signal) => {
    if (s.type === 'offer') onOffer?.(s);
    setTimeout(() => void to.signal(s), 1);
  };
  a.onSignal(relay(b));
  b.onSignal(relay(a));
  const started = performance.now();
  const channel = a.createDataChannel('beam/1');
  await new Promise<void>((resolve) => channel.onOpen(resolve));
  return { ms: performance.now() - started, close: () => (a.close(), b.close()) };
}

describe('peer connection setup', () => {
  it('the offerer takes the DTLS client role (a=setup:active)', async () => {
    let offer = '';
    const pair = await connect('node-datachannel', 'node-datachannel', (s) => (offer = s.type === 'offer' ? s.sdp : offer));
    pair.close();
    expect(offer).toMatch(/^a=setup:active$/m);
    expect(offer).not.toMatch(/^a=setup:actpass$/m);
  });

  it('twenty node-datachannel connections each open well under the 1 s DTLS retransmit timer', async () => {
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const pair = await connect('node-datachannel', 'node-datachannel');
      times.push(pair.ms);
      pair.close();
    }
    expect(Math.max(...times)).toBeLessThan(500);
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
