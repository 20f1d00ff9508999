/**
 * V8 tuning for the processes that carry visitors' traffic over a network
 * channel: `beam serve`, an agent registered with a Beam server, `beam
 * connect`. Only the `beam` command sets it (bin/beam.js sets the flags that
 * hold for every process); the library leaves its host's V8 alone.
 */
import v8 from 'node:v8';

let set = false;

/**
 * On V8 13 and 14 (Node 24, 26), Maglev, V8's middle tier, compiled the
 * request path of a gateway and its agent so that their requests' objects
 * lived through scavenges: with no function compiled by it (they go from the
 * baseline tier straight to TurboFan) both processes spent 25–35 % less CPU
 * a request on their link, on the relay and on direct WebRTC alike, where
 * Node 22 (V8 12) showed no difference (docs/benchmarks.md, "Maglev on the
 * gateway's path"). The embedded default, whose gateway reaches its agent in
 * memory, gained nothing and would lose the faster warm-up: its first bulk
 * transfer runs about a quarter slower without Maglev, so it keeps it.
 *
 * A filter that no function passes, not `--no-maglev`: V8 reads the filter
 * at each decision to optimize, while turning Maglev off once the process
 * runs left functions waiting for a tier that no longer comes (twice the
 * CPU a request, measured).
 */
export function tierForNetwork(): void {
  if (set || Number(process.versions.v8.split('.')[0]) < 13) return;
  set = true;
  v8.setFlagsFromString('--maglev-filter=-*');
}
