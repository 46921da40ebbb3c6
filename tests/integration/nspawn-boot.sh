#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The Debian packages under a real systemd: boot a debootstrapped Debian 12 with
# systemd-nspawn, and in it let a check service install the packages with dpkg (their
# maintainer scripts run against the running systemd: the sysusers users, a
# daemon-reload, iopfd.socket and iopf-exporter.socket enabled and started), check what
# they installed, run the simulator against iopfd.socket (direct socket and system bus),
# check the sandbox the service really got, scrape the exporter, reload, read the
# journal's structured fields, stop iopfd with SIGSTOP and watch systemd's watchdog
# restart it, stop it cleanly, start it again by D-Bus activation, remove the packages
# and purge them, then power off.
# "meson test --suite nspawn" runs it through nspawn-test.sh, on an overlay over the root
# that mkroot.sh caches, with the packages it builds.
#
# Usage: tests/integration/nspawn-boot.sh ROOT DEBS
#   ROOT   a Debian 12 tree (tests/integration/mkroot.sh makes one, with the packages'
#          dependencies); it is changed: the packages are installed into it
#   DEBS   a directory with iopfd, prometheus-iopfd-exporter, libiopf-client0 and
#          libiopf-client-dev .debs, and iopf-sim from the same build
# Prints the check's log and exits 0 when every check passed.
set -euo pipefail

root=$(realpath "$1")
debs=$(realpath "$2")
[ -x "$root/lib/systemd/systemd" ] || { echo "nspawn-boot: $root has no systemd" >&2; exit 77; }
command -v systemd-nspawn >/dev/null || { echo "nspawn-boot: no systemd-nspawn" >&2; exit 77; }
for p in iopfd prometheus-iopfd-exporter libiopf-client0 libiopf-client-dev; do
	compgen -G "$debs/${p}_*.deb" >/dev/null || { echo "nspawn-boot: no $p .deb in $debs" >&2; exit 1; }
done

