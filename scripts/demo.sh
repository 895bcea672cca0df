#!/usr/bin/env bash
# The demo command (README): sets the machine up, builds stagehand, and runs a whole
# x86_64 bring-up under QEMU: a stand-in stage 2, a two-module stage 3 bundle, the static
# agent as /init of an initramfs, boot, live progress, the verified sysroot tarball.
#   scripts/demo.sh [OUT_DIR]     (default: ./stagehand-demo)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --locked -p stagehand
exec target/release/stagehand demo --force --out "${1:-stagehand-demo}"
