# A throw-away system on the clean bookworm root (scripts/bookworm_root.sh), for scripts to
# source: an overlay mount, so that the cached root stays clean, with /proc and /dev mounted.
#   overlay_root_up CLEAN_ROOT WORK [APT_ARCHIVES]   mounts it at WORK/root (sets $overlay_root);
#       APT_ARCHIVES, when given, is a folder kept across runs for apt's downloaded packages
#   in_root COMMAND...     runs COMMAND in it as root, with a clean environment
#   overlay_root_down      unmounts everything overlay_root_up mounted and removes WORK
# Needs root, and a kernel that mounts overlayfs.
# shellcheck shell=bash

overlay_root=""
overlay_work=""
overlay_mounts=()

overlay_root_up() {
  local clean=$1 apt_archives=${3:-}
  overlay_work=$2
  overlay_root=$overlay_work/root
  mkdir -p "$overlay_work/upper" "$overlay_work/work" "$overlay_root"
  mount -t overlay overlay \
    -o "lowerdir=$clean,upperdir=$overlay_work/upper,workdir=$overlay_work/work" "$overlay_root" ||
    { echo "overlay_root: cannot mount an overlay on $clean (needs root and overlayfs)" >&2; return 1; }
  overlay_mounts=("$overlay_root")
  mount -t proc proc "$overlay_root/proc" && overlay_mounts+=("$overlay_root/proc")
  mount --rbind /dev "$overlay_root/dev" && mount --make-rslave "$overlay_root/dev" &&
    overlay_mounts+=("$overlay_root/dev")
  if [[ -n $apt_archives ]]; then
    mkdir -p "$apt_archives/partial"
    mount --bind "$apt_archives" "$overlay_root/var/cache/apt/archives" &&
      overlay_mounts+=("$overlay_root/var/cache/apt/archives")
  fi
  cp -L /etc/resolv.conf "$overlay_root/etc/resolv.conf"
  # The certificate authorities added on this machine (a TLS-inspecting proxy's, where the network
  # has one): HTTPS from inside (npm) then works as it does outside. ca-certificates, when apt
  # installs it in here, adds them to the bundle.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$overlay_root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$overlay_root/usr/local/share/ca-certificates/"
  fi
}

in_root() {
  chroot "$overlay_root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@"
}

overlay_root_down() {
  local i
  for ((i = ${#overlay_mounts[@]} - 1; i >= 0; i--)); do
    umount -R "${overlay_mounts[$i]}" 2>/dev/null || umount -l "${overlay_mounts[$i]}"
  done
  overlay_mounts=()
  # Never remove a folder that still has something mounted in it (its /dev is the host's).
  if [[ -n $overlay_work ]]; then
    if grep -q " $overlay_work/" /proc/self/mounts; then
      echo "overlay_root: $overlay_work still has mounts; left in place" >&2
    else
      rm -rf "$overlay_work"
    fi
  fi
  overlay_work=""
  overlay_root=""
}
