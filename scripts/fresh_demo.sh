#!/usr/bin/env bash
# Times the README's demo command (scripts/demo.sh) as a new user meets it: on a fresh bookworm
# system (a throw-away overlay of scripts/bookworm_root.sh, nothing installed, no apt or npm
# cache), with the repository's committed tree (git archive HEAD) in /root/micromodels.
# Everything is fetched from the mirrors as on a new machine. Prints the demo's own split
# (packages, models, build, run, eval), the total and the machine's load.
#   scripts/fresh_demo.sh            (keeps the demo's output in out/fresh-demo/)
# Needs root and git; takes the demo's time (about ten minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/overlay_root.sh
source scripts/overlay_root.sh

clean=$(scripts/bookworm_root.sh)
work=$(mktemp -d /tmp/micromodels-fresh-demo.XXXXXX)
trap overlay_root_down EXIT
overlay_root_up "$clean" "$work"

mkdir -p "$overlay_root/root/micromodels"
git archive HEAD | tar -x -C "$overlay_root/root/micromodels"
echo "fresh_demo: $(git rev-parse --short HEAD) on a fresh bookworm; load before: $(uptime)"
start=$(date +%s)
status=0
in_root bash -c 'cd /root/micromodels && scripts/demo.sh' 2>&1 | tee "$work/demo.log" || status=$?
total=$(($(date +%s) - start))
echo "fresh_demo: load after: $(uptime)"
mkdir -p out/fresh-demo
cp "$work/demo.log" out/fresh-demo/
cp -r "$overlay_root/root/micromodels/out/." out/fresh-demo/ 2>/dev/null || true
echo "fresh_demo: $(grep '^demo: ' "$work/demo.log" | tail -n 1 | cut -c7-); total ${total}s" \
  "($((total / 60))m$(printf '%02d' $((total % 60)))s), exit $status"
exit "$status"
