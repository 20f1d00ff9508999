/**
 * Bundles the compiled Noise layer (dist/transport/secure.js) with the
 * packages it imports (@chainsafe/libp2p-noise, @libp2p/*, uint8arrays…)
 * into that one file, in place. Node then loads one module where it loaded
 * a few hundred: measured on Node 24, 165 ms became about 40 ms, which is
 * what an agent's first visitor waited for (it loads Noise on demand).
 *
 * Beam's own modules stay imports (../shared/…), so BeamError and the
 * constants are the same objects inside and out. Run after tsc; running it
 * twice is harmless (a bundle bundles to itself).
 */
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const file = path.join(here, '..', 'dist', 'transport', 'secure.js');

await build({
  entryPoints: [file],
  outfile: `${file}.tmp`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [
    {
      name: 'beam-modules-stay-imports',
      setup(b) {
        // A relative import of Beam's own (not a package's, not the polyfill the bundle needs first) stays an import.
        // secure.js is the only module of Beam's the bundle takes in, and it sits where the bundle goes: its paths hold.
        b.onResolve({ filter: /^\.\.?\// }, (args) =>
          args.importer === file && args.path !== './polyfill.js' ? { path: args.path, external: true } : undefined,
        );
      },
    },
  ],
});
await rename(`${file}.tmp`, file);
// tsc's map describes the module before bundling.
await rm(`${file}.map`, { force: true });
