#!/usr/bin/env bash
# Makes a stand-in "stage 2" root that can really compile C (gcc, libc6-dev, make, GNU cpio)
# with debootstrap, and caches it as a tarball:
#   ${STAGEHAND_CACHE:-$HOME/.cache/stagehand}/stage2/debootstrap-<suite>-<debian-arch>.tar.gz
# Idempotent: an existing tarball is reused. The mirror is the Debian archive the host's
# apt configuration already uses (read at run time). Prints the tarball's path.
# Usage: tests/e2e/make-stage2-debootstrap.sh [--force]     env: SUITE (bookworm), PACKAGES
set -euo pipefail

cache="${STAGEHAND_CACHE:-$HOME/.cache/stagehand}"
suite="${SUITE:-bookworm}"
packages="${PACKAGES:-gcc,libc6-dev,make,cpio}"
arch=$(dpkg --print-architecture)
out="$cache/stage2/debootstrap-$suite-$arch.tar.gz"

die() { echo "make-stage2-debootstrap: $*" >&2; exit 1; }

if [ "${1:-}" != --force ] && [ -s "$out" ]; then echo "$out"; exit 0; fi
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root (run with sudo)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (run scripts/setup.sh)"

# The host's own Debian mirror: the archive that serves "$suite main" in apt's sources.
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null \
  | awk -v s="$suite" '$2 == s && $3 == "main" { print $1; exit }')
[ -n "$mirror" ] || die "no '$suite main' archive in the host's apt sources; add one or set SUITE"

mkdir -p "$cache/stage2"
work=$(mktemp -d "$cache/stage2/.debootstrap.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS
echo "make-stage2-debootstrap: debootstrap $suite ($arch) with $packages from $mirror" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 \
  || { tail -n 20 "$work/log" >&2; die "debootstrap failed (log above)"; }
# Downloaded .debs are not part of the root.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*_Packages
tar -C "$work/root" --numeric-owner -czf "$work/stage2.tar.gz" .
mv "$work/stage2.tar.gz" "$out"
echo "make-stage2-debootstrap: $(du -sh "$work/root" | cut -f1) root, $(du -h "$out" | cut -f1) tarball, $((SECONDS - start)) s" >&2
echo "$out"
