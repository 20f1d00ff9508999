#!/usr/bin/env bash
# Prints the bin folder of a Node line's binary (22, 24, 26...), or of one
# release (22.11.0), fetched once from the npm registry's `node` package into
# a cache folder ($BEAM_NODE_CACHE, else $TMPDIR/beam-node) and reused after.
# CI's machine runs Node 20 (end of life); Beam supports 22, 24 and 26, so the
# suite and the packed tarball run on those (.ci/test, .ci/pack-smoke.mjs),
# and the packed tarball on the first release of 22's long-term support too.
set -euo pipefail
want="${1:?usage: .ci/node.sh <line, e.g. 26, or a release, e.g. 22.11.0>}"
case "$want" in
  *[!0-9.]* | .* | *. | *..*) echo "not a Node line or release: $want" >&2; exit 2 ;;
esac
dir="${BEAM_NODE_CACHE:-${TMPDIR:-/tmp}/beam-node}/$want"
bin="$dir/node_modules/node/bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$dir"
  printf '{"name":"node%s","private":true}\n' "${want//./-}" > "$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "node@$want" >&2
fi
# A line names the major version; a release, the whole of it.
got="$("$bin/node" -p 'process.versions.node')"
case "$want" in
  *.*) [ "$got" = "$want" ] ;;
  *) [ "${got%%.*}" = "$want" ] ;;
esac || {
  echo "node@$want brought Node $got, not $want" >&2
  exit 1
}
echo "$bin"
