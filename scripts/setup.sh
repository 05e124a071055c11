#!/bin/sh
# Everything `npm start` and `npm test` need on a fresh checkout: a new-enough Node, the dependencies, and the build.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sh scripts/node.sh -e '' # installs Node 24 locally when the machine's node is too old
if ! [ -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build
