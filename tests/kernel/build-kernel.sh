#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build (once) the x86_64 test kernel VERSION (default 6.12): `make tinyconfig` +
# config.fragment on Debian's linux-source-VERSION (fetch-source.sh finds or fetches it),
# cached outside the tree under a key made of the version, the fragment, the source
# package version, the compiler version and RECIPE below. Beside the bzImage the entry
# holds the kernel's uapi headers (make headers_install) and the selftest mock's private
# header, so run.sh can check our definitions against that very kernel.
# Prints the bzImage path on stdout.
#
# Usage: build-kernel.sh [--version V] [--cache DIR] [--jobs N] [--source TARBALL] [--force] [--key]
# --key prints the cache key and exits (for CI caches; it may fetch the source first).
# Exit: 0, 77 when the kernel source cannot be had (see fetch-source.sh), 1 on failure.
# The cache directory defaults to $IOPF_KERNEL_CACHE, else $XDG_CACHE_HOME/iopfd/kernel,
# else /var/cache/iopfd/kernel when writable, else ~/.cache/iopfd/kernel.
set -euo pipefail

# The whole script is one compound command, read before it runs: a build takes minutes,
# and bash would otherwise read an edited or checked-out script from a stale offset.
{
# Bump when the way the kernel is built changes (not for comments).
RECIPE=2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/config.fragment
kversion=6.12
source_tar=${IOPF_KERNEL_SOURCE:-}
cache=${IOPF_KERNEL_CACHE:-}
jobs=$(nproc 2>/dev/null || echo 2)
force=0
print_key=0

die() { echo "build-kernel: error: $*" >&2; exit 1; }
log() { echo "build-kernel: $*" >&2; }

while [ $# -gt 0 ]; do
	case $1 in
	--version) kversion=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--source) source_tar=$2; shift 2 ;;
	--force) force=1; shift ;;
	--key) print_key=1; shift ;;
	-h|--help) sed -n '3,15p' "$0" >&2; exit 0 ;;
	*) die "unknown argument '$1'" ;;
	esac
done

if [ -z "$cache" ]; then
	. "$here/../cache-dir.sh"
	cache=$(iopf_cache_dir kernel)
fi

for tool in make gcc tar xz flex bison bc flock sha256sum rsync; do
	command -v "$tool" >/dev/null || die "'$tool' is missing (scripts/deps.sh test installs it)"
done
[ -r "$fragment" ] || die "no $fragment"
if [ -n "$source_tar" ]; then
	# a given tarball is identified by its size and mtime
	[ -r "$source_tar" ] || die "no kernel source at $source_tar"
	src_version=$(stat -c '%s-%Y' "$source_tar")
else
	# the package version identifies the tarball cheaply
	rc=0
	source_tar=$("$here/fetch-source.sh" "$kversion") || rc=$?
	if [ "$rc" = 77 ]; then
		echo "build-kernel: no linux-source-$kversion (scripts/deps.sh test installs 6.12)" >&2
		exit 77
	fi
	[ "$rc" = 0 ] || die "fetching linux-source-$kversion failed (see above)"
	src_version=$("$here/fetch-source.sh" "$kversion" --version-only)
fi
cc_version=$(gcc -dumpfullversion -dumpversion)
key=$( { echo "recipe $RECIPE"; echo "version $kversion";
	 echo "source $src_version $(basename "$source_tar")";
	 echo "gcc $cc_version"; cat "$fragment"; } | sha256sum | cut -c1-16)

if [ "$print_key" = 1 ]; then
	echo "$key"
	exit 0
fi

out=$cache/$key
mkdir -p "$cache" || die "cannot create cache dir $cache"

if [ "$force" = 0 ] && [ -s "$out/bzImage" ]; then
	echo "$out/bzImage"
	exit 0
fi

# One builder per key; a second run waits here and then finds the result.
exec 9>"$cache/.lock-$key"
if ! flock -n 9; then
	log "another build of $key is running, waiting for it"
	flock 9
fi
if [ "$force" = 0 ] && [ -s "$out/bzImage" ]; then
	echo "$out/bzImage"
	exit 0
fi

# Under the lock, any work dir of this key is left over from a killed build.
rm -rf "$cache/.work-$key".*
work=$(mktemp -d "$cache/.work-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building kernel $kversion ($key) in $work (source $src_version, gcc $cc_version, -j$jobs)"
log "log: $work/build.log (kept as $out/build.log)"
start=$(date +%s)

tar -xJf "$source_tar" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*' | head -n1)
[ -n "$src" ] || die "no linux-source-* directory in $source_tar"

kmake() { make -C "$src" ARCH=x86_64 -j"$jobs" "$@" >>"$work/build.log" 2>&1; }

kmake tinyconfig || { tail -n 30 "$work/build.log" >&2; die "make tinyconfig failed"; }
(cd "$src" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "$fragment") \
	>>"$work/build.log" 2>&1 || die "merge_config.sh failed"
kmake olddefconfig || { tail -n 30 "$work/build.log" >&2; die "make olddefconfig failed"; }

# Every =y of the fragment must have survived (a missing dependency drops a symbol
# silently), and the hidden IOMMU_IOPF must have been selected; where the source has the
# generic page table's AMDv1 format (7.x: IOMMUFD_TEST depends on it), so must it.
required=(CONFIG_IOMMUFD CONFIG_IOMMUFD_TEST CONFIG_IOMMU_IOPF CONFIG_IOMMU_API)
if grep -rqs '^config IOMMU_PT_AMDV1$' "$src/drivers/iommu"; then
	required+=(CONFIG_IOMMU_PT_AMDV1)
fi
missing=()
while IFS= read -r sym; do
	grep -qx "${sym}=y" "$src/.config" || missing+=("$sym")
done < <({ sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=y$/\1/p' "$fragment";
	   printf '%s\n' "${required[@]}"; } |
	 sort -u)
if [ ${#missing[@]} -gt 0 ]; then
	for sym in "${missing[@]}"; do
		echo "build-kernel: error: $sym is not =y in the final .config: $(grep -E "^(# )?${sym}[= ]" "$src/.config" || echo absent)" >&2
	done
	die "the kernel config lacks what the suite needs; fix config.fragment"
fi

kmake bzImage || { tail -n 40 "$work/build.log" >&2; die "kernel build failed"; }
kmake headers_install INSTALL_HDR_PATH="$work/headers" ||
	{ tail -n 20 "$work/build.log" >&2; die "make headers_install failed"; }

# Install: fill a staging dir, then rename it into place (rename is atomic).
stage=$work/out
mkdir -p "$stage"
cp "$src/arch/x86/boot/bzImage" "$stage/bzImage"
cp "$src/.config" "$stage/config"
cp "$src/include/config/kernel.release" "$stage/kernel.release" 2>/dev/null || true
cp -a "$work/headers" "$stage/headers"
mkdir -p "$stage/selftest"
cp "$src/drivers/iommu/iommufd/iommufd_test.h" "$stage/selftest/"
echo "$kversion $src_version" >"$stage/source"
cp "$work/build.log" "$stage/build.log"
echo "$(( $(date +%s) - start ))" >"$stage/build-seconds"
sync -f "$stage/bzImage" 2>/dev/null || true
if [ -e "$out" ]; then
	mv "$out" "$work/old"
fi
mv "$stage" "$out"
log "built $out/bzImage in $(cat "$out/build-seconds") s"
echo "$out/bzImage"
exit 0
}
