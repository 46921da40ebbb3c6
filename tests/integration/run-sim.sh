#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# One fault-traffic scenario: a fresh iopfd on a temporary socket, iopf-sim
# against it, then iopfd stopped by its pid and required to exit cleanly.
#
# run-sim.sh [--workers N] [--limit Key=Value]... [--daemon Key=Value]... [--no-daemon]
#            [--expect-exit N]
#            -- IOPF-SIM-ARGS...
# @IOPFD_PID@ in the iopf-sim arguments becomes the daemon's pid.
# Environment: IOPFD, IOPF_SIM (binaries), IOPF_TEST_TIMEOUT (seconds, default 150).
set -u

: "${IOPFD:?IOPFD must name the iopfd binary}"
: "${IOPF_SIM:?IOPF_SIM must name the iopf-sim binary}"
timeout_s=${IOPF_TEST_TIMEOUT:-150}
workers=1
limits=()
dkeys=()
daemon=1
expect=0

while [ $# -gt 0 ]; do
	case "$1" in
	--workers) workers=$2; shift 2 ;;
	--limit) limits+=("$2"); shift 2 ;;
	--daemon) dkeys+=("$2"); shift 2 ;;
	--no-daemon) daemon=0; shift ;;
	--expect-exit) expect=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "run-sim: unknown option $1" >&2; exit 2 ;;
	esac
done

tmp=$(mktemp -d /tmp/iopf-sim-test.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -CONT "$pid" 2>/dev/null
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
	echo "run-sim: FAIL: $*" >&2
	if [ -s "$tmp/iopfd.log" ]; then
		echo "---- iopfd log (tail) ----" >&2
		tail -n 40 "$tmp/iopfd.log" >&2
	fi
	exit 1
}

args=("$@")
if [ $daemon -eq 1 ]; then
	dargs=(--socket "$tmp/ctl" --allow-simulator --no-system-bus --workers "$workers")
	if [ ${#limits[@]} -gt 0 ] || [ ${#dkeys[@]} -gt 0 ]; then
		{
			echo "[Daemon]"
			[ ${#dkeys[@]} -eq 0 ] || printf '%s\n' "${dkeys[@]}"
			echo "[Limits]"
			[ ${#limits[@]} -eq 0 ] || printf '%s\n' "${limits[@]}"
		} > "$tmp/iopfd.conf"
		dargs+=(--config "$tmp/iopfd.conf")
	fi
	"$IOPFD" "${dargs[@]}" > "$tmp/iopfd.log" 2>&1 &
	pid=$!
	for _ in $(seq 200); do
		[ -S "$tmp/ctl" ] && break
		kill -0 "$pid" 2>/dev/null || fail "iopfd exited at startup"
		sleep 0.05
	done
	[ -S "$tmp/ctl" ] || fail "iopfd did not create its socket"
	args=("${args[@]//@IOPFD_PID@/$pid}")
	args=(--address "unix:path=$tmp/ctl" "${args[@]}")
fi

echo "run-sim: iopf-sim ${args[*]}"
timeout -k 5 "$timeout_s" "$IOPF_SIM" "${args[@]}"
rc=$?
[ $rc -eq 124 ] && fail "iopf-sim timed out after ${timeout_s}s"

if [ $daemon -eq 1 ]; then
	kill -CONT "$pid" 2>/dev/null
	kill -TERM "$pid" || fail "iopfd died during the run"
	for _ in $(seq 400); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -0 "$pid" 2>/dev/null && fail "iopfd did not stop within 20 s of SIGTERM"
	wait "$pid"
	drc=$?
	pid=
	[ $drc -eq 0 ] || fail "iopfd exited with status $drc"
	if grep -E -q 'AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:' "$tmp/iopfd.log"; then
		fail "sanitizer report in the iopfd log"
	fi
fi

if [ $rc -eq 77 ] && [ "$expect" -eq 0 ]; then
	echo "run-sim: skipped (iopf-sim could not set the scenario up)"
	exit 77
fi
[ $rc -eq "$expect" ] || fail "iopf-sim exited with $rc, expected $expect"
echo "run-sim: ok"
exit 0
