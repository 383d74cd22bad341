#!/usr/bin/env bash
# The main job: eye-contact correction of a real talking-head video, embedded in one process.
#
#   scripts/demo.sh [VIDEO]          default: the fetched franck.mp4 (360x288, 4800 frames)
#   scripts/demo.sh --live [VIDEO]   the same on a live stream (below)
#
# Installs what is missing (the Debian packages of `scripts/deps.sh run`, the npm registry's
# tarballs of the models and clips: `scripts/fetch_media.sh demo`), builds the tool, runs
# pipelines/eye_contact.yaml and writes into out/:
#   eye_contact.mp4               the corrected video (H.264, plays in browsers)
#   eye_contact_side_by_side.mp4  input | output, with both's eyes enlarged below
#   eye_contact_sheet.png         a contact sheet of frames, input over output
#   eye_contact_eyes.png          six frames' eyes, enlarged: input over output
#   eye_contact_metrics.json      per-stage metrics
# The subject of a sample clip mostly looks near the camera already, so the correction is small
# there. To show what happens to someone who looks at a screen below the camera, the demo then
# turns the eyes of 240 frames down by 15 degrees (the eval's known turn) and runs the same
# pipeline on them. Of franck.mp4 these are frames 1440-1679, where he talks without smiling (a
# smile is left alone, and the first 240 frames are a third smiles); of another VIDEO, its first.
#   eye_contact_down15_side_by_side.mp4  eyes turned down | corrected, eyes enlarged below
#   eye_contact_down15_eyes.png          six frames: turned down over corrected
#   eye_contact_down15.json              the eval's figures for it (docs/eye-contact.md)
#
# With --live, ffmpeg plays the first 20 s of VIDEO as a live MPEG-TS stream in real time (-re)
# on tcp://127.0.0.1:PORT, pipelines/eye_contact_live.yaml (live mode, a 120 ms budget) reads
# it, and the demo prints the frames' ages (capture to written) and the drops:
#   eye_contact_live.mp4               the corrected stream
#   eye_contact_live_metrics.json      per-stage metrics, with the ages (age_us)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Each step's wall and CPU time (user + system of the programs it ran), printed at the end: where
# a first run's minutes go. On a busy machine the CPU time hardly changes, unlike the wall time.
# `times` runs in this shell: in a $(...) subshell it would see no children.
timings=()
step_start=$(date +%s)
step_cpu=0
step_done() {
  local now cpu
  now=$(date +%s)
  times >"$root/out/.demo-times"
  cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/);
    printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$root/out/.demo-times")
  timings+=("$1 $((now - step_start))s (cpu $((cpu - step_cpu))s)")
  step_start=$now
  step_cpu=$cpu
}

mkdir -p out
scripts/deps.sh run
step_done packages
scripts/fetch_media.sh demo
step_done models
cache=${MICROMODELS_CACHE:-$root/.cache/micromodels}
live=false
if [[ ${1:-} == --live ]]; then
  live=true
  shift
fi
video=${1:-$cache/media/franck.mp4}

# Warnings are the test command's gate, not the demo's: after scripts/test.sh, build/ is configured
# with -Werror. -O2 rather than Release's -O3: up to a tenth less compile time on the heaviest
# files, which a first run spends mostly building.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DMICROMODELS_BUILD_TESTS=OFF -DMICROMODELS_WERROR=OFF >/dev/null
cmake --build build --target micromodels
step_done build

if $live; then
  live_seconds=20
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  url=tcp://127.0.0.1:$port
  ffmpeg -nostdin -loglevel error -re -t "$live_seconds" -i "$video" -c copy -f mpegts \
    "$url?listen" &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  # Listening when /proc/net/tcp shows the port in state 0A (a connection would take ffmpeg's
  # one client).
  hex=$(printf ':%04X ' "$port")
  for _ in $(seq 100); do
    grep -q "$hex.* 0A " /proc/net/tcp && break
    sleep 0.1
  done
  control=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "ffmpeg plays $video live on $url for $live_seconds s"
  echo "watch the corrected frames as they come: http://127.0.0.1:$control/preview/frame"
  echo "(the run's dashboard: http://127.0.0.1:$control/)"
  # The stream ends with the clip: reconnect_s=0 ends the run then instead of waiting for it.
  build/apps/micromodels/micromodels run pipelines/eye_contact_live.yaml \
    --set "source.path=$url" --set source.reconnect_s=0 \
    --set sink.path=out/eye_contact_live.mp4 --listen "127.0.0.1:$control" \
    --metrics-json out/eye_contact_live_metrics.json
  python3 - out/eye_contact_live_metrics.json <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
sink = next(s for s in m["stages"] if s["name"] == "sink")
age = sink["age_us"] or {}
dropped = sum(s["dropped"] for s in m["stages"])
print(f"\nlive: {m['packets_in']} frames in, {sink['processed']} written, {dropped} dropped "
      f"(age {sum(s['dropped_age'] for s in m['stages'])}, "
      f"newest {sum(s['dropped_newest'] for s in m['stages'])})")
print(f"age of the written frames, capture to written: p50 {age.get('p50', 0) / 1e3:.1f} ms, "
      f"p99 {age.get('p99', 0) / 1e3:.1f} ms (budget 120 ms)")
PY
  echo "wrote out/eye_contact_live.mp4, out/eye_contact_live_metrics.json"
  exit 0
fi
build/apps/micromodels/micromodels run pipelines/eye_contact.yaml \
  --set "source.path=$video" \
  --set sink.path=out/eye_contact.mp4 \
  --set side_by_side.path=out/eye_contact_side_by_side.mp4 \
  --set side_by_side.contact_sheet=out/eye_contact_sheet.png \
  --metrics-json out/eye_contact_metrics.json
step_done run

start=0
[ "$video" = "$cache/media/franck.mp4" ] && start=1440
build/apps/micromodels/micromodels eval eye_contact "$video" --angles 15 --start "$start" --frames 240 \
  --out out/eye_contact_eval --json out/eye_contact_down15.json
turned=out/eye_contact_eval/$(basename "${video%.*}")/down15deg
cp "$turned/side_by_side.mp4" out/eye_contact_down15_side_by_side.mp4
cp "$turned/side_by_side_eyes.png" out/eye_contact_down15_eyes.png
step_done eval

echo
echo "wrote out/eye_contact.mp4, out/eye_contact_side_by_side.mp4, out/eye_contact_sheet.png,"
echo "      out/eye_contact_eyes.png, out/eye_contact_down15_side_by_side.mp4, out/eye_contact_down15_eyes.png"
rm -f out/.demo-times
echo "demo: ${timings[*]}"
