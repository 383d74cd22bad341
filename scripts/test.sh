#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run). See docs/testing.md.
#
#   scripts/test.sh                 every phase, in order
#   scripts/test.sh quick           deps + main: the RelWithDebInfo build and its tests
#   scripts/test.sh tsan package    just those phases (the main build is made when one needs it)
#
# Phases: deps media main examples asan tsan fuzz package deb image pipelines docs
# Knobs (environment): JOBS (ctest parallelism, default 2), BUILD_JOBS (compile jobs, default
# one per core), FUZZ_SECONDS (default 30), TEST_TIMEOUT (seconds per test, default 300),
# ASAN_APPS (ON to build the CLI and examples under ASan too, default OFF).
#
# Every phase runs even when an earlier one failed, so one run shows everything that is broken.
# The last line is "N passed, N failed": ctest tests of every build plus one per script check
# (tests that skip themselves are reported on the line before, and count in neither).
# Phases are called by name ("phase_$phase"), which shellcheck cannot follow:
# shellcheck disable=SC2317
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
# The media phase fetches the sample media first: a test that finds it missing must fail, not skip.
export MICROMODELS_REQUIRE_MEDIA=${MICROMODELS_REQUIRE_MEDIA:-1}
# The deps phase installs promtool (Debian's prometheus): a test that finds it missing must fail.
export MICROMODELS_REQUIRE_TOOLS=${MICROMODELS_REQUIRE_TOOLS:-1}

all_phases=(deps media main examples asan tsan fuzz package deb image pipelines docs)
jobs=${JOBS:-2}
build_jobs=${BUILD_JOBS:-$(nproc)}
fuzz_seconds=${FUZZ_SECONDS:-30}
test_timeout=${TEST_TIMEOUT:-300}
asan_apps=${ASAN_APPS:-OFF}
log_dir=$root/out/test-logs
mkdir -p "$log_dir"

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------------------------
# Bookkeeping: totals, and one summary row per phase.

passed=0
failed=0
skipped=0
summary=()
failed_names=()  # "phase: test (Failed|Timeout|...)", listed after the summary
run_start=$(date +%s)

banner() { printf '\n==== %s ====\n' "$*"; }

now() { date +%s.%N; }
elapsed_since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }
# cpu_mark: sets cpu_seconds to the CPU time (user + system) of this script's finished child
# processes so far. `times` must run in this shell, not in a $(...) subshell, which has no
# children of its own yet. A phase's CPU time hardly depends on what else runs on the machine,
# unlike its wall time: on a busy machine, a build's CPU time over the cores estimates its wall
# time on an idle one.
cpu_seconds=0
cpu_mark() {
  times >"$log_dir/.times"
  cpu_seconds=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/);
    printf "%.1f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$log_dir/.times")
}
phase_cpu_start=0

# record PHASE RESULT SECONDS DETAIL: one summary row, with the phase's CPU time.
record() {
  local cpu
  cpu_mark
  cpu=$(awk -v s="$phase_cpu_start" -v e="$cpu_seconds" 'BEGIN { printf "%.1f", e - s }')
  summary+=("$(printf '%-10s %-8s %8ss %8ss   %s' "$1" "$2" "$3" "$cpu" "$4")")
}

check_passed() { passed=$((passed + 1)); }
check_failed() { failed=$((failed + 1)); }

# configure DIR ARGS...: configures once, then lets the build tool notice changes. The generator
# is chosen here, not at start-up: on a fresh machine the deps phase is what installs ninja.
# With ccache (the deps phase installs it), a build shares the objects another build with the same
# flags made: the deb phase's package build reuses the main build's. Paths are made relative to the
# clone, and the build directory is left out of the hash (-g would put it in), so that build/ and
# build-deb/, or two clones, share.
configure() {
  local dir=$1
  shift
  if command -v ccache >/dev/null; then
    export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
    set -- "$@" -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
  fi
  if [[ -f $dir/CMakeCache.txt ]]; then
    cmake -S . -B "$dir" "$@" >/dev/null
  elif command -v ninja >/dev/null; then
    cmake -S . -B "$dir" -G Ninja "$@"
  else
    cmake -S . -B "$dir" "$@"
  fi
}

# build DIR [ARGS...]: every core compiles (Make alone would run one job at a time).
build() {
  local dir=$1
  shift
  cmake --build "$dir" --parallel "$build_jobs" "$@"
}

