#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Operations tests: the units, sd_notify and the watchdog against a real
NOTIFY_SOCKET listener, reload, socket activation, the system-bus policy,
refused-fault summaries, the Prometheus endpoint (scraped and parsed with
prometheus_client, as Prometheus would) and per-tenant metric visibility.

Usage: test-ops.py CASE   (see CASES at the end). Exit 0 pass, 1 fail, 77 skip.
Binaries come from the environment: IOPFD, IOPFD_FAKE, IOPFCTL, EXPORTER,
OPS_TENANT; UNITS (the source units/ directory).

Nothing asserts on timing: every wait is a bounded poll for a condition.
"""
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

WAIT = float(os.environ.get("OPS_TEST_WAIT", "30"))  # bound of every poll, seconds
NOBODY = 65534
READER = 65533  # [Metrics] Readers= where a case lists it; no tenant's uid
CHILDREN = []  # every process a case starts; killed if the case fails half-way


def spawn(*args, **kw):
    p = subprocess.Popen(*args, **kw)
    CHILDREN.append(p)
    return p


class Skip(Exception):
    pass


def fail(msg):
    raise AssertionError(msg)


def env(name):
    v = os.environ.get(name)
    if not v:
        raise Skip(f"${name} is not set")
    return v


def need_root():
    """Cases that act as another uid (setpriv) need to start as root."""
    if os.geteuid() != 0:
        raise Skip("needs root to act as another uid")


def poll(cond, what, timeout=WAIT):
    """Wait until cond() is true (bounded); returns its value."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def sanitizer_clean(text):
    for bad in ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:"):
        if bad in text:
            fail(f"sanitizer report:\n{text[-4000:]}")


