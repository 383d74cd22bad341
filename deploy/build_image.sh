#!/usr/bin/env bash
# Builds the container image of deploy/Containerfile without a registry, and smoke-tests it:
#   1. the base: the clean bookworm root (scripts/bookworm_root.sh), `podman import`ed as
#      localhost/micromodels-base:bookworm (no image is pulled from anywhere);
#   2. `podman build --build-arg BASE=that` with out/micromodels_*.deb (scripts/package.sh makes
#      it when missing) -> localhost/micromodels:<version>;
#   3. in the image: `micromodels types` lists the vision stages and the models are in the cache;
#      a `micromodels worker` in the image serves the `work` stage of pipelines/example.yaml for
#      a `micromodels run --serve none` outside it, over a throw-away redis-server.
#   deploy/build_image.sh            (needs root, podman, redis-server and the npm registry)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  echo "build_image: podman or runc is missing; install them with: apt-get install podman runc" >&2
  exit 1
fi
# runc, not bookworm's default crun 1.8, which refuses a host with hybrid cgroups (v1 and v2);
# and limits that any host lets a container set (podman's defaults raise them to the maximum,
# which a container host that is itself a container may refuse).
podman=(podman --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
shopt -s nullglob
debs=(out/micromodels_*.deb)
shopt -u nullglob
[[ ${#debs[@]} -gt 0 ]] || scripts/package.sh
deb=$(echo out/micromodels_*.deb)
version=$(dpkg-deb --field "$deb" Version)
image=localhost/micromodels:$version
base=localhost/micromodels-base:bookworm

clean=$(scripts/bookworm_root.sh)
if ! "${podman[@]}" image exists "$base"; then
  echo "build_image: importing $clean as $base"
  tar -C "$clean" -c . | "${podman[@]}" import - "$base" >/dev/null
fi

# A machine whose kernel or container host does not let podman run a container at all is not
# this image's failure: say why and exit 77, which scripts/test.sh reports as skipped.
if ! probe=$("${podman[@]}" run "${limits[@]}" --rm --network host "$base" true 2>&1); then
  echo "build_image: podman cannot run a container on this machine, so the image is not built:" >&2
  echo "$probe" | tail -n 3 >&2
  exit 77
fi

context=$(mktemp -d /tmp/micromodels-image.XXXXXX)
redis_pid=""
cleanup() {
  [[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$context"
}
trap cleanup EXIT
cp "$deb" "$context/"
# The certificate authorities added on this machine (a TLS-inspecting proxy's, where the network
# has one), for the build's fetch from the npm registry: ca-certificates adds them to the image's
# bundle when apt installs it, so the image trusts them too.
build_opts=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  build_opts+=(--volume /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
fi
echo "build_image: podman build $image on $base"
"${podman[@]}" build "${limits[@]}" "${build_opts[@]}" --network host --build-arg "BASE=$base" \
  -f deploy/Containerfile -t "$image" "$context"

fail() { echo "build_image: $*" >&2; exit 1; }
types=$("${podman[@]}" run "${limits[@]}" --rm "$image" micromodels types | awk '{print $1}')
for type in video.source face.detect gaze.estimate python; do
  grep -qxF -- "$type" <<<"$types" || fail "micromodels types in the image lists no $type"
done
"${podman[@]}" run "${limits[@]}" --rm "$image" ls /var/cache/micromodels/models >"$context/models.txt"
for model in face_detection_front_128x128_barracuda.onnx iris.onnx facemesh.onnx \
  shape_predictor_68_face_landmarks.dat; do
  grep -qx "$model" "$context/models.txt" || fail "the image's cache has no $model"
done
echo "build_image: micromodels types and the models are in the image"

# A worker in the image serves the `work` stage; the run outside serves none, so the run can only
# finish if the worker took its packets.
port=$((20000 + RANDOM % 12000))
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$context/redis.log" &
redis_pid=$!
for _ in $(seq 1 100); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
broker=redis://127.0.0.1:$port
worker=$("${podman[@]}" run "${limits[@]}" -d --rm --network host "$image" \
  micromodels worker /usr/share/micromodels/pipelines/example.yaml --broker "$broker" --stages work)
podman_stop() { "${podman[@]}" stop -t 5 "$worker" >/dev/null 2>&1 || true; }
cli=build/apps/micromodels/micromodels
[[ -x $cli ]] || cli=micromodels
if ! timeout 120 "$cli" run pipelines/example.yaml --broker "$broker" --serve none --quiet \
  --set source.count=300 --set sink.path="$context/example.jsonl"; then
  "${podman[@]}" logs "$worker" >&2 || true
  podman_stop
  fail "the run did not finish with the image's worker serving the work stage"
fi
podman_stop
lines=$(wc -l <"$context/example.jsonl")
[[ $lines -eq 300 ]] || fail "the run wrote $lines packets, expected 300"
echo "build_image: ok: $image; its worker served the 300 packets of a run over Redis"
