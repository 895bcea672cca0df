#!/usr/bin/env bash
# The benchmarks (BENCHMARKS.md): stagehand against the tools people use today.
#   scripts/bench.sh [FIGURE...]     FIGURE: machine serial network footprint whole (default: all)
# Prints every figure and keeps a copy in bench-results/bench-DATE.txt. Needs root (user
# namespaces + chroot), lrzsz, netcat-openbsd, pigz, debootstrap, qemu (scripts/setup.sh).
# The test tree (a debootstrap minbase root with gcc, make, libc6-dev) is made once and
# cached in ${STAGEHAND_CACHE:-$HOME/.cache/stagehand}/. Loopback network only; every step
# stops by itself (time limits). Nothing here asserts a time: read the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache="${STAGEHAND_CACHE:-$HOME/.cache/stagehand}"
results="${BENCH_RESULTS:-$root/bench-results}"
mkdir -p "$results" "$cache/bench"
log="$results/bench-$(date -u +%Y%m%dT%H%M%SZ).txt"
exec > >(tee "$log") 2>&1
figures=("$@")
[ ${#figures[@]} -gt 0 ] || figures=(machine serial network footprint whole)
want() { [[ " ${figures[*]} " == *" $1 "* ]]; }
say() { printf '\n== %s\n' "$*"; }
die() { echo "bench: $*" >&2; exit 1; }
for tool in sz rz nc pigz gzip tar unshare chroot /usr/bin/time; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup.sh"
done
[ "$(id -u)" -eq 0 ] || die "run as root (user namespaces, chroot into the test tree)"

work=$(mktemp -d "${TMPDIR:-/tmp}/stagehand-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "build"
cargo build --release --locked -p stagehand -p stagehand-bench 2>&1 | tail -n 1
# The product build: the same settings as `stagehand agent build --target x86_64`.
cargo build --release --locked -p stagehand-agent --target x86_64-unknown-linux-musl \
  --config linker-scripts/x86_64-unknown-linux-musl.toml 2>&1 | tail -n 1
bench=$root/target/release/stagehand-bench
host=$root/target/release/stagehand
agent=$root/target/x86_64-unknown-linux-musl/release/stagehand-agent

# ---- the test tree ------------------------------------------------------------------
# A debootstrap minbase root that can compile C, as a tarball (the same recipe and cache as
# the end-to-end stage 2, tests/e2e/make-stage2-debootstrap.sh), unpacked once for reading.
make_tree_tarball() {
  local suite=bookworm arch mirror out tmp
  arch=$(dpkg --print-architecture)
  out="$cache/stage2/debootstrap-$suite-$arch.tar.gz"
  if [ -s "$out" ]; then echo "$out"; return; fi
  if [ -x tests/e2e/make-stage2-debootstrap.sh ]; then tests/e2e/make-stage2-debootstrap.sh; return; fi
  command -v debootstrap >/dev/null || die "debootstrap is missing: run scripts/setup.sh"
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null \
    | awk -v s="$suite" '$2 == s && $3 == "main" { print $1; exit }')
  [ -n "$mirror" ] || die "no '$suite main' archive in the host's apt sources"
  mkdir -p "$cache/stage2"
  tmp=$(mktemp -d "$cache/stage2/.debootstrap.XXXXXX")
  debootstrap --variant=minbase --include=gcc,libc6-dev,make,cpio "$suite" "$tmp/root" "$mirror" >"$tmp/log" 2>&1 \
    || { tail -n 20 "$tmp/log" >&2; die "debootstrap failed"; }
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*_Packages
  tar -C "$tmp/root" --numeric-owner -czf "$out" .
  rm -rf "$tmp"
  echo "$out"
}
tree="$cache/bench/tree"
if [ ! -d "$tree" ]; then
  tarball=$(make_tree_tarball)
  rm -rf "$tree.tmp"; mkdir -p "$tree.tmp"
  tar -C "$tree.tmp" --numeric-owner -xzf "$tarball"
  mv "$tree.tmp" "$tree"
fi
# The agent's own files inside a tree: it leaves their folder (the key's) out of its tarball.
install_agent() { # TREE
  mkdir -p "$1/stagehand-bench"
  cp "$agent" "$1/stagehand-bench/agent"
  printf '#!/bin/sh\ntrue\n' > "$1/stagehand-bench/noop.sh"
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$1/stagehand-bench/key"
  echo >> "$1/stagehand-bench/key"
  rm -rf "$1/stagehand-bench/state" "$1/stagehand-bench/logs"
}
install_agent "$tree"
tar_excludes=(--exclude=./stagehand-bench --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' --exclude='./tmp/*' --exclude='./run/*')
port=$((20000 + RANDOM % 20000))

# The agent in container mode in TREE (user + pid + mount namespaces, chroot); extra
# STAGEHAND_* settings as arguments.
agent_cmd() { # TREE SETTING...
  local t=$1; shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin STAGEHAND_MODE=container STAGEHAND_KEY_FILE=/stagehand-bench/key \
    STAGEHAND_BUNDLE=/stagehand-bench/noop.sh STAGEHAND_BUNDLE_KIND=script \
    STAGEHAND_STATE_DIR=/stagehand-bench/state STAGEHAND_LOGS_DIR=/stagehand-bench/logs "$@" \
    unshare --user --map-root-user --pid --mount --fork chroot "$t" /stagehand-bench/agent
}

# Agent → TCP loopback → `stagehand collect`; prints wall seconds and the tarball's size.
stagehand_tcp() { # NAME TREE SETTING...
  local name=$1 t=$2; shift 2
  port=$((port + 1))
  rm -rf "$work/collect-$name" "$t/stagehand-bench/state" "$t/stagehand-bench/logs"
  "$host" collect --listen "127.0.0.1:$port" --key "$t/stagehand-bench/key" --out "$work/collect-$name" \
    --timeout 900 > "$work/collect-$name.log" 2>&1 &
  local cpid=$! t0 t1
  sleep 0.3
  t0=$(date +%s.%N)
  agent_cmd "$t" STAGEHAND_CHANNEL="tcp:127.0.0.1:$port" "$@" > "$work/agent-$name.log" 2>&1 || true
  wait "$cpid" || { tail -n 5 "$work/collect-$name.log"; echo "network $name: collect failed"; return; }
  t1=$(date +%s.%N)
  local f; f=$(ls "$work/collect-$name"/sysroot.tar* | grep -v sha256 | head -n 1)
  record "$name" "$(echo "$t1 - $t0" | bc)" "$(stat -c %s "$f")"
}

# Best time of each network case, for the ratios at the end.
declare -A best
record() { # NAME SECONDS BYTES
  printf 'network %-28s %7.2f s  %11d bytes\n' "$1" "$2" "$3"
  if [ -z "${best[$1]:-}" ] || [ "$(echo "$2 < ${best[$1]}" | bc)" = 1 ]; then best[$1]=$2; fi
}
ratio() { # NAME PEER TARGET
  printf 'network ratio %-26s / %-14s = %5.2f (best %.2f s / %.2f s; target <= %s)\n' "$1" "$2" \
    "$(echo "scale=4; ${best[$1]} / ${best[$2]}" | bc)" "${best[$1]}" "${best[$2]}" "$3"
}

# tar | FILTER | nc → nc -l on loopback.
tar_nc() { # NAME FILTER
  local name=$1 filter=$2
  port=$((port + 1))
  nc -l 127.0.0.1 "$port" > "$work/nc-$name.out" &
  local npid=$! t0 t1
  sleep 0.3
  t0=$(date +%s.%N)
  tar -C "$tree" --numeric-owner "${tar_excludes[@]}" -cf - . | $filter | nc -N 127.0.0.1 "$port"
  wait "$npid"
  t1=$(date +%s.%N)
  record "$name" "$(echo "$t1 - $t0" | bc)" "$(stat -c %s "$work/nc-$name.out")"
  rm -f "$work/nc-$name.out"
}

if want machine; then
  say "machine"
  echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); memory: $(free -m | awk '/Mem:/ {print $2}') MiB"
  echo "kernel: $(uname -r); rustc: $(rustc --version); lrzsz: $(sz --version 2>&1 | head -n 1); gzip: $(gzip --version | head -n 1); pigz: $(pigz --version 2>&1)"
  echo "test tree: $tree: $(du -sm --exclude=stagehand-bench "$tree" | cut -f1) MiB on disk, $(find "$tree" -type f | wc -l) files"
fi

if want serial; then
  say "serial: simulated clock (linesim), 4 MiB random, both directions faulty"
  "$bench" serial-sim --size $((4 << 20))
  echo "the same at 256 KiB (the size of the real-time runs below, to compare):"
  "$bench" serial-sim --size $((256 << 10))
  say "serial: compressed sysroot (agent's packer, level 6) on the simulated line"
  "$bench" serial-sysroot "$tree"
  say "serial: real time on the relay, 256 KiB random, lrzsz (sz/rz) and stagehand side by side, 300 s limit"
  # All eight at once: each needs little CPU, and 2 x 4 x 300 s in a row would be too long.
  pids=()
  for c in clean ber1e-5 ber1e-4 drop1e-4; do
    "$bench" serial-lrzsz "$c" --size $((256 << 10)) --limit 300 > "$work/lrzsz-$c.txt" & pids+=($!)
    "$bench" serial-relay "$c" --size $((256 << 10)) --limit 300 > "$work/relay-$c.txt" & pids+=($!)
  done
  wait "${pids[@]}"
  cat "$work"/lrzsz-*.txt "$work"/relay-*.txt
fi

if want network; then
  say "network: the test tree to the host over loopback TCP (page cache warm), best of 3 (the machine is shared: interleaved rounds)"
  tar -C "$tree" -cf - . > /dev/null
  echo "deflate speed on the tree's bytes, one thread:"
  "$bench" levels "$tree" --limit $((64 << 20))
  for round in 1 2 3; do
    echo "round $round:"
    tar_nc "tar|nc" cat
    stagehand_tcp "stagehand-none" "$tree" STAGEHAND_COMPRESSION=none
    tar_nc "tar|gzip-6|nc" "gzip -6"
    stagehand_tcp "stagehand-gzip6-threads1" "$tree" STAGEHAND_COMPRESSION=gzip STAGEHAND_GZIP_LEVEL=6 STAGEHAND_THREADS=1
    tar_nc "tar|pigz-6|nc" "pigz -6"
    stagehand_tcp "stagehand-gzip6-threads2" "$tree" STAGEHAND_COMPRESSION=gzip STAGEHAND_GZIP_LEVEL=6 STAGEHAND_THREADS=2
  done
  ratio stagehand-none "tar|nc" 1.10
  ratio stagehand-gzip6-threads1 "tar|gzip-6|nc" 1.00
  ratio stagehand-gzip6-threads2 "tar|pigz-6|nc" 1.00
fi

if want footprint; then
  say "footprint: static agent size (x86_64 musl, stripped)"
  size=$(stat -c %s "$agent")
  echo "agent: $size bytes = $(echo "scale=3; $size / 1048576" | bc) MiB (target 0.75 MiB)"
  say "footprint: peak RSS packing a 1 GiB tree (gzip -6, 2 threads, TCP to collect)"
  big="$cache/bench/tree-1g"
  if [ ! -d "$big" ]; then
    rm -rf "$big.tmp"; cp -a "$tree" "$big.tmp"; rm -rf "$big.tmp/stagehand-bench"
    i=0
    while [ "$(du -sm "$big.tmp" | cut -f1)" -lt 1100 ]; do i=$((i + 1)); cp -a "$tree/usr" "$big.tmp/copy$i"; done
    mv "$big.tmp" "$big"
  fi
  install_agent "$big"
  echo "tree: $(du -sm --exclude=stagehand-bench "$big" | cut -f1) MiB"
  port=$((port + 1))
  "$host" collect --listen "127.0.0.1:$port" --key "$big/stagehand-bench/key" --out "$work/collect-1g" --timeout 900 > "$work/collect-1g.log" 2>&1 &
  cpid=$!
  sleep 0.3
  /usr/bin/time -f 'agent peak RSS (maxresident of unshare and the agent): %M KiB, %e s wall' \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin STAGEHAND_MODE=container STAGEHAND_KEY_FILE=/stagehand-bench/key \
    STAGEHAND_BUNDLE=/stagehand-bench/noop.sh STAGEHAND_BUNDLE_KIND=script STAGEHAND_STATE_DIR=/stagehand-bench/state \
    STAGEHAND_LOGS_DIR=/stagehand-bench/logs STAGEHAND_CHANNEL="tcp:127.0.0.1:$port" STAGEHAND_COMPRESSION=gzip STAGEHAND_THREADS=2 \
    unshare --user --map-root-user --pid --mount --fork chroot "$big" /stagehand-bench/agent > "$work/agent-1g.log" 2>&1 || true
  grep -h 'peak RSS' "$work/agent-1g.log"
  wait "$cpid" && echo "collect: $(grep -h -i 'verified' "$work/collect-1g.log" | tail -n 1)"
  /usr/bin/time -f 'baseline: unshare + chroot + /bin/true peak RSS %M KiB' unshare --user --map-root-user --pid --mount --fork chroot "$tree" /bin/true
  say "footprint: spawn to first byte on TCP (container mode in the test tree; median of 21)"
  "$bench" exit-time --runs 21 -- unshare --user --map-root-user --pid --mount --fork chroot "$tree" /bin/true
  "$bench" first-frame --runs 21 -- env STAGEHAND_MODE=container STAGEHAND_KEY_FILE=/stagehand-bench/key \
    STAGEHAND_BUNDLE=/stagehand-bench/noop.sh STAGEHAND_BUNDLE_KIND=script STAGEHAND_STATE_DIR=/stagehand-bench/state \
    STAGEHAND_LOGS_DIR=/stagehand-bench/logs \
    unshare --user --map-root-user --pid --mount --fork chroot "$tree" /stagehand-bench/agent
fi

if want whole; then
  say "whole run: stagehand demo (x86_64 initramfs under QEMU TCG, second serial port)"
  t0=$(date +%s.%N)
  timeout 900 "$host" demo --force --agent "$agent" --out "$work/demo" > "$work/demo.log" 2>&1 || { tail -n 20 "$work/demo.log"; echo "demo failed"; }
  t1=$(date +%s.%N)
  grep -E '^==|verified|succeeded|s\)' "$work/demo.log" | tail -n 15
  echo "demo wall time: $(echo "$t1 - $t0" | bc) s"
  say "whole run: host CPU while receiving at line rate (collect --input --follow of a 115200-baud capture)"
  small="$work/small-tree"
  mkdir -p "$small/bin"
  cp /bin/busybox "$small/bin/busybox" && ln -s busybox "$small/bin/sh" && ln -s busybox "$small/bin/true"
  head -c $((384 << 10)) /dev/urandom > "$small/payload.bin"
  install_agent "$small"
  agent_cmd "$small" STAGEHAND_CHANNEL=file:/stagehand-bench/capture STAGEHAND_COMPRESSION=none STAGEHAND_ONE_WAY_REPEATS=1 STAGEHAND_EXCLUDE=/bin \
    > "$work/agent-capture.log" 2>&1 || true
  capture="$small/stagehand-bench/capture"
  : > "$work/line"
  "$bench" throttle "$capture" "$work/line" --rate 11520 &
  tpid=$!
  # perf stat counts CPU time to the microsecond (rusage rounds to 10 ms: too coarse here).
  measure=(/usr/bin/time -f 'collect: %U s user + %S s system, %e s wall, peak RSS %M KiB')
  command -v perf >/dev/null && measure=(perf stat -e task-clock -x,)
  "${measure[@]}" "$host" collect --input "$work/line" --follow --key "$small/stagehand-bench/key" \
    --out "$work/collect-line" --timeout 300 > "$work/collect-line.log" 2>&1 || true
  wait "$tpid" || true
  echo "capture: $(stat -c %s "$capture") bytes at 11520 B/s"
  grep -h -E 'collect:|verified /|task-clock|throttle' "$work/collect-line.log" | tail -n 3
fi
say "done: $log (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
