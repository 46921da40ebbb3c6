#!/usr/bin/env bash
# Build the fuzz targets of tests/fuzz/ for libFuzzer (clang, ASan+UBSan, every library
# instrumented for coverage) and run each for a bounded time over its corpus.
# New inputs libFuzzer finds go to BUILD/fuzz-work/<target>/; the corpus in the tree
# stays as committed. A crash leaves its input as BUILD/fuzz-work/<target>-crash-*:
# replay it with the target's meson test binary, then make it a unit test.
#
#   tests/fuzz/run.sh [SECONDS per target (20)] [BUILD dir (build-fuzz)]
#
# Ends with "fuzz: N passed, N failed"; exits non-zero when a target failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-20}
build=${2:-$root/build-fuzz}
targets=(dbus-request conf fault-records sim-shm)
jobs=$(nproc)

opts=(-Dfuzz=enabled -Dtests=enabled -Dkernel-tests=false -Dbuildtype=debug
      -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link)
if [ -f "$build/build.ninja" ]; then
	meson setup --reconfigure "$build" "${opts[@]}" >/dev/null
else
	CC=clang meson setup "$build" "${opts[@]}" >/dev/null
fi
ninja -C "$build" -j "$jobs" "${targets[@]/#/tests/fuzz/fuzz-}" >/dev/null

work=$build/fuzz-work
pass=0
fail=0
for t in "${targets[@]}"; do
	mkdir -p "$work/$t"
	# a fixed seed, so a run mutates the same way each time (IOPF_FUZZ_SEED to explore)
	args=(-seed="${IOPF_FUZZ_SEED:-1}" -max_total_time="$secs" -print_final_stats=1
		-artifact_prefix="$work/$t-")
	[ -f "$root/tests/fuzz/fuzz-$t.dict" ] && args+=(-dict="$root/tests/fuzz/fuzz-$t.dict")
	log=$work/$t.log
	if UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		"$build/tests/fuzz/fuzz-$t" "${args[@]}" "$work/$t" "$root/tests/fuzz/corpus/$t" \
		>"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		echo "fuzz-$t: ok, ${runs:-?} inputs in ${secs} s"
		pass=$((pass + 1))
	else
		echo "fuzz-$t: FAILED (log: $log)" >&2
		grep -E 'check failed|ERROR|SUMMARY|^artifact' "$log" | head -n 8 >&2 || true
		fail=$((fail + 1))
	fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