class Daemon:
    """One iopfd on a private socket; the log goes to a file."""

    def __init__(self, tmp, conf="", args=(), env_extra=None, binary=None, socket_path=None,
                 wrapper=None, workers=2):
        self.tmp = tmp
        self.sock = socket_path or os.path.join(tmp, "control")
        self.conf = os.path.join(tmp, "iopfd.conf")
        self.logpath = os.path.join(tmp, "iopfd.log")
        with open(self.conf, "w") as f:
            f.write(conf)
        cmd = [binary or env("IOPFD"), "--config", self.conf, "--socket", self.sock,
               "--no-system-bus", "--allow-simulator", *args]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        e = dict(os.environ)
        e.pop("NOTIFY_SOCKET", None)
        e.pop("INVOCATION_ID", None)
        e.pop("JOURNAL_STREAM", None)
        e.update(env_extra or {})
        self.log = open(self.logpath, "w")
        self.proc = spawn((wrapper or []) + cmd, stdout=self.log, stderr=self.log, env=e)

    @property
    def address(self):
        return f"unix:path={self.sock}"

    def wait_up(self):
        def up():
            if self.proc.poll() is not None:
                fail(f"iopfd exited early ({self.proc.returncode}):\n{self.text()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.sock)
                return True
            except OSError:
                return False
            finally:
                s.close()
        poll(up, "iopfd to serve its socket")
        return self

    def text(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, what=None):
        return poll(lambda: re.search(pattern, self.text()), what or f"log /{pattern}/")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("iopfd did not stop on SIGTERM")
        self.log.close()
        sanitizer_clean(self.text())
        if rc != 0:
            fail(f"iopfd exited {rc}:\n{self.text()[-3000:]}")


class ScriptedTenant:
    """A scripted tenant program ($@binary_env, tests/integration/*-tenant.c): its ids as a
    first JSON line, then one JSON line per command."""

    def __init__(self, binary_env, name, args, **kw):
        self.name = name
        self.proc = spawn([env(binary_env), *args], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, bufsize=1, **kw)
        line = self.proc.stdout.readline()
        if not line:
            fail(f"{name} did not start")
        self.ids = json.loads(line)

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        if not out:
            fail(f"{self.name} died on '{line}'")
        return json.loads(out)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        if self.proc.wait(timeout=WAIT) != 0:
            fail(f"{self.name} exited {self.proc.returncode}")


class Tenant(ScriptedTenant):
    """tests/integration/ops-tenant: a scripted tenant, one JSON line per command."""

    def __init__(self, address, uid=None, args=(), name="ops-tenant"):
        args = ["--address", address, *args]
        if uid is not None:
            args += ["--uid", str(uid)]
        super().__init__("OPS_TENANT", name, args)

    def faults(self, good=0, nohandler=0, outside=0, perm=0):
        r = self.cmd(f"faults {good} {nohandler} {outside} {perm}")
        total = good + nohandler + outside + perm
        if r.get("answered") != total or r["success"] != good:
            fail(f"tenant saw {r}, expected {total} answers, {good} SUCCESS")
        return r


class Notify:
    """A NOTIFY_SOCKET listener, like the service manager's."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify")
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(self.path)
        self.s.settimeout(0.05)
        self.msgs = []

    def drain(self):
        while True:
            try:
                self.msgs.append(self.s.recv(4096).decode())
            except socket.timeout:
                return

    def wait(self, pred, what, after=-1):
        """The first message past index @after that satisfies pred: (index, message)."""
        def check():
            self.drain()
            for i, m in enumerate(self.msgs):
                if i > after and pred(m):
                    return (i, m)
            return None
        return poll(check, what)

    def count(self, key):
        self.drain()
        return sum(1 for m in self.msgs if key in m.split("\n"))


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        fail(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def busctl(address, *args, check=True, uid=None):
    cmd = ["busctl", f"--address={address}", *args]
    if uid is not None:
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + cmd
    return run(cmd, check=check)


def get_property(address, name):
    out = busctl(address, "get-property", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1",
                 name).stdout.split()
    return out[1]


# --- units ---

def render_units(tmp):
    src = env("UNITS")
    subst = {"@SBINDIR@/iopfd ": env("IOPFD") + " ",
             "@SBINDIR@/iopf-exporter": env("EXPORTER"),
             "@DOCDIR@": "/usr/share/doc/iopfd"}
    out = []
    for name, srcname in (("iopfd.service", "iopfd.service.in"), ("iopfd.socket", "iopfd.socket"),
                          ("iopf-exporter.service", "iopf-exporter.service.in"),
                          ("iopf-exporter.socket", "iopf-exporter.socket")):
        with open(os.path.join(src, srcname)) as f:
            text = f.read()
        for k, v in subst.items():
            text = text.replace(k, v)
        if re.search(r"@[A-Z]+@", text):
            fail(f"{srcname}: unsubstituted @VAR@")
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        out.append(path)
    return out


def case_units(tmp):
    """systemd-analyze verify and security on the units, as installed (binaries from the build)."""
    if not shutil.which("systemd-analyze"):
        raise Skip("no systemd-analyze")
    units = render_units(tmp)
    p = run(["systemd-analyze", "verify", "--man=no", *units], check=False, cwd=tmp)
    if p.returncode != 0 or p.stdout.strip() or p.stderr.strip():
        fail(f"systemd-analyze verify:\n{p.stdout}{p.stderr}")
    for unit, limit in (("iopfd.service", 2.0), ("iopf-exporter.service", 2.0)):
        p = run(["systemd-analyze", "security", "--offline=yes", os.path.join(tmp, unit)],
                check=False, cwd=tmp)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
        if not m:
            fail(f"no exposure level for {unit}:\n{p.stdout}{p.stderr}")
        print(f"{unit}: exposure {m.group(1)}")
        if float(m.group(1)) > limit:
            fail(f"{unit}: exposure {m.group(1)} above {limit}:\n{p.stdout}")
    # the unit's user exists nowhere here; the sysusers line must be well formed
    with open(os.path.join(env("UNITS"), "iopfd.sysusers")) as f:
        lines = [l for l in f if l.strip() and not l.startswith("#")]
    if len(lines) != 1 or not lines[0].startswith("u iopfd "):
        fail("iopfd.sysusers must create user iopfd")


# --- the system bus: our policy in a private bus daemon ---

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""


def case_system_bus(tmp):
    """units/org.iopfd.conf in a system-like bus: root owns the name, anyone calls, only root
    sees every tenant, and nobody else may own org.iopfd."""
    with daemon_on_system_bus(tmp, monitor=False) as (d, busaddr):
        call = ["call", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1"]
        busctl(busaddr, *call, "ListSources")
        busctl(busaddr, *call, "ListSources", uid=NOBODY)
        busctl(busaddr, "get-property", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1",
               "Version", uid=NOBODY)
        p = busctl(busaddr, *call, "GetAllTenantMetrics", uid=NOBODY, check=False)
        if p.returncode == 0 or "uid 0" not in p.stderr:
            fail(f"nobody read every tenant's metrics over the system bus: {p.stderr}")
        busctl(busaddr, *call, "GetAllTenantMetrics")
        # the policy lets nobody but iopfd's user and root own the name
        own = ("import dbus,sys\n"
               "b=dbus.bus.BusConnection(sys.argv[1])\n"
               "try:\n b.request_name('org.iopfd.Test'); print('owned')\n"
               "except dbus.exceptions.DBusException as e: print(e.get_dbus_name())\n")
        if subprocess.run(["/usr/bin/python3", "-c", "import dbus"]).returncode == 0:
            out = run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                       "/usr/bin/python3", "-c", own, busaddr]).stdout
            if "AccessDenied" not in out:
                fail(f"nobody could own a name: {out}")


class RawBus:
    """A bare D-Bus connection (no python dbus here): SASL EXTERNAL, method calls with at most
    string arguments, and the raw bytes of whatever arrives (signals are looked for in it)."""

    def __init__(self, path, uid=0, hello=False):
        import struct
        self.struct = struct
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(0.05)
        self.serial = 0
        self.data = b""
        self.s.sendall(b"\0AUTH EXTERNAL " + str(uid).encode().hex().encode() + b"\r\n")
        poll(lambda: self.read() or b"\r\n" in self.data, "the SASL OK")
        if not self.data.startswith(b"OK"):
            fail(f"SASL: {self.data!r}")
        self.data = b""
        self.s.sendall(b"BEGIN\r\n")
        if hello:
            self.call("Hello", dest="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                      iface="org.freedesktop.DBus")

    def call(self, member, *args, dest="org.iopfd", path="/org/iopfd",
             iface="org.iopfd.Manager1"):
        pack = self.struct.pack

        def pad(b, n):
            return b + b"\0" * ((-len(b)) % n)
        body = b""
        for a in args:
            body = pad(body, 4) + pack("<I", len(a.encode())) + a.encode() + b"\0"
        fields = [(1, "o", path), (2, "s", iface), (3, "s", member), (6, "s", dest)]
        arr = b""
        for code, sig, val in fields:
            arr = pad(arr, 8) + bytes([code, 1]) + sig.encode() + b"\0"
            arr = pad(arr, 4) + pack("<I", len(val.encode())) + val.encode() + b"\0"
        if args:
            arr = pad(arr, 8) + bytes([8, 1]) + b"g\0" + bytes([len(args)]) + \
                b"s" * len(args) + b"\0"
        self.serial += 1
        msg = pack("<cBBBIII", b"l", 1, 0, 1, len(body), self.serial, len(arr)) + arr
        self.s.sendall(pad(msg, 8) + body)

    def read(self):
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            fail("the daemon closed a raw connection")
        self.data += chunk
        return False

    def wait(self, *words, what=None):
        poll(lambda: self.read() or all(w in self.data for w in words),
             what or f"{words} on a raw connection")

    def close(self):
        self.s.close()


def private_system_bus(tmp, monitor=True):
    """A dbus-daemon with a system-like policy and ours (@monitor: root may also monitor);
    returns (process, address)."""
    if not shutil.which("dbus-daemon") or not shutil.which("setpriv"):
        raise Skip("no dbus-daemon or setpriv")
    need_root()
    os.chmod(tmp, 0o755)
    conf = os.path.join(tmp, "bus.conf")
    # root may monitor (dbus-monitor sees unicast signals, and their destination)
    allow = ('<policy user="root"><allow send_destination="org.freedesktop.DBus" '
             'send_interface="org.freedesktop.DBus.Monitoring"/></policy>\n</busconfig>')
    with open(conf, "w") as f:
        f.write(BUS_CONF.format(dir=tmp, policy=os.path.join(env("UNITS"), "org.iopfd.conf"))
                .replace("</busconfig>", allow if monitor else "</busconfig>"))
    bus = spawn(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile",
                 "--nosyslog"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    poll(lambda: os.path.exists(f"{tmp}/bus"), "the bus socket")
    return bus, f"unix:path={tmp}/bus"


@contextlib.contextmanager
def daemon_on_system_bus(tmp, monitor=True):
    """iopfd serving org.iopfd on a private_system_bus(): yields (daemon, bus address). The
    daemon must stop cleanly when the block ends; if the block fails it is killed."""
    bus, busaddr = private_system_bus(tmp, monitor)
    d = None
    try:
        d = Daemon(tmp, args=["--system-bus"], env_extra={"DBUS_SYSTEM_BUS_ADDRESS": busaddr})
        d.wait_up()
        d.wait_log(r"Serving org\.iopfd on the system bus", "iopfd to own org.iopfd")
        yield d, busaddr
        d.stop()
        d = None
    finally:
        if d:
            d.proc.kill()
        bus.terminate()
        bus.wait(timeout=WAIT)


LOG_CONTROL = ["org.iopfd", "/org/freedesktop/LogControl1", "org.freedesktop.LogControl1"]


def case_log_control(tmp):
    """org.freedesktop.LogControl1 (systemctl service-log-level): root reads and sets the level
    and target, on the socket and the system bus; anyone else is refused by both."""
    with daemon_on_system_bus(tmp) as (d, busaddr):
        for addr in (d.address, busaddr):
            out = busctl(addr, "get-property", *LOG_CONTROL, "LogLevel", "LogTarget",
                         "SyslogIdentifier").stdout.split("\n")
            if out[:3] != ['s "info"', 's "auto"', 's "iopfd"']:
                fail(f"LogControl1 on {addr}: {out}")
            for prop, bad in (("LogLevel", "loud"), ("LogTarget", "kmsg")):
                p = busctl(addr, "set-property", *LOG_CONTROL, prop, "s", bad, check=False)
                if p.returncode == 0:
                    fail(f"{prop}={bad} accepted")
            p = busctl(addr, "set-property", *LOG_CONTROL, "LogLevel", "s", "info", uid=NOBODY,
                       check=False)
            if p.returncode == 0 or "denied" not in p.stderr.lower():
                fail(f"nobody set the log level on {addr}: {p.stderr}")
            p = busctl(addr, "get-property", *LOG_CONTROL, "LogLevel", uid=NOBODY, check=False)
            if p.returncode == 0:
                fail(f"nobody read the log level on {addr}")
        # debug from now on: the next connection is logged, at debug level only
        busctl(busaddr, "set-property", *LOG_CONTROL, "LogLevel", "s", "debug")
        if get_property(d.address, "Workers") != "2":
            fail("Workers")
        d.wait_log(r"LogLevel set to debug over D-Bus")
        d.wait_log(r"Tenant \d+ \(pid \d+ uid 0\) connected\.")
        busctl(d.address, "set-property", *LOG_CONTROL, "LogTarget", "s", "console")
        if busctl(busaddr, "get-property", *LOG_CONTROL, "LogTarget").stdout.strip() != \
                's "console"':
            fail("LogTarget did not change")


def case_signals(tmp):
    """SourceAdded/DomainAdded/...Removed go to the owning tenant alone (unicast on the system
    bus); TenantAdded/TenantRemoved to root's subscriptions only; PropertiesChanged on reload."""
    with daemon_on_system_bus(tmp) as (d, busaddr):
        monlog = os.path.join(tmp, "monitor.log")
        mon = spawn(["dbus-monitor", "--address", busaddr,
                     "type='signal',interface='org.iopfd.Manager1'"],
                    stdout=open(monlog, "w"), stderr=subprocess.STDOUT)
        # root subscribes, on the system bus and on the socket; nobody may not
        subs = [RawBus(f"{tmp}/bus", hello=True), RawBus(d.sock)]
        for sub in subs:
            sub.call("Subscribe")
        for addr in (d.address, busaddr):
            p = busctl(addr, "call", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1",
                       "Subscribe", uid=NOBODY, check=False)
            if p.returncode == 0:
                fail(f"nobody subscribed on {addr}")
        watcher = RawBus(d.sock)  # an observer, for PropertiesChanged
        for c in subs + [watcher]:  # every call answered: the subscriptions are in place
            c.call("GetTenantMetrics")
            c.wait(b"(tuusa{st}(ttat))")
        poll(lambda: os.path.getsize(monlog) > 0, "dbus-monitor to start")
        e = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=busaddr)
        tp = spawn([env("OPS_TENANT"), "--address", "system"], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, text=True, bufsize=1, env=e)
        ids = json.loads(tp.stdout.readline())
        for sub in subs:
            sub.wait(b"TenantAdded", what="TenantAdded to a subscriber")

        def seen(member):
            text = open(monlog).read()
            return [l for l in text.splitlines() if f"member={member}" in l]
        poll(lambda: seen("SourceAdded") and seen("DomainAdded"), "SourceAdded, DomainAdded")
        for l in seen("SourceAdded") + seen("DomainAdded") + seen("TenantAdded"):
            if "destination=:" not in l:
                fail(f"a broadcast signal: {l}")
        tp.stdin.write("unregister\n")
        tp.stdin.flush()
        if json.loads(tp.stdout.readline()).get("error") != 0:
            fail("unregister")
        poll(lambda: seen("SourceRemoved") and seen("DomainRemoved"),
             "SourceRemoved, DomainRemoved")
        for l in seen("SourceRemoved") + seen("DomainRemoved"):
            if "destination=:" not in l:
                fail(f"a broadcast signal: {l}")
        tp.stdin.close()
        tp.wait(timeout=WAIT)
        for sub in subs:
            sub.wait(b"TenantRemoved", what="TenantRemoved to a subscriber")
        if b"SourceAdded" in watcher.data or b"TenantAdded" in watcher.data:
            fail("signals reached a connection they are not about")
        # a reload that changes a property announces it
        with open(d.conf, "w") as f:
            f.write("[Daemon]\nFaultAround=128K\n")
        d.signal(signal.SIGHUP)
        watcher.wait(b"PropertiesChanged", b"FaultAround")
        if b"MaxSources" in watcher.data:
            fail("PropertiesChanged names a property that did not change")
        for c in subs + [watcher]:
            c.close()
        mon.kill()  # (if the case fails, with the other children)


