#!/usr/bin/env bash
# A clean Debian bookworm system to try things in: `debootstrap --variant=minbase` (what a
# bookworm container image holds: apt, dpkg, bash, no compiler, no Python), made once and kept
# read-only in the cache; the users of it (scripts/check_deb.sh, scripts/fresh_demo.sh,
# deploy/build_image.sh) run on an overlay of it, so it stays clean.
#   scripts/bookworm_root.sh          prints the root's path, making it first when missing
# Where: $MICROMODELS_ROOTFS/bookworm, by default ~/.cache/micromodels/rootfs/bookworm: in the
# user's cache rather than the repository's, so that a fresh clone (CI's) finds it made. Needs
# root, debootstrap (scripts/deps.sh test) and the Debian mirror; making it takes about a minute
# and a half, and 210 MB.
set -euo pipefail

rootfs=${MICROMODELS_ROOTFS:-${XDG_CACHE_HOME:-$HOME/.cache}/micromodels/rootfs}/bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [[ -f $rootfs/etc/micromodels-clean-root ]]; then
  echo "$rootfs"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { echo "bookworm_root: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null ||
  { echo "bookworm_root: debootstrap is missing; install it with: apt-get install debootstrap" >&2; exit 1; }

echo "bookworm_root: debootstrap --variant=minbase bookworm into $rootfs (about a minute and a half)" >&2
rm -rf "$rootfs.tmp"
mkdir -p "$(dirname "$rootfs")"
debootstrap --variant=minbase bookworm "$rootfs.tmp" "$mirror" >"$rootfs.log" 2>&1 ||
  { tail -n 20 "$rootfs.log" >&2; echo "bookworm_root: debootstrap failed ($rootfs.log)" >&2; exit 1; }
# The suites a bookworm installation has: its point releases and security updates.
cat >"$rootfs.tmp/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
# Nothing installed into an overlay of it may start a service.
printf '#!/bin/sh\nexit 101\n' >"$rootfs.tmp/usr/sbin/policy-rc.d"
chmod +x "$rootfs.tmp/usr/sbin/policy-rc.d"
rm -rf "$rootfs.tmp/var/cache/apt/archives/"*.deb "$rootfs.tmp/var/lib/apt/lists/"*_Packages
date -u +%FT%TZ >"$rootfs.tmp/etc/micromodels-clean-root"
rm -rf "$rootfs"
mv "$rootfs.tmp" "$rootfs"
echo "$rootfs"
