#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""iopfd killed under load, and restarted through a stand-in for systemd's fd store (issue 9).

FdStore below speaks the service manager's side of the protocol that iopfd uses: it owns the
listening control socket (as iopfd.socket does), receives sd_notify datagrams on
$NOTIFY_SOCKET, keeps every fd sent with FDSTORE=1 under its FDNAME= and drops it on
FDSTOREREMOVE=1, and starts iopfd with $LISTEN_FDS, $LISTEN_FDNAMES and $LISTEN_PID holding
the socket and everything stored, as systemd does after Restart=.

Tenants (tests/integration/ops-tenant, a simulated accelerator each) keep injecting faults
while iopfd is killed with SIGKILL at seeded random moments and restarted. Every group must be
answered exactly once and SUCCESS (the simulator counts answers, refused answers and groups
read but never answered), no tenant registers again, what was mapped is unmapped exactly when
the source goes, and a tenant that connects again gets its objects back under the same ids.

Usage: test-restart.py CASE. Exit 0 pass, 1 fail, 77 skip.
"""
import array
import ctypes
import fcntl
import importlib.util
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("ops", os.path.join(HERE, "test-ops.py"))
ops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ops)
fail, poll, env, spawn = ops.fail, ops.poll, ops.env, ops.spawn

SEED = int(os.environ.get("IOPF_RESTART_SEED", "2609"))
_libc = ctypes.CDLL(None, use_errno=True)
SYS_KCMP, KCMP_FILE = 312, 0  # x86-64


def same_file(a, b):
    """Whether two fds share one open file description, as systemd's fd store compares them."""
    pid = os.getpid()
    return _libc.syscall(SYS_KCMP, pid, pid, KCMP_FILE, a, b) == 0


def figure(text):
    print(f"figure: {text}", flush=True)


