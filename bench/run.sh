#!/usr/bin/env bash
# `npm run bench` after its build: every bench on a Node line Beam supports,
# as the suite runs (.ci/test). The machine's own Node when it is 22 or
# later; else Node $BEAM_BENCH_NODE (26 unless told), fetched from the npm
# registry (.ci/node.sh). BEAM_BENCH_NODE=<line> picks the line on any
# machine. localtunnel's server loads with `-r esm`, which Node 24 and later
# refuse, so it keeps the machine's Node unless LT_NODE names another.
set -euo pipefail
cd "$(dirname "$0")/.."
line="${BEAM_BENCH_NODE:-}"
if [ -z "$line" ] && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ]; then
  exec node dist/bench/all.js "$@"
fi
bin="$(bash .ci/node.sh "${line:-26}")"
export LT_NODE="${LT_NODE:-$(command -v node)}"
echo "benches on Node $("$bin/node" --version) (this machine's node is $(node --version); localtunnel on $("$LT_NODE" --version))"
PATH="$bin:$PATH" exec node dist/bench/all.js "$@"
