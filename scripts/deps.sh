#!/usr/bin/env bash
# Install what iopfd needs to build and test on Debian 12 (idempotent).
# Usage: scripts/deps.sh [build|test]
set -euo pipefail

want=(meson ninja-build pkg-config gcc libc6-dev scdoc
      liburing-dev liburcu-dev libsystemd-dev libinih-dev libcmocka-dev zlib1g-dev
      libsmartcols-dev libjson-c-dev
      dbus systemd)
if [ "${1:-build}" = test ]; then
	# the real-kernel suite: kernel source (6.12; 7.2 is fetched by tests/kernel/fetch-source.sh),
	# its build tools (rsync: make headers_install), QEMU, busybox;
	# debootstrap and systemd-nspawn for the nspawn suite (the units under a booted systemd)
	want+=(linux-source-6.12 make bc bison flex libelf-dev libssl-dev cpio xz-utils rsync
	       qemu-system-x86 busybox-static clang clang-format libclang-rt-14-dev python3
	       python3-prometheus-client python3-dbus g++
	       debootstrap debian-archive-keyring systemd-container debhelper dpkg-dev lintian)
fi

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