class FdStore:
    """The service manager's side: the socket, the notify protocol, the fd store, restarts."""

    def __init__(self, tmp, conf=""):
        self.tmp = tmp
        self.sock_path = os.path.join(tmp, "control")
        self.listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listen.bind(self.sock_path)
        os.chmod(self.sock_path, 0o666)
        self.listen.listen(128)
        self.notify_path = os.path.join(tmp, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.notify.bind(self.notify_path)
        self.conf = os.path.join(tmp, "iopfd.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.stored = {}  # name -> fd
        self.lock = threading.Lock()
        self.ready = 0
        self.proc = None
        self.log = open(os.path.join(tmp, "iopfd.log"), "a")
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    @property
    def address(self):
        return f"unix:path={self.sock_path}"

    def _run(self):
        self.notify.settimeout(0.1)
        while not self.stop:
            try:
                data, anc, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(253 * 4))
            except socket.timeout:
                continue
            except OSError:
                return
            fds = array.array("i")
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self.lock:
                if fields.get("FDSTORE") == "1" and "FDNAME" in fields:
                    kept = []
                    for fd in fds:
                        # like systemd: an open file already stored is not stored again,
                        # whatever its new name
                        if any(same_file(fd, o) for o in self.stored.values()):
                            continue
                        old = self.stored.pop(fields["FDNAME"], None)
                        if old is not None:
                            os.close(old)
                        self.stored[fields["FDNAME"]] = fd
                        kept.append(fd)
                    fds = [fd for fd in fds if fd not in kept]
                elif fields.get("FDSTOREREMOVE") == "1" and "FDNAME" in fields:
                    old = self.stored.pop(fields["FDNAME"], None)
                    if old is not None:
                        os.close(old)
                if fields.get("READY") == "1":
                    self.ready += 1
            for fd in fds:
                os.close(fd)

    def start(self, workers=2):
        """Start iopfd with the socket and the store, as systemd does."""
        with self.lock:
            names = ["iopfd.socket"] + list(self.stored)
            fds = [self.listen.fileno()] + [self.stored[n] for n in names[1:]]
            ready = self.ready

        def place_fds():
            # LISTEN_FDS start at 3, in order; out of the way first, so none is overwritten
            tmp = [fcntl.fcntl(fd, fcntl.F_DUPFD, 4096) for fd in fds]
            for i, fd in enumerate(tmp):
                os.dup2(fd, 3 + i, inheritable=True)

        e = dict(os.environ)
        e.update({"NOTIFY_SOCKET": self.notify_path, "LISTEN_FDS": str(len(fds)),
                  "LISTEN_FDNAMES": ":".join(names)})
        cmd = ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", env("IOPFD"), "--config", self.conf,
               "--socket", self.sock_path, "--no-system-bus", "--allow-simulator",
               "--workers", str(workers)]
        self.proc = spawn(cmd, env=e, stdout=self.log, stderr=self.log, preexec_fn=place_fds,
                          pass_fds=range(3, 3 + len(fds)))
        poll(lambda: self._check_alive() and self.ready > ready, "iopfd to be ready")
        return time.monotonic()

    def _check_alive(self):
        if self.proc.poll() is not None:
            fail(f"iopfd exited ({self.proc.returncode}):\n{self.text()}")
        return True

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop_daemon(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=ops.WAIT)

    def names(self):
        with self.lock:
            return sorted(self.stored)

    def text(self):
        self.log.flush()
        with open(os.path.join(self.tmp, "iopfd.log"), errors="replace") as f:
            return f.read()[-4000:]

    def __enter__(self):
        """with FdStore(tmp) as st: iopfd started, stopped at the end with the store."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.stop_daemon()
        self.stop = True
        self.t.join(timeout=5)
        for fd in self.stored.values():
            os.close(fd)
        self.notify.close()
        self.listen.close()


def sim_counts(t):
    r = t.cmd("simcounts")
    if "error" in r:
        fail(f"simcounts: {r}")
    return r


def check_all_answered(tenants, injected, kills=0):
    """Nothing queued or read and unanswered; each tenant harvested every answer already.

    The simulator's answer counter is bookkeeping of the daemon side: a kill inside a write
    may complete an answer (sim_repair()) without counting it, so it may fall short by one
    a kill, never exceed."""
    for i, t in enumerate(tenants):
        n = sim_counts(t)
        if n["injected"] != injected[i] or not \
                injected[i] - kills <= n["answers"] <= injected[i]:
            fail(f"tenant {i}: {n['answers']} answers for {injected[i]} groups ({n})")
        if n["queued"] or n["delivered"]:
            fail(f"tenant {i}: groups left unanswered: {n}")


def recovered_records(text):
    """What the restarted processes found read and unanswered, from their log lines."""
    return sum(int(m) for m in re.findall(r"; (\d+) fault records it had read", text))


def case_kill(tmp, kills=16, tenants_n=3, batch=4000):
    """SIGKILL at seeded random moments under load: every group answered exactly once."""
    rng = random.Random(SEED)
    with FdStore(tmp) as st:
        tenants = [ops.Tenant(st.address) for _ in range(tenants_n)]
        ids = [t.ids for t in tenants]
        injected = [0] * tenants_n
        recoveries = []
        for k in range(kills):
            # every tenant injects a batch and waits for it, while iopfd dies under it
            results = [None] * tenants_n

            def load(i):
                results[i] = tenants[i].cmd(f"faults {batch} 0 0 0")

            threads = [threading.Thread(target=load, args=(i,)) for i in range(tenants_n)]
            for th in threads:
                th.start()
            # within the few milliseconds the batch takes, so the kill lands under load
            time.sleep(rng.uniform(0, 0.004))
            t_kill = time.monotonic()
            st.kill()
            t_ready = st.start()
            recoveries.append(t_ready - t_kill)
            for th in threads:
                th.join(timeout=60)
            for i, r in enumerate(results):
                injected[i] += batch
                if r is None or r.get("answered") != batch or r.get("success") != batch:
                    fail(f"kill {k}, tenant {i}: saw {r}, expected {batch} SUCCESS\n{st.text()}")
        check_all_answered(tenants, injected, kills)
        refused = sum(sim_counts(t)["bad_cookie"] for t in tenants)
        recoveries.sort()
        with open(os.path.join(tmp, "iopfd.log"), errors="replace") as f:
            recovered = recovered_records(f.read())
        figure(f"{kills} kills under load, {sum(injected)} groups, 0 lost, 0 answered twice; "
               f"{recovered} records the dead had read answered by the next "
               f"({refused} re-answers refused by the queue); kill to ready p50 "
               f"{recoveries[len(recoveries) // 2] * 1000:.1f} ms, max "
               f"{recoveries[-1] * 1000:.1f} ms")
        # the client library connects again by itself; the same ids still name their objects
        for t, before in zip(tenants, ids):
            c = t.cmd("counter groups")
            if "value" not in c:
                fail(f"the tenant is not the one before after the restarts: {c}")
            if t.cmd("restarts")["value"] < 1:
                fail("the client library did not say it connected again")
            r = t.cmd("unregister")
            if r.get("error"):
                fail(f"unregister source {before['source']} after the restarts: {r}")
            # (the simulator's count of open backends keeps those of the killed processes)
            try:
                poll(lambda: sim_counts(t)["maps"] == 0 and sim_counts(t)["pages_mapped"] == 0,
                     "the source's maps to go with it")
            except AssertionError:
                fail(f"maps left after the source went: {sim_counts(t)}\n{st.text()}")
        for t in tenants:
            t.close()
        poll(lambda: st.names() == ["state"], "only the state left in the fd store")


def case_tenant_exit(tmp):
    """A tenant whose process exits while iopfd is down is removed; the others serve on."""
    with FdStore(tmp) as st:
        a, b = ops.Tenant(st.address), ops.Tenant(st.address)
        a.faults(good=50)
        b.faults(good=50)
        st.kill()
        a.proc.kill()
        a.proc.wait()
        st.start()
        b.faults(good=200)
        poll(lambda: not any(n.startswith("t") for n in st.names())
             or len([n for n in st.names() if n.startswith("t")]) == 1,
             "the exited tenant's process to leave the store")
        if "exited while iopfd restarted" not in st.text() and \
                "did not come back" not in st.text():
            fail(f"the gone tenant was not removed:\n{st.text()}")
        b.close()


def case_refused_state(tmp):
    """A damaged state is refused with a clear line; what its queues held is answered."""
    with FdStore(tmp) as st:
        t = ops.Tenant(st.address)
        t.faults(good=20)
        st.kill()
        with st.lock:
            fd = st.stored["state"]
        os.pwrite(fd, b"garbage!", 0)
        st.start()
        if "Refusing the state" not in st.text():
            fail(f"no refusal logged:\n{st.text()}")
        # the old objects are gone: the tenant registers again on a new connection
        n = sim_counts(t)
        if n["queued"] or n["delivered"]:
            fail(f"groups left unanswered after the refusal: {n}")
        t.close()


def case_handover(tmp):
    """SIGUSR2 (an upgrade) under load: exit 75 and carry on, losing nothing."""
    with FdStore(tmp) as st:
        t = ops.Tenant(st.address)
        res = {}
        th = threading.Thread(target=lambda: res.update(t.cmd("faults 2000 0 0 0")))
        th.start()
        time.sleep(0.01)
        st.proc.send_signal(signal.SIGUSR2)
        rc = st.proc.wait(timeout=ops.WAIT)
        if rc != 75:
            fail(f"iopfd exited {rc} on SIGUSR2, expected 75 (handover)")
        st.start()
        th.join(timeout=60)
        if res.get("success") != 2000:
            fail(f"after the handover: {res}")
        check_all_answered([t], [2000])
        t.close()


def case_kill_sim(tmp, kills=4):
    """iopf-sim's tenants (regions sharing memfds, one process) across SIGKILLs: 0 violations."""
    rng = random.Random(SEED)
    with FdStore(tmp) as st:
        sim = spawn([env("IOPF_SIM"), "--address", st.address, "--tenants", "4", "--regions",
                     "4", "--faults", "300000", "--rate", "100000", "--restarts"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(kills):
            time.sleep(rng.uniform(0.2, 0.6))
            st.kill()
            st.start()
        out, _ = sim.communicate(timeout=120)
        if sim.returncode != 0 or "unanswered 0" not in out:
            fail(f"iopf-sim across {kills} kills:\n{out[-3000:]}\n{st.text()}")
        if "objects dropped" in st.text() and not re.search(r"\(0 objects dropped", st.text()):
            fail(f"objects dropped on restore:\n{st.text()}")
        figure(f"iopf-sim, 4 tenants at 100k faults/s across {kills} kills: "
               + next(l.strip() for l in out.splitlines() if "answered" in l))


class PausedTenant(ops.Tenant):
    """ops-tenant --paused: its source is registered paused and started by "start"."""

    def __init__(self, address):
        super().__init__(address, args=["--paused"], name="ops-tenant --paused")


def case_paused(tmp):
    """A source registered paused reads nothing until started, across a crash too."""
    with FdStore(tmp) as st:
        t = PausedTenant(st.address)
        t.cmd("inject 100")
        # nothing reads a paused source: give a wrong reader every chance to show itself
        time.sleep(0.3)
        n = sim_counts(t)
        if n["queued"] != 100 or n["delivered"] or n["answers"]:
            fail(f"a paused source was read: {n}")
        st.kill()
        st.start()
        time.sleep(0.3)
        n = sim_counts(t)
        if n["queued"] != 100 or n["delivered"] or n["answers"]:
            fail(f"a paused source was read after the restart: {n}")
        r = t.cmd("start")
        if r.get("error"):
            fail(f"StartSource: {r}")
        r = t.cmd("wait 100")
        if r.get("success") != 100 or r.get("invalid"):
            fail(f"after StartSource: {r}, expected 100 SUCCESS and none 'no handler'")
        r = t.cmd("start")
        if r.get("error") != -22:
            fail(f"StartSource of a started source: {r}, expected EINVAL")
        t.close()
        # removed before it was ever started: what it queued is answered all the same
        u = PausedTenant(st.address)
        u.cmd("inject 10")
        r = u.cmd("unregister")
        if r.get("error"):
            fail(f"UnregisterSource of a paused source: {r}")
        r = u.cmd("wait 10")
        if r.get("answered") != 10:
            fail(f"a paused source's queued groups at its removal: {r}")
        u.close()


CASES = {
    "paused": case_paused,
    "kill": case_kill,
    "kill-sim": case_kill_sim,
    "tenant-exit": case_tenant_exit,
    "refused-state": case_refused_state,
    "handover": case_handover,
}

if __name__ == "__main__":
    ops.CASES = CASES  # test-ops.py's runner: temporary directory, logs on failure, cleanup
    sys.exit(ops.main())
