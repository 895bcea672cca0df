#!/usr/bin/env bash
# The test command (README; CI runs exactly this through .ci/run).
# Sets the machine up, then runs every default suite:
#   1. unit, property, namespace and command-line tests of both crates (cargo test);
#   2. the static agent builds for x86_64 and aarch64, checked with file(1);
#   3. the end-to-end scenarios under QEMU (tests/e2e), unless STAGEHAND_E2E=0.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo test --workspace --locked
bash scripts/check-static-agents.sh
if [ "${STAGEHAND_E2E:-1}" != 0 ] && [ -x tests/e2e/run.sh ]; then
  bash tests/e2e/run.sh
fi
