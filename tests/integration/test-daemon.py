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
fail, Skip = ops.fail, ops.Skip


def workers_property(d):
    out = subprocess.run(["busctl", f"--address={d.address}", "get-property", "org.iopfd",
                          "/org/iopfd", "org.iopfd.Manager1", "Workers"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        fail(f"busctl get-property Workers: {out.stderr.strip()}")
    kind, value = out.stdout.split()
    return int(value)


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
}

if __name__ == "__main__":
    ops.CASES = CASES  # test-ops.py's runner: temporary directory, logs on failure, cleanup
    sys.exit(ops.main())
