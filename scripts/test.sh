#!/usr/bin/env bash
# The test command (README; CI runs exactly this through .ci/run).
# Sets the machine up, then runs every default suite:
#   1. unit, property, namespace and command-line tests of all crates (cargo test);
#   2. the static agent builds for x86_64 and aarch64, checked with file(1);
#   3. the end-to-end scenarios under QEMU (tests/e2e/run.sh), unless STAGEHAND_E2E=0.
# Ends with one line that adds up every suite: `total: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

log=target/test-logs
mkdir -p "$log"
rm -f "$log"/*.log

bash scripts/setup.sh
cargo test --workspace --locked 2>&1 | tee "$log/cargo.log"
bash scripts/check-static-agents.sh
if [ "${STAGEHAND_E2E:-1}" != 0 ] && [ -x tests/e2e/run.sh ]; then
  bash tests/e2e/run.sh 2>&1 | tee "$log/e2e.log"
fi

# `test result: ok. 61 passed; 0 failed; ...` (libtest) and `ns_pid1: 8 passed; 0 failed`
# (the namespace harness) from every suite that ran.
awk '/^(test result: [a-zA-Z]+\.|[a-z0-9_]+:) [0-9]+ passed; [0-9]+ failed/ {
       for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
     }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"/*.log
