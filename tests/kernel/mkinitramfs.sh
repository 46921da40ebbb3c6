#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Pack the real-kernel suite's initramfs: busybox-static, init.sh as /init, and the given
# programs with every shared library ldd finds for them (and the dynamic loader), so the
# guest runs the very binaries meson built. Needs no root: /init attaches the console
# after mounting devtmpfs, so no device node is packed.
#
# Usage: mkinitramfs.sh OUT.cpio PROGRAM...
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "mkinitramfs: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: mkinitramfs.sh OUT.cpio PROGRAM..."
out=$1
shift

busybox=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$busybox" ] || die "busybox not found (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked; install busybox-static"
fi
command -v cpio >/dev/null || die "cpio not found"

root=$(mktemp -d "${TMPDIR:-/tmp}/iopf-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,lib/x86_64-linux-gnu,lib64,etc,proc,sys,dev,tmp,run,root}

install -m 0755 "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
	[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/init.sh" "$root/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# Copy a library under the name the binary asks for (its soname), dereferencing links.
copy_lib() {
	local name=$1 path=$2
	[ -e "$root/lib/x86_64-linux-gnu/$name" ] && return 0
	install -m 0755 "$(readlink -f "$path")" "$root/lib/x86_64-linux-gnu/$name"
}

for prog in "$@"; do
	[ -x "$prog" ] || die "$prog is not an executable"
	install -m 0755 "$prog" "$root/bin/$(basename "$prog")"
	ldd_out=$(ldd "$prog") || die "ldd $prog failed"
	while read -r line; do
		case $line in
		*"not found"*)
			die "$prog: $line" ;;
		*" => "/*)
			name=${line%% =>*}
			path=${line#*=> }
			path=${path%% (*}
			copy_lib "$name" "$path" ;;
		/*)
			# the dynamic loader, at the absolute path PT_INTERP names
			loader=${line%% (*}
			mkdir -p "$root$(dirname "$loader")"
			[ -e "$root$loader" ] || install -m 0755 "$(readlink -f "$loader")" "$root$loader" ;;
		esac
	done <<<"$ldd_out"
done

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs: $out ($(du -k "$out" | cut -f1) KiB, $# programs)" >&2
