#!/usr/bin/env node
// Runs the compiled CLI; `npm install` builds it (the prepare script).
import module from 'node:module';
import v8 from 'node:v8';

// Node 24's V8 (13.6) raised the young generation's cap from 8 to 32 MB, which
// also moved the point where V8 scavenges young Buffers above the one where it
// starts a full mark-compact for external memory: short-lived Buffers (every
// chunk Beam relays) are collected by full GCs (nodejs/node#61967), a fifth of
// a relaying agent's and server's CPU. On V8 13 its own flag puts the cap back
// where Node 22 has it; Node 26's V8 (14) has no such flag, and counting
// external memory in its global limits (as V8 itself does by default since)
// takes most of the full GCs away there.
const v8Major = Number(process.versions.v8.split('.')[0]);
if (v8Major === 13) v8.setFlagsFromString('--scavenger-max-new-space-capacity-mb=8');
else if (v8Major === 14) v8.setFlagsFromString('--external-memory-accounted-in-global-limit');
// On V8 13 and 14 (Node 24, 26) allocation-site pretenuring put the objects
// of Beam's requests (the visitor's request, its streams, the origin's
// answer) straight into the old generation once a few had lived through a
// scavenge: each scavenge then found about 3 MB alive through them, moved it,
// and full collections came every 2 s, where on Node 22 nearly nothing
// survived. Without it the embedded default spent half the time collecting
// (docs/benchmarks.md, "The old generation on Node 24 and 26").
if (v8Major >= 13) v8.setFlagsFromString('--no-allocation-site-pretenuring');

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
