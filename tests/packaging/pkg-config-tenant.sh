#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A tenant builds against libiopf-client with "pkg-config --cflags --libs iopf-client"
# and nothing else: install BUILD into a DESTDIR, point pkg-config there
# (PKG_CONFIG_PATH, PKG_CONFIG_SYSROOT_DIR), compile and link tenant.c with only those
# flags, check it needs libiopf-client.so.0 and LIBIOPF_CLIENT_0, and run it against the
# installed library: alone, then against the installed iopfd on a socket of its own.
#
# Usage: pkg-config-tenant.sh BUILD TENANT.C CC [CC ARGS...]
set -euo pipefail
[ $# -ge 3 ] || { sed -n '3,10p' "$0" >&2; exit 1; }
build=$1 src=$2
shift 2
cc=("$@")

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

work=$(mktemp -d)
daemon=
cleanup() {
	[ -z "$daemon" ] || { kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT
dest=$work/dest

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log"; fail "meson install --destdir"; }
pc=$(find "$dest" -name iopf-client.pc)
[ -n "$pc" ] || fail "no iopf-client.pc installed"
ok "installed ${pc#"$dest"}"

export PKG_CONFIG_PATH=${pc%/*} PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs iopf-client) || fail "pkg-config --cflags --libs iopf-client"
echo "pkg-config --cflags --libs iopf-client: $flags"
libdir= incdir=
for f in $flags; do
	case $f in
	-L*) libdir=${f#-L} ;;
	-I*) [ ! -f "${f#-I}/iopf/client.h" ] || incdir=${f#-I} ;;
	esac
done
case $libdir:$incdir in
"$dest"/*:"$dest"/*) ok "-L and the -I of iopf/client.h point into the DESTDIR" ;;
*) fail "no -L, or no -I with iopf/client.h, into the DESTDIR in: $flags" ;;
esac

# shellcheck disable=SC2086 # the flags are words
"${cc[@]}" -Wall -Wextra -Werror -o "$work/tenant" "$src" $flags ||
	fail "compiling and linking with only pkg-config's flags"
ok "compiled and linked with only pkg-config's flags"
readelf -dW "$work/tenant" | grep -q 'NEEDED.*\[libiopf-client\.so\.0\]' ||
	fail "the tenant does not need libiopf-client.so.0: $(readelf -dW "$work/tenant" | grep NEEDED)"
readelf -VW "$work/tenant" | grep -q 'Name: LIBIOPF_CLIENT_0' ||
	fail "the tenant does not ask for the symbol version LIBIOPF_CLIENT_0"
ok "the tenant needs libiopf-client.so.0, version LIBIOPF_CLIENT_0"

# the installed library and nothing else (meson test points LD_LIBRARY_PATH at the build)
out=$(LD_LIBRARY_PATH=$libdir "$work/tenant") || { echo "$out"; fail "the tenant alone"; }
echo "$out"
grep -q "^libiopf-client: $libdir/libiopf-client.so.0" <<<"$out" ||
	fail "the tenant did not run on the installed library"

iopfd=$(find "$dest" -path '*/sbin/iopfd' -type f)
conf=$(find "$dest" -path '*/iopfd/iopfd.conf' -type f)
[ -n "$iopfd" ] && [ -n "$conf" ] || fail "no installed iopfd or iopfd.conf"
LD_LIBRARY_PATH=$libdir "$iopfd" --config "$conf" --socket "$work/control" --no-system-bus \
	--log-target console --workers 1 >"$work/iopfd.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do
	[ -S "$work/control" ] && break
	kill -0 "$daemon" 2>/dev/null || { cat "$work/iopfd.log"; fail "iopfd exited"; }
	sleep 0.1
done
[ -S "$work/control" ] || { cat "$work/iopfd.log"; fail "iopfd did not create its socket"; }
out=$(LD_LIBRARY_PATH=$libdir "$work/tenant" "unix:path=$work/control") ||
	{ echo "$out"; cat "$work/iopfd.log"; fail "the tenant against the installed iopfd"; }
echo "$out"
echo "PASS"
