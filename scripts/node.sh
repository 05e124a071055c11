#!/bin/sh
# Runs Node.js 22.18+ with the given arguments: the machine's node when it is new enough, otherwise
# Node 24 from the npm registry's node@24 package, installed once into .tools/node24 (git-ignored).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
local_node="$root/.tools/node24/node_modules/node/bin/node"

# NODE_OPTIONS is left out of the probe: an option node refuses there would read as a node too old.
new_enough() {
  NODE_OPTIONS= "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)' 2>/dev/null
}

if command -v node >/dev/null 2>&1 && new_enough node; then
  node_bin=node
else
  if ! [ -x "$local_node" ] || ! new_enough "$local_node"; then
    echo "agentgate: the machine's node is older than 22.18; installing Node 24 from the npm registry into .tools/node24" >&2
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$root/.tools/node24" node@24 >&2
  fi
  node_bin="$local_node"
fi
exec "$node_bin" "$@"
