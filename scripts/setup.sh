#!/usr/bin/env bash
# Installs everything stagehand's build, demo and tests need on a fresh Debian 12 machine.
# Idempotent: re-running it only installs what is missing. Needs root (or sudo).
#
#   scripts/setup.sh              x86_64 + aarch64 (musl) agents: what CI needs
#   scripts/setup.sh --cross-all  also the gnu+crt-static agent targets (ppc64el, ppc64,
#                                 armhf, riscv64, i686 musl) with Debian's cross gcc and libc,
#                                 and QEMU for POWER, MIPS and RISC-V
set -euo pipefail

cross_all=0
for arg in "$@"; do
  case "$arg" in
    --cross-all) cross_all=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

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
rust_targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

if [ "$cross_all" -eq 1 ]; then
  # Keep in step with targets/*.json ("debian_cross_packages" and "rust_target").
  debian_packages+=(
    gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross
    gcc-powerpc64-linux-gnu libc6-dev-ppc64-cross
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
    gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
    # system emulators of the other families (targets/*.json "qemu")
    qemu-system-ppc qemu-system-mips qemu-system-misc
  )
  rust_targets+=(
    i686-unknown-linux-musl
    powerpc64le-unknown-linux-gnu powerpc64-unknown-linux-gnu
    armv7-unknown-linux-gnueabihf riscv64gc-unknown-linux-gnu
  )
fi

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust standard libraries for the static agent (musl with rust-lld; gnu with crt-static).
installed_targets=$(rustup target list --installed)
for t in "${rust_targets[@]}"; do
  grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done

# Kernels for the boot tests, in the cache: x86_64 from the package above, aarch64
# downloaded (private apt configuration; the host's dpkg architectures stay as they are).
"$(dirname "$0")/kernels.sh" x86_64 aarch64

echo "setup: done"
