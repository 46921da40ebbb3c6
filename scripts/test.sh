#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what it needs,
# builds, and runs the unit, integration, real-kernel (QEMU: Linux 6.12, then 7.2) and nspawn (the
# installed units under a booted systemd) suites, then the unit and integration
# suites again under ASan+UBSan and the concurrency tests under TSan, a clang
# build, then each libFuzzer target of tests/fuzz/ for a bounded time, and the format
# check (scripts/check-format.sh). Ends with
# one line "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh test

jobs=$(nproc)
total_pass=0
total_fail=0

# setup DIR [meson options...]: configure once, reconfigure when options change
setup() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir" -j "$jobs" >/dev/null
}

# run DIR [meson test options...]: run, then add its results to the totals
run() {
	local dir=$1 rc=0
	shift
	meson test -C "$dir" --print-errorlogs "$@" || rc=$?
	read -r p f < <(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r != "SKIP":
        f += 1
print(p, f)
PY
)
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	[ "$rc" -eq 0 ] || echo "test.sh: failures in $dir" >&2
}

echo "== build and test (unit, integration, kernel, nspawn)"
setup build -Dtests=enabled -Dwerror=true
# kernel-6.12 and kernel-7.2 run one after the other (is_parallel: false), each building its
# kernel on a cold cache; here a kernel that cannot be had fails instead of skipping.
IOPF_KTEST_REQUIRE=1 run build

echo "== ASan + UBSan (unit, integration)"
setup build-asan -Dtests=enabled -Dkernel-tests=false -Db_sanitize=address,undefined \
	-Db_lundef=false -Dbuildtype=debug
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	run build-asan --suite unit --suite integration

echo "== TSan (concurrency)"
setup build-tsan -Dtests=enabled -Dkernel-tests=false -Db_sanitize=thread -Db_lundef=false \
	-Dbuildtype=debug
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp" run build-tsan --suite concurrency

echo "== clang (build with -Werror, unit)"
CC=clang setup build-clang -Dtests=enabled -Dkernel-tests=false -Dwerror=true
run build-clang --suite unit

echo "== fuzz (libFuzzer, each target 20 s over its corpus)"
# tests/fuzz/run.sh counts a target as one test; a crash fails it
fuzz_out=$(tests/fuzz/run.sh 20 build-fuzz) || echo "test.sh: failures in build-fuzz" >&2
echo "$fuzz_out"
if [[ $fuzz_out =~ fuzz:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
	total_pass=$((total_pass + BASH_REMATCH[1]))
	total_fail=$((total_fail + BASH_REMATCH[2]))
else
	total_fail=$((total_fail + 1)) # it did not get to run its targets
fi

echo "== format (the tree follows .clang-format)"
if scripts/check-format.sh; then
	total_pass=$((total_pass + 1))
else
	total_fail=$((total_fail + 1))
	echo "test.sh: scripts/check-format.sh --fix FILE formats them" >&2
fi

echo "tests: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