# The check installs them itself, once systemd runs, so that the maintainer scripts meet
# a running service manager as on a real host.
rm -rf "$root/var/tmp/iopfd-debs"
mkdir -p "$root/var/tmp/iopfd-debs"
cp "$debs"/*.deb "$root/var/tmp/iopfd-debs/"
install -m 0755 "$debs/iopf-sim" "$root/usr/local/bin/iopf-sim"

# the simulator needs --allow-simulator; a short watchdog makes the restart quick
mkdir -p "$root/etc/systemd/system/iopfd.service.d"
cat > "$root/etc/systemd/system/iopfd.service.d/nspawn-check.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/usr/sbin/iopfd --system-bus --allow-simulator
WatchdogSec=3s
EOF

cat > "$root/usr/local/bin/iopfd-nspawn-check" <<'EOF'
#!/bin/bash
# Runs inside the container as a oneshot service; results in /var/tmp/iopfd-check.
out=/var/tmp/iopfd-check
mkdir -p $out
exec > $out/log 2>&1
failed=0
check() { if "$@"; then echo "PASS: $*"; else echo "FAIL: $*"; failed=1; fi; }
show() { systemctl show "$1" -p "$2" --value; }

# The packages, installed as an operator would: their users do not exist yet, nor do
# their units; dpkg -i takes their dependencies from the root (no network here).
check test -z "$(getent passwd iopfd iopf-exporter)"
check test "$(systemctl is-enabled iopfd.socket 2>&1)" != enabled
since=$(date '+%Y-%m-%d %H:%M:%S')
sleep 1
check dpkg -i /var/tmp/iopfd-debs/iopfd_*.deb /var/tmp/iopfd-debs/prometheus-iopfd-exporter_*.deb \
	/var/tmp/iopfd-debs/libiopf-client0_*.deb /var/tmp/iopfd-debs/libiopf-client-dev_*.deb
for p in iopfd prometheus-iopfd-exporter libiopf-client0 libiopf-client-dev; do
	check sh -c "dpkg-query -W -f='\${Status}' $p | grep -qx 'install ok installed'"
done
# what the maintainer scripts did: sysusers made the users ...
check sh -c 'getent passwd iopfd | grep -q ":/usr/sbin/nologin$"'
check sh -c 'getent passwd iopf-exporter | grep -q ":/usr/sbin/nologin$"'
check test "$(id -u iopfd)" -lt 1000
# ... systemd was reloaded and knows the packaged units, without a pending reload ...
check sh -c "journalctl -b _PID=1 --since '$since' --no-pager | grep -q 'Reloading'"
for u in iopfd.service iopfd.socket iopf-exporter.service iopf-exporter.socket; do
	check test "$(show $u LoadState)" = loaded
	check test "$(show $u NeedDaemonReload)" = no
	check test "$(show $u FragmentPath)" = /lib/systemd/system/$u
done
# ... the sockets are enabled and listening, and iopfd itself waits for its first client
check test "$(systemctl is-enabled iopfd.socket)" = enabled
check test "$(systemctl is-enabled iopf-exporter.socket)" = enabled
check test "$(systemctl is-enabled iopfd.service)" = disabled
check test "$(systemctl is-active iopfd.service)" = inactive
check test -S /run/iopfd/control
# and the files: configuration as a conffile, the D-Bus policy, man pages, the library
check sh -c "dpkg-query -W -f='\${Conffiles}' iopfd | grep -q ' /etc/iopfd/iopfd.conf '"
check test -d /etc/iopfd/iopfd.conf.d
check test -f /usr/share/dbus-1/system.d/org.iopfd.conf
check test -f /usr/share/dbus-1/system-services/org.iopfd.service
for m in man8/iopfd.8 man5/iopfd.conf.5 man5/org.iopfd.5 man1/iopfctl.1 man8/iopf-exporter.8 \
	man3/libiopf-client.3; do
	check test -f /usr/share/man/$m.gz
done
check test -f /usr/share/doc/iopfd/operations.md
check test -f /usr/share/bash-completion/completions/iopfctl
check sh -c 'test -L /usr/lib/*/libiopf-client.so.0'
check test -f /usr/include/iopf/client.h
check sh -c 'ldd /usr/local/bin/iopf-sim | grep -Eq "libiopf-client\.so\.0 => /(usr/)?lib/"'
# the drop-in the harness wrote before the package existed is in effect
check sh -c "systemctl show iopfd.service -p DropInPaths --value | grep -q nspawn-check.conf"

check systemctl is-active --quiet iopfd.socket iopf-exporter.socket dbus.service
# summaries every second, so a paced run of a few seconds shows some
mkdir -p /etc/iopfd/iopfd.conf.d
printf '[Daemon]\nRefusedSummaryInterval=1s\n' > /etc/iopfd/iopfd.conf.d/50-check.conf
# the first tenant connection starts iopfd through its socket
check iopf-sim --address unix:path=/run/iopfd/control --tenants 4 --bad 10 --faults 40000 \
	--rate 15000
