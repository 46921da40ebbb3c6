#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Build (once) the Debian 12 root file system that tests/integration/nspawn-boot.sh boots:
# debootstrap --variant=minbase with PACKAGES below, cached outside the tree under a key
# made of the suite, the architecture, the package list and RECIPE. Prints the root's
# path on stdout. Callers must not change it: lay a writable layer over it (nspawn-test.sh
# mounts an overlay) or copy it.
#
# Usage: mkroot.sh [--cache DIR] [--mirror URL] [--force] [--key]
# --key prints the cache key and exits (for CI caches).
# The cache directory defaults to $IOPF_NSPAWN_CACHE, else $XDG_CACHE_HOME/iopfd/nspawn,
# else /var/cache/iopfd/nspawn when writable, else ~/.cache/iopfd/nspawn. The mirror
# defaults to $IOPF_DEBIAN_MIRROR, else the Debian archive this host's apt uses.
# Needs root (debootstrap). About 165 MB and a minute the first time.
# shellcheck disable=SC2016 # apt-get and dpkg-query formats, not shell expansions
set -euo pipefail

# Bump when the way the root is made changes (not for comments).
RECIPE=1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=bookworm
VARIANT=minbase
# What nspawn-boot.sh's check needs besides the packages it installs: systemd as init,
# the system bus, every runtime dependency of the iopfd packages (dpkg -i finds them here:
# the container has no network), curl for the exporter, ps for a look.
PACKAGES=(systemd systemd-sysv dbus procps liburing2 liburcu8 libinih1 libsystemd0 curl)

cache=${IOPF_NSPAWN_CACHE:-}
mirror=${IOPF_DEBIAN_MIRROR:-}
force=0
print_key=0

die() { echo "mkroot: error: $*" >&2; exit 1; }
log() { echo "mkroot: $*" >&2; }

while [ $# -gt 0 ]; do
	case $1 in
	--cache) cache=$2; shift 2 ;;
	--mirror) mirror=$2; shift 2 ;;
	--force) force=1; shift ;;
	--key) print_key=1; shift ;;
	-h|--help) sed -n '3,15p' "$0" >&2; exit 0 ;;
	*) die "unknown argument '$1'" ;;
	esac
done

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
key=$( { echo "recipe $RECIPE"; echo "suite $SUITE $VARIANT $arch";
	 printf '%s\n' "${PACKAGES[@]}" | sort; } | sha256sum | cut -c1-16)
if [ "$print_key" = 1 ]; then
	echo "$key"
	exit 0
fi

if [ -z "$cache" ]; then
	. "$here/../cache-dir.sh"
	cache=$(iopf_cache_dir nspawn)
fi
out=$cache/$key
mkdir -p "$cache" || die "cannot create cache dir $cache"

done_already() { [ "$force" = 0 ] && [ -x "$out/root/lib/systemd/systemd" ] && [ -e "$out/complete" ]; }
if done_already; then
	echo "$out/root"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
for tool in debootstrap unshare flock sha256sum; do
	command -v "$tool" >/dev/null || die "'$tool' is missing (scripts/deps.sh test installs it)"
done

# One builder per key; a second run waits here and then finds the result.
exec 9>"$cache/.lock-$key"
if ! flock -n 9; then
	log "another build of $key is running, waiting for it"
	flock 9
fi
if done_already; then
	echo "$out/root"
	exit 0
fi

# The archive: the one this host's apt fetches Debian from (a local mirror or proxy
# keeps working), unless told otherwise.
if [ -z "$mirror" ]; then
	mirror=$(apt-get indextargets --format '$(LABEL) $(REPO_URI)' 'Created-By: Packages' \
		2>/dev/null | awk '$1 == "Debian" { print $2; exit }')
	[ -n "$mirror" ] || die "no Debian archive in this host's apt sources; set IOPF_DEBIAN_MIRROR"
fi
# debootstrap fetches with wget: hand it apt's proxy, if apt has one
if [ -z "${http_proxy:-}" ]; then
	proxy=$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1)
	[ -z "$proxy" ] || [ "$proxy" = DIRECT ] || export http_proxy=$proxy
fi

# Under the lock, any work dir of this key is left over from a killed build. debootstrap
# ran in a mount namespace of its own, so nothing is mounted there any more.
rm -rf --one-file-system "$cache/.work-$key".*
work=$(mktemp -d "$cache/.work-$key.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
stage=$work/out
mkdir -p "$stage"
log "building root $key in $work ($SUITE $VARIANT, from $mirror)"
start=$(date +%s)

# A private mount namespace: the /proc and /sys debootstrap mounts in the target go away
# with it, even when this script is killed.
include=$(IFS=,; echo "${PACKAGES[*]}")
if ! unshare --mount --propagation private \
	debootstrap --variant="$VARIANT" --arch="$arch" --include="$include" \
		"$SUITE" "$stage/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
	tail -n 30 "$work/debootstrap.log" >&2
	die "debootstrap failed (full log above)"
fi

root=$stage/root
[ -x "$root/lib/systemd/systemd" ] || die "the new root has no systemd"
for p in "${PACKAGES[@]}"; do
	chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		die "package $p is not installed in the new root"
done
# Left from debootstrap and of no use to the test.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$stage/packages"
cp "$work/debootstrap.log" "$stage/debootstrap.log"
echo "$mirror" >"$stage/mirror"
echo "$(( $(date +%s) - start ))" >"$stage/build-seconds"
: >"$stage/complete"
sync -f "$stage/complete" 2>/dev/null || true

# Install: rename into place (atomic); a previous one (--force) goes with the work dir.
if [ -e "$out" ]; then
	mv "$out" "$work/old"
fi
mv "$stage" "$out"
log "built $out/root in $(cat "$out/build-seconds") s ($(du -sh "$out/root" | cut -f1))"
echo "$out/root"
