/**
 * Bundles the compiled Noise layer, identity and the libp2p backend
 * (dist/transport/secure.js, identity.js and libp2p.js) with the packages
 * they import (@chainsafe/libp2p-noise, @libp2p/crypto, @libp2p/peer-id,
 * libp2p, @libp2p/webrtc, uint8arrays…), in place: each stays one module,
 * and what they share goes into chunks beside them, so a key made by
 * identity.js is the same kind of object libp2p.js takes. Node then loads a
 * few modules where it loaded hundreds: an agent loads Noise and its key for
 * its first visitor (Noise alone took 165 ms on Node 24, about 40 ms
 * bundled), and `--via libp2p` loaded the libp2p stack in 520 ms on Node 20
 * (74 ms bundled).
 *
 * Beam's own modules stay imports (../shared/…, ./config-dir.js, ./ndc.js),
 * so BeamError and the constants are the same objects inside and out; so
 * does node-datachannel, whose native module loads from its package. Run
 * after tsc: entries already bundled are left as they are.
 */
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(here, '..', 'dist', 'transport');
const entries = ['secure.js', 'identity.js', 'libp2p.js'].map((name) => path.join(dir, name));
const CHUNK_PREFIX = 'bundled-';
const staging = path.join(dir, '.bundle');

// Bundled already (tsc has not run since): their chunks are in place.
const sources = await Promise.all(entries.map((file) => readFile(file, 'utf8')));
if (sources.some((text) => text.includes(`./${CHUNK_PREFIX}`))) process.exit(0);
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
  // Native: node-datachannel loads its .node file from its own package.
  external: ['node-datachannel', 'node-datachannel/*'],
  plugins: [
    {
      name: 'beam-modules-stay-imports',
      setup(b) {
        // Beam's modules the entries import stay imports, but the polyfill, which the packages need first, and
        // Noise's crypto, which is libp2p-noise's own with one change (in with it, it loads no second copy). The
        // entries sit where their bundles go (and the chunks beside them): the relative paths hold.
        const bundled = new Set(['./polyfill.js', './noise-crypto.js']);
        b.onResolve({ filter: /^\.\.?\// }, (args) =>
          entries.includes(args.importer) && !bundled.has(args.path) ? { path: args.path, external: true } : undefined,
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
