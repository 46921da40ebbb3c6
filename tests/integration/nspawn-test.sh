#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The nspawn suite (meson test --suite nspawn): the installed units started by a real
# systemd. Gets the cached Debian 12 root (mkroot.sh; the first run builds it, about a
# minute), configures and builds the source tree for --prefix=/usr --sysconfdir=/etc in
# WORKDIR/build-usr, lays a writable overlay over the root (the cache is never changed;
# a copy when overlayfs is unavailable) and runs nspawn-boot.sh on it.
#
# Usage: nspawn-test.sh SOURCE-DIR WORKDIR
# Exit: 0 every check passed; 1 a failure, including a missing prerequisite that
# scripts/deps.sh test installs; 77 only when this machine cannot run systemd-nspawn
# at all (not root, no CAP_SYS_ADMIN, no namespaces, no cgroup file system).
# WORKDIR/run keeps the writable layer (with the container's journal) after a failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 2 ] || { sed -n '3,14p' "$0" >&2; exit 1; }
src=$(realpath "$1")
mkdir -p "$2"
workdir=$(realpath "$2")

skip() { echo "nspawn: SKIP: $*"; exit 77; }
die() { echo "nspawn: FAIL: $*"; exit 1; }
now() { date +%s; }

# Can this machine run systemd-nspawn at all?
[ "$(id -u)" -eq 0 ] ||
	skip "systemd-nspawn -b needs root; run as root (sudo meson test -C build --suite nspawn)"
capeff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
(( (16#$capeff >> 21) & 1 )) ||
	skip "no CAP_SYS_ADMIN (an unprivileged container?): systemd-nspawn cannot run here"
grep -qE '^[^ ]+ /sys/fs/cgroup[^ ]* cgroup2? ' /proc/self/mounts ||
	skip "no cgroup file system under /sys/fs/cgroup: systemd-nspawn cannot run here"
if ! err=$(unshare --mount --pid --uts --ipc --net --fork true 2>&1); then
	skip "cannot create namespaces ($err): systemd-nspawn cannot run here"
fi

# Everything else is installed by scripts/deps.sh test: its absence is a failure.
need() {
	command -v "$1" >/dev/null || die "'$1' is missing (scripts/deps.sh test installs $2)"
}
need debootstrap debootstrap
need systemd-nspawn systemd-container
need systemctl systemd
need systemd-sysusers systemd
need meson meson
need ninja ninja-build

t0=$(now)
root=$("$here/mkroot.sh") || die "no root file system (mkroot.sh failed, see above)"
t1=$(now)
echo "nspawn: root $root ($((t1 - t0)) s)"

# The build the units are installed from: the same tree, configured for /usr.
usr=$workdir/build-usr
if [ ! -f "$usr/build.ninja" ]; then
	rm -rf "$usr"
	meson setup "$usr" "$src" --prefix=/usr --sysconfdir=/etc --wrap-mode=nodownload \
		-Dtests=disabled -Dkernel-tests=false >"$workdir/setup.log" 2>&1 ||
		{ cat "$workdir/setup.log"; die "meson setup of $usr failed"; }
fi
ninja -C "$usr" >"$workdir/build.log" 2>&1 ||
	{ tail -n 40 "$workdir/build.log"; die "building $usr failed"; }
t2=$(now)
echo "nspawn: build $usr, prefix /usr ($((t2 - t1)) s)"

# A writable layer over the cached root, in a mount namespace of this test's own: the
# overlay is gone when the test ends, however it ends.
run=$workdir/run
rm -rf --one-file-system "$run"
mkdir -p "$run/upper" "$run/work" "$run/root"
rc=0
# shellcheck disable=SC2016 # the inner script expands its own arguments
unshare --mount --propagation private bash -euo pipefail -c '
	lower=$1 run=$2 boot=$3 usr=$4
	case $lower$run in
	*[,:]*) err="a path with a comma or colon" ;;
	*) err=$(mount -t overlay iopfd-nspawn \
		-o "lowerdir=$lower,upperdir=$run/upper,workdir=$run/work" "$run/root" 2>&1) ;;
	esac
	if [ -z "$err" ]; then
		echo "nspawn: overlay over the cached root"
	else
		echo "nspawn: no overlay ($err), copying the root"
		cp -a "$lower/." "$run/root/"
	fi
	exec "$boot" "$run/root" "$usr"
' nspawn-overlay "$root" "$run" "$here/nspawn-boot.sh" "$usr" || rc=$?
t3=$(now)
echo "nspawn: boot and checks $((t3 - t2)) s; total $((t3 - t0)) s"

case $rc in
0) rm -rf --one-file-system "$run"; echo "nspawn: PASS" ;;
77) die "nspawn-boot.sh skipped, which it must not here (see above)" ;;
*) die "nspawn-boot.sh failed (exit $rc); the container's files are kept in $run/upper" ;;
esac
