#!/usr/bin/env bash
# The main job: eye-contact correction of a real talking-head video, embedded in one process.
#
#   scripts/demo.sh [VIDEO]      default: the fetched franck.mp4 (360x288, 4800 frames)
#
# Installs what is missing (Debian packages, npm packages for media and models), builds, runs
# pipelines/eye_contact.yaml and writes into out/:
#   eye_contact.mp4               the corrected video
#   eye_contact_side_by_side.mp4  input | output
#   eye_contact_sheet.png         a contact sheet of frames with the eye landmarks drawn
#   eye_contact_metrics.json      per-stage metrics
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/deps.sh
scripts/fetch_media.sh
cache=${MICROMODELS_CACHE:-$root/.cache/micromodels}
video=${1:-$cache/media/franck.mp4}

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMICROMODELS_BUILD_TESTS=OFF >/dev/null
cmake --build build --target micromodels

mkdir -p out
build/apps/micromodels/micromodels run pipelines/eye_contact.yaml \
  --set "source.path=$video" \
  --set sink.path=out/eye_contact.mp4 \
  --set side_by_side.path=out/eye_contact_side_by_side.mp4 \
  --set side_by_side.contact_sheet=out/eye_contact_sheet.png \
  --metrics-json out/eye_contact_metrics.json

echo
echo "wrote out/eye_contact.mp4, out/eye_contact_side_by_side.mp4, out/eye_contact_sheet.png"
