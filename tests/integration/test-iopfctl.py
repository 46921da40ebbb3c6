#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""iopfctl against a real iopfd: JSON for every command, column choice, --no-legend,
status, socket paths as addresses, the error when nothing listens, --version, the
rates of stats --watch, and the client library's daemon info (through ctypes).

Usage: test-iopfctl.py CASE   (see CASES at the end). Exit 0 pass, 1 fail, 77 skip.
Binaries come from the environment: IOPFD, IOPFCTL, OPS_TENANT, LIBIOPF_CLIENT.
The daemon and tenant helpers are test-ops.py's.
"""
import ctypes
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time

_spec = importlib.util.spec_from_file_location(
    "ops", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-ops.py"))
ops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ops)
fail, env, run, Skip = ops.fail, ops.env, ops.run, ops.Skip

VERBS = ["list", "sources", "domains", "regions", "stats", "status"]
CONF = "[Limits]\nMaxSources=7\n"


def ctl(d, *args, check=True, address=None, **kw):
    return run([env("IOPFCTL"), "--address", address or d.address, *args], check=check, **kw)


def ctl_json(d, *args, **kw):
    out = ctl(d, "--json=short", *args, **kw).stdout
    try:
        return json.loads(out)
    except ValueError as e:
        fail(f"iopfctl --json=short {' '.join(args)}: not JSON ({e}):\n{out}")


def start(tmp):
    """iopfd and one tenant (a sim source, a domain, a region) that has faulted."""
    ops.need_root()  # the operator's view of every tenant
    d = ops.Daemon(tmp, conf=CONF).wait_up()
    t = ops.Tenant(d.address)
    t.faults(good=5, perm=1)
    return d, t


def case_json(tmp):
    """--json is valid JSON for every command, pretty or short; off is the table."""
    d, t = start(tmp)
    for verb in VERBS:
        for mode in ("short", "pretty"):
            out = ctl(d, f"--json={mode}", verb).stdout
            try:
                j = json.loads(out)
            except ValueError as e:
                fail(f"--json={mode} {verb}: not JSON ({e}):\n{out}")
            if mode == "short" and out.count("\n") != 1:
                fail(f"--json=short {verb} is not one line:\n{out}")
            if mode == "pretty" and out.count("\n") < 3:
                fail(f"--json=pretty {verb} is not indented:\n{out}")
            if not isinstance(j, dict) or not j:
                fail(f"--json {verb}: {j}")
    # the shapes the scripts rely on
    j = ctl_json(d, "list")
    if [len(j[k]) for k in ("sources", "domains", "regions")] != [1, 1, 1]:
        fail(f"list: {j}")
    r = j["regions"][0]
    if r["domain"] != j["domains"][0]["id"] or r["access_flags"] != "r---" or \
            j["domains"][0]["pasid"] is not None:
        fail(f"list rows: {j}")
    j = ctl_json(d, "stats")
    if j["daemon"]["counters"]["faults"] != 6 or \
            j["unrouted"][0]["counters"]["broken"] != 0:
        fail(f"stats: {j}")
    # plain --json to a pipe is short; off is the table
    if ctl(d, "--json", "sources").stdout.count("\n") != 1:
        fail("plain --json to a pipe is not short")
    if not ctl(d, "--json=off", "sources").stdout.startswith("TENANT"):
        fail("--json=off is not the table")
    p = ctl(d, "--json=yaml", "sources", check=False)
    if p.returncode == 0 or "not pretty, short or off" not in p.stderr:
        fail(f"--json=yaml: {p.returncode} {p.stderr}")
    t.close()
    d.stop()


def case_columns(tmp):
    """-o chooses the columns and their order, +COLS adds to the defaults."""
    d, t = start(tmp)
    lines = ctl(d, "-o", "access,region", "regions").stdout.splitlines()
    if lines[0].split() != ["ACCESS", "REGION"] or len(lines) != 2 or \
            lines[1].split() != ["r---", str(t.ids["region"])]:
        fail(f"-o access,region:\n{lines}")
    out = ctl(d, "--output=+IO-ERRORS", "stats").stdout
    if "IO-ERRORS" not in out or "WHY-INVALID" not in out:
        fail(f"-o +io-errors stats:\n{out}")
    # JSON keys work too, and then only those keys are printed
    j = ctl_json(d, "-o", "id,backend", "sources")
    if j["sources"] != [{"id": t.ids["source"], "backend": "sim"}]:
        fail(f"--json -o id,backend: {j}")
    # list: each table shows the named columns it has
    lines = ctl(d, "-o", "domain", "list").stdout.splitlines()
    if [l.split() for l in lines if l] != [["DOMAIN"], [str(t.ids["domain"])],
                                          ["DOMAIN"], [str(t.ids["domain"])]]:
        fail(f"-o domain list:\n{lines}")
    p = ctl(d, "-o", "frobs", "sources", check=False)
    if p.returncode == 0 or 'no column "frobs"' not in p.stderr or "backend" not in p.stderr:
        fail(f"-o frobs: {p.returncode} {p.stderr}")
    p = ctl(d, "-o", "version", "status", check=False)
    if p.returncode == 0:
        fail("-o with status")
    t.close()
    d.stop()


def case_no_legend(tmp):
    """--no-legend: rows only, no headers or titles; an empty listing prints nothing."""
    d, t = start(tmp)
    out = ctl(d, "--no-legend", "sources").stdout
    words = out.split()
    if out.count("\n") != 1 or len(words) != 4 or words[1] != str(t.ids["source"]) or \
            words[3] != "sim":
        fail(f"--no-legend sources:\n{out}")
    out = ctl(d, "--no-legend", "stats").stdout
    for word in ("TENANT", "Tenants", "Domains", "Unrouted", "since start"):
        if word in out:
            fail(f"--no-legend stats has {word}:\n{out}")
    if ctl(d, "--no-legend", "--mine", "sources").stdout != "":
        fail("--no-legend of an empty listing prints something")
    # with the legend an empty listing still names its columns
    if ctl(d, "--mine", "sources").stdout != "SOURCE IOAS BACKEND\n":
        fail("an empty listing's header")
    t.close()
    d.stop()


def case_status(tmp):
    """status: version, start and uptime, workers, tenants, sources, configuration."""
    d, t = start(tmp)
    before = time.time()
    j = ctl_json(d, "status")
    if j["version"] != ops.get_property(d.address, "Version").strip('"') or j["workers"] != 2:
        fail(f"status version/workers: {j}")
    start_s = j["start_timestamp_us"] / 1e6
    if not (0 < before - start_s < ops.WAIT + 60) or not j["uptime_us"] > 0:
        fail(f"status start/uptime: {j}")
    mono = j["start_timestamp_monotonic_us"]
    if str(mono) != ops.get_property(d.address, "StartTimestampMonotonic"):
        fail(f"status StartTimestampMonotonic: {j}")
    if j["tenants"] != 1 or j["sources"] != 1 or j["broken_sources"] != [] or \
            j["io_errors"] != 0:
        fail(f"status tenants/sources: {j}")  # the tenant; iopfctl registered nothing
    conf = j["configuration"]
    if conf["MaxSources"] != 7 or "FaultAround" not in conf or "Version" in conf:
        fail(f"status configuration: {conf}")
    out = ctl(d, "status").stdout
    for word in ("Version: ", "Started: ", ", up ", "Workers: 2", "Tenants: 1",
                 "Sources: 1, 0 broken", "Configuration: ", "MaxSources=7"):
        if word not in out:
            fail(f"status lacks {word!r}:\n{out}")
    # a tenant's own view: its sources, no tenant count
    j = ctl_json(d, "--mine", "status")
    if j["tenants"] is not None or j["sources"] != 0 or not j["version"]:
        fail(f"status --mine: {j}")
    t.close()
    d.stop()


def case_address(tmp):
    """A socket path is an address too (option and $IOPFD_ADDRESS); nothing listening is
    said plainly."""
    d, t = start(tmp)
    for address in (d.sock, "unix:path=" + d.sock):
        if ctl_json(d, "sources", address=address)["sources"][0]["id"] != t.ids["source"]:
            fail(f"--address {address}")
    e = dict(os.environ, IOPFD_ADDRESS=d.sock)
    p = run([env("IOPFCTL"), "--json=short", "sources"], env=e)
    if json.loads(p.stdout)["sources"][0]["id"] != t.ids["source"]:
        fail("$IOPFD_ADDRESS as a path")
    # relative, with bytes D-Bus addresses escape
    odd = os.path.join(tmp, "a dir,x")
    os.mkdir(odd)
    os.symlink(d.sock, os.path.join(odd, "ctl=1"))
    if not ctl_json(d, "sources", address=os.path.relpath(os.path.join(odd, "ctl=1")))["sources"]:
        fail("a relative path with spaces, commas and =")
    t.close()
    d.stop()
    # a socket nobody listens on, and no socket at all
    dead = os.path.join(tmp, "dead")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(dead)
    s.close()
    cases = [(dead, f"iopfctl: cannot connect to {dead}: no iopfd listening "
                    "(Connection refused)"),
             (os.path.join(tmp, "nothing"), f"iopfctl: cannot connect to {tmp}/nothing: "
                                            "no such socket (No such file or directory)")]
    for address, want in cases:
        for verb in VERBS:
            p = run([env("IOPFCTL"), "--address", address, "--json", verb], check=False)
            if p.returncode != 1 or p.stderr.strip() != want or p.stdout:
                fail(f"{verb} with nothing at {address}: {p.returncode} {p.stdout!r} "
                     f"{p.stderr!r}, want {want!r}")


def case_version(tmp):
    """--version names the tool and the version of the tree, like iopfd --version."""
    p = run([env("IOPFCTL"), "--version"])
    daemon = run([env("IOPFD"), "--version"]).stdout.split()
    words = p.stdout.split()
    if words[0] != "iopfctl" or len(words) != 2 or words[1] not in daemon:
        fail(f"--version: {p.stdout!r} (iopfd: {daemon})")
    if "--version" not in run([env("IOPFCTL"), "--help"]).stdout:
        fail("--help lacks --version")


def case_watch_rates(tmp):
    """stats --watch: rates per second over the interval, consistent with the totals."""
    d, t = start(tmp)
    p = ops.spawn([env("IOPFCTL"), "--address", d.address, "--json=short", "stats",
                   "--watch=3", "-n", "2"], stdout=subprocess.PIPE, text=True)
    first = json.loads(p.stdout.readline())
    t.faults(good=4, nohandler=3)  # the next frame is 3 s away; this takes milliseconds
    second = json.loads(p.stdout.readline())
    if p.wait(timeout=ops.WAIT) != 0:
        fail("iopfctl stats --watch exited non-zero")
    if first["interval_s"] is not None or \
            any(r["faults_per_s"] is not None for r in first["tenants"] + first["domains"]):
        fail(f"the first frame has rates: {first}")
    dt = second["interval_s"]
    if not 2.5 < dt < 3 + ops.WAIT:
        fail(f"interval {dt}")

    def row(frame, kind, key, value):
        return next(r for r in frame[kind] if r[key] == value)

    t1 = row(first, "tenants", "pid", t.proc.pid)
    t2 = row(second, "tenants", "pid", t.proc.pid)
    for what in ("faults", "groups"):
        delta = t2["counters"][what] - t1["counters"][what]
        if delta != 7 or abs(t2[f"{what}_per_s"] * dt - delta) > 1e-6 * delta:
            fail(f"tenant {what}: {delta} in {dt} s, rate {t2[f'{what}_per_s']}")
    d1 = row(first, "domains", "id", t.ids["domain"])
    d2 = row(second, "domains", "id", t.ids["domain"])
    delta = d2["counters"]["faults"] - d1["counters"]["faults"]  # no_handler is unrouted
    if delta != 4 or abs(d2["faults_per_s"] - delta / dt) > 0.01 * delta / dt:
        fail(f"domain faults: {delta} in {dt} s, rate {d2['faults_per_s']}")
    # latency over the interval: the second frame's histogram holds this interval's groups
    groups = d2["counters"]["groups"] - d1["counters"]["groups"]
    if d2["latency"]["count"] != groups:
        fail(f"domain latency over the interval counts {d2['latency']['count']}, "
             f"{groups} groups came")
    # each frame says when it was read
    if not 0 < first["timestamp_us"] < second["timestamp_us"]:
        fail(f"frame timestamps {first.get('timestamp_us')}, {second.get('timestamp_us')}")
    # the table has the rate columns with --watch only
    out = ctl(d, "stats", "--watch=0.1", "-n", "2").stdout
    if out.count("FAULTS/S") != 4 or out.count("GROUPS/S") != 4:  # tenants, domains; 2 frames
        fail(f"stats --watch table:\n{out}")
    if "GROUPS/S" in ctl(d, "stats").stdout:
        fail("stats without --watch has rates")
    t.close()
    d.stop()


class DaemonInfo(ctypes.Structure):
    _fields_ = [("version", ctypes.c_char_p), ("workers", ctypes.c_uint32),
                ("start_realtime_usec", ctypes.c_uint64),
                ("start_monotonic_usec", ctypes.c_uint64)]


def case_client_library(tmp):
    """libiopf-client: a socket path connects; daemon info and settings as iopfctl sees them."""
    if "libasan" in subprocess.run(["ldd", env("LIBIOPF_CLIENT")], capture_output=True,
                                   text=True).stdout:
        raise ops.Skip("a sanitized libiopf-client cannot be loaded into python")
    lib = ctypes.CDLL(env("LIBIOPF_CLIENT"))
    lib.iopf_client_connect.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.iopf_client_daemon_info_sized.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(DaemonInfo))]
    lib.iopf_client_setting.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                        ctypes.POINTER(ctypes.c_uint64)]
    lib.iopf_client_free.argtypes = [ctypes.c_void_p]
    lib.iopf_client_free.restype = ctypes.c_void_p
    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    d = ops.Daemon(tmp, conf=CONF).wait_up()
    c = ctypes.c_void_p()
    if lib.iopf_client_connect(d.sock.encode(), ctypes.byref(c)) != 0:
        fail("iopf_client_connect(a socket path)")
    info = ctypes.POINTER(DaemonInfo)()
    r = lib.iopf_client_daemon_info_sized(c, ctypes.sizeof(DaemonInfo), ctypes.byref(info))
    if r != 0:
        fail(f"iopf_client_daemon_info: {r}")
    status = json.loads(run([env("IOPFCTL"), "--address", d.sock, "--json=short",
                             "status"]).stdout)
    got = info.contents
    if got.version.decode() != status["version"] or got.workers != status["workers"] or \
            got.start_realtime_usec != status["start_timestamp_us"] or \
            got.start_monotonic_usec != status["start_timestamp_monotonic_us"]:
        fail(f"daemon info {got.version} {got.workers} {got.start_realtime_usec} vs {status}")
    libc.free(ctypes.cast(info, ctypes.c_void_p))
    # a caller built before a field was added still gets the fields it knows
    r = lib.iopf_client_daemon_info_sized(c, 4, ctypes.byref(info))
    if r != -22:
        fail(f"iopf_client_daemon_info with a size below the first version: {r}")
    v = ctypes.c_uint64()
    if lib.iopf_client_setting(c, b"MaxSources", ctypes.byref(v)) != 0 or v.value != 7:
        fail(f"iopf_client_setting(MaxSources): {v.value}")
    if lib.iopf_client_setting(c, b"FaultAround", ctypes.byref(v)) != 0 or \
            v.value != status["configuration"]["FaultAround"]:
        fail("iopf_client_setting(FaultAround)")
    for name in (b"NoSuchSetting", b"Version"):
        r = lib.iopf_client_setting(c, name, ctypes.byref(v))
        if r != -2:
            fail(f"iopf_client_setting({name}): {r}, want -ENOENT")
    lib.iopf_client_free(c)
    d.stop()


CASES = {
    "json": case_json,
    "columns": case_columns,
    "no-legend": case_no_legend,
    "status": case_status,
    "address": case_address,
    "version": case_version,
    "watch-rates": case_watch_rates,
    "client-library": case_client_library,
}


def main():
    ops.CASES.clear()
    ops.CASES.update(CASES)
    return ops.main()


if __name__ == "__main__":
    sys.exit(main())
