#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The real-kernel suite: build (or reuse) the cached test kernel of --version, check our
# uAPI and mock definitions against that kernel's headers, pack an initramfs with the
# daemon and the test programs, boot it under QEMU (TCG) with a hard timeout, and judge
# the guest's console: every planned step must report PASS in every planned hwpt layout,
# the guest must reach its end marker, and the kernel log must hold no
# WARNING/BUG/Oops/Call Trace.
#
# Usage: run.sh --daemon IOPFD --kbare IOPF-KBARE --tenant IOPF-KTENANT
#               [--version V] [--layouts auto|nested,paging] [--cache DIR]
#               [--steps a,b,...] [--faults N] [--window BYTES]
#               [--tenants N] [--inflight N] [--workers N] [--smp N]
#               [--append KERNEL-ARGS] [--timeout SECONDS] [--jobs N] [--keep DIR]
# --version: the kernel (default 6.12: Debian 12's own; others are fetched from Debian's
# archive, see fetch-source.sh). --layouts: the layouts that must run (default auto: each
# one the guest's probe finds); steps in PAGING_ONLY run in the paging layout only.
# Exit: 0 all passed, 1 failure, 77 a prerequisite (qemu, busybox-static, kernel source)
# is absent; with IOPF_KTEST_REQUIRE=1 (scripts/test.sh) an absent one is a failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

ALL_STEPS=arrive,pasid-kernel,bare,handoff-process,regions,outside,unknown,collide,teardown
ALL_STEPS+=,faultaround,mapfile,pasid,pasid-none,load,stop,restart
PAGING_ONLY=" pasid-kernel pasid pasid-none "
daemon='' kbare='' tenant='' cache='' keep=''
version=6.12
layouts=auto
steps=${IOPF_KTEST_STEPS:-$ALL_STEPS}
faults=10000
window=65536
tenants=4
inflight=1
workers=2
smp=2
extra_append=''
guest_timeout=300
jobs=

skip() {
	if [ "${IOPF_KTEST_REQUIRE:-0}" = 1 ]; then
		echo "kernel-tests: FAIL (IOPF_KTEST_REQUIRE=1): $*"
		exit 1
	fi
	echo "kernel-tests: SKIP: $*"
	exit 77
}
die() { echo "kernel-tests: FAIL: $*"; exit 1; }

while [ $# -gt 0 ]; do
	case $1 in
	--daemon) daemon=$2; shift 2 ;;
	--kbare) kbare=$2; shift 2 ;;
	--tenant) tenant=$2; shift 2 ;;
	--version) version=$2; shift 2 ;;
	--layouts) layouts=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--steps) steps=$2; shift 2 ;;
	--faults) faults=$2; shift 2 ;;
	--window) window=$2; shift 2 ;;
	--tenants) tenants=$2; shift 2 ;;
	--inflight) inflight=$2; shift 2 ;;
	--workers) workers=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--append) extra_append=$2; shift 2 ;;
	--timeout) guest_timeout=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	-h|--help) sed -n '3,22p' "$0"; exit 0 ;;
	*) die "unknown argument '$1'" ;;
	esac
done
[ -n "$kbare" ] || die "--kbare is required"

# Steps other than arrive and bare need the daemon and the tenant.
progs=("$kbare")
for s in $(echo "$steps" | tr ',' ' '); do
	case $s in
	arrive|bare) ;;
	*)
		[ -n "$daemon" ] && [ -n "$tenant" ] ||
			die "--daemon and --tenant are required for step $s"
		progs+=("$daemon" "$tenant")
		break ;;
	esac
done

# Prerequisites: absent ones skip (scripts/deps.sh test installs all of them).
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
command -v cpio >/dev/null || skip "cpio missing"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || skip "busybox missing (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
	skip "$busybox is not static (apt-get install busybox-static)"
fi
command -v "${CC:-cc}" >/dev/null || skip "no C compiler for the uAPI check"