def case_names(tmp):
    """SetName: checked, then the tenant's name where it is listed."""
    d = Daemon(tmp, args=["--log-level", "debug"]).wait_up()
    c = RawBus(d.sock)
    c.call("SetName", "a\tb")
    c.wait(b"InvalidArgs")
    c.call("SetName", "x" * 65)
    c.call("SetName", "vm-test.service")
    c.call("GetTenantMetrics")
    c.wait(b"vm-test.service")
    c.close()
    d.wait_log(r'Tenant \d+ \(vm-test\.service, pid \d+ uid 0\) disconnected')
    d.stop()


# --- sd_notify and the watchdog ---

def case_notify(tmp):
    """READY=1 with STATUS, WATCHDOG=1 keep-alives while the workers answer, RELOADING=1 with
    MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM."""
    n = Notify(tmp)
    wrapper = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"]
    d = Daemon(tmp, conf="[Daemon]\nFaultAround=64K\nWorkers=2\n", workers=None,
               env_extra={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000"}, wrapper=wrapper)
    d.wait_up()
    i, ready = n.wait(lambda m: "READY=1" in m.split("\n"), "READY=1")
    if "STATUS=Serving" not in ready:
        fail(f"READY=1 came without a STATUS: {ready!r}")
    poll(lambda: n.count("WATCHDOG=1") >= 3, "three watchdog keep-alives")

    # reload: a live key changes, a restart-only key is reported and kept
    with open(d.conf, "w") as f:
        f.write("[Daemon]\nFaultAround=128K\nWorkers=7\n")
    n.drain()
    before = len(n.msgs) - 1
    d.signal(signal.SIGHUP)
    i, rel = n.wait(lambda m: "RELOADING=1" in m.split("\n"), "RELOADING=1", after=before)
    if not re.search(r"^MONOTONIC_USEC=\d+$", rel, re.M):
        fail(f"RELOADING=1 without MONOTONIC_USEC: {rel!r}")
    n.wait(lambda m: "READY=1" in m.split("\n"), "READY=1 after reload", after=i)
    if get_property(d.address, "FaultAround") != "131072":
        fail("FaultAround did not change live")
    if get_property(d.address, "Workers") != "2":
        fail("Workers changed without a restart")
    d.wait_log(r"Workers changed from 2 to 7, which only takes effect when iopfd restarts")
    kept = n.count("WATCHDOG=1")
    poll(lambda: n.count("WATCHDOG=1") > kept, "keep-alives after the reload")

    d.stop()
    n.wait(lambda m: "STOPPING=1" in m.split("\n"), "STOPPING=1")


def case_watchdog_stall(tmp):
    """A worker that stops answering its pings holds the keep-alive back (fake engine: worker 0
    stops answering from the 3rd ping on)."""
    n = Notify(tmp)
    wrapper = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$@"', "sh"]
    d = Daemon(tmp, env_extra={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "100000",
                               "IOPF_FAKE_STALL_AFTER_PINGS": "3"},
               binary=env("IOPFD_FAKE"), wrapper=wrapper)
    d.wait_up()
    d.wait_log(r"Worker 0 has not run its command queue .* holding back the watchdog")
    # ping 1 primes at start, ping 2 earns the one keep-alive, ping 3 on are unanswered
    seen = n.count("WATCHDOG=1")
    if seen != 1:
        fail(f"{seen} keep-alives, expected exactly 1 before the stall")
    # and none later: the stall is permanent; look again after more pings went unanswered
    mark = d.text().count("\n")
    with open(d.conf, "w") as f:
        f.write("")
    d.signal(signal.SIGHUP)  # something observable that takes several loop iterations
    d.wait_log(r"Configuration reloaded")
    if n.count("WATCHDOG=1") != 1:
        fail("a keep-alive went out while a worker was stuck")
    d.stop()


# --- reload ---

def case_reload(tmp):
    """Limits change live on SIGHUP; a broken file keeps the running configuration; drop-ins."""
    d = Daemon(tmp, conf="[Limits]\nMaxSources=4\n").wait_up()
    t = Tenant(d.address)
    if t.cmd("source")["error"] != 0:
        fail("a second source under MaxSources=4 was refused")
    # a drop-in lowers the limit: applies to what comes next, keeps what is there
    os.mkdir(d.conf + ".d")
    with open(os.path.join(d.conf + ".d", "50-limits.conf"), "w") as f:
        f.write("[Limits]\nMaxSources=2\nMaxPinnedBytes=1M\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"MaxSources changed from 4 to 2")
    poll(lambda: get_property(d.address, "MaxSources") == "2", "MaxSources=2")
    r = t.cmd("source")
    if r["error"] != -122 or "MaxSources=2" not in r["message"]:  # -EDQUOT: LimitExceeded
        fail(f"third source: {r}")
    r = t.cmd("region 1048576")  # 256K already registered
    if r["error"] != -122 or "MaxPinnedBytes=1048576" not in r["message"]:
        fail(f"region over MaxPinnedBytes: {r}")
    if t.cmd("region 524288")["error"] != 0:
        fail("a region within MaxPinnedBytes was refused")

    # a broken drop-in: the reload fails, says where, and nothing changes
    with open(os.path.join(d.conf + ".d", "60-typo.conf"), "w") as f:
        f.write("[Limits]\nMaxSourcez=9\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"60-typo\.conf:2: unknown key MaxSourcez in section \[Limits\]")
    d.wait_log(r"Reload failed; the running configuration stays as it was")
    if get_property(d.address, "MaxSources") != "2":
        fail("a failed reload changed the limits")
    t.faults(good=3)  # still serving
    t.close()
    d.stop()


# --- socket activation ---

def case_socket_activation(tmp):
    """iopfd started by systemd-socket-activate on the first connection uses the passed socket,
    serves it, and leaves it to its owner on exit."""
    if not shutil.which("systemd-socket-activate"):
        raise Skip("no systemd-socket-activate")
    sock = os.path.join(tmp, "activated")
    logpath = os.path.join(tmp, "iopfd.log")
    with open(logpath, "w") as log:
        p = spawn(["systemd-socket-activate", "-l", sock, env("IOPFD"),
                   "--socket", os.path.join(tmp, "unused"), "--no-system-bus",
                   "--allow-simulator", "--workers", "1", "--log-level", "debug"],
                  stdout=log, stderr=log)
        try:
            poll(lambda: os.path.exists(sock), "the activation socket")
            # the first connection starts iopfd, which then answers it
            out = busctl(f"unix:path={sock}", "call", "org.iopfd", "/org/iopfd",
                         "org.iopfd.Manager1", "ListSources").stdout
            if not out.startswith("a(tus) 0"):
                fail(f"ListSources through the activated socket: {out}")
            t = Tenant(f"unix:path={sock}")
            t.faults(good=2, nohandler=1)
            t.close()
            with open(logpath) as f:
                text = f.read()
            if "Using the socket passed by systemd" not in text:
                fail(f"iopfd did not take the passed socket:\n{text}")
            if os.path.exists(os.path.join(tmp, "unused")):
                fail("iopfd made its own socket too")
            p.send_signal(signal.SIGTERM)
            if p.wait(timeout=WAIT) != 0:
                fail(f"iopfd exited {p.returncode}")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    with open(logpath) as f:
        sanitizer_clean(f.read())
    if not stat.S_ISSOCK(os.stat(sock).st_mode):
        fail("iopfd removed a socket it did not create")


# --- the Prometheus endpoint ---

def exporter(tmp, address, per_domain=False, uid=None):
    """iopf-exporter on a socket we pass it (socket activation), like iopf-exporter.socket;
    per-domain series with @per_domain, else its default (none)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    conf = os.path.join(tmp, "exporter.conf")  # empty: the defaults
    open(conf, "w").close()
    os.chmod(conf, 0o644)
    cmd = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", env("EXPORTER"),
           "--config", conf, "--address", address] + (["--per-domain"] if per_domain else [])
    if uid is not None:
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + cmd
    log = open(os.path.join(tmp, f"exporter-{port}.log"), "w")
    p = spawn(cmd, stdout=log, stderr=log, pass_fds=(3,), preexec_fn=lambda: os.dup2(fd, 3))
    lsock.close()
    return p, f"http://127.0.0.1:{port}"


def stop_exporter(p):
    p.terminate()
    if p.wait(timeout=WAIT) != 0:
        fail(f"exporter exited {p.returncode}")


def http(url, method="GET", raw=None, headers=None):
    if raw is not None:
        host, port = url.split("//")[1].split(":")
        s = socket.create_connection((host, int(port)), timeout=WAIT)
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        return data.decode(errors="replace")
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            body = r.read()
            return r.status, r.headers, body if headers else body.decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def scrape(base):
    from prometheus_client.parser import text_string_to_metric_families
    status, headers, body = http(base + "/metrics")
    if status != 200 or not headers["Content-Type"].startswith("text/plain; version=0.0.4"):
        fail(f"/metrics: {status} {headers['Content-Type']}")
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    return fams, body


def value(fams, family, sample, **labels):
    for s in fams[family].samples:
        if s.name == sample and all(s.labels.get(k) == str(v) for k, v in labels.items()):
            return s.value
    fail(f"no sample {sample}{labels} in {family}")


SNAKE = r"[a-z][a-z0-9]*(_[a-z0-9]+)*"


def check_names(body):
    """Prometheus naming: every family has # HELP and # TYPE; names and label names
    snake_case; counters and only counters end in _total; base units, last."""
    helps = re.findall(r"^# HELP (\S+) \S", body, re.M)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
    if sorted(helps) != sorted(types) or len(set(helps)) != len(helps):
        fail(f"# HELP and # TYPE differ: {sorted(set(helps) ^ set(types))}")
    for name, typ in types.items():
        if not re.fullmatch(SNAKE, name) or not name.startswith("iopfd_"):
            fail(f"{name}: not iopfd_snake_case")
        if typ not in ("counter", "gauge", "histogram"):
            fail(f"{name}: type {typ}")
        if (typ == "counter") != name.endswith("_total"):
            fail(f"{name}: a {typ}; counters, and only they, end in _total")
        if re.search(r"_(seconds|bytes)_(?!total$)", name):
            fail(f"{name}: a unit before a word: units go last")
        if re.search(r"_(milli|micro|nano)?(second|sec|ms|us|ns|kib|mib|kb|mb|byte|pages?)s?"
                     r"_(?!total$)", name) and "pages_mapped" not in name:
            fail(f"{name}: a unit that is not last or not a base unit")
        if typ == "histogram" and not name.endswith("_seconds"):
            fail(f"{name}: a histogram not in seconds")
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-z_0-9]+)(?:\{(.*)\})? (\S+)", line)
        if not m:
            fail(f"bad sample line: {line}")
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in types and not (base in types and types[base] == "histogram"):
            fail(f"{name}: a sample of no family")
        for label in re.findall(r'([^,={}]+)="', m.group(2) or ""):
            if not re.fullmatch(SNAKE, label):
                fail(f"{line}: label {label} not snake_case")


def fine_histogram(rows):
    """Sum of iopfd's (count, sum_ns, buckets) histograms."""
    n = len(rows[0][2])
    return (sum(r[0] for r in rows), sum(r[1] for r in rows),
            [sum(r[2][i] for r in rows) for i in range(n)])


def check_histogram(fam, fine=None, bounds=None, **labels):
    """Buckets cumulative, at most 20 and ending in +Inf == _count, as a Prometheus histogram
    must; with @fine (iopfd's own histogram, bucket upper bounds @bounds in ns), each coarse
    bucket's count is exactly the fine buckets' up to its bound."""
    if fam.type != "histogram":
        fail(f"{fam.name} is a {fam.type}")

    def mine(s):
        return all(s.labels.get(k) == str(v) for k, v in labels.items())
    buckets = [(float(s.labels["le"]), s.value) for s in fam.samples
               if s.name.endswith("_bucket") and mine(s)]
    count = [s.value for s in fam.samples if s.name.endswith("_count") and mine(s)]
    total = [s.value for s in fam.samples if s.name.endswith("_sum") and mine(s)]
    if not 12 <= len(buckets) <= 20 or buckets[-1][0] != float("inf") \
            or buckets[0][0] != 1e-06 or buckets[-2][0] != 1.0:
        fail(f"{fam.name}{labels}: {len(buckets)} buckets {buckets[:2]}...{buckets[-2:]}")
    for (a, x), (b, y) in zip(buckets, buckets[1:]):
        if not (a < b and x <= y):
            fail(f"{fam.name}{labels}: not cumulative at le={b}")
    if [buckets[-1][1]] != count:
        fail(f"{fam.name}{labels}: +Inf {buckets[-1][1]} != count {count}")
    if fine is not None:
        n, sum_ns, fb = fine
        if count != [n] or sum(fb) != n or abs(total[0] - sum_ns / 1e9) > 1e-9:
            fail(f"{fam.name}{labels}: count {count} sum {total} vs iopfd's {n} {sum_ns}")
        for le, v in buckets[:-1]:
            ns = round(le * 1e9)
            if ns not in bounds:
                fail(f"{fam.name}: le={le} is no bound of iopfd's buckets")
            if v != sum(c for c, b in zip(fb, bounds + [float("inf")]) if b <= ns):
                fail(f"{fam.name}{labels}: le={le} {v} is not iopfd's count")
    return buckets[-1][1]


def busctl_data(address, *args):
    return json.loads(busctl(address, "--json=short", *args).stdout)["data"]


def fetch_gzip(base, accept):
    """/metrics with Accept-Encoding: @accept: (Content-Encoding, body as text)."""
    import gzip
    status, headers, body = http(base + "/metrics", headers={"Accept-Encoding": accept})
    if status != 200 or "Accept-Encoding" not in (headers.get("Vary") or ""):
        fail(f"/metrics with Accept-Encoding {accept}: {status} {dict(headers)}")
    enc = headers.get("Content-Encoding")
    if enc == "gzip":
        body = gzip.decompress(body)
    elif enc is not None:
        fail(f"Content-Encoding {enc}")
    return enc, body.decode()


def steady(body):
    """The body without the one line that differs from scrape to scrape."""
    return re.sub(r"^iopfd_exporter_scrape_duration_seconds \S+\n", "", body, flags=re.M)


def case_exporter(tmp):
    """Scrape /metrics and parse it as Prometheus does: names as Prometheus wants them,
    numbers match what the tenants did, per uid across connections; histograms re-bucketed
    exactly from iopfd's; per-domain series only with --per-domain; gzip on request."""
    try:
        import prometheus_client.parser  # noqa: F401
    except ImportError:
        raise Skip("python3-prometheus-client is not installed")
    need_root()  # tenants of two uids, the exporter as a third
    os.chmod(tmp, 0o755)
    p = run([env("EXPORTER"), "--version"])
    if not re.fullmatch(r"iopf-exporter \d+\.\d+\S*\n", p.stdout):
        fail(f"--version: {p.stdout!r}")
    # unprivileged, as its unit runs it: a uid of [Metrics] Readers=; a name no one has is
    # left out, not an error
    conf = f"[Metrics]\nReaders=no-such-user-here {READER}\n"
    d = Daemon(tmp, conf=conf).wait_up()
    d.wait_log(r"no user no-such-user-here; ignored until the next reload")
    a = Tenant(d.address)
    b = Tenant(d.address, uid=NOBODY)
    c = Tenant(d.address)
    a.faults(good=20, nohandler=3, outside=4, perm=5)
    b.faults(good=7)
    c.faults(good=6, outside=1)
    p, base = exporter(tmp, d.address, uid=READER)
    try:
        fams, body = scrape(base)
        check_names(body)
        if value(fams, "iopfd_up", "iopfd_up") != 1:
            fail("iopfd_up is not 1")
        if value(fams, "iopfd_exporter_access_denied", "iopfd_exporter_access_denied") != 0:
            fail(f"the exporter as a reader was refused:\n{body}")
        # a reader reads everyone's, but what is not a read view stays uid 0's
        call = ["call", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1"]
        for m in ("ListAllSources", "GetAllStats", "GetDaemonMetrics"):
            busctl(d.address, *call, m, uid=READER)
        q = busctl(d.address, *call, "Subscribe", uid=READER, check=False)
        if q.returncode == 0 or "access denied" not in q.stderr.lower():
            fail(f"Subscribe as a reader: {q.stdout} {q.stderr}")
        if "iopfd_domain_" in body:
            fail("per-domain series without --per-domain")
        if "tenant=" in body:
            fail("a tenant labelled by its connection")
        # a tenant is its uid: a and c add up
        root, nobody = {"uid": 0}, {"uid": NOBODY}
        tv = lambda fam, **kw: value(fams, "iopfd_tenant_" + fam,  # noqa: E731
                                     "iopfd_tenant_" + fam + ("_total" if kw.pop("c", 1) else ""),
                                     **kw)
        if tv("connections", c=0, **root) != 2 or tv("connections", c=0, **nobody) != 1:
            fail("connections per uid")
        if tv("faults", **root) != 39 or tv("faults", **nobody) != 7:
            fail("faults per uid")
        for code, n in (("success", 26), ("invalid", 13)):
            if tv("responses", code=code, **root) != n:
                fail(f"uid 0 {code}")
        for reason, n in (("resolved", 26), ("no_handler", 3), ("outside_region", 5),
                          ("permission", 5), ("map_error", 0)):
            if tv("response_reasons", reason=reason, **root) != n:
                fail(f"uid 0 {reason}")
        if tv("pinned_bytes", c=0, **root) <= 0:
            fail("uid 0 pins nothing")
        if tv("region_bytes", c=0, **root) != 2 * 262144:
            fail("uid 0 region bytes")
        # every histogram, bucket by bucket, against iopfd's own
        bounds = busctl_data(d.address, "get-property", "org.iopfd", "/org/iopfd",
                             "org.iopfd.Manager1", "LatencyBuckets")
        call = ["call", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1"]
        rows = busctl_data(d.address, *call, "GetAllTenantMetrics")[0]
        for labels, n in ((root, 39), (nobody, 7)):
            fine = fine_histogram([r[5] for r in rows if r[1] == labels["uid"]])
            if check_histogram(fams["iopfd_tenant_fault_latency_seconds"], fine, bounds,
                               **labels) != n:
                fail(f"{labels} latency count")
        fine = fine_histogram([busctl_data(d.address, *call, "GetDaemonMetrics")[1]])
        if check_histogram(fams["iopfd_fault_latency_seconds"], fine, bounds) != 46:
            fail("daemon latency count")
        if value(fams, "iopfd_faults", "iopfd_faults_total") != 46:
            fail("daemon faults")
        if value(fams, "iopfd_tenants", "iopfd_tenants") != 3:
            fail("the exporter counted itself as a tenant")

        # gzip when asked, the same text; plain otherwise
        plain = steady(scrape(base)[1])
        for accept in ("gzip", "deflate, gzip;q=0.5", "*"):
            enc, text = fetch_gzip(base, accept)
            if enc != "gzip" or steady(text) != plain:
                fail(f"Accept-Encoding: {accept}: {enc}, same text {steady(text) == plain}")
        for accept in ("identity", "gzip;q=0", "deflate", "*;q=0"):
            enc, text = fetch_gzip(base, accept)
            if enc is not None or steady(text) != plain:
                fail(f"Accept-Encoding: {accept}: {enc}")
        status, headers, body = http(base + "/metrics", method="HEAD",
                                     headers={"Accept-Encoding": "gzip"})
        if status != 200 or body or headers["Content-Encoding"] != "gzip":
            fail("HEAD /metrics with gzip")

        # a connection of uid 0 goes: uid 0's counters stay; the departed's latency too
        c.close()
        poll(lambda: 'iopfd_tenant_connections{uid="0"} 1\n' in scrape(base)[1],
             "uid 0 down to one connection")
        fams, body = scrape(base)
        if tv("faults", **root) != 39 or check_histogram(
                fams["iopfd_tenant_fault_latency_seconds"], **root) != 39:
            fail("uid 0's counters went backwards when one of its tenants left")
        a.faults(good=1)
        fams, _ = scrape(base)
        if tv("faults", **root) != 40:
            fail("uid 0 after a fault more")
        # totals since start survive a tenant leaving; a uid's series stay, at 0 connections
        b.close()
        poll(lambda: f'iopfd_tenant_connections{{uid="{NOBODY}"}} 0\n' in scrape(base)[1],
             "uid 65534's last connection to go")
        fams, _ = scrape(base)
        if value(fams, "iopfd_faults", "iopfd_faults_total") != 47 or tv("faults", **nobody) != 7:
            fail("totals went backwards when a tenant left")
    finally:
        stop_exporter(p)

    # --per-domain: one series set per live domain, its tenant by its uid
    p, base = exporter(tmp, d.address, per_domain=True, uid=READER)
    try:
        fams, body = scrape(base)
        check_names(body)
        dom = {"uid": 0, "domain": a.ids["domain"], "dev_id": 1, "pasid": "none"}
        if value(fams, "iopfd_domain_faults", "iopfd_domain_faults_total", **dom) != 30:
            fail("domain faults (all but the 3 with no handler)")
        rows = busctl_data(d.address, *call, "GetAllDomainMetrics")[0]
        fine = fine_histogram([r[6] for r in rows if r[1] == a.ids["domain"]])
        check_histogram(fams["iopfd_domain_fault_latency_seconds"], fine, bounds, **dom)
        if {s.labels["domain"] for s in fams["iopfd_domain_faults"].samples} != \
                {str(a.ids["domain"])}:
            fail("domains of tenants that left, or none")

        # HTTP edges: HEAD, unknown paths, methods, junk, oversized requests
        status, headers, body = http(base + "/metrics", method="HEAD")
        if status != 200 or body:
            fail("HEAD /metrics")
        if http(base + "/nope")[0] != 404 or http(base + "/metrics", method="POST")[0] != 405:
            fail("404/405")
        if not http(base, raw=b"BLAH\r\n\r\n").startswith("HTTP/1.1 400"):
            fail("junk request")
        if not http(base, raw=b"GET /" + b"x" * 9000).startswith("HTTP/1.1 431"):
            fail("oversized request")
        scrape(base)  # still serving

        # iopfd gone: still an answer, iopfd_up 0; back: the exporter reconnects
        a.close()
        a = None
        d.stop()
        fams, _ = scrape(base)
        if value(fams, "iopfd_up", "iopfd_up") != 0:
            fail("iopfd_up should be 0 with iopfd down")
        d = Daemon(tmp, conf=conf).wait_up()
        fams, body = scrape(base)
        if value(fams, "iopfd_up", "iopfd_up") != 1:
            fail("the exporter did not reconnect to a restarted iopfd")
        if value(fams, "iopfd_faults", "iopfd_faults_total") != 0:
            fail("a new iopfd starts from zero")
        if tv("faults", **root) != 33:  # a's, as this exporter saw it: c left before it began
            fail("uid 0's counters did not outlive iopfd's restart")
        # restarted between two scrapes: the stale connection is retried at once
        d.stop()
        d = Daemon(tmp, conf=conf).wait_up()
        fams, _ = scrape(base)
        if value(fams, "iopfd_up", "iopfd_up") != 1:
            fail("a scrape right after a restart said iopfd was down")
        # a reload that drops the reader: refused from then on; root alone reads everyone's
        with open(d.conf, "w") as f:
            f.write("[Metrics]\nReaders=\n")
        d.signal(signal.SIGHUP)
        d.wait_log(r"\[Metrics\] Readers changed from no-such-user-here \d+ to \.")
        fams, body = scrape(base)
        if value(fams, "iopfd_exporter_access_denied", "iopfd_exporter_access_denied") != 1 \
                or "iopfd_tenant_" in body:
            fail(f"the exporter still reads everyone's after the reload:\n{body}")
    finally:
        stop_exporter(p)
        if a:
            a.close()
    d.stop()


def case_visibility(tmp):
    """A tenant reads its own metrics; only uid 0 reads everyone's (D-Bus, iopfctl, exporter)."""
    need_root()
    os.chmod(tmp, 0o755)
    d = Daemon(tmp).wait_up()
    root = Tenant(d.address)
    other = Tenant(d.address, uid=NOBODY)
    root.faults(good=5, perm=1)
    other.faults(good=2, nohandler=2)
    # each sees its own totals through its own connection
    if other.cmd("counter faults")["value"] != 4 or root.cmd("counter faults")["value"] != 6:
        fail("own fault counters")
    if other.cmd("counter no_handler")["value"] != 2 or other.cmd("latency")["count"] != 4:
        fail("own reasons and latency")
    if other.cmd("domain-latency")["count"] != 2:
        fail("own domain latency")
    call = ["call", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1"]
    for m in ("GetAllTenantMetrics", "GetAllDomainMetrics", "GetDaemonMetrics"):
        p = busctl(d.address, *call, m, uid=NOBODY, check=False)
        if p.returncode == 0 or "uid 0" not in p.stderr:
            fail(f"{m} as nobody: {p.stdout} {p.stderr}")
    # a fresh connection as nobody: its own (empty) tenant only, never the others
    out = busctl(d.address, *call, "GetTenantMetrics", uid=NOBODY).stdout
    if not out.startswith("a(tuusa{st}(ttat)) 1 ") or " 65534 " not in out:
        fail(f"GetTenantMetrics as nobody: {out}")
    out = busctl(d.address, *call, "GetDomainMetrics", uid=NOBODY).stdout
    if not out.startswith("a(ttuua{st}(ttat)) 0"):
        fail(f"GetDomainMetrics as nobody shows domains: {out}")
    # root sees both tenants (busctl itself registered nothing: no tenant)
    out = busctl(d.address, *call, "GetAllTenantMetrics").stdout
    if not re.match(r"a\(tuusa\{st\}\(ttat\)\) 2 ", out):
        fail(f"GetAllTenantMetrics as root: {out[:200]}")
    # iopfctl: root gets the table of everyone, nobody only itself
    ctl = env("IOPFCTL")
    out = run([ctl, "--address", d.address, "--json", "stats"]).stdout
    j = json.loads(out)
    if sorted(t["uid"] for t in j["tenants"] if t["counters"]["faults"]) != [0, NOBODY]:
        fail(f"iopfctl stats as root: {j['tenants']}")
    if j["daemon"]["counters"]["faults"] != 10:
        fail("iopfctl daemon totals")
    out = run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", ctl,
               "--address", d.address, "--json", "stats"]).stdout
    j = json.loads(out)
    if len(j["tenants"]) != 1 or j["tenants"][0]["counters"]["faults"] != 0 or j["domains"] \
            or "daemon" in j:
        fail(f"iopfctl stats as nobody sees others: {j}")
    # the table, percentiles and --watch frames
    out = run([ctl, "--address", d.address, "stats"]).stdout
    for word in ("TENANT", "P50", "P99", "P99.9", "WHY-INVALID", "permission=1", "since start"):
        if word not in out:
            fail(f"iopfctl stats table lacks {word}:\n{out}")
    out = run([ctl, "--address", d.address, "stats", "--watch=0.1", "-n", "3"]).stdout
    if out.count("iopfctl stats every 0.1s") != 3 or "GROUPS/S" not in out:
        fail(f"iopfctl stats --watch:\n{out}")
    out = run([ctl, "--address", d.address, "--json", "stats", "--watch=0.1", "-n", "2"]).stdout
    frames = [json.loads(l) for l in out.splitlines()]
    if len(frames) != 2 or frames[1]["daemon"]["latency"]["count"] != 10:
        fail(f"iopfctl --json --watch frames: {out[:300]}")
    # the exporter as nobody: refused the every-tenant views, says so, shows no tenant
    try:
        import prometheus_client.parser  # noqa: F401
        p, base = exporter(tmp, d.address, uid=NOBODY)
        try:
            fams, body = scrape(base)
            if value(fams, "iopfd_exporter_access_denied", "iopfd_exporter_access_denied") != 1 \
                    or "iopfd_tenant_" in body:
                fail(f"exporter as nobody:\n{body}")
        finally:
            p.terminate()
            p.wait(timeout=WAIT)
    except ImportError:
        pass
    root.close()
    other.close()
    d.stop()


def case_observers(tmp):
    """Connections that registered nothing (busctl, an idle socket, iopfctl) are no tenants:
    not in GetAllTenantMetrics, not counted by GetDaemonMetrics or the STATUS line."""
    d = Daemon(tmp).wait_up()
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(d.sock)
    idle.sendall(b"\0")  # a connection that is more than a liveness probe
    t = Tenant(d.address)
    call = ["call", "org.iopfd", "/org/iopfd", "org.iopfd.Manager1"]
    rows = busctl_data(d.address, *call, "GetAllTenantMetrics")[0]
    if len(rows) != 1 or rows[0][2] != t.proc.pid:
        fail(f"GetAllTenantMetrics lists observers: {rows}")
    totals = busctl_data(d.address, *call, "GetDaemonMetrics")[0]
    if totals.get("tenants") != 1:
        fail(f"GetDaemonMetrics counts observers: {totals}")
    j = json.loads(run([env("IOPFCTL"), "--address", d.address, "--json", "stats"]).stdout)
    if [x["pid"] for x in j["tenants"]] != [t.proc.pid]:
        fail(f"iopfctl stats lists observers: {j['tenants']}")
    # its own metrics an observer still reads
    own = busctl_data(d.address, *call, "GetTenantMetrics")[0]
    if len(own) != 1:
        fail(f"GetTenantMetrics of an observer: {own}")
    t.close()
    idle.close()
    d.stop()


def case_summaries(tmp):
    """Refused faults are not logged one by one, but summarized per tenant and period, with
    the tenant, source, device, PASID and reason; a tenant that leaves says what it had."""
    d = Daemon(tmp, conf="[Daemon]\nRefusedSummaryInterval=200ms\n").wait_up()
    t = Tenant(d.address)
    t.faults(good=50, outside=30, perm=7)
    m = d.wait_log(r"Tenant \d+ \(pid \d+ uid 0\): 37 fault groups refused in the last 0\.2s "
                   r"\(outside_region 30, permission 7\); most on source \d+ dev_id 1 without "
                   r"PASID\.")
    t.faults(nohandler=4)
    d.wait_log(r"Tenant \d+ .*: 4 fault groups refused .*\(no_handler 4\); most on source \d+ for "
               r"no registered domain")
    text = d.text()
    if text.count("fault groups refused") != 2:
        fail(f"one summary per period with refusals, no more:\n{text}")
    t.close()
    d.wait_log(r"Tenant \d+ \(pid \d+ uid 0\) disconnected, removing its 3 objects; it had 91 "
               r"fault groups answered, 41 INVALID: no_handler 4, outside_region 30, "
               r"permission 7\.")
    d.stop()


def case_check_config(tmp):
    """--check-config and --dump-config with drop-ins; hostile files fail cleanly, with a place."""
    iopfd = env("IOPFD")
    conf = os.path.join(tmp, "iopfd.conf")
    dropins = conf + ".d"
    os.mkdir(dropins)
    with open(conf, "w") as f:
        f.write("[Daemon]\nWorkers=3\n[Metrics]\nListen=[::1]:9100\n")
    with open(os.path.join(dropins, "10-a.conf"), "w") as f:
        f.write("[Daemon]\nWorkers=5\n")
    with open(os.path.join(dropins, "20-b.conf"), "w") as f:
        f.write("[Limits]\nMaxPinnedBytes=infinity\n")
    with open(os.path.join(dropins, ".hidden.conf"), "w") as f:
        f.write("garbage\n")
    with open(os.path.join(dropins, "30-c.conf.disabled"), "w") as f:
        f.write("garbage\n")
    p = run([iopfd, "--config", conf, "--check-config"])
    if p.stdout != "configuration OK\n":
        fail(p.stdout)
    out = run([iopfd, "--config", conf, "--dump-config", "--workers", "9"]).stdout
    for line in ("Workers=9", "MaxPinnedBytes=infinity", "Listen=[::1]:9100", "FaultAround=64K",
                 "RefusedSummaryInterval=10s"):
        if line not in out.splitlines():
            fail(f"--dump-config lacks {line}:\n{out}")
    # a FIFO where a drop-in should be must not hang us
    os.mkfifo(os.path.join(dropins, "40-fifo.conf"))
    p = run([iopfd, "--config", conf, "--check-config"], check=False, timeout=WAIT)
    if p.returncode == 0 or "40-fifo.conf: not a regular file" not in p.stderr:
        fail(f"FIFO drop-in: {p.returncode} {p.stderr}")
    os.unlink(os.path.join(dropins, "40-fifo.conf"))
    with open(os.path.join(dropins, "50-bad.conf"), "w") as f:
        f.write("[Metrics]\nListen=localhost:9577\n")
    p = run([iopfd, "--config", conf, "--check-config"], check=False)
    if p.returncode == 0 or "50-bad.conf:2: Listen=localhost:9577: not ADDRESS:PORT" not in p.stderr:
        fail(f"bad Listen: {p.stderr}")


CASES = {
    "units": case_units,
    "system-bus": case_system_bus,
    "notify": case_notify,
    "watchdog-stall": case_watchdog_stall,
    "reload": case_reload,
    "socket-activation": case_socket_activation,
    "exporter": case_exporter,
    "visibility": case_visibility,
    "summaries": case_summaries,
    "observers": case_observers,
    "log-control": case_log_control,
    "signals": case_signals,
    "names": case_names,
    "check-config": case_check_config,
}


def main(cases=None, prefix="ops", root_why=None):
    """Every test-*.py's runner: the case named on the command line in a fresh temporary
    directory, the logs' tails when it fails, every child it started killed. Exit 0 pass,
    1 fail, 77 skip (also without root when @root_why says what root is for), 2 usage."""
    cases = CASES if cases is None else cases
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        print(f"usage: {sys.argv[0]} {'|'.join(cases)}", file=sys.stderr)
        return 2
    if root_why and os.geteuid() != 0:
        print(f"SKIP: needs root to {root_why}")
        return 77
    tmp = tempfile.mkdtemp(prefix=f"iopfd-{prefix}-{sys.argv[1]}-")
    try:
        cases[sys.argv[1]](tmp)
    except Skip as e:
        print(f"SKIP: {e}")
        return 77
    except AssertionError as e:
        print(f"FAIL: {e}")
        for name in sorted(os.listdir(tmp)):
            if name.endswith(".log"):
                with open(os.path.join(tmp, name), errors="replace") as f:
                    print(f"---- {name} (tail) ----\n{f.read()[-3000:]}")
        return 1
    finally:
        for p in CHILDREN:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
