#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The nspawn suite (meson test --suite nspawn): the Debian packages, installed and
# started by a real systemd. Gets the cached Debian 12 root (mkroot.sh; the first run
# builds it, about a minute), builds the packages of the source tree (debian/) with
# dpkg-buildpackage in a temporary copy of it and checks them with lintian (cached in
# WORKDIR/debs under a hash of the tree, so an unchanged tree builds them once), lays a
# writable overlay over the root (the cache is never changed; a copy when overlayfs is
# unavailable) and runs nspawn-boot.sh on it, which installs them with dpkg inside the
# booted container.
#
# Usage: nspawn-test.sh SOURCE-DIR WORKDIR
# Exit: 0 every check passed; 1 a failure, including a missing prerequisite that
# scripts/deps.sh test installs; 77 only when this machine cannot run systemd-nspawn
# at all (not root, no CAP_SYS_ADMIN, no namespaces, no cgroup file system).
# WORKDIR/run keeps the writable layer (with the container's journal) after a failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 2 ] || { sed -n '3,17p' "$0" >&2; exit 1; }
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
need dpkg-buildpackage dpkg-dev
need dpkg-checkbuilddeps dpkg-dev
need dh debhelper
need lintian lintian

t0=$(now)
root=$("$here/mkroot.sh") || die "no root file system (mkroot.sh failed, see above)"
t1=$(now)
echo "nspawn: root $root ($((t1 - t0)) s)"

# The packages: the tree as it is now (tracked and untracked files, not what git ignores)
# copied out and built with dpkg-buildpackage there, so the source tree gets no obj-*/ or
# debian/ outputs; cached by a hash of that copy. With them: iopf-sim from the same
# build (the simulator is built but not packaged) and lintian's verdict.
snapshot=$workdir/tree.tar
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git -C "$src" ls-files -z --cached --others --exclude-standard |
		tar -C "$src" --null -T - --ignore-failed-read --sort=name --mtime=@0 --owner=0 \
			--group=0 --numeric-owner -cf "$snapshot" 2>"$workdir/tar.log" ||
		{ cat "$workdir/tar.log"; die "cannot copy the tree $src"; }
else
	tar -C "$src" --exclude-vcs --exclude='./build*' --exclude='./obj-*' --sort=name \
		--mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$snapshot" . ||
		die "cannot copy the tree $src"
fi
hash=$(sha256sum "$snapshot" | cut -c1-16)
debs=$workdir/debs/$hash
if [ ! -e "$debs/complete" ]; then
	rm -rf "$workdir/debs" "$workdir"/pkgsrc.*
	pkg=$(mktemp -d "$workdir/pkgsrc.XXXXXX")
	mkdir "$pkg/iopfd"
	tar -C "$pkg/iopfd" -xmf "$snapshot" # -m: the real time, not the hash's epoch
	if ! unmet=$(cd "$pkg/iopfd" && dpkg-checkbuilddeps 2>&1); then
		die "${unmet#dpkg-checkbuilddeps: error: } (scripts/deps.sh test installs them)"
	fi
	(cd "$pkg/iopfd" && dpkg-buildpackage -us -uc -b -jauto) >"$workdir/dpkg-buildpackage.log" 2>&1 ||
		{ tail -n 40 "$workdir/dpkg-buildpackage.log"; die "dpkg-buildpackage failed"; }
	# errors and warnings fail; info tags are for reading (overrides say why)
	lintian --fail-on error,warning "$pkg"/*.changes >"$workdir/lintian.log" 2>&1 ||
		{ cat "$workdir/lintian.log"; die "lintian reports errors or warnings"; }
	mkdir -p "$debs.tmp"
	cp "$pkg"/*.deb "$workdir/lintian.log" "$debs.tmp/"
	rm -f "$debs.tmp"/*-dbgsym_*.deb
	install -m 0755 "$pkg"/iopfd/obj-*/tools/iopf-sim "$debs.tmp/iopf-sim" ||
		die "the package build made no iopf-sim (-Dsimulator=disabled?)"
	: >"$debs.tmp/complete"
	mv "$debs.tmp" "$debs"
	rm -rf "$pkg"
fi
rm -f "$snapshot"
t2=$(now)
echo "nspawn: packages $(cd "$debs" && echo *.deb) ($((t2 - t1)) s)"
sed 's/^/nspawn: lintian: /' "$debs/lintian.log"

# A writable layer over the cached root, in a mount namespace of this test's own: the
# overlay is gone when the test ends, however it ends.
run=$workdir/run
rm -rf --one-file-system "$run"
mkdir -p "$run/upper" "$run/work" "$run/root"
rc=0
# shellcheck disable=SC2016 # the inner script expands its own arguments
unshare --mount --propagation private bash -euo pipefail -c '
	lower=$1 run=$2 boot=$3 debs=$4
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
	exec "$boot" "$run/root" "$debs"
' nspawn-overlay "$root" "$run" "$here/nspawn-boot.sh" "$debs" || rc=$?
t3=$(now)
echo "nspawn: boot and checks $((t3 - t2)) s; total $((t3 - t0)) s"

case $rc in
0) rm -rf --one-file-system "$run"; echo "nspawn: PASS" ;;
77) die "nspawn-boot.sh skipped, which it must not here (see above)" ;;
*) die "nspawn-boot.sh failed (exit $rc); the container's files are kept in $run/upper" ;;
esac