work=$(mktemp -d "${TMPDIR:-/tmp}/iopf-ktest.XXXXXX")
cleanup() {
	if [ -n "$keep" ]; then
		mkdir -p "$keep" && cp -a "$work"/. "$keep"/ && echo "kernel-tests: kept files in $keep"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# 1. the kernel (cached; the first run builds it, a few minutes)
t0=$(date +%s)
kargs=(--version "$version")
[ -n "$cache" ] && kargs+=(--cache "$cache")
[ -n "$jobs" ] && kargs+=(--jobs "$jobs")
rc=0
kernel=$("$here/build-kernel.sh" "${kargs[@]}") || rc=$?
[ "$rc" = 77 ] && skip "no linux-source-$version (see above)"
[ "$rc" = 0 ] || die "kernel build failed (see above)"
t1=$(date +%s)
kdir=$(dirname "$kernel")
echo "kernel-tests: kernel $version: $kernel ($((t1 - t0)) s; built in $(cat "$kdir/build-seconds" 2>/dev/null || echo '?') s)"

# 1b. our uAPI and mock definitions against that kernel's own headers (compiled, not run)
[ -d "$kdir/headers/include" ] && [ -r "$kdir/selftest/iommufd_test.h" ] ||
	die "$kdir lacks headers/ or selftest/ (a cache entry from an older build-kernel.sh?)"
cdefs=(-DHAVE_LINUX_IOMMUFD_FAULT_QUEUE=1)
grep -q IOMMU_TEST_OP_PASID_ATTACH "$kdir/selftest/iommufd_test.h" && cdefs+=(-DKT_CHECK_PASID)
grep -q IOMMU_HWPT_ALLOC_PASID "$kdir/headers/include/linux/iommufd.h" &&
	cdefs+=(-DKT_CHECK_HWPT_PASID)
"${CC:-cc}" -std=gnu17 -fsyntax-only -Wall -Werror "${cdefs[@]}" -I "$kdir/headers/include" \
	-I "$kdir/selftest" -I "$here" -I "$here/../../lib/shared/include" "$here/uapi-check.c" ||
	die "our uAPI/mock definitions disagree with the $version kernel's headers (see above)"
echo "kernel-tests: uAPI and mock definitions match the $version kernel's headers"

# 2. the initramfs
"$here/mkinitramfs.sh" "$work/initramfs.cpio" "${progs[@]}" || die "initramfs build failed"

# 3. boot, with a hard timeout on the whole guest
console=$work/console.log
append="console=ttyS0 panic=-1 printk.time=1 ktest.steps=$steps ktest.layouts=$layouts"
append+=" ktest.faults=$faults"
append+=" ktest.window=$window ktest.tenants=$tenants ktest.workers=$workers"
append+=" ktest.inflight=$inflight $extra_append"
echo "kernel-tests: booting (TCG, timeout ${guest_timeout}s): $append"
g0=$(date +%s.%N)
set +e
timeout --kill-after=10 "$guest_timeout" \
	qemu-system-x86_64 -accel tcg -m 1G -smp "$smp" \
		-display none -monitor none -serial stdio -no-reboot \
		-kernel "$kernel" -initrd "$work/initramfs.cpio" -append "$append" \
		</dev/null 2>"$work/qemu.stderr" | tee "$console" | sed -u 's/^/guest| /'
qrc=${PIPESTATUS[0]}
set -e
g1=$(date +%s.%N)
guest_secs=$(awk -v a="$g0" -v b="$g1" 'BEGIN { printf "%.1f", b - a }')
[ -s "$work/qemu.stderr" ] && sed 's/^/qemu: /' "$work/qemu.stderr"

# 4. judge
fail=0
report() { echo "kernel-tests: $*"; }
tr -d '\r' <"$console" >"$console.clean"
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	report "FAIL: the guest did not finish within ${guest_timeout}s (killed)"
	fail=1
elif [ "$qrc" != 0 ]; then
	report "FAIL: qemu exited with $qrc"
	fail=1
fi
grep -q '^KTEST-BEGIN' "$console.clean" || { report "FAIL: the guest never started /init"; fail=1; }
if ! grep -q '^KTEST-END ' "$console.clean"; then
	report "FAIL: the guest did not reach its end marker (crash, panic or timeout)"
	fail=1
fi

# The plan: each layout asked for (or, with auto, each one the guest offered), each step.
offered=$(sed -n 's/^KTEST-LAYOUTS *//p' "$console.clean" | head -n 1)
report "the kernel offers layouts: ${offered:-none}"
if [ "$layouts" = auto ]; then
	plan=$offered
	[ -n "$plan" ] || { report "FAIL: no layout offered"; fail=1; }
else
	plan=$(echo "$layouts" | tr ',' ' ')
	for l in $plan; do
		case " $offered " in
		*" $l "*) ;;
		*) report "FAIL: layout $l is required but the kernel does not offer it"; fail=1 ;;
		esac
	done
