#!/usr/bin/env bash
# Installs the Debian (bookworm) packages that building, testing and running micromodels need.
# Asks apt only for what is missing, so a second run costs a second and needs no network.
#   scripts/deps.sh            # everything
#   scripts/deps.sh --check    # list what is missing, install nothing (exit 1 if anything is)
set -euo pipefail

core=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev          # libFuzzer and the sanitizer runtimes for clang
  libgtest-dev libgmock-dev libbenchmark-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libtbb-dev                        # the oneTBB flow graph that `micromodels bench` compares with
)
vision=(
  libopencv-dev libdlib-dev libdlib-data ffmpeg
  python3-onnx python3-numpy python3-skimage
)
python=(
  python3-dev python3-pybind11      # Python stages (`type: python`) and the micromodels module
  python3-pytest python3-opencv     # tests/python, examples/python and `bench python`
)
ops=(
  nodejs npm
  chromium                          # the dashboard's browser test (tests/browser/)
  libhiredis-dev redis-server libcpp-httplib-dev
  stunnel4 openssl                  # Redis over TLS through a tunnel (docs/distributed.md#tls)
  iproute2                          # `bench scaleout`: network namespaces, veth links, tc
  prometheus graphviz
  python3 curl jq                   # scripts/check_docs.py, and the commands the docs show
)

# A package counts as present when dpkg has it installed, or when an installed package provides
# it: NodeSource's nodejs provides (and conflicts with) Debian's npm, so asking apt for npm there
# would try to swap Node.js out from under the machine.
provided=" $(dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null |
  awk -F'|' '$1 ~ /^ii/ && $2 != "" {print $2}' | tr ',' '\n' |
  sed -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g' | sort -u | tr '\n' ' ') "

missing=()
for package in "${core[@]}" "${vision[@]}" "${python[@]}" "${ops[@]}"; do
  if dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii'; then
    continue
  fi
  if [[ "$provided" == *" $package "* ]]; then
    continue
  fi
  missing+=("$package")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#core[@]} core, ${#vision[@]} vision, ${#python[@]} python and ${#ops[@]} ops packages present"
  exit 0
fi
echo "deps: missing: ${missing[*]}"
if [[ "${1:-}" == "--check" ]]; then
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
