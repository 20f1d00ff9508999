/**
 * Builds the browser client (page.ts, sw.ts) into dist/browser-client/assets
 * with esbuild, and prints what each weighs gzipped. The shared code is
 * bundled as it is: Node modules it imports are mapped to browser stand-ins
 * (shims/), and Node globals come from shims/globals.ts.
 */

import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

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

/** string_decoder (readable-stream asks for it as 'string_decoder/') out: a TextDecoder stand-in (shims/string-decoder.cjs). */
const stringDecoder = {
  name: 'string-decoder',
  setup(b) {
    b.onResolve({ filter: /^string_decoder\/?$/ }, () => ({ path: shim('string-decoder.cjs') }));
  },
};

/**
 * The page reaches signaling over WebSocket only (transport/signaling-client.ts
 * asks for no other transport): engine.io-client's table of transports keeps
 * just that one, and long-polling and WebTransport stay out of the bundle.
 */
const websocketOnly = {
  name: 'websocket-only',
  setup(b) {
    b.onLoad({ filter: /engine\.io-client[\\/]build[\\/]esm[\\/]transports[\\/]index\.js$/ }, (args) => ({
      contents: 'import { WS } from "./websocket.js";\nexport const transports = { websocket: WS };\n',
      loader: 'js',
      resolveDir: path.dirname(args.path),
    }));
    // The polling transport's module registers an unload handler when loaded, which keeps it in the bundle: it goes too.
    b.onLoad({ filter: /engine\.io-client[\\/]build[\\/]esm[\\/]transports[\\/]polling-xhr\.js$/ }, () => ({
      contents: 'export class BaseXHR {}\nexport class Request {}\nexport class XHR {}\n',
      loader: 'js',
    }));
  },
};

/**
 * A page only visits: the agent's end of the server backend
 * (transport/server-listen.ts, which transport/server-backend.ts loads on
 * demand) is a stand-in that refuses. Bundled, the code it shares with the
 * page would split page.js into chunks that compress worse.
 */
const visitorOnly = {
  name: 'visitor-only',
  setup(b) {
    b.onResolve({ filter: /^\.\/server-listen\.js$/ }, (args) =>
      args.importer.endsWith(path.join('transport', 'server-backend.ts')) ? { path: shim('server-listen.ts') } : undefined,
    );
  },
};

/**
 * readable-stream's async iterator (`for await` over a stream) out: the
 * page reads its streams with events (page.ts, readWhole), and the iterator
 * weighed 1 KiB gzipped of what every visitor loads. Asked for anyway, it
 * throws and says why.
 */
const noStreamIterator = {
  name: 'no-stream-iterator',
  setup(b) {
    b.onLoad({ filter: /readable-stream-3[\\/]lib[\\/]internal[\\/]streams[\\/]async_iterator\.js$/ }, () => ({
      contents:
        'module.exports = function () { throw new Error("for await over a stream is left out of the page (browser-client/build.mjs): read it with events"); };\n',
      loader: 'js',
    }));
  },
};

/**
 * ieee754 (the Buffer stand-in's float and double reads and writes) out:
 * nothing in the page or its chunks reads or writes one. Asked for anyway,
 * it throws and says why.
 */
const noFloats = {
  name: 'no-floats',
  setup(b) {
    b.onResolve({ filter: /^ieee754$/ }, () => ({ path: 'ieee754', namespace: 'no-floats' }));
    b.onLoad({ filter: /.*/, namespace: 'no-floats' }, () => ({
      contents: 'exports.read = exports.write = function () { throw new Error("Buffer floats are left out of the page (browser-client/build.mjs)"); };\n',
      loader: 'js',
    }));
  },
};

/** Noise's node:crypto cipher (transport/noise-crypto.ts) out: libp2p-noise's browser build has its own (shims/noise-crypto.ts). */
const browserNoise = {
  name: 'browser-noise',
  setup(b) {
    b.onResolve({ filter: /^\.\/noise-crypto\.js$/ }, (args) =>
      args.importer.endsWith(path.join('transport', 'secure.ts')) ? { path: shim('noise-crypto.ts') } : undefined,
    );
  },
};

