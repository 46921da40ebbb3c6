#!/usr/bin/env bash
# The main job: iopfd serving a simulated accelerator with several tenants.
# Installs what it needs, builds (release), starts the daemon on a private
# socket, runs the simulator against the raw echo baseline and then against
# iopfd, and prints the throughput and latency summary. Extra arguments go to
# iopf-sim (see `iopf-sim --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build

build=build-release
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" -Dbuildtype=release -Db_ndebug=true -Dtests=disabled \
		-Dkernel-tests=false >/dev/null
fi
ninja -C "$build" >/dev/null

run=$(mktemp -d /tmp/iopfd-demo.XXXXXX)
daemon=
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	rm -rf "$run"
}
trap cleanup EXIT

"$build/daemon/iopfd" --socket "$run/control" --workers 1 --allow-simulator \
	--no-system-bus 2>"$run/iopfd.log" &
daemon=$!
for _ in $(seq 100); do
	[ -S "$run/control" ] && break
	kill -0 "$daemon" 2>/dev/null || { cat "$run/iopfd.log"; exit 1; }
	sleep 0.05
done

echo "iopfd $("$build/daemon/iopfd" --version) serving 8 simulated tenants" \
	"(2 devices x 2 PASIDs x 8 regions each, random pages, 5% bad requests)"
"$build/tools/iopf-sim" --address "unix:path=$run/control" --compare \
	--tenants 8 --devices 2 --pasids 2 --regions 8 --region-size 4M \
	--pattern random --group 2 --bad 5 --faults 4000000 "$@"
