#!/bin/busybox sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# /init of the real-kernel suite's initramfs. Mounts the pseudo filesystems, runs the
# steps named on the kernel command line (ktest.steps=a,b,...) once per hwpt layout
# (ktest.layouts=nested,paging, or "auto": every layout the kernel offers) and reports
# each on the serial console:
#   KTEST-BEGIN ...            the guest is up
#   KTEST-LAYOUTS <layout>...  what the kernel offers (iopf-kbare layouts probes it)
#   KTEST-RESULT <step>/<layout> PASS|FAIL|SKIP rc=<n> ms=<n>
#   KTEST-METRIC name=... k=v  figures (bare loop, hand-off, load)
#   KTEST-DMESG-BEGIN/END      the kernel log, for the runner's WARNING/BUG scan
#   KTEST-END status=<n>       0 only if every step passed
# then powers off. run.sh checks all of it; nothing here decides pass/fail for the suite.

/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console in the initramfs: attach to it now.
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t tmpfs -o mode=1777 tmpfs /tmp
/bin/busybox mount -t tmpfs -o mode=755 tmpfs /run
/bin/busybox mkdir -p /dev/shm
/bin/busybox mount -t tmpfs -o mode=1777 tmpfs /dev/shm

export PATH=/bin:/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
export HOME=/root

arg() { # arg NAME DEFAULT: ktest.NAME=value from the kernel command line
	v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^ktest\.$1=//p" | tail -n 1)
	echo "${v:-$2}"
}
STEPS=$(arg steps arrive)
LAYOUTS=$(arg layouts auto)
# steps that exist only where PASIDs attach to a paging fault hwpt
PAGING_ONLY=" pasid-kernel pasid pasid-none "
FAULTS=$(arg faults 10000)
WINDOW=$(arg window 65536)          # iopfd's fault-around for the scenarios
LOAD_WINDOW=$(arg load_window 4096) # for the load and the bare loop: one map per fault
WORKERS=$(arg workers 2)
TENANTS=$(arg tenants 4)
INFLIGHT=$(arg inflight 1)
HANDOFF_FAULTS=$(arg handoff_faults 2000)
# The figures (bare, handoff, load) run on one vCPU: under TCG a wake-up across vCPUs
# costs host scheduling latency, which would swamp what is measured. "none": unpinned.
PERF_CPU=$(arg perf_cpu 0)
PIN=
[ "$PERF_CPU" != none ] && PIN="taskset -c $PERF_CPU"
STEP_TIMEOUT=$(arg step_timeout 120)
SOCKET=/run/iopfd.sock
ADDRESS=unix:path=$SOCKET
DAEMON_PID=
DAEMON_KEY=

now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

echo "KTEST-BEGIN kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) steps=$STEPS"
# why a layout is not offered is logged by the probe; show it
probe=$(iopf-kbare layouts)
echo "$probe" | grep -v '^KTEST-LAYOUTS' | sed 's/^/ktest: probe: /'
OFFERED=$(echo "$probe" | sed -n 's/^KTEST-LAYOUTS *//p')
echo "KTEST-LAYOUTS $OFFERED"
[ "$LAYOUTS" = auto ] && LAYOUTS=$(echo "$OFFERED" | tr ' ' ',')

# start_daemon WINDOW [PIN]: an iopfd with that fault-around window and CPU pinning
# (restarted, cleanly, if the running one differs).
start_daemon() {
	want="$1/$2"
	if [ -n "$DAEMON_PID" ] && [ "$DAEMON_KEY" != "$want" ]; then
		stop_daemon || return 1
	fi
	[ -n "$DAEMON_PID" ] && return 0
	rm -f "$SOCKET"
	echo "ktest: starting ${2:+$2 }iopfd --socket $SOCKET --workers $WORKERS --fault-around $1"
	$2 iopfd --socket "$SOCKET" --workers "$WORKERS" --fault-around "$1" --no-system-bus &
	DAEMON_PID=$!
	DAEMON_KEY=$want
	# Bounded wait for the socket; the daemon may also fail outright.
	i=0
	while [ ! -S "$SOCKET" ]; do
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			wait "$DAEMON_PID"
			echo "ktest: iopfd exited with $? before creating $SOCKET"
			DAEMON_PID=
			return 1
		fi
		i=$((i + 1))
		if [ $i -gt 300 ]; then
			echo "ktest: iopfd did not create $SOCKET within 30 s"
			return 1
		fi
		sleep 0.1
	done
	echo "ktest: iopfd pid $DAEMON_PID serving $ADDRESS"
}

