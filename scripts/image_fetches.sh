#!/usr/bin/env bash
# How often the eye-contact pipeline on Redis fetches each image, and the bytes out of Redis per
# frame: one worker serving every stage between the source and the sinks, and the run (the
# source and the two sinks), on a loopback redis-server started here and stopped at the end.
#
#   scripts/image_fetches.sh [VIDEO] [FRAMES]     # default: the sample clip at 720p, 100 frames
#   MONITOR=1 scripts/image_fetches.sh ...        # also count the GETs of each image key
#
# Prints Redis's total_net_output_bytes and total_net_input_bytes over the run per frame, the
# worker's and the run's peak memory, and with MONITOR=1 (which adds its own bytes to Redis's
# output, so the bytes are measured without it) the image GETs per key. Needs the tool built
# (build/apps/micromodels/micromodels, or $MICROMODELS), redis-server and redis-cli, and the
# sample media (scripts/fetch_media.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tool=${MICROMODELS:-build/apps/micromodels/micromodels}
video=${1:-.cache/micromodels/media/franck_720p.mp4}
frames=${2:-100}
for need in "$tool" "$video"; do
  [[ -e $need ]] || { echo "image_fetches.sh: $need not found (build the tool; scripts/fetch_media.sh)" >&2; exit 2; }
done
out=$(mktemp -d "${TMPDIR:-/tmp}/image_fetches.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop EXIT
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$out/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url=redis://127.0.0.1:$port
sets=(--set "source.path=$video" --set "source.max_frames=$frames"
      --set "sink.path=$out/sink.avi" --set sink.codec=MJPG
      --set "side_by_side.path=$out/side_by_side.avi" --set side_by_side.codec=MJPG
      --set "side_by_side.contact_sheet=$out/sheet.png" --set "side_by_side.eye_strip=$out/eyes.png")
middle=identify,track,landmarks,iris_schedule,iris,iris_carry,refine,smooth,gaze,generate,substitute
"$tool" worker pipelines/eye_contact.yaml --broker "$url" --stages "$middle" "${sets[@]}" \
  >"$out/worker.log" 2>&1 &
worker=$!
pids+=("$worker")
# Until the worker has loaded its models and joined the live set.
for _ in $(seq 600); do
  [[ -n $(redis-cli -p "$port" --scan --pattern '*live*') ]] && break
  kill -0 "$worker" 2>/dev/null || { echo "the worker exited: $out/worker.log" >&2; exit 1; }
  sleep 0.1
done
if [[ -n ${MONITOR:-} ]]; then
  redis-cli -p "$port" monitor > >(grep -a '"GET" "mm:{[^"]*:img:' >"$out/gets.txt") &
  pids+=($!)
fi
stat() { redis-cli -p "$port" info stats | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }
out_before=$(stat total_net_output_bytes)
in_before=$(stat total_net_input_bytes)
/usr/bin/time -f '%M' -o "$out/run.rss" "$tool" run pipelines/eye_contact.yaml --broker "$url" \
  --serve none -q "${sets[@]}" >"$out/run.log" 2>&1 ||
  { echo "the run failed: $out/run.log" >&2; exit 1; }
out_after=$(stat total_net_output_bytes)
in_after=$(stat total_net_input_bytes)
worker_rss=$(awk '/VmHWM/ { print $2 }' "/proc/$worker/status")
echo "$video, $frames frames, one worker (load: $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v o=$((out_after - out_before)) -v i=$((in_after - in_before)) -v f="$frames" \
  -v w="$worker_rss" -v r="$(tail -1 "$out/run.rss")" 'BEGIN {
    printf "out of Redis %.3f MB a frame, into Redis %.3f MB a frame\n", o / f / 1e6, i / f / 1e6
    printf "peak memory: worker %.0f MB, run %.0f MB\n", w / 1e3, r / 1e3 }'
if [[ -n ${MONITOR:-} ]]; then
  sleep 0.5
  awk '{ n[$NF]++ } END { for (k in n) { keys++; gets += n[k]; times[n[k]]++ }
         printf "image GETs %d for %d keys; keys fetched", gets, keys
         for (t in times) printf " %d time(s): %d,", t, times[t]; print "" }' "$out/gets.txt"
fi
echo "logs: $out"
