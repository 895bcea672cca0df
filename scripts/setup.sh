#!/usr/bin/env bash
# Installs everything stagehand's build, demo and tests need on a fresh Debian 12 machine.
# Idempotent: re-running it only installs what is missing. Needs root (or sudo).
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

debian_packages=(
  # boot and image making
  qemu-system-x86 qemu-system-arm qemu-user-static linux-image-amd64
  cpio busybox-static e2fsprogs file
  # the stand-in stage 2 and real BuildStream
  debootstrap buildstream bubblewrap
  # peers for tests and benchmarks
  lrzsz pigz netcat-openbsd iproute2 util-linux
  # end-to-end boot paths: user-space NFS server, more QEMU targets, host-side helpers
  nfs-ganesha nfs-ganesha-vfs qemu-system-ppc kmod python3
)

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust standard libraries for the static agent (musl, linked with rust-lld).
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done

# Kernels for the boot tests, in the cache: x86_64 from the package above, aarch64
# downloaded (private apt configuration; the host's dpkg architectures stay as they are).
"$(dirname "$0")/kernels.sh" x86_64 aarch64

echo "setup: done"
