/**
 * Bundles the compiled Noise layer and identity (dist/transport/secure.js
 * and identity.js) with the packages they import (@chainsafe/libp2p-noise,
 * @libp2p/crypto, @libp2p/peer-id, uint8arrays…), in place: each stays one
 * module, and what both use goes into a chunk beside them. Node then loads
 * three modules where it loaded a few hundred: an agent loads both for its
 * first visitor, and importing Noise alone took 165 ms on Node 24 (about 40
 * ms bundled).
 *
 * Beam's own modules stay imports (../shared/…, ./config-dir.js), so
 * BeamError and the constants are the same objects inside and out. Run
 * after tsc; running it twice is harmless (a bundle bundles to itself).
 */
import { readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(here, '..', 'dist', 'transport');
const entries = ['secure.js', 'identity.js'].map((name) => path.join(dir, name));
const CHUNK_PREFIX = 'bundled-';
const staging = path.join(dir, '.bundle');

await rm(staging, { recursive: true, force: true });
await build({
  entryPoints: entries,
  outdir: staging,
  bundle: true,
  splitting: true,
  chunkNames: `${CHUNK_PREFIX}[hash]`,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  legalComments: 'none',
  logLevel: 'warning',
  plugins: [
    {
      name: 'beam-modules-stay-imports',
      setup(b) {
        // Beam's modules the entries import stay imports, but the polyfill, which the packages need first. The
        // entries sit where their bundles go (and the chunks beside them): the relative paths hold.
        b.onResolve({ filter: /^\.\.?\// }, (args) =>
          entries.includes(args.importer) && args.path !== './polyfill.js' ? { path: args.path, external: true } : undefined,
        );
      },
    },
  ],
});
// The last build's chunks go; the new ones and the entries take their places.
for (const name of await readdir(dir)) if (name.startsWith(CHUNK_PREFIX)) await rm(path.join(dir, name));
for (const name of await readdir(staging)) await rename(path.join(staging, name), path.join(dir, name));
await rm(staging, { recursive: true, force: true });
// tsc's maps describe the modules before bundling.
for (const file of entries) await rm(`${file}.map`, { force: true });
