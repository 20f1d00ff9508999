/**
 * Builds the browser client (page.ts, sw.ts) into dist/browser-client/assets
 * with esbuild, and prints what each weighs gzipped. The shared code is
 * bundled as it is: Node modules it imports are mapped to browser stand-ins
 * (shims/), and Node globals come from shims/globals.ts.
 */
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', 'dist', 'browser-client', 'assets');
const shim = (name) => path.join(here, 'shims', name);

/** @libp2p/crypto's RSA, ECDSA and secp256k1 keys out: Beam uses Ed25519 only (shims/libp2p-keys.ts). */
const ed25519Only = {
  name: 'ed25519-only',
  setup(b) {
    b.onResolve({ filter: /^\.\/(rsa|ecdsa|secp256k1)\// }, (args) =>
      args.importer.endsWith(path.join('@libp2p', 'crypto', 'dist', 'src', 'keys', 'index.js')) ? { path: shim('libp2p-keys.ts') } : undefined,
    );
  },
};

await mkdir(out, { recursive: true });
const common = {
  outdir: out,
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome100', 'firefox100', 'safari16'],
  legalComments: 'none',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  alias: {
    'node:stream': 'readable-stream',
    stream: 'readable-stream',
    'node:events': 'events',
    'node:crypto': shim('crypto.ts'),
    'node:fs/promises': shim('empty.ts'),
    'node:os': shim('empty.ts'),
    'node:path': shim('empty.ts'),
    ws: shim('ws.ts'),
    '@libp2p/logger': shim('logger.ts'),
  },
};
// The app shim (WebSockets, the app's own worker) runs in the app's pages, inlined by the page: built first, as a string.
const shimBuild = await build({ ...common, entryPoints: [path.join(here, 'app-shim.ts')], write: false, outdir: undefined, outfile: 'app-shim.js' });
const appShim = shimBuild.outputFiles[0].text.trim();
const page = await build({
  ...common,
  metafile: true,
  entryPoints: { page: path.join(here, 'page.ts') },
  inject: [shim('globals.ts')],
  plugins: [ed25519Only],
  define: { ...common.define, __BEAM_APP_SHIM__: JSON.stringify(appShim) },
});
// The worker needs no Node stand-ins: it only passes messages.
await build({ ...common, entryPoints: { sw: path.join(here, 'sw.ts') } });
await copyFile(path.join(here, 'bootstrap.html'), path.join(out, 'bootstrap.html'));
const sizes = {};
for (const name of ['page.js', 'sw.js', 'bootstrap.html']) {
  const bytes = await readFile(path.join(out, name));
  sizes[name] = { bytes: bytes.byteLength, gzip: gzipSync(bytes, { level: 9 }).byteLength };
}
await writeFile(path.join(out, 'sizes.json'), `${JSON.stringify(sizes, null, 2)}\n`);
if (process.argv.includes('--sizes')) {
  for (const [name, s] of Object.entries(sizes)) console.log(`${name.padEnd(16)} ${(s.bytes / 1024).toFixed(1).padStart(7)} KiB  ${(s.gzip / 1024).toFixed(1).padStart(6)} KiB gzipped`);
}
if (process.argv.includes('--weights')) {
  // What weighs most in page.js, by package (minified bytes).
  const by = {};
  for (const output of Object.values(page.metafile.outputs)) {
    for (const [file, { bytesInOutput }] of Object.entries(output.inputs)) {
      const key = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ?? file;
      by[key] = (by[key] ?? 0) + bytesInOutput;
    }
  }
  for (const [key, bytes] of Object.entries(by).sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${(bytes / 1024).toFixed(1).padStart(7)} KiB  ${key}`);
}
