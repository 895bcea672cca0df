#!/usr/bin/env bash
# Makes Debian kernels available for the boot tests, one folder per architecture:
#   ${STAGEHAND_CACHE:-$HOME/.cache/stagehand}/kernels/<arch>/{vmlinuz,initrd.img,config,version,modules/}
# x86_64 comes from the installed linux-image-amd64; other architectures are downloaded as
# Debian packages with a private apt configuration (kept in the cache), so the host's dpkg
# architecture list and apt state are never changed. Idempotent; prints the paths.
# Usage: scripts/kernels.sh [x86_64] [aarch64] [ppc64le] [armv7]   (default: x86_64)
set -euo pipefail

cache="${STAGEHAND_CACHE:-$HOME/.cache/stagehand}"
kernels="$cache/kernels"

die() { echo "kernels: $*" >&2; exit 1; }

# Debian architecture and kernel flavour for each stagehand architecture name.
deb_arch_of() {
  case "$1" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    ppc64le) echo ppc64el ;;
    armv7) echo armhf ;;
    *) die "unknown architecture '$1' (known: x86_64 aarch64 ppc64le armv7)" ;;
  esac
}
flavour_of() {
  case "$1" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    ppc64le) echo powerpc64le ;;
    armv7) echo armmp ;;
  esac
}

print_paths() {
  local dir="$1"
  echo "$(basename "$dir"): version $(cat "$dir/version")"
  echo "  vmlinuz  $dir/vmlinuz"
  [ -e "$dir/initrd.img" ] && echo "  initrd   $dir/initrd.img"
  echo "  modules  $dir/modules/$(cat "$dir/version")"
}

# x86_64: copy from the running machine's installed Debian kernel package.
kernel_x86_64() {
  local dir="$kernels/x86_64" ver
  if [ -s "$dir/version" ] && [ -e "$dir/vmlinuz" ]; then print_paths "$dir"; return; fi
  ver=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sed 's|.*/vmlinuz-||' | sort -V | tail -n1)
  [ -n "$ver" ] || die "no /boot/vmlinuz-*-amd64; install linux-image-amd64 (scripts/setup.sh)"
  [ -r "/boot/vmlinuz-$ver" ] || die "/boot/vmlinuz-$ver is not readable; run as root"
  [ -e "/boot/initrd.img-$ver" ] || die "/boot/initrd.img-$ver missing; run: update-initramfs -c -k $ver"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/modules"
  cp "/boot/vmlinuz-$ver" "$dir.tmp/vmlinuz"
  cp "/boot/initrd.img-$ver" "$dir.tmp/initrd.img"
  cp "/boot/config-$ver" "$dir.tmp/config"
  cp -a "/lib/modules/$ver" "$dir.tmp/modules/"
  echo "$ver" > "$dir.tmp/version"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  print_paths "$dir"
}

# Writes a private apt configuration for one foreign architecture, with the host's own
# mirrors (read from its apt sources at run time) and state kept in the cache.
private_apt() {
  local deb_arch="$1" root="$cache/apt/$deb_arch"
  mkdir -p "$root/lists/partial" "$root/archives/partial" "$root/etc/preferences.d"
  : > "$root/status"
  # Only Debian's own archive lines (bookworm main and friends), re-targeted at this arch.
  local src="$root/etc/sources.list"
  : > "$src.new"
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null \
    | sort -u | while read -r uri release component; do
        case "$uri" in *debian*) echo "deb [arch=$deb_arch] $uri $release $component" >> "$src.new" ;; esac
      done
  [ -s "$src.new" ] || die "no Debian archive found in the host's apt sources (run apt-get update first)"
  mv "$src.new" "$src"
  cat > "$root/apt.conf" <<CONF
APT::Architecture "$deb_arch";
APT::Architectures { "$deb_arch"; };
Dir::State::Lists "$root/lists";
Dir::State::status "$root/status";
Dir::Cache "$root/cache";
Dir::Cache::archives "$root/archives";
Dir::Etc::SourceList "$src";
Dir::Etc::SourceParts "$root/etc/sources.list.d";
Dir::Etc::Preferences "$root/etc/preferences";
Dir::Etc::PreferencesParts "$root/etc/preferences.d";
CONF
  # apt's download sandbox user cannot write into a root-owned private cache.
  [ "$(id -u)" -ne 0 ] || echo 'APT::Sandbox::User "root";' >> "$root/apt.conf"
  mkdir -p "$root/etc/sources.list.d" "$root/cache"
  echo "$root/apt.conf"
}

kernel_foreign() {
  local arch="$1" deb_arch flavour dir conf pkg ver work
  deb_arch=$(deb_arch_of "$arch"); flavour=$(flavour_of "$arch")
  dir="$kernels/$arch"
  if [ -s "$dir/version" ] && [ -e "$dir/vmlinuz" ]; then print_paths "$dir"; return; fi
  conf=$(private_apt "$deb_arch")
  # A partial failure (one suite's index mid-sync) is not fatal as long as the kernel resolves.
  APT_CONFIG="$conf" apt-get update -qq >&2 || echo "kernels: apt-get update for $deb_arch reported errors; trying with what was fetched" >&2
  # linux-image-<flavour> is the metapackage; its dependency names the versioned package.
  pkg=$(APT_CONFIG="$conf" apt-cache depends "linux-image-$flavour" 2>/dev/null \
        | sed -n "s/^ *Depends: \(linux-image-[0-9][^ ]*-$flavour\)$/\1/p" | head -n1)
  [ -n "$pkg" ] || die "cannot resolve linux-image-$flavour for $deb_arch in the apt archive"
  ver=${pkg#linux-image-}
  work="$cache/apt/$deb_arch/work"
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && APT_CONFIG="$conf" apt-get download -qq "$pkg:$deb_arch" >&2) \
    || die "apt-get download $pkg:$deb_arch failed"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/modules"
  dpkg-deb -x "$work"/"$pkg"_*.deb "$work/root"
  local kimg
  kimg=$(ls "$work/root/boot/"vmlinu[xz]-"$ver" 2>/dev/null | head -n1)
  [ -n "$kimg" ] || die "no kernel image in $pkg"
  cp "$kimg" "$dir.tmp/vmlinuz"
  cp "$work/root/boot/config-$ver" "$dir.tmp/config"
  mv "$work/root/lib/modules/$ver" "$dir.tmp/modules/"
  echo "$ver" > "$dir.tmp/version"
  # The package leaves modules.dep to its postinst: make it here (depmod reads any arch).
  mkdir -p "$work/depmod/lib" && ln -s "$dir.tmp/modules" "$work/depmod/lib/modules"
  depmod -b "$work/depmod" "$ver" || die "depmod failed for $ver"
  rm -rf "$work" "$dir" && mv "$dir.tmp" "$dir"
  print_paths "$dir"
}

[ $# -gt 0 ] || set -- x86_64
for arch in "$@"; do
  mkdir -p "$kernels"
  case "$arch" in
    x86_64) kernel_x86_64 ;;
    *) kernel_foreign "$arch" ;;
  esac
done