fi
for l in $plan; do
	for s in $(echo "$steps" | tr ',' ' '); do
		case $PAGING_ONLY in
		*" $s "*) [ "$l" = paging ] || continue ;;
		esac
		line=$(grep -aE "^KTEST-RESULT $s/$l " "$console.clean" | tail -n 1 || true)
		case $line in
		*" PASS "*) report "PASS $s/$l (${line##* })" ;;
		"") report "FAIL $s/$l: no result"; fail=1 ;;
		*) report "FAIL $s/$l: ${line#KTEST-RESULT }"; fail=1 ;;
		esac
	done
done

# The kernel log: the dmesg the guest printed, and the console as a whole (it carries
# the kernel's messages even when the guest died before printing dmesg).
bad='WARNING:|BUG:|Call Trace:|Oops|Kernel panic|general protection fault|UBSAN:|KASAN:|refcount_t:|list_(add|del) corruption|INFO: task .* blocked'
if grep -aEq "$bad" "$console.clean"; then
	report "FAIL: the kernel log shows a problem:"
	grep -aEn "$bad" "$console.clean" | head -n 20 | sed 's/^/kernel-tests:   /'
	fail=1
fi
dmesg_ok=$(sed -n '/^KTEST-DMESG-BEGIN/,/^KTEST-DMESG-END/p' "$console.clean" |
	grep -ac 'Linux version' || true)
if grep -q '^KTEST-END ' "$console.clean" && [ "$dmesg_ok" = 0 ]; then
	report "FAIL: the guest's dmesg section is missing or empty"
	fail=1
fi

# Figures: the bare loop and the daemon under load, side by side.
grep -a '^KTEST-METRIC ' "$console.clean" | sed 's/^KTEST-METRIC /kernel-tests: metric /' || true
metric() { # metric NAME LAYOUT KEY
	# (nothing when the step did not run: --steps without it)
	{ grep -a "^KTEST-METRIC name=$1 layout=$2 " "$console.clean" || true; } | tail -n 1 |
		tr ' ' '\n' | sed -n "s/^$3=//p"
}
# compare REF LAYOUT: the load against a reference measured in the same guest run
compare() {
	local rf lf r50 l50 r99 l99
	rf=$(metric "$1" "$2" fps) lf=$(metric load "$2" fps)
	r50=$(metric "$1" "$2" p50_us) l50=$(metric load "$2" p50_us)
	r99=$(metric "$1" "$2" p99_us) l99=$(metric load "$2" p99_us)
	[ -n "$rf" ] && [ -n "$lf" ] || return 0
	awk -v name="$1" -v l="$2" -v rf="$rf" -v lf="$lf" -v r50="$r50" -v l50="$l50" \
	    -v r99="$r99" -v l99="$l99" 'BEGIN {
		printf "kernel-tests: %s: load vs %s: %.0f vs %.0f faults/s (x%.2f), ", l, name, lf,
			rf, lf / rf
		printf "p50 %.1f vs %.1f us (x%.2f), p99 %.1f vs %.1f us (x%.2f)\n",
			l50, r50, (r50 > 0 ? l50 / r50 : 0), l99, r99, (r99 > 0 ? l99 / r99 : 0)
	}'
}
for l in $plan; do
	compare bare "$l"
	compare handoff-process "$l"
done

report "guest run ${guest_secs}s (kernel $(grep -ao 'KTEST-BEGIN kernel=[^ ]*' "$console.clean" | head -n1 | cut -d= -f2))"
if [ $fail -ne 0 ]; then
	report "FAILED"
	exit 1
fi
report "all steps passed in layouts $(echo $plan | tr ' ' ','): $steps"
exit 0