# run_ctest NAME DIR ARGS...: runs ctest (under "${ctest_wrapper[@]}" when set), adds its counts
# to the totals, sets ctest_detail. Returns non-zero when a test failed or nothing ran.
ctest_detail=""
ctest_wrapper=()
run_ctest() {
  local name=$1 dir=$2
  shift 2
  local log=$log_dir/$name-ctest.log
  (cd "$dir" &&
    "${ctest_wrapper[@]}" ctest --output-on-failure -j"$jobs" --timeout "$test_timeout" "$@") 2>&1 |
    tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -Eo '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [[ -z $line ]]; then
    if grep -q 'No tests were found' "$log"; then
      ctest_detail="no tests found"
    else
      ctest_detail="ctest did not finish (rc $rc)"
    fi
    check_failed
    return 1
  fi
  local bad total skip
  bad=$(awk '{print $1}' <<<"$line")
  total=$(awk '{print $NF}' <<<"$line")
  # ctest counts a skipped test (GTEST_SKIP, a missing tool) as passed; we count it apart.
  skip=$(grep -cE '^[[:space:]]*[0-9]+ - .* \((Skipped|Disabled)\)$' "$log")
  passed=$((passed + total - bad - skip))
  failed=$((failed + bad))
  skipped=$((skipped + skip))
  ctest_detail="$((total - bad - skip))/$total tests passed"
  # ctest ends with "The following tests FAILED:" and one "  N - name (Failed)" line each.
  local name_line
  while IFS= read -r name_line; do
    failed_names+=("$name: ${name_line#"${name_line%%[![:space:]]*}"}")
  done < <(sed -n '/The following tests FAILED:/,$p' "$log" | grep -E '^[[:space:]]+[0-9]+ - ')
  [[ $skip -gt 0 ]] && ctest_detail+=", $skip skipped"
  [[ $bad -gt 0 ]] && ctest_detail+=", $bad failed"
  [[ $bad -eq 0 && $rc -eq 0 ]]
}

# ---------------------------------------------------------------------------------------------
# Redis for the broker's tests (label redis): a throw-away redis-server on a free loopback port,
# no persistence, stopped when the script exits. The tests find it through MICROMODELS_REDIS_URL
# and fail rather than skip without it (MICROMODELS_REQUIRE_REDIS).

redis_pid=""
stop_redis() {
  if [[ -n $redis_pid ]]; then
    kill "$redis_pid" 2>/dev/null
    wait "$redis_pid" 2>/dev/null
    redis_pid=""
  fi
}
start_redis() {
  [[ -n $redis_pid ]] && return 0
  export MICROMODELS_REQUIRE_REDIS=1
  if ! command -v redis-server >/dev/null; then
    echo "test.sh: redis-server is missing (scripts/deps.sh installs it); the redis tests will fail"
    return 1
  fi
  local port tries
  for tries in 1 2 3 4 5 6 7 8 9 10; do
    # Below the ephemeral range (32768-): no client connection can hold it.
    port=$((20000 + (RANDOM % 12000)))
    # Something answers there already: try another port.
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --logfile "$log_dir/redis-server.log" &
    redis_pid=$!
    for _ in $(seq 1 100); do
      if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
        export MICROMODELS_REDIS_URL=redis://127.0.0.1:$port
        trap stop_redis EXIT
        echo "test.sh: redis-server on $MICROMODELS_REDIS_URL (pid $redis_pid), try $tries"
        return 0
      fi
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.05
    done
    stop_redis
  done
  echo "test.sh: could not start redis-server on a free port (out/test-logs/redis-server.log)"
  return 1
}

# ---------------------------------------------------------------------------------------------
# Phases. Each records one summary row.

phase_deps() {
  local start
  start=$(now)
  banner "deps: Debian packages"
  if bash scripts/deps.sh 2>&1 | tee "$log_dir/deps.log"; then
    check_passed
    record deps ok "$(elapsed_since "$start")" "packages present"
  else
    check_failed
    record deps FAILED "$(elapsed_since "$start")" "scripts/deps.sh failed (out/test-logs/deps.log)"
  fi
}

phase_media() {
  local start
  start=$(now)
  banner "media: scripts/fetch_media.sh"
  if [[ ! -f scripts/fetch_media.sh ]]; then
    record media skipped 0 "no scripts/fetch_media.sh"
    return
  fi
  if bash scripts/fetch_media.sh 2>&1 | tee "$log_dir/media.log"; then
    check_passed
    record media ok "$(elapsed_since "$start")" "media ready"
  else
    check_failed
    record media FAILED "$(elapsed_since "$start")" "scripts/fetch_media.sh failed"
  fi
}

