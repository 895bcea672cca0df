#!/usr/bin/env bash
# The end-to-end suite (scripts/test.sh runs it after the unit tests):
#   1. quick boot smoke cases of tests/e2e/boot-smoke.sh (x86_64 initramfs and ext4 with
#      Debian's initrd, an NFSv4 root from a user-space server on loopback, a 9p host
#      folder, arm64 console): the boot paths work before any scenario uses them;
#   2. every scenario of the stagehand-e2e crate (tests/e2e/tests/*.rs), one at a time.
# Prints the wall time of each scenario and of the whole suite.
# Env: SMOKE_CASES (default below; empty: none), E2E_FILTER (a cargo test name filter),
#      STAGEHAND_NO_SKIP=1 (a missing tool fails instead of skipping; scripts/test.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/../.."

start=$SECONDS
smoke_cases=${SMOKE_CASES-"initramfs-serial ext4-console nfs4-own-mount 9p-folder arm64-console"}
times=target/e2e/times.txt
mkdir -p target/e2e
rm -f "$times"

status=0
if [ -n "$smoke_cases" ]; then
  t=$SECONDS
  # shellcheck disable=SC2086
  bash tests/e2e/boot-smoke.sh $smoke_cases || status=1
  printf '%-32s %7.1f s  %s\n' "boot-smoke ($smoke_cases)" "$((SECONDS - t))" "$([ $status = 0 ] && echo ok || echo FAILED)" >>"$times"
fi

cargo build -q -p stagehand
# The scenarios are #[ignore]d so that `cargo test --workspace` (the unit tests) does not
# boot them; here they all run, one at a time.
cargo test -p stagehand-e2e --locked -- --include-ignored --test-threads=1 ${E2E_FILTER:+"$E2E_FILTER"} || status=1

echo
echo "end-to-end wall times:"
cat "$times" 2>/dev/null || true
printf '%-32s %7.1f s\n' "whole e2e suite" "$((SECONDS - start))"
exit $status
