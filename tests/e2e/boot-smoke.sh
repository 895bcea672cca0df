#!/usr/bin/env bash
# Boots Debian kernels under QEMU (TCG) with a probe /init, one case per boot path the
# end-to-end scenarios use, and checks that the probe's marker reaches the host.
# Usage: tests/e2e/boot-smoke.sh [CASE...]     (no CASE: all; list: --list)
# Needs: scripts/setup.sh run once (QEMU, kernels in the cache, nfs-ganesha, python3).
# A missing tool skips its case with one line `SKIPPED: ... (...)` (also appended to
# $STAGEHAND_SKIP_LOG); with STAGEHAND_NO_SKIP=1 (scripts/test.sh) it fails instead,
# except for the optional cases, which need scripts/setup.sh --cross-all.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="${STAGEHAND_CACHE:-$HOME/.cache/stagehand}"
kernels="$cache/kernels"
work=$(mktemp -d "${TMPDIR:-/tmp}/stagehand-boot-smoke.XXXXXX")
keep="${KEEP:-}"
trap '[ -n "$keep" ] && echo "kept: $work" || rm -rf "$work"' EXIT
timeout_s="${BOOT_TIMEOUT:-120}"

all_cases=(initramfs-serial initramfs-socket-server initramfs-socket-client ext4-console
  initramfs-virtio-serial ext4-own-modules tcp-e1000 tcp-restrict-guestfwd nfs-root nfs4-own-mount 9p-folder power-cut
  arm64-console arm64-virtio-serial arm64-tcp-virtio-net arm64-ext4-modules ppc64le-console armv7-console)
optional_cases=" ppc64le-console armv7-console "

results=()
failed=0
say() { echo "boot-smoke: $*" >&2; }
fail() { say "FAIL $case: $*"; [ -e "$dir/console.out" ] && { say "--- last console lines:"; tail -n 25 "$dir/console.out" | tr -d '\r' >&2; }; results+=("FAIL  $case  $*"); failed=1; }
pass() { say "ok   $case  $*"; results+=("ok    $case  $*"); }
skip() {
  if [ "${STAGEHAND_NO_SKIP:-0}" != 0 ] && [[ "$optional_cases" != *" $case "* ]]; then
    fail "SKIPPED: boot-smoke $case ($*): STAGEHAND_NO_SKIP is set, so nothing may be skipped"; return
  fi
  say "SKIPPED: boot-smoke $case ($*)"; results+=("skip  $case  $*")
  [ -z "${STAGEHAND_SKIP_LOG:-}" ] || echo "boot-smoke $case: SKIPPED: boot-smoke $case ($*)" >>"$STAGEHAND_SKIP_LOG"
}
need() { for t in "$@"; do command -v "$t" >/dev/null || { echo "$t not installed (run scripts/setup.sh)"; return 1; }; done; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

kernel_dir() {
  local k="$kernels/$1"
  [ -s "$k/version" ] || { echo "no $1 kernel in $kernels (run scripts/kernels.sh $1)"; return 1; }
  echo "$k"
}

# Builds the probe for a Rust target once and prints its path. musl targets link with
# rust-lld alone; gnu targets need Debian's cross gcc and static libc.
probe_for() {
  local target="$1" out="$here/probe-init/target/$1/release/probe-init" linker
  case "$target" in
    *-musl) linker=rust-lld ;;
    powerpc64le-unknown-linux-gnu) linker=powerpc64le-linux-gnu-gcc ;;
    armv7-unknown-linux-gnueabihf) linker=arm-linux-gnueabihf-gcc ;;
    *) echo "no linker known for $target" >&2; return 1 ;;
  esac
  if [ ! -x "$out" ] || [ "$here/probe-init/src/main.rs" -nt "$out" ]; then
    [ "$linker" = rust-lld ] || command -v "$linker" >/dev/null || { echo "$linker not installed" >&2; return 1; }
    rustup target list --installed 2>/dev/null | grep -qx "$target" || { echo "rust target $target not installed" >&2; return 1; }
    (cd "$here/probe-init" && RUSTFLAGS="-C linker=$linker -C target-feature=+crt-static" \
      cargo build -q --release --target "$target") >&2 || return 1
  fi
  echo "$out"
}