# The daemon must still be serving after each scenario.
daemon_alive() {
	[ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null
}

# run_tenant WINDOW PIN SCENARIO ARGS...
run_tenant() {
	window=$1
	pin=$2
	shift 2
	start_daemon "$window" "$pin" || return 1
	timeout -s KILL "$STEP_TIMEOUT" $pin iopf-ktenant "$@" --window "$window" \
		--layout "$LAYOUT" --address "$ADDRESS" --daemon-pid "$DAEMON_PID"
	rc=$?
	if ! daemon_alive; then
		echo "ktest: iopfd is gone after '$1'"
		[ $rc -eq 0 ] && rc=1
	fi
	return $rc
}

# restart: the tenant runs iopfd itself, under its fd-store stand-in, and SIGKILLs it amid
# faults (iopf-ktenant restart); a running iopfd of the other steps is stopped first.
run_restart() {
	if [ -n "$DAEMON_PID" ]; then
		stop_daemon || return 1
	fi
	rm -f "$SOCKET"
	log=/tmp/iopfd-restart-$LAYOUT.log
	timeout -s KILL "$STEP_TIMEOUT" iopf-ktenant restart --window "$WINDOW" \
		--layout "$LAYOUT" --address "$ADDRESS" --log "$log" -- \
		iopfd --socket "$SOCKET" --workers "$WORKERS" --fault-around "$WINDOW" --no-system-bus
}

# run_step STEP: in layout $LAYOUT
run_step() {
	name=$1
	t0=$(now_ms)
	echo "ktest: step $name ($LAYOUT)"
	case $name in
	arrive|pasid-kernel) timeout -s KILL "$STEP_TIMEOUT" iopf-kbare "$name" --layout "$LAYOUT" ;;
	bare) timeout -s KILL "$STEP_TIMEOUT" $PIN iopf-kbare bare --layout "$LAYOUT" \
		--faults "$FAULTS" --window "$LOAD_WINDOW" ;;
	handoff-poll|handoff-uring|handoff-process)
		timeout -s KILL "$STEP_TIMEOUT" $PIN iopf-kbare "$name" --layout "$LAYOUT" \
			--faults "$HANDOFF_FAULTS" ;;
	regions|outside|unknown|collide|teardown|faultaround|mapfile|pasid|pasid-none)
		run_tenant "$WINDOW" "" "$name" ;;
	load) run_tenant "$LOAD_WINDOW" "$PIN" load --faults "$FAULTS" --tenants "$TENANTS" \
		--inflight "$INFLIGHT" ;;
	stop) stop_daemon ;;
	restart) run_restart ;;
	*) echo "ktest: unknown step '$name'"; false ;;
	esac
	rc=$?
	ms=$(( $(now_ms) - t0 ))
	case $rc in
	0) res=PASS ;;
	77) res=SKIP ;;
	*) res=FAIL ;;
	esac
	echo "KTEST-RESULT $name/$LAYOUT $res rc=$rc ms=$ms"
	[ $rc -eq 0 ]
}

# A clean stop: SIGTERM, bounded wait, exit status 0.
stop_daemon() {
	[ -n "$DAEMON_PID" ] || { echo "ktest: iopfd was not running"; return 1; }
	kill -TERM "$DAEMON_PID" 2>/dev/null
	i=0
	while kill -0 "$DAEMON_PID" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 300 ]; then
			echo "ktest: iopfd ignored SIGTERM for 30 s"
			kill -KILL "$DAEMON_PID"
			DAEMON_PID=
			return 1
		fi
		sleep 0.1
	done
	wait "$DAEMON_PID"
	rc=$?
	DAEMON_PID=
	DAEMON_KEY=
	echo "ktest: iopfd exited with status $rc"
	return $rc
}

status=0
[ -n "$LAYOUTS" ] || { echo "ktest: the kernel offers no layout"; status=1; }
for LAYOUT in $(echo "$LAYOUTS" | tr ',' ' '); do
	for s in $(echo "$STEPS" | tr ',' ' '); do
		case $PAGING_ONLY in
		*" $s "*) [ "$LAYOUT" = paging ] || continue ;;
		esac
		run_step "$s" || status=1
	done
done
if [ -n "$DAEMON_PID" ]; then
	echo "ktest: iopfd still running at the end; stopping it"
	stop_daemon >/dev/null 2>&1
fi

echo "KTEST-DMESG-BEGIN"
dmesg
echo "KTEST-DMESG-END"
echo "KTEST-END status=$status"
sync
poweroff -f
reboot -f