# The main build: warnings are errors here, and only here (sanitizer builds at -O1 can warn
# differently, and the warnings are the same code's). RelWithDebInfo with line tables only (-g1):
# file:line in backtraces, at three quarters of -g's compile time.
main_state=""  # "" not tried, ok, failed
build_main() {
  [[ -n $main_state ]] && { [[ $main_state == ok ]]; return; }
  local log=$log_dir/main-build.log
  if configure build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
    -DMICROMODELS_WERROR=ON \
    -DMICROMODELS_BUILD_TESTS=ON -DMICROMODELS_BUILD_APPS=ON 2>&1 | tee "$log" &&
    build build 2>&1 | tee -a "$log"; then
    main_state=ok
  else
    main_state=failed
  fi
  [[ $main_state == ok ]]
}

need_main() {  # PHASE START: true when the main build is usable; records a failure otherwise
  if [[ -z $main_state ]]; then
    banner "$1: building build/ first"
    build_main
  fi
  if [[ $main_state != ok ]]; then
    check_failed
    record "$1" FAILED "$(elapsed_since "$2")" "main build failed"
    return 1
  fi
}

phase_main() {
  local start build_time
  start=$(now)
  banner "main: RelWithDebInfo build in build/ (-Werror), ctest"
  if ! build_main; then
    check_failed
    record main FAILED "$(elapsed_since "$start")" "build failed (out/test-logs/main-build.log)"
    return
  fi
  build_time=$(elapsed_since "$start")
  start_redis
  # Examples run in their own phase, so that each test counts once.
  if run_ctest main build -LE '^examples$'; then
    record main ok "$(elapsed_since "$start")" "build ${build_time}s; $ctest_detail"
  else
    record main FAILED "$(elapsed_since "$start")" "build ${build_time}s; $ctest_detail"
  fi
}

