#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and fuzzes the packet codec for a
# bounded time. Fails if the fuzzer finds a crash, leak, sanitizer report or timeout.
#
#   scripts/fuzz.sh                  # 30 s
#   FUZZ_SECONDS=600 scripts/fuzz.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${FUZZ_SECONDS:-30}"

# libFuzzer's runtime ships in this package on Debian/Ubuntu.
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s libclang-rt-14-dev >/dev/null 2>&1; then
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get install -y libclang-rt-14-dev
fi

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMICROMODELS_FUZZ=ON \
  -DMICROMODELS_BUILD_VISION=OFF \
  -DMICROMODELS_BUILD_APPS=OFF \
  -DMICROMODELS_BUILD_TESTS=OFF
cmake --build "$build" --target packet_codec_fuzz packet_codec_seeds

seeds="$build/fuzz/seeds/packet_codec"
corpus="$build/fuzz/corpus/packet_codec"   # grows across runs; new inputs land here
artifacts="$build/fuzz/artifacts/"
mkdir -p "$corpus" "$artifacts"
"$build/tests/fuzz/packet_codec_seeds" "$seeds"

# libFuzzer exits non-zero on a finding and writes the input to $artifacts; set -e fails the script.
"$build/tests/fuzz/packet_codec_fuzz" "$corpus" "$seeds" \
  -max_total_time="$seconds" \
  -max_len=4096 \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -artifact_prefix="$artifacts" \
  -print_final_stats=1
echo "fuzz: packet_codec ran ${seconds}s without findings"
