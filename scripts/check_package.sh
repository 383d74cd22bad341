#!/usr/bin/env bash
# Checks the installed package as a user sees it: installs build/ into a temporary prefix, then
# configures, builds and runs tests/package (a separate project) against it with find_package.
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
echo "check_package: ok"
