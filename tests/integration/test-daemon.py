#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon's own behaviour that the operations tests do not cover: how many workers it
starts, and (tests/integration/meson.build) more to come.

Usage: test-daemon.py CASE. Exit 0 pass, 1 fail, 77 skip. Binaries come from the
environment (IOPFD), as for test-ops.py, whose helpers this reuses.
"""
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("ops", os.path.join(HERE, "test-ops.py"))
ops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ops)
fail, Skip, env = ops.fail, ops.Skip, ops.env


def workers_property(d, name="Workers"):
    out = subprocess.run(["busctl", f"--address={d.address}", "get-property", "org.iopfd",
                          "/org/iopfd", "org.iopfd.Manager1", name],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        fail(f"busctl get-property {name}: {out.stderr.strip()}")
    kind, value = out.stdout.split()
    return int(value)


def case_workers_alive(tmp):
    """WorkersAlive: the workers that answered the watchdog's last ping; unchecked without one."""
    d = ops.Daemon(tmp, workers=2).wait_up()
    try:
        if workers_property(d, "WorkersAliveTimestampMonotonic") != 0:
            fail("workers checked without a watchdog")
    finally:
        d.stop()
    os.makedirs(os.path.join(tmp, "w"), exist_ok=True)
    n = ops.Notify(os.path.join(tmp, "w"))
    d = ops.Daemon(tmp, workers=2, wrapper=["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"],
                   env_extra={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000"}).wait_up()
    try:
        ops.poll(lambda: workers_property(d, "WorkersAliveTimestampMonotonic") != 0,
                 "a watchdog ping")
        ops.poll(lambda: workers_property(d, "WorkersAlive") == 2, "both workers alive")
        out = subprocess.run([env("IOPFCTL"), "--address", d.address, "status"],
                             capture_output=True, text=True, timeout=30).stdout
        if "2 alive at the watchdog's last ping" not in out:
            fail(f"iopfctl status does not say the workers are alive:\n{out}")
    finally:
        d.stop()


def case_workers_affinity(tmp):
    """Workers=0 starts one worker per CPU of the affinity mask, not per online CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    for mask in ([cpus[0]], cpus):
        d = ops.Daemon(tmp, workers=0,
                       wrapper=["taskset", "-c", ",".join(map(str, mask))]).wait_up()
        try:
            n = workers_property(d)
        finally:
            d.stop()
        if n != len(mask):
            fail(f"affinity {mask}: {n} workers, expected {len(mask)}")
        print(f"affinity {mask}: {n} workers")


CASES = {
    "workers-affinity": case_workers_affinity,
    "workers-alive": case_workers_alive,
}

if __name__ == "__main__":
    ops.CASES = CASES  # test-ops.py's runner: temporary directory, logs on failure, cleanup
    sys.exit(ops.main())
