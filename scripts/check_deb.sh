#!/usr/bin/env bash
# Checks the Debian package on a clean bookworm system: on a throw-away overlay of the cached
# debootstrap root (scripts/bookworm_root.sh), `apt-get install ./micromodels_*.deb` (apt fetches
# what it depends on from the mirror), then, with nothing of the build around:
#   micromodels --version and types (the vision, Redis and Python stage types are there);
#   python3 -c "import micromodels" from /usr/lib/python3/dist-packages;
#   a run of the installed pipelines/example.yaml, and one with a stage written in Python.
#   scripts/check_deb.sh [DEB]       (default: out/micromodels_*.deb, made by scripts/package.sh)
# The packages apt downloads are kept beside the clean root (~/.cache/micromodels/rootfs/
# apt-archives, or $MICROMODELS_ROOTFS/apt-archives), so that a second run needs the mirror only
# for `apt-get update`. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/overlay_root.sh
source scripts/overlay_root.sh

shopt -s nullglob
made=(out/micromodels_*.deb)  # scripts/package.sh leaves one there
shopt -u nullglob
deb=${1:-${made[0]:-}}
[[ -n $deb && -f $deb ]] ||
  { echo "check_deb: no package ${1:-out/micromodels_*.deb}; make it with scripts/package.sh" >&2; exit 1; }
clean=$(scripts/bookworm_root.sh)

work=$(mktemp -d /tmp/micromodels-deb.XXXXXX)
trap overlay_root_down EXIT
overlay_root_up "$clean" "$work" "$(dirname "$clean")/apt-archives"

fail() { echo "check_deb: $*" >&2; exit 1; }

echo "check_deb: apt-get install ./$(basename "$deb") on a clean bookworm ($clean)"
cp "$deb" "$overlay_root/tmp/"
start=$(date +%s)
in_root apt-get update -q >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get update failed"; }
in_root sh -c "cd /tmp && apt-get install -y -q ./$(basename "$deb")" >>"$work/apt.log" 2>&1 ||
  { tail -n 40 "$work/apt.log"; fail "apt-get install ./$(basename "$deb") failed"; }
grep -E '^(Need to get|[0-9]+ upgraded)' "$work/apt.log" || true
echo "check_deb: installed in $(($(date +%s) - start)) s"

# Nothing from the build: the tool and the module are the package's.
[[ $(in_root sh -c 'command -v micromodels') == /usr/bin/micromodels ]] ||
  fail "micromodels is not /usr/bin/micromodels"
in_root micromodels --version
in_root micromodels types >"$work/types.txt" || { cat "$work/types.txt"; fail "micromodels types failed"; }
awk '{print $1}' "$work/types.txt" >"$work/type-names.txt"
for type in synthetic.source sink.jsonl video.source face.detect gaze.estimate python; do
  grep -qxF -- "$type" "$work/type-names.txt" ||
    { cat "$work/types.txt"; fail "micromodels types lists no $type"; }
done
echo "check_deb: micromodels types lists $(wc -l <"$work/type-names.txt") types, the vision and python ones among them"

in_root python3 -c 'import micromodels; print("check_deb: import micromodels from", micromodels.__file__)' |
  tee "$work/import.txt"
grep -q '/usr/lib/python3/dist-packages/' "$work/import.txt" ||
  fail "the module did not come from /usr/lib/python3/dist-packages"

# A run of an installed pipeline, and one with a stage written in Python.
in_root micromodels run /usr/share/micromodels/pipelines/example.yaml --quiet \
  --set source.count=200 --set work.service_ms=0 --set sink.path=/tmp/example.jsonl \
  >"$work/run.log" 2>&1 || { cat "$work/run.log"; fail "micromodels run of example.yaml failed"; }
lines=$(wc -l <"$overlay_root/tmp/example.jsonl")
[[ $lines -eq 200 ]] || fail "pipelines/example.yaml wrote $lines packets, expected 200"
cp tests/package/doubling.py "$overlay_root/tmp/doubling.py"
cat >"$overlay_root/tmp/doubling.yaml" <<'YAML'
pipeline: doubling
stages:
  - { name: source, type: synthetic.source, params: { count: 50 } }
  - { name: double, type: python, params: { module: doubling, class: Double, path: /tmp } }
  - { name: sink, type: sink.jsonl, ordered: true, params: { path: /tmp/doubling.jsonl } }
YAML
in_root micromodels run /tmp/doubling.yaml --quiet >"$work/run.log" 2>&1 ||
  { cat "$work/run.log"; fail "micromodels run with a Python stage failed"; }
doubled=$(grep -c '"double":' "$overlay_root/tmp/doubling.jsonl" || true)
[[ $doubled -eq 50 ]] || fail "the Python stage doubled $doubled packets, expected 50"
echo "check_deb: ok: $(basename "$deb") installs on a clean bookworm; the tool ran 200 packets and a Python stage 50"