check systemctl is-active --quiet iopfd.service
check test "$(show iopfd.service User)" = iopfd
# the sandbox the process really got from this systemd
pid=$(show iopfd.service MainPID)
check test "$(stat -c %U /proc/$pid)" = iopfd
check grep -q '^CapEff:[[:space:]]*0*$' /proc/$pid/status
check grep -q '^CapBnd:[[:space:]]*0*$' /proc/$pid/status
check grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/$pid/status
check grep -q '^Seccomp:[[:space:]]*2$' /proc/$pid/status
# LimitMEMLOCK= takes effect only where the container may raise a hard limit
memlock=$(awk '/^Max locked memory/ { print $5 }' /proc/$pid/limits)
if (( (16#$(awk '/^CapBnd:/ { print $2 }' /proc/1/status) >> 24) & 1 )); then
	check test "$memlock" = "$(show iopfd.service LimitMEMLOCK)"
else
	echo "NOTE: no CAP_SYS_RESOURCE here, so LimitMEMLOCK=$(show iopfd.service LimitMEMLOCK) is capped at the container's $memlock"
fi
check iopf-sim --address system --tenants 2 --bad 5 --faults 20000
iopfctl --address system stats
check sh -c 'iopfctl --address system --json stats | grep -q "\"daemon\""'

# the exporter, socket-activated, sees the daemon's totals
curl -sf http://127.0.0.1:9577/metrics > $out/metrics.txt
check grep -q '^iopfd_up 1$' $out/metrics.txt
check grep -q '^iopfd_faults_total 60000$' $out/metrics.txt
check grep -q 'iopfd_fault_latency_seconds_bucket{le="+Inf"} 60000' $out/metrics.txt

# reload through the unit: RELOADING=1 ... READY=1
sed -i 's/^#FaultAround=64K/FaultAround=128K/' /etc/iopfd/iopfd.conf
check systemctl reload iopfd.service
check sh -c "busctl get-property org.iopfd /org/iopfd org.iopfd.Manager1 FaultAround | grep -q 131072"
show iopfd.service StatusText

# structured journal fields, and summaries instead of per-fault lines
journalctl -u iopfd.service -o json --no-pager > $out/journal.json
check grep -q '"IOPF_TENANT"' $out/journal.json
check grep -q '"IOPF_EVENT":"refused-summary"' $out/journal.json
check grep -q '"IOPF_DEV_ID"' $out/journal.json
journalctl -u iopfd.service --no-pager | tail -n 30

# the watchdog: a stopped daemon sends no keep-alive and systemd restarts it
before=$(show iopfd.service NRestarts)
kill -STOP "$(show iopfd.service MainPID)"
for _ in $(seq 60); do
	[ "$(show iopfd.service NRestarts)" -gt "$before" ] && break
	sleep 0.5
done
check test "$(show iopfd.service NRestarts)" -gt "$before"
journalctl -u iopfd.service --no-pager | grep -i watchdog | tail -n 3
# and it serves again
check iopf-sim --address unix:path=/run/iopfd/control --tenants 1 --faults 1000

# signal_under_load SIGNAL TENANTS FAULTS OUTPUT: iopf-sim's load (100000 faults/s,
# --restarts) on iopfd while its main process gets SIGNAL; every group is answered
signal_under_load() {
	iopf-sim --address unix:path=/run/iopfd/control --tenants "$2" --faults "$3" \
		--rate 100000 --restarts > "$4" 2>&1 &
	simpid=$!
	sleep 1
	check systemctl kill --signal="$1" --kill-who=main iopfd.service
	check wait $simpid
	check grep -q 'unanswered 0' "$4"
}
# a crash under load: SIGKILL, systemd restarts it with the fd store, and the
# load finishes with every group answered (0 unanswered), no tenant registering again
before=$(show iopfd.service NRestarts)
signal_under_load SIGKILL 4 300000 $out/sim-kill.txt
check test "$(show iopfd.service NRestarts)" -gt "$before"
check sh -c "journalctl -u iopfd.service --no-pager | grep -q 'Carrying on from the process before: 4 fault sources'"
# an upgrade: the package's handover (SIGUSR2, exit 75), under load
signal_under_load SIGUSR2 2 200000 $out/sim-handover.txt
check sh -c "journalctl -u iopfd.service --no-pager | grep -q 'Handing over to the next iopfd'"
check systemctl is-active --quiet iopfd.service
tail -n 4 $out/sim-kill.txt $out/sim-handover.txt

# a clean stop (STOPPING=1, held faults answered, exit 0) ...
check systemctl stop iopfd.service
check test "$(show iopfd.service Result)" = success
check test "$(show iopfd.service ExecMainStatus)" = 0
# ... stopped with its socket, a scrape reports it down and does not start it (with
# iopfd.socket listening, a scrape is a client like any other and starts it) ...
check systemctl stop iopfd.socket
curl -sf http://127.0.0.1:9577/metrics > $out/metrics-stopped.txt
check grep -q '^iopfd_up 0$' $out/metrics-stopped.txt
check test "$(systemctl is-active iopfd.service)" != active
# ... and D-Bus activation: a system-bus client starts it through org.iopfd.service
check iopf-sim --address system --tenants 1 --faults 1000
check systemctl is-active --quiet iopfd.service

systemd-analyze security iopfd.service iopf-exporter.service --no-pager > $out/security.txt 2>&1
grep -h "Overall exposure" $out/security.txt
# the limit test-ops.py applies to the --offline score
exposure_at_most() {
	awk -v unit="$1" -v max="$2" '$0 ~ "Overall exposure level for " unit ":" {
		for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { v = $i; found = 1 }
	} END { exit !(found && v + 0 <= max + 0) }' $out/security.txt
}
check exposure_at_most iopfd.service 2.0
check exposure_at_most iopf-exporter.service 2.0

# removal stops what runs, purge takes the configuration and the unit state with it
check systemctl start iopfd.socket iopfd.service
check dpkg -r iopfd prometheus-iopfd-exporter libiopf-client-dev libiopf-client0
check test "$(systemctl is-active iopfd.service)" != active
check test "$(systemctl is-active iopfd.socket)" != active
check test "$(systemctl is-active iopf-exporter.socket)" != active
check test ! -e /usr/sbin/iopfd
check test -f /etc/iopfd/iopfd.conf
check dpkg -P iopfd prometheus-iopfd-exporter
check test ! -e /etc/iopfd/iopfd.conf
check test ! -e /etc/systemd/system/sockets.target.wants/iopfd.socket
check test ! -e /etc/systemd/system/sockets.target.wants/iopf-exporter.socket
echo "RESULT: $([ $failed = 0 ] && echo PASS || echo FAIL)"
systemctl poweroff --no-block
EOF
chmod 0755 "$root/usr/local/bin/iopfd-nspawn-check"

cat > "$root/etc/systemd/system/iopfd-nspawn-check.service" <<'EOF'
[Unit]
Description=iopfd checks under systemd
After=multi-user.target iopfd.socket iopf-exporter.socket dbus.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/iopfd-nspawn-check
[Install]
WantedBy=multi-user.target
EOF

systemctl --root="$root" enable iopfd-nspawn-check.service >/dev/null 2>&1
rm -rf "$root/var/tmp/iopfd-check"

# --keep-unit --register=no: no systemd-machined here. The check powers off;
# the timeout only turns a hang into a failure.
console=$(mktemp)
trap 'rm -f "$console"' EXIT
nspawn_rc=0
timeout -k 10 300 systemd-nspawn -q --keep-unit --register=no -D "$root" \
	--private-network --setenv=SYSTEMD_COLORS=0 -b >"$console" 2>&1 </dev/null || nspawn_rc=$?

# What went wrong, when something did: the end of the console and the container's journal.
diagnose() {
	echo "nspawn-boot: systemd-nspawn exited $nspawn_rc; the end of its console:"
	tail -n 40 "$console" | sed 's/^/  | /'
	if [ -d "$root/var/log/journal" ]; then
		echo "nspawn-boot: the container's journal, warnings and worse:"
		journalctl -D "$root/var/log/journal" -p warning --no-pager -n 60 2>&1 | sed 's/^/  | /'
	fi
}

if ! cat "$root/var/tmp/iopfd-check/log" 2>/dev/null; then
	echo "nspawn-boot: the check never ran"
	diagnose
	exit 1
fi
if ! grep -q '^RESULT: PASS' "$root/var/tmp/iopfd-check/log"; then
	diagnose
	exit 1
fi
