#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ and fuzzes each for a bounded time:
# the packet codec, the pipeline YAML reader, and the reading of a Redis stream entry. Fails if a
# fuzzer finds a crash, leak, sanitizer report or timeout.
#
#   scripts/fuzz.sh                  # 30 s per target
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
cmake --build "$build" --target packet_codec_fuzz redis_entry_fuzz yaml_pipeline_fuzz \
  packet_codec_seeds

artifacts="$build/fuzz/artifacts/"
mkdir -p "$artifacts"
"$build/tests/fuzz/packet_codec_seeds" "$build/fuzz/seeds/packet_codec"
"$build/tests/fuzz/packet_codec_seeds" "$build/fuzz/seeds/redis_entry" --entries

# fuzz TARGET MAX_LEN SEEDS...: libFuzzer exits non-zero on a finding and writes the input to
# $artifacts; set -e fails the script. New inputs land in the corpus, which grows across runs.
fuzz() {
  local target=$1 max_len=$2
  shift 2
  local corpus="$build/fuzz/corpus/$target"
  mkdir -p "$corpus"
  "$build/tests/fuzz/${target}_fuzz" "$corpus" "$@" \
    -max_total_time="$seconds" \
    -max_len="$max_len" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts" \
    -print_final_stats=1
  echo "fuzz: $target ran ${seconds}s without findings"
}

# Two targets at once, a core each: the same time per target, a third less time in all. Each
# one's output is shown when it ends.
fuzz packet_codec 4096 "$build/fuzz/seeds/packet_codec" >"$build/fuzz/packet_codec.log" 2>&1 &
codec=$!
fuzz redis_entry 4096 "$build/fuzz/seeds/redis_entry" >"$build/fuzz/redis_entry.log" 2>&1 &
entry=$!
found=0
wait "$codec" || found=1
cat "$build/fuzz/packet_codec.log"
wait "$entry" || found=1
cat "$build/fuzz/redis_entry.log"
[[ $found == 0 ]] || { echo "fuzz: a finding above (inputs in $artifacts)" >&2; exit 1; }
fuzz yaml_pipeline 4096 "$root/pipelines"