# Sets the caller's $k (kernel folder) and $p (probe) for x86_64; skips without a kernel.
x86_prep() {
  k=$(kernel_dir x86_64) || { skip "$k"; return 1; }
  p=$(probe_for x86_64-unknown-linux-musl) || { fail "cannot build the x86_64 probe"; return 1; }
}

# root folder with the probe as /init and the device/mount points.
make_root() {
  local root="$1" probe="$2"
  mkdir -p "$root"/{dev,proc,sys,tmp,mnt,run}
  cp "$probe" "$root/init"
  # /dev/console lets the kernel give PID 1 its stdio before devtmpfs is mounted.
  [ "$(id -u)" -ne 0 ] || [ -e "$root/dev/console" ] || mknod -m 600 "$root/dev/console" c 5 1
}

# Prints the modules.dep paths of the named modules and all they depend on, in load
# order (a module's dependencies are listed in modules.dep so that loading them from
# the last to the first works), each once.
mod_order() {
  local kdir="$1" ver seen=" " name line dep deps=() i; shift
  ver=$(cat "$kdir/version")
  for name in "$@"; do
    line=$(grep -E "(^|/)$name\.ko(\.[a-z]+)?:" "$kdir/modules/$ver/modules.dep") || { echo "no module $name in $ver" >&2; return 1; }
    read -r -a deps <<<"${line#*:}"
    for ((i=${#deps[@]}-1; i>=0; i--)); do
      [[ "$seen" == *" ${deps[i]} "* ]] || { echo "${deps[i]}"; seen+="${deps[i]} "; }
    done
    [[ "$seen" == *" ${line%%:*} "* ]] || { echo "${line%%:*}"; seen+="${line%%:*} "; }
  done
}

# Copies modules (names relative to the kernel's modules/<ver>/) into root and prints
# the probe.mods= value in the same order.
add_modules() {
  local root="$1" kdir="$2" ver; shift 2
  ver=$(cat "$kdir/version")
  local list=() m
  for m in "$@"; do
    mkdir -p "$root/lib/modules/$ver/$(dirname "$m")"
    cp "$kdir/modules/$ver/$m" "$root/lib/modules/$ver/$m"
    list+=("/lib/modules/$ver/$m")
  done
  (IFS=:; echo "${list[*]}")
}

make_cpio() { (cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > "$2"; }

# Runs QEMU in the background with a timeout; $qpid is its pid.
start_qemu() {
  local bin="$1"; shift
  timeout "$timeout_s" "$bin" "$@" </dev/null >"$dir/qemu.out" 2>&1 &
  qpid=$!
}
# Not in a subshell: only the shell that started QEMU can wait for it. Sets $err.
wait_qemu() {
  wait "$qpid"; local rc=$?
  [ $rc -ne 124 ] || { err="QEMU timed out after ${timeout_s}s"; return 1; }
  [ $rc -eq 0 ] || { err="QEMU exit $rc: $(tail -n 3 "$dir/qemu.out")"; return 1; }
}

# Waits until a file contains a pattern (QEMU still running) or the timeout.
wait_for() {
  local file="$1" pat="$2" secs="${3:-$timeout_s}" t0=$SECONDS
  until grep -qa -- "$pat" "$file" 2>/dev/null; do
    [ $((SECONDS - t0)) -lt "$secs" ] || return 1
    kill -0 "$qpid" 2>/dev/null || { grep -qa -- "$pat" "$file" 2>/dev/null; return; }
    sleep 0.2
  done
}

expect_in() { grep -qa -- "$2" "$1" || { echo "no '$2' in $(basename "$1")"; return 1; }; }

# A host program that listens on a TCP port or unix socket and stores what arrives.
# It accepts every connection: a guest connect attempt that timed out can still reach
# the host as its own connection, which is then closed without data (user-mode network).
# It stops after "PROBE DONE" or 90 s. Sets $lpid.
host_listener() {
  local kind="$1" where="$2" out="$3"
  python3 - "$kind" "$where" "$out" >"$out.log" 2>&1 <<'PY' &
import socket, sys, time, select
kind, where, out = sys.argv[1:]
if kind == "tcp":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(where)))
else:
    s = socket.socket(socket.AF_UNIX); s.bind(where)
s.listen(8)
open(out + ".ready", "w").close()
# Stops at "PROBE DONE" (it may arrive split over reads) or when a connection that
# carried data closes.
t0 = time.time(); conns = []; got = set(); tail = b""; done = False
with open(out, "wb") as f:
    while not done and time.time() - t0 < 90:
        for x in select.select([s] + conns, [], [], 1)[0]:
            if x is s:
                c, _ = s.accept(); conns.append(c)
                print(f"{time.time()-t0:.2f} connection {len(conns)}", flush=True)
                continue
            try:
                b = x.recv(65536)
            except OSError as e:
                b = b""; print("recv:", e, flush=True)
            if not b:
                done = done or x in got
                conns.remove(x); x.close(); print(f"{time.time()-t0:.2f} closed", flush=True)
                continue
            got.add(x); f.write(b); f.flush()
            tail = (tail + b)[-64:]
            done = done or b"PROBE DONE" in tail
PY
  lpid=$!
  local i
  for i in $(seq 50); do [ -e "$out.ready" ] && return 0; sleep 0.1; done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# -nic none: no default NIC, whose iPXE option ROM costs seconds under TCG.
qemu_x86() { echo qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -monitor none -nic none; }

# ---------------------------------------------------------------- cases
case_initramfs-serial() {
  local k p; x86_prep || return
  make_root "$dir/root" "$p"; make_cpio "$dir/root" "$dir/init.cpio.gz"
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet probe.out=dev:/dev/ttyS1 probe.tag=$case" \
    -serial "file:$dir/console.out" -serial "file:$dir/channel.out"
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/channel.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s, $(grep -a 'PROBE OK' "$dir/channel.out" | tr -d '\r')"
}

# QEMU listens on a unix socket (server=on,wait=off); the host connects as soon as it exists.
case_initramfs-socket-server() {
  local k p; x86_prep || return
  need python3 >/dev/null || { skip "python3"; return; }
  make_root "$dir/root" "$p"; make_cpio "$dir/root" "$dir/init.cpio.gz"
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet probe.out=dev:/dev/ttyS1 probe.tag=$case" \
    -serial "file:$dir/console.out" \
    -chardev "socket,id=ch0,path=$dir/ch.sock,server=on,wait=off" -serial chardev:ch0
  local i; for i in $(seq 100); do [ -S "$dir/ch.sock" ] && break; sleep 0.05; done
  python3 - "$dir/ch.sock" "$dir/channel.out" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(60)
with open(sys.argv[2], "wb") as f:
    while True:
        try: b = s.recv(65536)
        except socket.timeout: break
        if not b: break
        f.write(b)
        if b"PROBE DONE" in b: break
PY
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/channel.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s"
}

# The host listens first; QEMU connects to it as a client (no race, no polling).
case_initramfs-socket-client() {
  local k p; x86_prep || return
  need python3 >/dev/null || { skip "python3"; return; }
  make_root "$dir/root" "$p"; make_cpio "$dir/root" "$dir/init.cpio.gz"
  host_listener unix "$dir/ch.sock" "$dir/channel.out"
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet probe.out=dev:/dev/ttyS1 probe.tag=$case" \
    -serial "file:$dir/console.out" -chardev "socket,id=ch0,path=$dir/ch.sock" -serial chardev:ch0
  wait_qemu || { kill "$lpid" 2>/dev/null; fail "$err"; return; }
  wait "$lpid"
  e=$(expect_in "$dir/channel.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s"
}

make_ext4() { mke2fs -q -F -t ext4 -d "$1" "$2" "${3:-64M}" || return 1; }

case_ext4-console() {
  local k p; x86_prep || return
  need mke2fs >/dev/null || { skip "mke2fs"; return; }
  make_root "$dir/root" "$p"; make_ext4 "$dir/root" "$dir/root.img" || { fail "mke2fs"; return; }
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$k/initrd.img" \
    -drive "file=$dir/root.img,format=raw,if=virtio" \
    -append "console=ttyS0 root=/dev/vda rw init=/init panic=-1 loglevel=7 probe.out=dev:/dev/ttyS0 probe.tag=$case" \
    -serial "file:$dir/console.out"
  wait_qemu || { fail "$err"; return; }
  # The marker must arrive as whole lines even with kernel messages on the same port.
  e=$(grep -ac '^PROBE DONE' "$dir/console.out") ; [ "${e:-0}" -ge 1 ] || { fail "no whole 'PROBE DONE' line on the console"; return; }
  pass "wall $(since "$t0") s, $(grep -a 'PROBE OK' "$dir/console.out" | head -n1 | tr -d '\r')"
}

tcp_case() {
  local nic="$1" guest_addr="$2" k p; x86_prep || return
  need python3 >/dev/null || { skip "python3"; return; }
  make_root "$dir/root" "$p"
  local mods port; mods=$(add_modules "$dir/root" "$k" kernel/drivers/net/ethernet/intel/e1000/e1000.ko)
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  port=$(free_port); host_listener tcp "$port" "$dir/channel.out"
  nic=${nic//PORT/$port}
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet probe.mods=$mods probe.net=eth0/10.0.2.15/24 probe.out=tcp:$guest_addr:$port probe.tag=$case" \
    -serial "file:$dir/console.out" -netdev "$nic" -device e1000,netdev=n0,romfile=
  wait_qemu || { kill "$lpid" 2>/dev/null; fail "$err"; return; }
  kill "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null
  e=$(expect_in "$dir/channel.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s, $(grep -a -e 'TCP-CONNECTED' -e 'PROBE NET' "$dir/channel.out" | tr -d '\r' | tr '\n' ' ')"
}
# romfile= drops the NIC's iPXE option ROM: it costs seconds of firmware time under TCG.
case_tcp-e1000() { tcp_case "user,id=n0" 10.0.2.2; }
# restrict=on cuts the guest off from the host (10.0.2.2 included); only explicit forwards
# pass, and a guestfwd cannot use 10.0.2.2 itself, so it takes another address.
case_tcp-restrict-guestfwd() { tcp_case "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:PORT-tcp:127.0.0.1:PORT" 10.0.2.100; }

# nfs-ganesha serving folder $1 on 127.0.0.1:$nport (NFSv3 mountd on $mport, NFSv4 pseudo
# path /export), no privileged-port check (user-mode networking maps the guest's source
# port to an ordinary host port). $2 = v3 (NFSv3 + v4, registers with rpcbind, which must
# run) or v4 (NFSv4 over TCP only: no rpcbind needed; ganesha 4.3 fails to start without
# rpcbind when v3 or UDP is on; Register_With_Rpcbind is no 4.3 option). Sets $gpid, $nport, $mport.
start_ganesha() {
  local protocols="3, 4" udp=true
  [ "${2:-v3}" = v3 ] || { protocols=4; udp=false; }
  nport=$(free_port); mport=$(free_port)
  mkdir -p "$dir/ganesha"
  cat > "$dir/ganesha/ganesha.conf" <<CONF
NFS_CORE_PARAM {
  Bind_addr = 127.0.0.1;
  NFS_Port = $nport;
  MNT_Port = $mport;
  Protocols = $protocols;
  Enable_UDP = $udp;
  Enable_NLM = false;
  Enable_RQUOTA = false;
}
NFSV4 { Graceless = true; }
EXPORT {
  Export_Id = 1;
  Path = "$1";
  Pseudo = "/export";
  Protocols = $protocols;
  Transports = TCP;
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  PrivilegedPort = false;
  FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
CONF
  ganesha.nfsd -F -L "$dir/ganesha/ganesha.log" -f "$dir/ganesha/ganesha.conf" -p "$dir/ganesha/pid" \
    >"$dir/ganesha/stdout" 2>&1 &
  gpid=$!
  local i; for i in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && return 0; sleep 0.1; done
  kill "$gpid" 2>/dev/null; return 1
}

# ---- NFS root served by nfs-ganesha (user space) on loopback, mounted by Debian's initrd.
# Its klibc nfsmount speaks NFSv2/v3 only and has no port=/mountport= options: it always
# asks the portmapper at SERVER:111 (through user-mode networking: the host's 127.0.0.1:111),
# so rpcbind must run on the host and ganesha must register with it.
case_nfs-root() {
  local k p; x86_prep || return
  local g; g=$(need ganesha.nfsd rpcbind rpcinfo) || { skip "$g"; return; }
  local rpcpid=""
  if ! rpcinfo -p 127.0.0.1 >/dev/null 2>&1; then
    mkdir -p /run/rpcbind
    rpcbind -f -w >"$dir/rpcbind.out" 2>&1 &   # (-h 127.0.0.1 aborts with a double free in 1.2.6)
    rpcpid=$!
    local j; for j in $(seq 50); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  local export="$dir/export"; make_root "$export" "$p"
  start_ganesha "$export" v3 || { fail "ganesha did not start: $(grep -E 'FATAL|MAJ' "$dir/ganesha/ganesha.log" | tail -n 3)"; return; }
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$k/initrd.img" -netdev user,id=n0 -device e1000,netdev=n0,romfile= \
    -append "console=ttyS0 root=/dev/nfs nfsroot=10.0.2.2:$export,${NFS_OPTS:-tcp,v3} ip=${NFS_IP:-10.0.2.15::10.0.2.2:255.255.255.0:::off} rw init=/init panic=-1 probe.out=dev:/dev/ttyS0,file:/nfs-marker probe.tag=$case" \
    -serial "file:$dir/console.out"
  wait_qemu; local rc=$?
  kill "$gpid" 2>/dev/null; wait "$gpid" 2>/dev/null
  [ -z "$rpcpid" ] || { kill "$rpcpid" 2>/dev/null; wait "$rpcpid" 2>/dev/null; }
  cp "$dir/ganesha/ganesha.log" "$dir/ganesha.log" 2>/dev/null
  [ $rc -eq 0 ] || { fail "$err"; return; }
  e=$(expect_in "$export/nfs-marker" "PROBE DONE") || { fail "marker file not written through NFS: $e"; return; }
  pass "wall $(since "$t0") s"
}

# ---- NFSv4 mounted by the init itself (no rpcbind, one TCP port): e1000 + nfsv4 modules
case_nfs4-own-mount() {
  local k p; x86_prep || return
  local g; g=$(need ganesha.nfsd) || { skip "$g"; return; }
  make_root "$dir/root" "$p"
  local mods; mods=$(add_modules "$dir/root" "$k" $(mod_order "$k" e1000 nfsv4))
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  local export="$dir/export"; mkdir -p "$export"
  start_ganesha "$export" v4 || { fail "ganesha did not start: $(grep -E 'FATAL|MAJ' "$dir/ganesha/ganesha.log" | tail -n 3)"; return; }
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" -netdev user,id=n0 -device e1000,netdev=n0,romfile= \
    -append "console=ttyS0 panic=-1 quiet probe.mods=$mods probe.net=eth0/10.0.2.15/24 probe.mount=nfs4|10.0.2.2:/export|/mnt|vers=4.1,proto=tcp,port=$nport,addr=10.0.2.2,clientaddr=10.0.2.15,sec=sys probe.out=file:/mnt/marker probe.tag=$case" \
    -serial "file:$dir/console.out"
  wait_qemu; local rc=$?
  kill "$gpid" 2>/dev/null; wait "$gpid" 2>/dev/null
  [ $rc -eq 0 ] || { fail "$err"; return; }
  e=$(expect_in "$export/marker" "PROBE DONE") || { fail "marker not written through NFSv4: $e"; return; }
  pass "wall $(since "$t0") s, $(grep -a 'PROBE MOUNT' "$dir/console.out" | head -n1 | tr -d '\r' | cut -c1-60)..."
}

# ---- x86_64 second channel over virtio-serial (virtio_pci + virtio_console)
case_initramfs-virtio-serial() {
  local k p; x86_prep || return
  make_root "$dir/root" "$p"
  local mods; mods=$(add_modules "$dir/root" "$k" $(mod_order "$k" virtio_pci virtio_console))
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet probe.mods=$mods probe.out=dev:/dev/vport0p1 probe.tag=$case" \
    -serial "file:$dir/console.out" \
    -device virtio-serial-pci -chardev "file,id=ch0,path=$dir/channel.out" -device virtserialport,chardev=ch0,name=stagehand.0
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/channel.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s"
}

# ---- boot from a host folder over 9p (virtio): the probe mounts it and writes into it
case_9p-folder() {
  local k p; x86_prep || return
  make_root "$dir/root" "$p"
  local mods; mods=$(add_modules "$dir/root" "$k" $(mod_order "$k" virtio_pci 9pnet_virtio 9p))
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  mkdir -p "$dir/host-folder"; echo from-host > "$dir/host-folder/hello"
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -virtfs "local,path=$dir/host-folder,mount_tag=hostfolder,security_model=none,id=hostfolder" \
    -append "console=ttyS0 panic=-1 quiet probe.mods=$mods probe.mount=9p|hostfolder|/mnt|trans=virtio,version=9p2000.L,msize=262144 probe.out=file:/mnt/marker probe.tag=$case" \
    -serial "file:$dir/console.out"
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/host-folder/marker" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s"
}

# ---- ext4 disk without Debian's initrd: the init loads the block and ext4 modules itself
case_ext4-own-modules() {
  local k p; x86_prep || return
  need mke2fs debugfs >/dev/null || { skip "e2fsprogs"; return; }
  make_root "$dir/root" "$p"
  local mods; mods=$(add_modules "$dir/root" "$k" $(mod_order "$k" virtio_pci virtio_blk crc32c_generic ext4))
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  mkdir -p "$dir/disk"; echo on-disk > "$dir/disk/hello"; make_ext4 "$dir/disk" "$dir/disk.img" || { fail "mke2fs"; return; }
  local t0; t0=$(now)
  start_qemu $(qemu_x86) -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" -drive "file=$dir/disk.img,format=raw,if=virtio" \
    -append "console=ttyS0 panic=-1 quiet probe.mods=$mods probe.mount=ext4|/dev/vda|/mnt probe.out=file:/mnt/marker probe.tag=$case" \
    -serial "file:$dir/console.out"
  wait_qemu || { fail "$err"; return; }
  debugfs -R 'cat /marker' "$dir/disk.img" 2>/dev/null >"$dir/marker"
  e=$(expect_in "$dir/marker" "PROBE DONE") || { fail "marker not on the disk: $e"; return; }
  pass "wall $(since "$t0") s"
}

# ---- power cut: SIGKILL QEMU after the probe fsynced a file; the next boot finds it
case_power-cut() {
  local k p; x86_prep || return
  make_root "$dir/root" "$p"; make_ext4 "$dir/root" "$dir/root.img" || { fail "mke2fs"; return; }
  local args=(-kernel "$k/vmlinuz" -initrd "$k/initrd.img" -drive "file=$dir/root.img,format=raw,if=virtio"
    -append "console=ttyS0 root=/dev/vda rw init=/init panic=-1 probe.persist=/marker probe.tag=$case")
  local t0; t0=$(now)
  start_qemu $(qemu_x86) "${args[@]}" -serial "file:$dir/console.out"
  wait_for "$dir/console.out" "WAITING-FOR-KILL" || { kill -9 "$qpid" 2>/dev/null; fail "first boot never wrote the marker"; return; }
  local t1; t1=$(since "$t0")
  pkill -KILL -P "$qpid" 2>/dev/null; kill -KILL "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
  mv "$dir/console.out" "$dir/console-1.out"
  e2fsck -n "$dir/root.img" >"$dir/fsck-after-kill.out" 2>&1
  local t2; t2=$(now)
  start_qemu $(qemu_x86) "${args[@]}" -serial "file:$dir/console.out"
  wait_qemu || { fail "second boot: $err"; return; }
  e=$(expect_in "$dir/console.out" "PERSIST-FOUND /marker written-before-power-cut") || { fail "$e"; return; }
  local rec=""; grep -qa 'recovery complete' "$dir/console.out" && rec=", ext4 journal replayed"
  pass "first boot to kill $t1 s, second boot $(since "$t2") s$rec"
}

# ---- arm64 (virt, cortex-a57)
qemu_arm64() { echo qemu-system-aarch64 -accel tcg -M virt -cpu cortex-a57 -m 512 -nographic -no-reboot -monitor none; }
arm64_prep() {
  A_K=$(kernel_dir aarch64) || { skip "$A_K"; return 1; }
  need qemu-system-aarch64 >/dev/null || { skip "qemu-system-aarch64 missing"; return 1; }
  A_P=$(probe_for aarch64-unknown-linux-musl) || { fail "probe build for aarch64"; return 1; }
  make_root "$dir/root" "$A_P"
}
case_arm64-console() {
  arm64_prep || return
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  local t0; t0=$(now)
  start_qemu $(qemu_arm64) -kernel "$A_K/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyAMA0 panic=-1 quiet probe.out=dev:/dev/ttyAMA0 probe.tag=$case" -serial "file:$dir/console.out"
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/console.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s, $(grep -a 'PROBE OK' "$dir/console.out" | head -n1 | tr -d '\r')"
}
case_arm64-virtio-serial() {
  arm64_prep || return
  local mods; mods=$(add_modules "$dir/root" "$A_K" $(mod_order "$A_K" virtio_mmio virtio_console))
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  local t0; t0=$(now)
  start_qemu $(qemu_arm64) -kernel "$A_K/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyAMA0 panic=-1 quiet probe.mods=$mods probe.out=dev:/dev/vport0p1 probe.tag=$case" \
    -serial "file:$dir/console.out" \
    -device virtio-serial-device -chardev "file,id=ch0,path=$dir/channel.out" -device virtserialport,chardev=ch0,name=stagehand.0
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/channel.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s"
}
case_arm64-tcp-virtio-net() {
  arm64_prep || return
  need python3 >/dev/null || { skip "python3"; return; }
  local mods; mods=$(add_modules "$dir/root" "$A_K" $(mod_order "$A_K" virtio_pci virtio_net))
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  local port lpid; port=$(free_port); host_listener tcp "$port" "$dir/channel.out"
  local t0; t0=$(now)
  start_qemu $(qemu_arm64) -kernel "$A_K/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyAMA0 panic=-1 quiet probe.mods=$mods probe.net=eth0/10.0.2.15/24 probe.out=tcp:10.0.2.2:$port probe.tag=$case" \
    -serial "file:$dir/console.out" -nic user,model=virtio-net-pci
  wait_qemu || { kill "$lpid" 2>/dev/null; fail "$err"; return; }
  kill "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null
  e=$(expect_in "$dir/channel.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s, $(grep -a 'TCP-CONNECTED' "$dir/channel.out" | tr -d '\r')"
}

# A disk without Debian's initrd (there is none for arm64 in the cache): the init loads
# virtio-mmio, virtio-blk, crc32c and ext4 itself, mounts /dev/vda, writes a file there.
case_arm64-ext4-modules() {
  arm64_prep || return
  need mke2fs debugfs >/dev/null || { skip "e2fsprogs"; return; }
  local mods; mods=$(add_modules "$dir/root" "$A_K" $(mod_order "$A_K" virtio_mmio virtio_blk crc32c_generic ext4))
  make_cpio "$dir/root" "$dir/init.cpio.gz"
  mkdir -p "$dir/disk"; echo on-disk > "$dir/disk/hello"; make_ext4 "$dir/disk" "$dir/disk.img" || { fail "mke2fs"; return; }
  local t0; t0=$(now)
  start_qemu $(qemu_arm64) -kernel "$A_K/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -drive "file=$dir/disk.img,format=raw,if=none,id=d0" -device virtio-blk-device,drive=d0 \
    -append "console=ttyAMA0 panic=-1 quiet probe.mods=$mods probe.mount=ext4|/dev/vda|/mnt probe.out=dev:/dev/ttyAMA0,file:/mnt/marker probe.tag=$case" \
    -serial "file:$dir/console.out"
  wait_qemu || { fail "$err"; return; }
  debugfs -R 'cat /marker' "$dir/disk.img" 2>/dev/null >"$dir/marker" 
  e=$(expect_in "$dir/marker" "PROBE DONE") || { fail "marker not on the disk: $e"; return; }
  pass "wall $(since "$t0") s"
}

# ---- optional architectures (recorded, not required)
case_ppc64le-console() {
  local k; k=$(kernel_dir ppc64le) || { skip "$k"; return; }
  need qemu-system-ppc64 >/dev/null || { skip "qemu-system-ppc64 missing"; return; }
  local p; p=$(probe_for powerpc64le-unknown-linux-gnu 2>/dev/null) || { skip "no static powerpc64le probe (needs gcc-powerpc64le-linux-gnu)"; return; }
  make_root "$dir/root" "$p"; make_cpio "$dir/root" "$dir/init.cpio.gz"
  local t0; t0=$(now)
  start_qemu qemu-system-ppc64 -accel tcg -M pseries -m 1024 -nographic -no-reboot -monitor none -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=hvc0 panic=-1 quiet probe.out=dev:/dev/hvc0 probe.tag=$case" -serial "file:$dir/console.out"
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/console.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s"
}
case_armv7-console() {
  local k; k=$(kernel_dir armv7) || { skip "$k"; return; }
  local p; p=$(probe_for armv7-unknown-linux-gnueabihf 2>/dev/null) || { skip "no static armv7 probe (needs gcc-arm-linux-gnueabihf)"; return; }
  make_root "$dir/root" "$p"; make_cpio "$dir/root" "$dir/init.cpio.gz"
  local t0; t0=$(now)
  start_qemu qemu-system-arm -accel tcg -M virt -m 512 -nographic -no-reboot -monitor none -kernel "$k/vmlinuz" -initrd "$dir/init.cpio.gz" \
    -append "console=ttyAMA0 panic=-1 quiet probe.out=dev:/dev/ttyAMA0 probe.tag=$case" -serial "file:$dir/console.out"
  wait_qemu || { fail "$err"; return; }
  e=$(expect_in "$dir/console.out" "PROBE DONE") || { fail "$e"; return; }
  pass "wall $(since "$t0") s"
}

# ---------------------------------------------------------------- main
[ "${1:-}" = --list ] && { printf '%s\n' "${all_cases[@]}"; exit 0; }
[ $# -gt 0 ] || set -- "${all_cases[@]}"
if ! need qemu-system-x86_64 cpio gzip cargo >/dev/null; then
  case=all; skip "$(need qemu-system-x86_64 cpio gzip cargo)"
  printf '%s\n' "${results[@]}"; exit $failed
fi
for case in "$@"; do
  declare -F "case_$case" >/dev/null || { say "unknown case '$case' (see --list)"; exit 2; }
  dir="$work/$case"; mkdir -p "$dir"
  say "---- $case"
  "case_$case"
done
echo "==== boot-smoke summary"
printf '%s\n' "${results[@]}"
# The closing count scripts/test.sh adds up. Like libtest, a skipped case is counted here
# as passed; scripts/test.sh takes the skip log's lines off the total.
printf 'boot_smoke: %d passed; %d failed\n' \
  "$(printf '%s\n' "${results[@]}" | grep -c '^\(ok\|skip\) ')" "$(printf '%s\n' "${results[@]}" | grep -c '^FAIL ')"
[ $failed -eq 0 ] || { echo "boot-smoke: FAILED (KEEP=1 keeps the work folder)"; exit 1; }
