#!/usr/bin/env bash
# Builds the agent with `stagehand agent build` for each architecture given (default: the
# two CI builds, x86_64 and armv8l64) and checks with file(1) that each result is a
# statically linked executable for the right machine. With --run, also starts each binary
# (natively or under qemu-user) and requires it to exit 0.
#
#   scripts/check-static-agents.sh [--run] [ARCH...]
set -euo pipefail

run=0
arches=()
for arg in "$@"; do
  case "$arg" in
    --run) run=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    -*) echo "check-static-agents: unknown option $arg" >&2; exit 2 ;;
    *) arches+=("$arg") ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 armv8l64)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v file >/dev/null || { echo "check-static-agents: file(1) missing: run scripts/setup.sh" >&2; exit 1; }

cargo build -q -p stagehand
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
stagehand=$target_dir/debug/stagehand
export STAGEHAND_SOURCE=$root

# What file(1) must say for each architecture, and how to run it here.
expect() {
  case "$1" in
    x86_64)   echo "ELF 64-bit LSB|x86-64|" ;;
    x86_32)   echo "ELF 32-bit LSB|Intel 80386|qemu-i386-static" ;;
    armv8l64) echo "ELF 64-bit LSB|ARM aarch64|qemu-aarch64-static" ;;
    armv7lhf) echo "ELF 32-bit LSB|ARM, EABI5|qemu-arm-static" ;;
    ppc64l)   echo "ELF 64-bit LSB|PowerPC|qemu-ppc64le-static" ;;
    ppc64b|ppc64) echo "ELF 64-bit MSB|PowerPC|qemu-ppc64-static" ;;
    riscv64)  echo "ELF 64-bit LSB|RISC-V|qemu-riscv64-static" ;;
    *) return 1 ;;
  esac
}

failed=0
for arch in "${arches[@]}"; do
  if ! spec=$(expect "$arch"); then
    echo "check-static-agents: no expectations for $arch" >&2; failed=1; continue
  fi
  IFS='|' read -r class machine qemu <<<"$spec"
  out=$target_dir/agents/$arch/stagehand-agent
  if ! "$stagehand" agent build --target "$arch" --out "$out"; then
    echo "FAIL $arch: agent build failed" >&2; failed=1; continue
  fi
  desc=$(file -b "$out")
  problems=()
  grep -q "$class" <<<"$desc" || problems+=("not $class")
  grep -q "$machine" <<<"$desc" || problems+=("not $machine")
  grep -Eq 'statically linked|static-pie linked' <<<"$desc" || problems+=("not statically linked")
  if [ "$run" -eq 1 ] && [ ${#problems[@]} -eq 0 ]; then
    if [ -n "$qemu" ]; then "$qemu" "$out" --version >/dev/null 2>&1 || problems+=("does not run under $qemu")
    else "$out" --version >/dev/null 2>&1 || problems+=("does not run"); fi
  fi
  if [ ${#problems[@]} -gt 0 ]; then
    echo "FAIL $arch: ${problems[*]}: $desc" >&2; failed=1
  else
    echo "ok   $arch: $(stat -c %s "$out") bytes: $desc"
  fi
done
exit $failed
