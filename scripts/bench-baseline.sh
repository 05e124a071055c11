#!/bin/sh
# Builds another commit of agentgate in a folder of its own, for `npm run bench -- --baseline DIR` (the old build that
# the paired runs compare this checkout's dist/ with; see docs/performance.md). Prints DIR, and only DIR, on stdout.
#
#   sh scripts/bench-baseline.sh REF [DIR]      DIR defaults to /tmp/agentgate-baseline-<short sha>
#
# Read-only on this repository: the commit's files come out of `git archive`; no checkout, worktree or stash, so
# whoever is working in this checkout is not disturbed. Running it again for the same commit reuses the build.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: sh scripts/bench-baseline.sh REF [DIR]" >&2
  exit 2
fi
if ! sha=$(git -C "$root" rev-parse --verify --quiet "$1^{commit}"); then
  echo "bench-baseline: '$1' is not a commit of $root" >&2
  exit 2
fi
short=$(git -C "$root" rev-parse --short "$sha")
dir=${2:-/tmp/agentgate-baseline-$short}
case $dir in /*) ;; *) dir="$PWD/$dir" ;; esac

# The marker is written last, so a folder that has it holds a finished build of that very commit.
if [ -f "$dir/dist/cli.js" ] && [ "$(cat "$dir/.baseline-commit" 2>/dev/null)" = "$sha" ]; then
  echo "bench-baseline: $dir already holds a build of $short" >&2
  echo "$dir"
  exit 0
fi
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  echo "bench-baseline: $dir exists and is not a finished build of $short: remove it or give another DIR" >&2
  exit 2
fi
mkdir -p "$dir"
# A failed build leaves no half-built folder that a later run would have to refuse.
trap 'rm -rf "$dir"' EXIT
echo "bench-baseline: $short into $dir" >&2
git -C "$root" archive "$sha" | tar -x -C "$dir"

# Node 24: .tools/ is git-ignored, so the archive has none; the baseline's scripts/node.sh finds this checkout's
# (when the machine's node is too old) through a link instead of downloading it again.
if [ -d "$root/.tools" ]; then
  ln -s "$root/.tools" "$dir/.tools"
fi
# Dependencies from the npm cache when it has them (the baseline's package-lock.json pins them), then the build.
cd "$dir"
if [ -f scripts/setup.sh ]; then
  npm_config_prefer_offline=true sh scripts/setup.sh >&2
else
  npm_config_prefer_offline=true npm ci --no-audit --no-fund --loglevel=error >&2
  npm run --silent build >&2
fi
if ! [ -f dist/cli.js ]; then
  echo "bench-baseline: the build of $short did not produce dist/cli.js" >&2
  exit 1
fi
echo "$sha" >.baseline-commit
trap - EXIT
echo "$dir"
