#!/usr/bin/env bash
# Installs the Debian (bookworm) packages that building, testing and running micromodels need.
# Asks apt only for what is missing, so a second run costs a second and needs no network.
#   scripts/deps.sh [PROFILE]          PROFILE: run, dev or test (the default: everything)
#   scripts/deps.sh [PROFILE] --check  list what is missing, install nothing (exit 1 if anything is)
# Profiles, each one the one before and more:
#   run    build the tool and run the eye-contact demo (scripts/demo.sh): compiler, CMake, the
#          libraries the tool links, and what scripts/fetch_media.sh needs for the models
#   dev    build everything: the tests, benchmarks, sanitizer and fuzz builds, the Python module
#   test   run the whole test command (scripts/test.sh): Redis, a browser, the tools the docs show
set -euo pipefail

profile="test"
check=0
for arg in "$@"; do
  case $arg in
    run | dev | test) profile=$arg ;;
    --check) check=1 ;;
    *) echo "deps: unknown argument '$arg'; use: scripts/deps.sh [run|dev|test] [--check]" >&2; exit 2 ;;
  esac
done

run=(
  g++ cmake ninja-build pkg-config
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libcpp-httplib-dev libhiredis-dev  # the control endpoint, the Redis broker
  libtbb-dev                         # `micromodels bench` and `eval` (the oneTBB flow graph)
  # The OpenCV modules the project uses, one package each (cmake/FindOpenCV.cmake): libopencv-dev
  # would pull every module, some 120 packages more.
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev
  libopencv-dnn-dev
  libavformat-dev libavcodec-dev libswscale-dev  # video.sink's H.264 files, through FFmpeg's own
                                     # libraries (OpenCV's writer cannot set x264's preset)
  libdlib-dev libdlib-data
  libblas-dev liblapack-dev libjpeg-dev  # dlib's CMake package links libblas.so, liblapack.so and
                                     # libjpeg.so, which libdlib-dev does not depend on
  # scripts/fetch_media.sh demo: the npm registry's tarballs by URL (no npm client), and the
  # conversion of the models to ONNX
  curl ca-certificates python3 python3-numpy python3-onnx
)
dev=(
  build-essential                    # dpkg-dev: cpack's dpkg-shlibdeps (scripts/package.sh)
  libopencv-dev                      # OpenCVConfig.cmake: find_package(micromodels) of an install
  clang libclang-rt-14-dev           # libFuzzer and the sanitizer runtimes for clang
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-dev python3-pybind11       # Python stages (`type: python`) and the micromodels module
)
test=(
  ffmpeg python3-skimage             # the sample media the tests use (scripts/fetch_media.sh)
  python3-pytest python3-opencv      # tests/python, examples/python and `bench python`
  nodejs npm chromium                # the dashboard's browser test (tests/browser/), and
                                     # puppeteer-core, which scripts/fetch_media.sh installs with npm
  redis-server
  stunnel4 openssl                   # Redis over TLS through a tunnel (docs/distributed.md#tls)
  iproute2                           # `bench scaleout`: network namespaces, veth links, tc
  ccache                             # scripts/test.sh: the package build reuses the main build's objects
  prometheus graphviz
  jq                                 # the commands the docs show (scripts/check_docs.py), with curl
  debootstrap                        # the clean system that the deb phase installs the package on
  podman runc                        # the image phase: deploy/Containerfile, built and smoke-tested
)
wanted=("${run[@]}")
[[ $profile == run ]] || wanted+=("${dev[@]}")
[[ $profile != test ]] || wanted+=("${test[@]}")

# A package counts as present when dpkg has it installed, or when an installed package provides
# it: NodeSource's nodejs provides (and conflicts with) Debian's npm, so asking apt for npm there
# would try to swap Node.js out from under the machine.
provided=" $(dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null |
  awk -F'|' '$1 ~ /^ii/ && $2 != "" {print $2}' | tr ',' '\n' |
  sed -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | sort -u | tr '\n' ' ') "

missing=()
for package in "${wanted[@]}"; do
  if dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii'; then
    continue
  fi
  if [[ "$provided" == *" $package "* ]]; then
    continue
  fi
  missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#wanted[@]} packages of the $profile profile present"
  exit 0
fi
echo "deps: missing: ${missing[*]}"
if [[ $check -eq 1 ]]; then
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install packages" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "${missing[@]}"
echo "deps: installed ${#missing[@]} package(s)"
