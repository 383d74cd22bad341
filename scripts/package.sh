#!/usr/bin/env bash
# Builds the Debian package: out/micromodels_<version>_<arch>.deb, made by `cpack -G DEB` from a
# build of its own (build-deb/: no tests, -O2 and the other flags of scripts/test.sh's main build,
# so that a compiler cache serves it from that build; cpack strips the binaries) configured for /usr:
#   - the Python module in /usr/lib/python3/dist-packages, where Debian's python3 finds it;
#   - the models' cache at /var/cache/micromodels (or $MICROMODELS_CACHE), which the installed
#     micromodels-fetch-models fills.
#   scripts/package.sh            (BUILD_DIR=build-deb, BUILD_JOBS=one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build_dir=${BUILD_DIR:-build-deb}
generator=()
[[ -f $build_dir/CMakeCache.txt ]] || { command -v ninja >/dev/null && generator=(-G Ninja); }
launcher=()
if command -v ccache >/dev/null; then  # the objects of a main build with the same flags serve
  export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1  # as scripts/test.sh: build/ and build-deb/ share
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi

cmake -S . -B "$build_dir" "${generator[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DMICROMODELS_WERROR=ON \
  -DMICROMODELS_BUILD_TESTS=OFF -DMICROMODELS_BUILD_APPS=ON \
  -DCMAKE_INSTALL_PREFIX=/usr \
  -DMICROMODELS_PYTHON_INSTALL_DIR=lib/python3/dist-packages \
  -DMICROMODELS_DEFAULT_CACHE=/var/cache/micromodels >/dev/null
cmake --build "$build_dir" --parallel "${BUILD_JOBS:-$(nproc)}"
rm -rf "$root/out/package" && mkdir -p "$root/out/package"
(cd "$build_dir" && cpack -G DEB -B "$root/out/package" >"$root/out/package/cpack.log") ||
  { cat "$root/out/package/cpack.log"; exit 1; }
rm -f out/micromodels_*.deb
mv out/package/micromodels_*.deb out/
rm -rf out/package
deb=$(echo out/micromodels_*.deb)
echo "package: $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends
