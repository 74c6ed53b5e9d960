"""`docker run` and friends against bosun daemon, through the real docker CLI: terminals (a
pty we hold the master of), attach/detach, --init, resource and security flags read back
inside the container (this host's cgroup v1 layout), events, inspect, and many runs at once
leaving nothing behind."""

from __future__ import annotations

import glob
import json
import os
import re
import threading
import time

import pytest

from bosun.testing.dockerd import DOCKER, mountpoints_under
from bosun.testing.terminal import Terminal, check_size

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_containers_after"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(DOCKER is None, reason="no docker CLI")]

CGROUP_V1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers")
DOCKER_DEFAULT_CAPS = 0xa80425fb  # CapEff of a default `docker run` container


def out(daemon, *args: str, check: bool = True) -> str:
    return daemon.docker(*args, check=check).stdout.decode()


def own_cap_eff() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))


# -- terminals ----------------------------------------------------------------------------------

@pytest.fixture
def terminal(daemon):
    """The docker CLI in a new pty."""
    opened: list[Terminal] = []

    def make(*args: str, **kw) -> Terminal:
        t = Terminal([DOCKER, *args], daemon.env, **kw)
        opened.append(t)
        return t

    yield make
    for t in opened:
        t.close()


def shell_session(t, probe: bytes, expect: bytes, size, resized, code: int) -> None:
    """Drive an interactive sh in `t`: it runs on a pty, evaluates `probe`, follows a resize,
    and its exit code comes back as the client's."""
    t.expect(rb"# ")
    t.type(b"tty; " + probe + b"\n")
    t.expect(rb"/dev/pts/0\r\n" + expect)
    check_size(t, *size)
    t.resize(*resized)
    check_size(t, *resized)
    t.type(b"exit %d\n" % code)
    assert t.wait() == code


def test_run_it_real_terminal(terminal):
    t = terminal("run", "-it", "--rm", "busybox", "sh", rows=30, cols=100)
    shell_session(t, b"echo R$((40+2))", rb"R42", (30, 100), (40, 120), 5)


def test_exec_it_real_terminal(daemon, terminal):
    daemon.docker("run", "-d", "--name", "execit", "busybox", "sleep", "300")
    t = terminal("exec", "-it", "-e", "X=exec", "execit", "sh", rows=25, cols=90)
    shell_session(t, b"echo E$X$((3*3)); echo T$TERM", rb"Eexec9\r\nTxterm", (25, 90), (33, 77), 6)
    assert out(daemon, "inspect", "-f", "{{.State.Running}}", "execit") == "true\n"


def test_attach_detach_and_reattach(daemon, terminal):
    daemon.docker("run", "-dit", "--name", "att", "busybox", "sh")
    t = terminal("attach", "att")
    t.type(b"echo A$((2+3))\n")
    t.expect(rb"A5")
    t.type(b"\x10\x11")  # ctrl-p ctrl-q
    t.wait()  # the CLI leaves (Docker's own CLI says "read escape sequence" and exits 1)
    assert out(daemon, "inspect", "-f", "{{.State.Running}}", "att") == "true\n"
    assert out(daemon, "exec", "att", "echo", "alive") == "alive\n"
    # the shell kept its state: attach again and end it
    t2 = terminal("attach", "att")
    t2.type(b"echo B$((3+4))\n")
    t2.expect(rb"B7")
    t2.type(b"exit 3\n")
    assert t2.wait() == 3
    state = json.loads(out(daemon, "inspect", "att"))[0]["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3


# -- --init ---------------------------------------------------------------------------------------

def test_run_init(daemon):
    text = out(daemon, "run", "--rm", "--init", "busybox", "sh", "-c",
               'tr "\\0" " " < /proc/1/cmdline; echo; ps -o pid,comm')
    cmdline, *ps = text.splitlines()
    assert cmdline.startswith("/sbin/docker-init -- sh -c ")
    assert ps[0].split() == ["PID", "COMMAND"] and ps[1].split() == ["1", "docker-init"]
    assert "tini" in out(daemon, "run", "--rm", "--init", "busybox", "/sbin/docker-init",
                         "--version")
    # the init forwards SIGTERM to sleep, which dies of it: stop needs no SIGKILL
    daemon.docker("run", "-d", "--init", "--name", "inited", "busybox", "sleep", "300")
    t0 = time.monotonic()
    daemon.docker("stop", "-t", "10", "inited")
    assert time.monotonic() - t0 < 5
    assert out(daemon, "inspect", "-f", "{{.State.ExitCode}}", "inited") == "143\n"


# -- flags read back inside ------------------------------------------------------------------------

MOUNTS = "/proc/self/mounts"
FLAGS = [
    ("memory", ["-m", "64m", "--memory-swap", "128m"],
     ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
      "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"), "67108864\n134217728\n"),
    ("cpus", ["--cpus", "0.5"],
     "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us",
     "50000\n100000\n"),
    ("cpu-shares", ["--cpu-shares", "512"], "cat /sys/fs/cgroup/cpu/cpu.shares", "512\n"),
    ("cpuset", ["--cpuset-cpus", "0"], "cat /sys/fs/cgroup/cpuset/cpuset.cpus", "0\n"),
    ("pids", ["--pids-limit", "50"], "cat /sys/fs/cgroup/pids/pids.max", "50\n"),
    ("ulimit", ["--ulimit", "nofile=1024:2048"], "ulimit -n; ulimit -Hn", "1024\n2048\n"),
    ("shm-size", ["--shm-size", "32m"], "df -k /dev/shm | awk 'NR==2{print $2}'", "32768\n"),
    ("read-only", ["--read-only"],
     "touch /x 2>/dev/null && echo root-rw || echo root-ro; touch /dev/shm/x && echo shm-rw",
     "root-ro\nshm-rw\n"),
    ("no-new-privileges", ["--security-opt", "no-new-privileges"],
     "grep NoNewPrivs /proc/self/status", "NoNewPrivs:\t1\n"),
    ("user-numeric", ["--user", "1000:1000"], "id -u; id -g; id -un", "1000\n1000\nuser\n"),
    ("user-by-name", ["--user", "user"], "id -u; id -g; id -Gn", "1000\n1000\nuser\n"),
    ("user-nobody", ["--user", "nobody"], "id -u; id -g", "65534\n65534\n"),
    ("workdir-env-hostname", ["-w", "/tmp", "-e", "A=1", "--hostname", "myhost"],
     "pwd; echo $A; hostname; cat /etc/hostname", "/tmp\n1\nmyhost\nmyhost\n"),
    ("add-host-dns", ["--add-host", "foo:10.1.2.3", "--dns", "9.9.9.9"],
     "grep foo /etc/hosts; grep nameserver /etc/resolv.conf",
     "10.1.2.3\tfoo\nnameserver 9.9.9.9\n"),
    ("tmpfs", ["--tmpfs", "/scratch:size=1m"],
     (f"grep ' /scratch ' {MOUNTS} | cut -d' ' -f1,3; "
      f"grep ' /scratch ' {MOUNTS} | grep -o 'size=[0-9a-z]*'; touch /scratch/x && echo ok"),
     "tmpfs tmpfs\nsize=1024k\nok\n"),
    ("mount-tmpfs", ["--mount", "type=tmpfs,dst=/t,tmpfs-size=2m"],
     f"grep ' /t ' {MOUNTS} | grep -o 'size=[0-9a-z]*'", "size=2048k\n"),
    ("sysctl", ["--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=123456"],
     "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax", "1\n123456\n"),
    ("network-none", ["--network", "none"], "ls /sys/class/net", "lo\n"),
]


@pytest.mark.parametrize("args, script, expected",
                         [pytest.param(a, s, e, id=i) for i, a, s, e in FLAGS])
def test_flag_read_back(daemon, args, script, expected):
    if "/sys/fs/cgroup/" in script and not CGROUP_V1:
        pytest.skip("reads cgroup v1 files")
    assert out(daemon, "run", "--rm", *args, "busybox", "sh", "-c", script) == expected


def cap_eff(daemon, *args: str) -> int:
    line = out(daemon, "run", "--rm", *args, "busybox", "grep", "CapEff", "/proc/self/status")
    return int(line.split()[1], 16)


def test_capabilities_and_privileged(daemon):
    assert cap_eff(daemon) == DOCKER_DEFAULT_CAPS
    # NET_ADMIN is 12, CHOWN 0
    assert cap_eff(daemon, "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN") == \
        (DOCKER_DEFAULT_CAPS | 1 << 12) & ~1
    assert cap_eff(daemon, "--cap-drop", "ALL") == 0
    # privileged (and --cap-add ALL): every capability the daemon holds itself
    assert cap_eff(daemon, "--privileged") == own_cap_eff()
    assert cap_eff(daemon, "--cap-add", "ALL") == own_cap_eff()
    text = out(daemon, "run", "--rm", "--privileged", "busybox", "sh", "-c",
               f"grep Seccomp: /proc/self/status; grep ' /sys ' {MOUNTS} | cut -d' ' -f4")
    assert text.splitlines()[0] == "Seccomp:\t0" and text.splitlines()[1].startswith("rw")
    daemon.docker("run", "-d", "--name", "privexec", "busybox", "sleep", "300")
    line = out(daemon, "exec", "--privileged", "privexec", "grep", "CapEff", "/proc/self/status")
    assert int(line.split()[1], 16) == own_cap_eff()


@pytest.mark.parametrize("mode", ["host", "pid", "ipc"])
def test_host_namespaces(daemon, mode):
    flag, ns = {"host": ("--network", "net"), "pid": ("--pid", "pid"),
                "ipc": ("--ipc", "ipc")}[mode]
    inside = out(daemon, "run", "--rm", flag, "host", "busybox", "readlink",
                 f"/proc/self/ns/{ns}").strip()
    assert inside == os.readlink(f"/proc/self/ns/{ns}")
    private = out(daemon, "run", "--rm", "busybox", "readlink", f"/proc/self/ns/{ns}").strip()
    assert private != inside


def test_bind_mounts(daemon, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("hostdata\n")
    script = "cat /b/f; touch /b/new 2>/dev/null && echo wrote || echo refused"
    assert out(daemon, "run", "--rm", "-v", f"{src}:/b:ro", "busybox", "sh", "-c", script) == \
        "hostdata\nrefused\n"
    assert not (src / "new").exists()
    assert out(daemon, "run", "--rm", "-v", f"{src}:/b", "busybox", "sh", "-c", script) == \
        "hostdata\nwrote\n"
    assert (src / "new").exists()
    script = "cat /m/f; touch /m/other 2>/dev/null && echo wrote || echo refused"
    assert out(daemon, "run", "--rm", "--mount", f"type=bind,src={src},dst=/m,readonly",
               "busybox", "sh", "-c", script) == "hostdata\nrefused\n"
    assert out(daemon, "run", "--rm", "--mount", f"type=bind,src={src},dst=/m",
               "busybox", "sh", "-c", script) == "hostdata\nwrote\n"


# -- events and inspect ------------------------------------------------------------------------------

def test_events_since_until_filter(daemon):
    since = time.time()
    r = daemon.docker("run", "--rm", "--name", "evrun", "-l", "evt=run", "busybox", "sh", "-c",
                      "exit 3", check=False)
    assert r.returncode == 3
    until = time.time() + 1  # a moment in the future: the CLI streams until then, then stops
    window = ["--since", f"{since:.6f}", "--until", f"{until:.6f}"]
    t0 = time.monotonic()
    actions = out(daemon, "events", *window, "--filter", "container=evrun",
                  "--format", "{{.Action}}").split()
    assert time.monotonic() - t0 < 10
    assert actions == ["create", "attach", "start", "die", "destroy"]
    lines = out(daemon, "events", *window, "--filter", "event=die", "--filter",
                "label=evt=run", "--format", "{{json .}}").splitlines()
    assert len(lines) == 1
    ev = json.loads(lines[0])
    assert ev["Type"] == "container" and ev["Actor"]["Attributes"]["name"] == "evrun"
    assert ev["Actor"]["Attributes"]["exitCode"] == "3"
    # a window wholly in the past returns at once; one before the run sees nothing of it
    past = out(daemon, "events", "--since", f"{since - 60:.6f}", "--until", f"{since:.6f}",
               "--filter", "container=evrun")
    assert past == ""


def test_inspect_shapes(daemon, tmp_path):
    daemon.docker("run", "-d", "--name", "insp", "-l", "k=v", "-e", "E=1", "-m", "64m",
                  "--restart", "on-failure:2", "-v", f"{tmp_path}:/data:ro",
                  "--tmpfs", "/run/t", "busybox", "sleep", "300")
    doc = json.loads(out(daemon, "inspect", "insp"))
    assert isinstance(doc, list) and len(doc) == 1
    c = doc[0]
    assert c["Name"] == "/insp" and re.fullmatch(r"[0-9a-f]{64}", c["Id"])
    assert c["Path"] == "sleep" and c["Args"] == ["300"]
    assert c["State"]["Status"] == "running" and c["State"]["Pid"] > 0
    assert c["Config"]["Labels"] == {"k": "v"} and "E=1" in c["Config"]["Env"]
    hc = c["HostConfig"]
    assert hc["Memory"] == 64 << 20 and hc["MemorySwap"] == 128 << 20
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert hc["Binds"] == [f"{tmp_path}:/data:ro"] and hc["Tmpfs"] == {"/run/t": ""}
    assert c["Mounts"] == [{"Type": "bind", "Source": str(tmp_path), "Destination": "/data",
                            "Mode": "ro", "RW": False, "Propagation": "rprivate"}]
    assert "bridge" in c["NetworkSettings"]["Networks"]
    fmt = "{{.Name}} {{.State.Status}} {{.HostConfig.RestartPolicy.Name}} {{len .Mounts}} " \
          "{{.Config.Image}} {{index .Config.Labels \"k\"}}"
    assert out(daemon, "inspect", "-f", fmt, "insp") == "/insp running on-failure 1 busybox v\n"
    sized = json.loads(out(daemon, "container", "inspect", "--size", "insp"))[0]
    assert sized["SizeRw"] >= 0 and sized["SizeRootFs"] > 0
    # a name that is an image and not a container: --type decides
    r = daemon.docker("inspect", "--type", "container", "busybox", check=False)
    assert r.returncode == 1 and "No such container: busybox" in r.stderr.decode()
    ps = out(daemon, "ps", "--filter", "name=insp", "--format", "{{.Names}}|{{.Labels}}|{{.Image}}")
    assert ps == "insp|k=v|busybox\n"


# -- many at once ---------------------------------------------------------------------------------

def test_parallel_runs_leave_nothing(daemon, tmp_path):
    n = 20
    results: dict[int, tuple[int, str]] = {}

    def run(i: int) -> None:
        r = daemon.docker("run", "--rm", "--cidfile", str(tmp_path / f"cid{i}"), "busybox",
                          "true", check=False, timeout=120)
        results[i] = (r.returncode, r.stderr.decode())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    failed = {i: r for i, r in results.items() if r[0] != 0}
    assert not failed, "\n".join(f"run {i}: exit {code}\n{err}" for i, (code, err)
                                  in failed.items()) + "\n" + daemon.log_tail()
    assert len(results) == n
    ids = [(tmp_path / f"cid{i}").read_text().strip() for i in range(n)]
    assert len(set(ids)) == n and all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)

    assert out(daemon, "ps", "-aq") == ""
    assert mountpoints_under(daemon.data_root) == []
    for d in (daemon.exec_root / "runtime", daemon.exec_root / "containers",
              daemon.data_root / "containers"):
        assert set(os.listdir(d)) & set(ids) == set(), d
    leftover_cgroups = [p for cid in ids for p in glob.glob(f"/sys/fs/cgroup/*/*/{cid}")]
    assert leftover_cgroups == []
    deadline = time.monotonic() + 10  # a shim exits just after it reported the exit
    while daemon.shim_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.shim_pids() == []


def test_shim_is_named_and_parents_the_container(daemon):
    """`ps` shows a bosun-shim per container (as containerd-shim shows for Docker), working in
    the container's directory, the parent of the container's init; the daemon's other
    helper is bosun-forksrv."""
    cid = out(daemon, "run", "-d", "busybox", "sleep", "60").strip()
    try:
        pid = int(out(daemon, "inspect", "-f", "{{.State.Pid}}", cid))
        with open(f"/proc/{pid}/stat") as f:
            shim = int(f.read().rsplit(")", 1)[1].split()[1])
        with open(f"/proc/{shim}/comm") as f:
            assert f.read().strip() == "bosun-shim"
        assert os.path.basename(os.readlink(f"/proc/{shim}/cwd")) == cid
        assert shim in daemon.shim_pids()
        helpers = [p for p in os.listdir("/proc") if p.isdigit()
                   and _read(f"/proc/{p}/comm") == "bosun-forksrv"
                   and _read(f"/proc/{p}/stat").rsplit(")", 1)[-1].split()[1:2]
                   == [str(daemon.proc.pid)]]
        assert len(helpers) == 1
    finally:
        daemon.docker("rm", "-f", cid)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""