// Chunk names change with their contents: old ones must not linger.
await rm(out, { recursive: true, force: true });
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
  // What only Node runs drops out of the page (transport/session.ts).
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis', 'globalThis.__BEAM_PAGE__': 'true' },
  alias: {
    'node:stream': shim('stream.cjs'),
    stream: shim('stream.cjs'),
    'node:events': 'events',
    events: 'events',
    buffer: 'buffer',
    'node:crypto': shim('crypto.ts'),
    'node:fs/promises': shim('empty.ts'),
    'node:os': shim('empty.ts'),
    'node:path': shim('empty.ts'),
    ws: shim('ws.ts'),
    '@libp2p/logger': shim('logger.ts'),
  },
};
// The app shim (WebSockets, the app's own worker) runs first in the app's pages: the page fetches it as it starts and
// puts it into each HTML page it hands the frame; the gateway, into a first stage's document (gateway/first-stage.ts).
const shimBuild = await build({ ...common, entryPoints: [path.join(here, 'app-shim.ts')], write: false, outdir: undefined, outfile: 'app-shim.js' });
await writeFile(path.join(out, 'app-shim.js'), `${shimBuild.outputFiles[0].text.trim()}\n`);
// The loader goes before it in a top-level first document (`beam serve --browser-first-load top`, browser-client/loader.ts).
const loaderBuild = await build({ ...common, entryPoints: [path.join(here, 'loader.ts')], write: false, outdir: undefined, outfile: 'loader.js' });
await writeFile(path.join(out, 'loader.js'), `${loaderBuild.outputFiles[0].text.trim()}\n`);
// ESM with splitting: what only the relay needs (Noise, the libp2p keys:
// transport/session.ts imports them on demand) becomes a chunk the page
// loads when it first falls back to the relay; the direct path never does.
const page = await build({
  ...common,
  format: 'esm',
  splitting: true,
  chunkNames: 'chunk-[hash]',
  metafile: true,
  entryPoints: { page: path.join(here, 'page.ts') },
  inject: [shim('globals.ts')],
  plugins: [ed25519Only, stringDecoder, websocketOnly, visitorOnly, browserNoise, noStreamIterator, noFloats],
});
// The worker needs no Node stand-ins: it only passes messages. sw-top.js, served as sw.js by `beam serve
// --browser-first-load top`, also carries a form's top-level POST (sw.ts).
await build({ ...common, entryPoints: { sw: path.join(here, 'sw.ts') }, define: { ...common.define, __BEAM_TOP__: 'false' } });
await build({ ...common, entryPoints: { 'sw-top': path.join(here, 'sw.ts') }, define: { ...common.define, __BEAM_TOP__: 'true' } });
// What every visitor loads (the bootstrap, its script and what that imports, the worker), then what loads on demand.
const upfront = new Set(['bootstrap.html', 'sw.js']);
const visit = (file) => {
  const name = path.basename(file);
  if (upfront.has(name)) return;
  upfront.add(name);
  for (const i of page.metafile.outputs[file]?.imports ?? []) if (i.kind === 'import-statement') visit(i.path);
};
visit(Object.keys(page.metafile.outputs).find((f) => path.basename(f) === 'page.js'));
// Every visitor loads the bootstrap: its comments (HTML ones, and whole-line ones in its inline scripts) stay in the source.
const bootstrap = (await readFile(path.join(here, 'bootstrap.html'), 'utf8'))
  .replace(/<!--[\s\S]*?-->\n?/g, '')
  .replace(/^\s*\/\/ .*\n/gm, '')
  // The chunks page.js imports, for the bootstrap to preload when no first stage goes ahead of them.
  .replace(
    "'__BEAM_CHUNKS__'",
    [...upfront]
      .filter((n) => n.startsWith('chunk-'))
      .map((n) => `'${n}'`)
      .join(', '),
  );
await writeFile(path.join(out, 'bootstrap.html'), bootstrap);
const sizes = {};
const files = (await readdir(out)).filter((n) => n.endsWith('.js') || n.endsWith('.html'));
for (const name of files.sort((a, b) => Number(upfront.has(b)) - Number(upfront.has(a)) || a.localeCompare(b))) {
  const bytes = await readFile(path.join(out, name));
  sizes[name] = { bytes: bytes.byteLength, gzip: gzipSync(bytes, { level: 9 }).byteLength, onDemand: !upfront.has(name) };
}
await writeFile(path.join(out, 'sizes.json'), `${JSON.stringify(sizes, null, 2)}\n`);
if (process.argv.includes('--sizes')) {
  const kib = (n) => (n / 1024).toFixed(1).padStart(7);
  for (const [name, s] of Object.entries(sizes))
    console.log(`${name.padEnd(24)} ${kib(s.bytes)} KiB  ${kib(s.gzip)} KiB gzipped${s.onDemand ? '  (on demand)' : ''}`);
  const sum = (onDemand) =>
    Object.values(sizes)
      .filter((s) => s.onDemand === onDemand)
      .reduce((n, s) => n + s.gzip, 0);
  console.log(`${'every visitor'.padEnd(24)} ${' '.repeat(12)}${kib(sum(false))} KiB gzipped`);
  console.log(`${'relay fallback adds'.padEnd(24)} ${' '.repeat(12)}${kib(sum(true))} KiB gzipped`);
}
if (process.argv.includes('--weights')) {
  // What weighs most in each output of the page, by package (minified bytes).
  for (const [outName, output] of Object.entries(page.metafile.outputs)) {
    if (!outName.endsWith('.js')) continue;
    const by = {};
    for (const [file, { bytesInOutput }] of Object.entries(output.inputs)) {
      const key = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ?? file;
      by[key] = (by[key] ?? 0) + bytesInOutput;
    }
    console.log(path.basename(outName));
    for (const [key, bytes] of Object.entries(by)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 15))
      console.log(`${(bytes / 1024).toFixed(1).padStart(9)} KiB  ${key}`);
  }
}
