#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The installed units, started by a real systemd: boot a debootstrapped Debian 12
# with systemd-nspawn, install iopfd into it, let a check service run the
# simulator against iopfd.socket (direct socket and system bus), scrape the
# exporter, reload, read the journal's structured fields, stop iopfd with
# SIGSTOP and watch systemd's watchdog restart it, then power off.
# Not part of "meson test" (it needs a root filesystem and about a minute).
#
# Usage: tests/integration/nspawn-boot.sh ROOT BUILD
#   ROOT   a Debian 12 tree, e.g. from
#          debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,procps,\
#             liburing2,liburcu8,libinih1,curl bookworm ROOT http://deb.debian.org/debian
#   BUILD  a build configured with --prefix=/usr --sysconfdir=/etc
# Prints the check's log and exits 0 when every check passed.
set -euo pipefail

root=$(realpath "$1")
build=$(realpath "$2")
[ -x "$root/lib/systemd/systemd" ] || { echo "nspawn-boot: $root has no systemd" >&2; exit 77; }
command -v systemd-nspawn >/dev/null || { echo "nspawn-boot: no systemd-nspawn" >&2; exit 77; }

DESTDIR=$root meson install -C "$build" --no-rebuild --quiet
install -m 0755 "$build/tools/iopf-sim" "$root/usr/local/bin/iopf-sim"
systemd-sysusers --root="$root" >/dev/null

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

check systemctl is-active --quiet iopfd.socket iopf-exporter.socket dbus.service
# summaries every second, so a paced run of a few seconds shows some
mkdir -p /etc/iopfd/iopfd.conf.d
printf '[Daemon]\nRefusedSummaryInterval=1s\n' > /etc/iopfd/iopfd.conf.d/50-check.conf
# the first tenant connection starts iopfd through its socket
check iopf-sim --address unix:path=/run/iopfd/control --tenants 4 --bad 10 --faults 40000 \
	--rate 15000
check systemctl is-active --quiet iopfd.service
check test "$(show iopfd.service User)" = iopfd
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

systemd-analyze security iopfd.service iopf-exporter.service --no-pager > $out/security.txt 2>&1
grep -h "Overall exposure" $out/security.txt
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

systemctl --root="$root" enable iopfd.socket iopf-exporter.socket iopfd-nspawn-check.service \
	>/dev/null 2>&1
rm -rf "$root/var/tmp/iopfd-check"

# --keep-unit --register=no: no systemd-machined here. The check powers off;
# the timeout only turns a hang into a failure.
timeout -k 10 300 systemd-nspawn -q --keep-unit --register=no -D "$root" \
	--private-network -b >/dev/null 2>&1 || true

cat "$root/var/tmp/iopfd-check/log" 2>/dev/null || { echo "nspawn-boot: the check never ran"; exit 1; }
grep -q '^RESULT: PASS' "$root/var/tmp/iopfd-check/log"
