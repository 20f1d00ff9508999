#!/usr/bin/env bash
# Prints the bin folder of a Node line's binary (22, 24, 26...), fetched once
# from the npm registry's `node` package into a cache folder
# ($BEAM_NODE_CACHE, else $TMPDIR/beam-node) and reused after. CI's machine
# runs Node 20 (end of life); Beam supports 22, 24 and 26, so the suite and
# the packed tarball run on those (.ci/test, .ci/pack-smoke.mjs).
set -euo pipefail
line="${1:?usage: .ci/node.sh <line, e.g. 26>}"
case "$line" in *[!0-9]*) echo "not a Node line: $line" >&2; exit 2 ;; esac
dir="${BEAM_NODE_CACHE:-${TMPDIR:-/tmp}/beam-node}/$line"
bin="$dir/node_modules/node/bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$dir"
  printf '{"name":"node%s","private":true}\n' "$line" > "$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "node@$line" >&2
fi
if [ "$("$bin/node" -p 'process.versions.node.split(".")[0]')" != "$line" ]; then
  echo "node@$line brought no Node $line binary" >&2
  exit 1
fi
echo "$bin"
