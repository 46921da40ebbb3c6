#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Print the path of a kernel source tarball for the suite's kernel VERSION.
#
# 6.12 is Debian 12's own linux-source-6.12 (scripts/deps.sh test installs it). Any other
# version comes from Debian's archive (suite sid by default) through a private apt
# configuration: its own sources, lists and package cache under the cache directory, so
# the host's apt sources and state are never touched. The tarball is extracted from the
# downloaded .deb and cached outside the tree under a key made of RECIPE, the archive URI,
# the suite and the package name; the package version is written beside it
# (source-version), so build-kernel.sh keys the kernel by what was really fetched.
# Once cached, no network is needed; --refresh fetches the suite's current version again.
#
# Usage: fetch-source.sh VERSION [--cache DIR] [--suite SUITE] [--refresh] [--version-only]
# --version-only prints the package version instead of the tarball path.
# Exit: 0, 77 when the source cannot be had (archive unreachable, no such package), 1 else.
# Environment: IOPF_KERNEL_SOURCE_<MAJOR>_<MINOR> (e.g. IOPF_KERNEL_SOURCE_7_2) names a
# tarball to use as is; IOPF_DEBIAN_MIRROR overrides http://deb.debian.org/debian.
set -euo pipefail

# Bump when the way the source is fetched or laid out changes (not for comments).
RECIPE=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "fetch-source: error: $*" >&2; exit 1; }
unavailable() { echo "fetch-source: unavailable: $*" >&2; exit 77; }
log() { echo "fetch-source: $*" >&2; }

[ $# -ge 1 ] || die "usage: fetch-source.sh VERSION [--cache DIR] [--suite SUITE] [--refresh]"
version=$1
shift
[[ $version =~ ^[0-9]+\.[0-9]+$ ]] || die "VERSION must look like 7.2, not '$version'"
pkg=linux-source-$version
cache=${IOPF_SOURCE_CACHE:-}
suite=sid
mirror=${IOPF_DEBIAN_MIRROR:-http://deb.debian.org/debian}
refresh=0
version_only=0
while [ $# -gt 0 ]; do
	case $1 in
	--cache) cache=$2; shift 2 ;;
	--suite) suite=$2; shift 2 ;;
	--refresh) refresh=1; shift ;;
	--version-only) version_only=1; shift ;;
	-h|--help) sed -n '3,19p' "$0" >&2; exit 0 ;;
	*) die "unknown argument '$1'" ;;
	esac
done

# print TARBALL PACKAGE-VERSION
emit() {
	if [ "$version_only" = 1 ]; then echo "$2"; else echo "$1"; fi
	exit 0
}

override_var=IOPF_KERNEL_SOURCE_${version//./_}
if [ -n "${!override_var:-}" ]; then
	[ -r "${!override_var}" ] || die "$override_var=${!override_var} is not readable"
	emit "${!override_var}" "$(stat -c '%s-%Y' "${!override_var}")"
fi

# The host's own package, when it is installed (Debian 12: 6.12).
host_tar=/usr/src/$pkg.tar.xz
host_version=$(dpkg-query -W -f='${Status} ${Version}' "$pkg" 2>/dev/null |
	sed -n 's/^install ok installed //p' || true)
if [ -n "$host_version" ] && [ -r "$host_tar" ]; then
	emit "$host_tar" "$host_version"
fi

if [ -z "$cache" ]; then
	. "$here/../cache-dir.sh"
	cache=$(iopf_cache_dir kernel-source)
fi
for tool in apt-get dpkg-deb flock sha256sum; do
	command -v "$tool" >/dev/null || die "'$tool' is missing"
done

key=$( { echo "recipe $RECIPE"; echo "mirror $mirror"; echo "suite $suite"; echo "package $pkg"; } |
	sha256sum | cut -c1-16)
out=$cache/$key
mkdir -p "$cache" || die "cannot create cache dir $cache"

have() { [ -s "$out/$pkg.tar.xz" ] && [ -s "$out/source-version" ]; }
if [ "$refresh" = 0 ] && have; then
	emit "$out/$pkg.tar.xz" "$(cat "$out/source-version")"
fi

exec 9>"$cache/.lock-$key"
if ! flock -n 9; then
	log "another fetch of $key is running, waiting for it"
	flock 9
fi
if [ "$refresh" = 0 ] && have; then
	emit "$out/$pkg.tar.xz" "$(cat "$out/source-version")"
fi

rm -rf "$cache/.work-$key".*
work=$(mktemp -d "$cache/.work-$key.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources.list.d" "$work/lists/partial" "$work/archives/partial" "$work/deb"

# Debian's archive signs sid with the current release keys; the host's keyring package
# carries them (its trusted.gpg.d is used too, since only the source lists are private).
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$work/sources.list.d/iopf-$suite.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite
Components: main
Signed-By: $keyring
EOF

apt_private=(-o Dir::Etc::sourcelist=/dev/null
	     -o Dir::Etc::sourceparts="$work/sources.list.d"
	     -o Dir::State::Lists="$work/lists"
	     -o Dir::State::status=/dev/null
	     -o Dir::Cache="$work/cache"
	     -o Dir::Cache::archives="$work/archives"
	     -o APT::Architecture=amd64
	     -o Debug::NoLocking=1
	     -o Acquire::Languages=none
	     -o quiet=1)
log "fetching $pkg from $mirror $suite (private apt state in $work)"
apt-get "${apt_private[@]}" update >"$work/apt.log" 2>&1 ||
	{ tail -n 20 "$work/apt.log" >&2; unavailable "apt-get update of $mirror $suite failed (offline?)"; }
pkg_version=$(apt-cache "${apt_private[@]}" show --no-all-versions "$pkg" 2>/dev/null |
	sed -n 's/^Version: //p' | head -n1)
[ -n "$pkg_version" ] || unavailable "$suite has no package $pkg"
(cd "$work/deb" && apt-get "${apt_private[@]}" download "$pkg=$pkg_version") \
	>>"$work/apt.log" 2>&1 ||
	{ tail -n 20 "$work/apt.log" >&2; unavailable "apt-get download $pkg failed"; }
deb=$(find "$work/deb" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
[ -n "$deb" ] || die "apt-get download left no .deb"
dpkg-deb -x "$deb" "$work/x"
tarball=$(find "$work/x/usr/src" -maxdepth 1 -name "$pkg.tar.*" | head -n1)
[ -n "$tarball" ] || die "$deb holds no /usr/src/$pkg.tar.*"
[[ $tarball == *.tar.xz ]] || die "unexpected tarball $tarball (build-kernel.sh expects .tar.xz)"

stage=$work/out
mkdir -p "$stage"
mv "$tarball" "$stage/$pkg.tar.xz"
echo "$pkg_version" >"$stage/source-version"
sha256sum "$deb" | cut -d' ' -f1 >"$stage/deb.sha256"
if [ -e "$out" ]; then
	mv "$out" "$work/old"
fi
mv "$stage" "$out"
log "cached $pkg $pkg_version in $out"
emit "$out/$pkg.tar.xz" "$pkg_version"
