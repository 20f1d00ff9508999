#!/usr/bin/env node
// Runs the compiled CLI; `npm install` builds it (the prepare script).
import module from 'node:module';

// Node 22.1 and later keep the code they compiled for Beam's modules on disk
// (the OS's temporary folder), so every start after the first skips most of
// the parsing: `beam` prints its link sooner, and its first visitor's
// handshake pays less for loading Noise. NODE_DISABLE_COMPILE_CACHE=1 turns
// it off. Node 20 has no such cache.
module.enableCompileCache?.();

import('../dist/cli/main.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('Beam is not built yet: run `npm install` (or `npm run build`) in its folder first.');
    process.exit(1);
  }
  throw err;
});