phase_examples() {
  local start
  start=$(now)
  banner "examples: every examples/*.cpp built and run"
  need_main examples "$start" || return
  # A program that is not registered as a test would silently never run.
  local missing=() source name
  local listed
  listed=$(cd build && ctest -N -L '^examples$')
  for source in examples/*.cpp; do
    [[ -e $source ]] || continue
    name=$(basename "$source" .cpp)
    grep -q "examples\.$name\$" <<<"$listed" || missing+=("$name")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    check_failed
    record examples FAILED "$(elapsed_since "$start")" "not registered as tests: ${missing[*]}"
    return
  fi
  if run_ctest examples build -L '^examples$'; then
    record examples ok "$(elapsed_since "$start")" "$ctest_detail"
  else
    record examples FAILED "$(elapsed_since "$start")" "$ctest_detail"
  fi
}

phase_asan() {
  local start build_time log=$log_dir/asan-build.log
  start=$(now)
  banner "asan: AddressSanitizer + UBSan build in build-asan/, ctest"
  # -O1: most of -O2's speed for the tests at a fraction of its compile time. -g1: line tables,
  # enough for file:line in the sanitizers' reports, at three quarters of -g's compile time.
  if ! { configure build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
    -DMICROMODELS_SANITIZE=address,undefined -DMICROMODELS_BUILD_TESTS=ON \
    -DMICROMODELS_BUILD_APPS="$asan_apps" 2>&1 | tee "$log" &&
    build build-asan 2>&1 | tee -a "$log"; }; then
    check_failed
    record asan FAILED "$(elapsed_since "$start")" "build failed (out/test-logs/asan-build.log)"
    return
  fi
  build_time=$(elapsed_since "$start")
  start_redis
  if ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 run_ctest asan build-asan; then
    record asan ok "$(elapsed_since "$start")" "build ${build_time}s; $ctest_detail"
  else
    record asan FAILED "$(elapsed_since "$start")" "build ${build_time}s; $ctest_detail"
  fi
}

# Without Python: CPython is not built for TSan, so the GIL's hand-overs are invisible to it.
phase_tsan() {
  local start build_time log=$log_dir/tsan-build.log
  start=$(now)
  banner "tsan: ThreadSanitizer build in build-tsan/, concurrent-core, conformance and broker tests (unit|system|redis|conformance)"
  if ! { configure build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
    -DMICROMODELS_SANITIZE=thread -DMICROMODELS_BUILD_VISION=OFF -DMICROMODELS_BUILD_APPS=OFF \
    -DMICROMODELS_BUILD_PYTHON=OFF -DMICROMODELS_BUILD_TESTS=ON 2>&1 | tee "$log" &&
    build build-tsan 2>&1 | tee -a "$log"; }; then
    check_failed
    record tsan FAILED "$(elapsed_since "$start")" "build failed (out/test-logs/tsan-build.log)"
    return
  fi
  build_time=$(elapsed_since "$start")
  # TSan's shadow memory needs the classic address layout: kernels with more mmap randomisation
  # than it expects fail with "unexpected memory mapping" unless ASLR is off for the tests.
  if command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
    ctest_wrapper=(setarch "$(uname -m)" -R)
  fi
  local ok=0
  start_redis  # the broker's in-process tests (the tests that start the CLI are not built here)
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    run_ctest tsan build-tsan -L '^(unit|system|redis|conformance)$' || ok=1
  ctest_wrapper=()
  if [[ $ok -eq 0 ]]; then
    record tsan ok "$(elapsed_since "$start")" "build ${build_time}s; $ctest_detail"
  else
    record tsan FAILED "$(elapsed_since "$start")" "build ${build_time}s; $ctest_detail"
  fi
}

phase_fuzz() {
  local start
  start=$(now)
  banner "fuzz: scripts/fuzz.sh (FUZZ_SECONDS=$fuzz_seconds)"
  if [[ ! -f scripts/fuzz.sh ]]; then
    record fuzz skipped 0 "no scripts/fuzz.sh"
    return
  fi
  if FUZZ_SECONDS=$fuzz_seconds bash scripts/fuzz.sh 2>&1 | tee "$log_dir/fuzz.log"; then
    check_passed
    record fuzz ok "$(elapsed_since "$start")" "${fuzz_seconds}s per target"
  else
    check_failed
    record fuzz FAILED "$(elapsed_since "$start")" "scripts/fuzz.sh failed (out/test-logs/fuzz.log)"
  fi
}

phase_package() {
  local start
  start=$(now)
  banner "package: install build/, build tests/package and examples/plugin against it with find_package"
  need_main package "$start" || return
  start_redis  # the consumer runs its pipeline through Redis too
  if bash scripts/check_package.sh build 2>&1 | tee "$log_dir/package.log"; then
    check_passed
    record package ok "$(elapsed_since "$start")" "find_package(micromodels) consumer and plugin ran"
  else
    check_failed
    record package FAILED "$(elapsed_since "$start")" "out/test-logs/package.log"
  fi
}

# The Debian package, installed on a clean bookworm: scripts/package.sh builds it (build-deb/,
# no tests), scripts/check_deb.sh installs it with apt-get on an overlay of the cached
# debootstrap root and runs the tool and the Python module from it.
phase_deb() {
  local start build_time log=$log_dir/deb.log
  start=$(now)
  banner "deb: scripts/package.sh, then scripts/check_deb.sh (apt-get install on a clean bookworm)"
  if ! bash scripts/package.sh 2>&1 | tee "$log"; then
    check_failed
    record deb FAILED "$(elapsed_since "$start")" "scripts/package.sh failed (out/test-logs/deb.log)"
    return
  fi
  build_time=$(elapsed_since "$start")
  if bash scripts/check_deb.sh 2>&1 | tee -a "$log"; then
    check_passed
    record deb ok "$(elapsed_since "$start")" "package ${build_time}s; installed and ran on a clean bookworm"
  else
    check_failed
    record deb FAILED "$(elapsed_since "$start")" "package ${build_time}s; scripts/check_deb.sh failed (out/test-logs/deb.log)"
  fi
}

# The container image on the Debian package: deploy/build_image.sh builds it with podman on the
# clean root imported as a base, and checks the tool, the models and a worker in it (against a
# redis-server of its own).
phase_image() {
  local start log=$log_dir/image.log
  start=$(now)
  banner "image: deploy/build_image.sh (podman build of deploy/Containerfile, smoke test)"
  bash deploy/build_image.sh 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [[ $rc -eq 0 ]]; then
    check_passed
    record image ok "$(elapsed_since "$start")" "built; types, models and a worker over Redis checked"
  elif [[ $rc -eq 77 ]]; then
    record image skipped "$(elapsed_since "$start")" "podman cannot run a container here (out/test-logs/image.log)"
  else
    check_failed
    record image FAILED "$(elapsed_since "$start")" "deploy/build_image.sh failed (out/test-logs/image.log)"
  fi
}

phase_pipelines() {
  local start
  start=$(now)
  banner "pipelines: micromodels inspect on every pipelines/*.yaml"
  need_main pipelines "$start" || return
  local cli=build/apps/micromodels/micromodels
  local files=() file good=0 bad=() log=$log_dir/pipelines.log
  shopt -s nullglob
  files=(pipelines/*.yaml pipelines/*.yml)
  shopt -u nullglob
  if [[ ${#files[@]} -eq 0 ]]; then
    record pipelines skipped 0 "no pipelines/*.yaml"
    return
  fi
  if [[ ! -x $cli ]]; then
    check_failed
    record pipelines FAILED "$(elapsed_since "$start")" "$cli was not built"
    return
  fi
  : >"$log"
  for file in "${files[@]}"; do
    echo "--- $cli inspect $file" | tee -a "$log"
    if "$cli" inspect "$file" >>"$log" 2>&1; then
      echo "ok" | tee -a "$log"
      good=$((good + 1))
      check_passed
    else
      tail -n 20 "$log"
      bad+=("$(basename "$file")")
      check_failed
    fi
  done
  if [[ ${#bad[@]} -eq 0 ]]; then
    record pipelines ok "$(elapsed_since "$start")" "$good/${#files[@]} valid"
  else
    record pipelines FAILED "$(elapsed_since "$start")" "invalid: ${bad[*]}"
  fi
}

phase_docs() {
  local start log=$log_dir/docs.log
  start=$(now)
  banner "docs: every sh, console and yaml block of README.md, docs/ and examples/README.md"
  need_main docs "$start" || return
  python3 scripts/check_docs.py 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} line good bad
  # "check_docs: N passed, N failed, N not run ...": one check per block.
  line=$(grep -E '^check_docs: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [[ -z $line ]]; then
    check_failed
    record docs FAILED "$(elapsed_since "$start")" "scripts/check_docs.py did not finish (rc $rc)"
    return
  fi
  good=$(awk '{print $2}' <<<"$line")
  bad=$(awk '{print $4}' <<<"$line")
  passed=$((passed + good))
  failed=$((failed + bad))
  if [[ $rc -eq 0 && $bad -eq 0 ]]; then
    record docs ok "$(elapsed_since "$start")" "$good blocks ran"
  else
    [[ $bad -eq 0 ]] && check_failed  # a failure that is not one block's
    record docs FAILED "$(elapsed_since "$start")" "$bad blocks failed (out/test-logs/docs.log)"
  fi
}

# ---------------------------------------------------------------------------------------------

parse_phases() {
  phases=()
  if [[ $# -eq 0 ]]; then
    phases=("${all_phases[@]}")
  fi
  for arg in "$@"; do
    case $arg in
      all) phases+=("${all_phases[@]}") ;;
      quick) phases+=(deps main) ;;
      -h | --help) usage; exit 0 ;;
      *)
        if [[ " ${all_phases[*]} " == *" $arg "* ]]; then
          phases+=("$arg")
        else
          echo "test.sh: unknown phase '$arg'" >&2
          usage >&2
          exit 2
        fi
        ;;
    esac
  done
}

# Everything runs from inside main: bash reads a script as it goes, so a top-level command list
# would pick up an edit made to this file while a long run is under way.
main() {
  parse_phases "$@"
  echo "test.sh: phases: ${phases[*]} (logs in out/test-logs/)"
  for phase in "${phases[@]}"; do
    cpu_mark
    phase_cpu_start=$cpu_seconds
    "phase_$phase"
  done

  total=$(($(date +%s) - run_start))
  banner "summary"
  printf '%-10s %-8s %9s %9s   %s\n' phase result time cpu detail
  for row in "${summary[@]}"; do
    echo "$row"
  done
  printf 'total time %dm%02ds\n' $((total / 60)) $((total % 60))
  [[ $skipped -gt 0 ]] && echo "($skipped tests skipped themselves; not counted below)"
  if [[ ${#failed_names[@]} -gt 0 ]]; then
    echo "failed tests (their output: out/test-logs/PHASE-ctest.log):"
    printf '  %s\n' "${failed_names[@]}"
  fi
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}

main "$@"; exit
