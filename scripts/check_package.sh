#!/usr/bin/env bash
# Checks the installed package as a user sees it: installs build/ into a temporary prefix, then
# configures, builds and runs tests/package (a separate project) against it with find_package,
# and builds examples/plugin (a plugin, with micromodels_add_plugin) against it and runs it with
# the installed `micromodels run --plugin`.
#   scripts/check_package.sh [BUILD_DIR]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${1:-build}
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  echo "check_package: $build_dir is not a configured build; run scripts/test.sh quick first" >&2
  exit 1
fi

work=$(mktemp -d /tmp/micromodels-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

echo "check_package: installing $build_dir into $prefix"
cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; exit 1; }
echo "check_package: configuring tests/package against it"
cmake -S tests/package -B "$work/consumer" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix"
cmake --build "$work/consumer"
"$work/consumer/consumer"

echo "check_package: building examples/plugin against it"
cmake -S examples/plugin -B "$work/plugin" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix"
cmake --build "$work/plugin"
plugin=$work/plugin/libexample_label.so
"$prefix/bin/micromodels" types example.label --plugin "$plugin"
"$prefix/bin/micromodels" run examples/plugin/label.yaml --plugin "$plugin" --quiet \
  --set sink.path="$work/labels.jsonl"
labels=$(grep -o '"label":"[^"]*"' "$work/labels.jsonl" | tr -d '"' | tr '\n' ' ')
expected=$(for n in $(seq 0 11); do printf 'label:frame-%s ' "$n"; done)
if [[ "$labels" != "$expected" ]]; then
  echo "check_package: the plugin's labels are '$labels', expected '$expected'" >&2
  exit 1
fi
echo "check_package: the plugin labelled 12 packets in order"

# The Python module, when the build has one: importable from where it was installed, and it runs
# a pipeline with a stage written in Python.
module=$(find "$prefix" -name 'micromodels*.so' -path '*-packages/*' | head -n 1)
if [[ -n $module ]]; then
  python=$(sed -n 's/^Python3_EXECUTABLE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
  echo "check_package: running the installed Python module ($module) with $python"
  cp tests/package/doubling.py "$work/doubling.py"
  PYTHONPATH=$(dirname "$module") "$python" - "$work" <<'PY'
import sys
import micromodels

pipeline = micromodels.Pipeline.from_yaml_string(f"""
pipeline: installed
stages:
  - {{ name: source, type: synthetic.source, params: {{ count: 20 }} }}
  - {{ name: double, type: python, params: {{ module: doubling, class: Double, path: {sys.argv[1]} }} }}
""")
metrics = micromodels.run(pipeline)
assert metrics.stage("double").processed == 20, metrics.to_table()
print("check_package: the Python module ran", metrics.packets_out, "packets")
PY
fi
echo "check_package: ok"
