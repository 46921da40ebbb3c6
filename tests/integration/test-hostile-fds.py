#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile fds and a hostile simulator context (issue 10), through the public socket only.

Each case starts one iopfd and runs tests/integration/hostile-tenant as uid ATTACKER while
an honest tenant (ops-tenant, uid nobody) is served, reusing test-isolation.py's helpers:

  opath           an O_PATH fd as a region's memory is refused (bad fd, named), whether the
                  file is one the tenant cannot read or its own
  stray-doorbell  an eventfd that is not the context's doorbell is refused as a fault fd
  held-lock       a tenant that sits on its context's lock forever, on the only worker:
                  the honest tenant on that worker is served all the while
  heap-trim       a tenant with tens of thousands of regions leaves: the daemon's RSS comes
                  back to within HEAP_SLACK_MIB of what it was before

Usage: test-hostile-fds.py CASE. Exit 0 pass, 1 fail, 77 skip. Binaries from the
environment: IOPFD, OPS_TENANT, HOSTILE_TENANT. Figures are printed as "figure: ..." lines.
Nothing asserts on timing beyond test-isolation.py's keep-alive bound: waits are bounded polls.
"""
import importlib.util
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("iso", os.path.join(HERE, "test-isolation.py"))
iso = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(iso)
ops = iso.ops
fail, poll, env, figure = ops.fail, ops.poll, ops.env, iso.figure

ATTACKER = iso.ATTACKER
EBADF = -9
HEAP_SLACK_MIB = 20
HEAP_REGIONS = 40000
LOCKED_SOURCES = 16  # MaxSources' default


class Hostile(ops.ScriptedTenant):
    """hostile-tenant as @uid: one JSON line per command."""

    def __init__(self, d, uid=ATTACKER):
        super().__init__("HOSTILE_TENANT", "hostile-tenant",
                         ["--address", d.address, "--uid", str(uid)])

    def serve_own(self, n, what):
        """Its own @n good groups are all answered SUCCESS."""
        self.cmd(f"inject {n}")
        r = self.cmd(f"wait {n}")
        if r.get("success") != n:
            fail(f"{what}: {r}")


def expect_bad_fd(r, what, words):
    if r.get("error") != EBADF or words not in r.get("message", ""):
        fail(f"{what}: got {r}, wanted a bad-fd error saying '{words}'")
    figure(f"{what}: refused: {r['message']}")


def case_opath(tmp):
    d, ka = iso.start(tmp)
    since = ka.mark()
    h = iso.Honest(d)
    bg = iso.Background(h)
    a = Hostile(d)
    # a file only root may read: through O_PATH the daemon would map it with its own rights
    secret = os.path.join(tmp, "secret")
    with open(secret, "wb") as f:
        f.write(b"\xa5" * 65536)
    os.chmod(secret, 0o600)
    expect_bad_fd(a.cmd(f"opath {secret} 1"), "O_PATH fd of a file the tenant cannot read",
                  "is an O_PATH fd")
    expect_bad_fd(a.cmd(f"opath {secret} 3"), "O_PATH fd, READ|WRITE", "reading and writing")
    # its own file, readable: an O_PATH fd of it still grants nothing
    mine = os.path.join(tmp, "mine")
    with open(mine, "wb") as f:
        f.write(b"\0" * 65536)
    os.chown(mine, ATTACKER, ATTACKER)
    expect_bad_fd(a.cmd(f"opath {mine} 1"), "O_PATH fd of its own file", "O_PATH")
    # refused, not disconnected: the same connection goes on
    r = a.cmd("regions 4")
    if r.get("error") != 0 or r.get("added") != 4:
        fail(f"the tenant could not add regions after the refusals: {r}")
    a.serve_own(8, "the tenant's own faults after the refusals")
    a.close()
    bg.join()
    ka.check(since, "opath")
    h.close()
    d.stop()
    ka.close()


def case_stray_doorbell(tmp):
    d, ka = iso.start(tmp)
    since = ka.mark()
    h = iso.Honest(d)
    a = Hostile(d)
    expect_bad_fd(a.cmd("stray"), "a fresh eventfd as a context's doorbell",
                  "is not the doorbell of the simulator context")
    expect_bad_fd(a.cmd("other-doorbell"), "another context's doorbell",
                  "is not the doorbell of the simulator context")
    n = iso.daemon_counter(d, "sources")
    if n != 2:
        fail(f"{n} fault sources registered, wanted the two honest ones only")
    h.serve()
    r = a.cmd("inject 4")
    r = a.cmd("wait 4")
    if r.get("success") != 4:
        fail(f"the tenant's own source after the refusals: {r}")
    a.close()
    ka.check(since, "stray-doorbell")
    h.close()
    d.stop()
    ka.close()


def start_one_worker(tmp, conf=""):
    """iso.start() with one fault worker: every source shares it."""
    ka = iso.KeepAlive(tmp)
    d = ops.Daemon(tmp, conf=conf, workers=1,
                   wrapper=["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"],
                   env_extra={"NOTIFY_SOCKET": ka.path, "WATCHDOG_USEC": "400000"})
    os.chmod(tmp, 0o755)
    d.wait_up()
    ka.mark()
    return d, ka


def case_held_lock(tmp):
    d, ka = start_one_worker(tmp)
    since = ka.mark()
    a = Hostile(d)
    r = a.cmd("inject 4")
    if a.cmd("wait 4").get("success") != 4:
        fail("the hostile tenant's faults before it locks")
    # groups queued, the doorbell up, the lock held: the worker finds it locked every time
    if a.cmd("lock") != {}:
        fail("could not take the context's lock")
    a.cmd("ring")
    # and as many more sources as it may have (MaxSources=16), each locked, each rung
    r = a.cmd(f"lock-sources {LOCKED_SOURCES - 1}")
    if r.get("error") != 0:
        fail(f"the hostile tenant's locked sources: {r}")
    h = iso.Honest(d)
    t0 = time.monotonic()
    rounds = 0
    while rounds < 10 or time.monotonic() - t0 < 3:
        h.serve(20)  # every fault answered right, or it fails
        rounds += 1
    figure(f"one tenant holding {LOCKED_SOURCES} context locks on the only worker: the "
           f"honest tenant served {h.served} fault groups in {rounds} rounds over "
           f"{time.monotonic() - t0:.1f} s")
    ka.check(since, "held-lock")
    # let go: its own queued groups are served (after its backoff), nothing lost
    a.cmd("unlock")
    a.serve_own(4, "the tenant's faults after it let go of its lock")
    h.serve()
    a.close()
    h.close()
    d.stop()
    ka.close()


def rss_parts(pid):
    """VmRSS's parts: anonymous (the heap), file, shared memory (the engine's arena)."""
    with open(f"/proc/{pid}/status") as f:
        t = f.read()
    parts = []
    for k in ("RssAnon", "RssFile", "RssShmem"):
        m = re.search(r"^%s:\s+(\d+) kB" % k, t, re.M)
        parts.append(f"{k} {m.group(1) if m else '?'} KiB")
    return ", ".join(parts)


def case_heap_trim(tmp):
    # debug: the daemon's "Heap trimmed" lines, printed if the RSS stays up
    conf = (f"[Daemon]\nLogLevel=debug\n[Limits]\nMaxRegions={HEAP_REGIONS + 16}\n"
            f"MaxRegionsPerUser={HEAP_REGIONS + 64}\n")
    with open(env("IOPFD"), "rb") as f:
        exe = f.read()
    if b"__asan_init" in exe or b"__tsan_init" in exe or b"__msan_init" in exe:
        raise ops.Skip("a sanitizer's allocator, not glibc's: malloc_trim() does not apply")
    # meson's MALLOC_PERTURB_ writes every freed chunk: pages a trim gave back come back
    os.environ.pop("MALLOC_PERTURB_", None)
    d, ka = iso.start(tmp, conf=conf)
    pid = d.proc.pid
    h = iso.Honest(d)
    h.serve()
    before = iso.rss_kib(pid)
    for rnd in range(2):
        a = Hostile(d)
        t0 = time.monotonic()
        r = a.cmd(f"regions {HEAP_REGIONS}")
        if r.get("error") != 0 or r.get("added") != HEAP_REGIONS:
            fail(f"the large tenant's regions: {r}")
        peak = iso.rss_kib(pid)
        figure(f"round {rnd}: {HEAP_REGIONS} regions added in {time.monotonic() - t0:.1f} s; "
               f"RSS {before} KiB before, {peak} KiB with them")
        held = iso.daemon_counter(d, "regions")
        a.close()
        t0 = time.monotonic()
        # the teardown first (its length depends on the machine's load), then the trim
        poll(lambda: iso.daemon_counter(d, "regions") <= held - HEAP_REGIONS,
             "the large tenant's regions to be gone", timeout=max(ops.WAIT, 120))
        torn = time.monotonic() - t0
        last = [peak]

        def back_down():
            last[0] = iso.rss_kib(pid)
            return last[0] <= before + (HEAP_SLACK_MIB << 10)
        try:
            poll(back_down, f"RSS back within {HEAP_SLACK_MIB} MiB of {before} KiB",
                 timeout=max(ops.WAIT, 60))
        except AssertionError:
            print("\n".join(t for t in d.text().splitlines() if "trimmed" in t), flush=True)
            print(f"regions the daemon still holds: {iso.daemon_counter(d, 'regions')}")
            fail(f"round {rnd}: RSS {last[0]} KiB after the large tenant left, "
                 f"{before} KiB before it came (+{(last[0] - before) / 1024:.1f} MiB; "
                 f"{rss_parts(pid)})")
        figure(f"round {rnd}: the large tenant left: torn down in {torn:.1f} s, RSS {last[0]} "
               f"KiB within {time.monotonic() - t0:.1f} s (+{(last[0] - before) / 1024:.1f} MiB over "
               f"before, -{(peak - last[0]) / 1024:.1f} MiB from the peak; {rss_parts(pid)})")
    h.serve()  # the honest tenant is served after the trims
    h.close()
    d.stop()
    ka.close()


CASES = {
    "opath": case_opath,
    "stray-doorbell": case_stray_doorbell,
    "held-lock": case_held_lock,
    "heap-trim": case_heap_trim,
}


def main():
    return ops.main(CASES, "isolation-hostile", "run the tenants as other uids")


if __name__ == "__main__":
    sys.exit(main())
