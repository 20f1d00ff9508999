/**
 * Raw node-datachannel request/response latency between two processes
 * (diagnostic). GAP_MS=<n> idles n ms between round trips: back to back, the
 * library's threads stay awake; after a pause each message wakes them again.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import ndc from 'node-datachannel';

import { type Msg, wire } from './raw-ndc.js';

const GAP_MS = Number(process.env['GAP_MS'] ?? 0);
if (process.argv[2] === 'echo') {
  if (process.env['SACK']) ndc.setSctpSettings({ delayedSackTime: Number(process.env['SACK']) });
  const pc = new ndc.PeerConnection('echo', { iceServers: [] });
  const apply = wire(pc, (m) => process.send!(m));
  process.on('message', (m: Msg) => apply(m));
  const keep: ndc.DataChannel[] = [];
  pc.onDataChannel((dc) => {
    keep.push(dc);
    const reply = Buffer.alloc(1100, 1);
    dc.onMessage(() => dc.sendMessageBinary(reply));
  });
} else {
  if (process.env['SACK']) ndc.setSctpSettings({ delayedSackTime: Number(process.env['SACK']) });
  const child = fork(fileURLToPath(import.meta.url), ['echo'], { env: process.env });
  const pc = new ndc.PeerConnection('c', { iceServers: [] });
  const apply = wire(pc, (m) => child.send(m));
  child.on('message', (m: Msg) => apply(m));
  const dc = pc.createDataChannel('pp');
  await new Promise<void>((r) => dc.onOpen(r));
  const req = Buffer.alloc(300, 2);
  for (const inflight of [1, 10]) {
    const times: number[] = [];
    let pending: Array<{ t0: number }> = [];
    let done = 0;
    const total = 2000;
    await new Promise<void>((resolve) => {
      dc.onMessage(() => {
        const p = pending.shift()!;
        times.push(performance.now() - p.t0);
        if (++done === total) resolve();
        else if (done + pending.length < total + 1) {
          const next = (): void => {
            pending.push({ t0: performance.now() });
            dc.sendMessageBinary(req);
          };
          // GAP_MS: idle between round trips, as a visitor's sequential requests are (threads go to sleep).
          if (GAP_MS > 0) setTimeout(next, GAP_MS);
          else next();
        }
      });
      for (let i = 0; i < inflight; i++) {
        pending.push({ t0: performance.now() });
        dc.sendMessageBinary(req);
      }
    });
    times.sort((a, b) => a - b);
    const started = times.length;
    console.log(
      `in flight ${inflight}: p50 ${times[started >> 1]!.toFixed(3)} ms, p99 ${times[Math.floor(started * 0.99)]!.toFixed(3)} ms, max ${times[started - 1]!.toFixed(1)}`,
    );
    pending = [];
  }
  child.kill();
  process.exit(0);
}
