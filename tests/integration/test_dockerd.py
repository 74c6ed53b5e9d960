"""A real dockerd drives bosun-runtime.

dockerd (with its own managed containerd) is started with `--add-runtime bosun=<our binary>`;
containerd's runc shim (containerd-shim-runc-v2) then calls our runc-compatible CLI for
create/start/state/exec/kill/delete/ps. Everything is checked through the docker CLI, as a
user would see it. Images come from no registry: the busybox rootfs is `docker import`ed.

The daemon is private to this module: data-root, exec-root, pidfile and socket live in one
short temp dir, containers go to a unique --cgroup-parent, and teardown removes it all
(containers, dockerd, containerd, shims, mounts, cgroups, temp dir) even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from bosun.testing.dockerd import BIN, DOCKER, DOCKERD, Dockerd, _alive, _cmdline
from bosun.testing.dockerd import SBIN_PATH as _SBIN_PATH

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root"),
    pytest.mark.skipif(DOCKERD is None, reason="dockerd is not installed (Debian: docker.io)"),
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(shutil.which("containerd", path=_SBIN_PATH) is None
                       or shutil.which("containerd-shim-runc-v2", path=_SBIN_PATH) is None,
                       reason="containerd and containerd-shim-runc-v2 are needed by dockerd"),
]


@pytest.fixture(scope="module")
def dockerd(busybox_rootfs):
    assert BIN.exists(), f"{BIN} is missing: install the project into the venv"
    tmp = Path(tempfile.mkdtemp(prefix="bdk-", dir="/tmp"))  # unix sockets need short paths
    d = Dockerd(tmp)
    try:
        d.start()
        tar = subprocess.run(["tar", "--numeric-owner", "-C", str(busybox_rootfs), "-c", "."],
                             capture_output=True, check=True, timeout=60).stdout
        d.docker("import", "--change", 'CMD ["sh"]', "-", "busybox:latest", input=tar,
                 check=True)
        yield d
    finally:
        d.teardown()


@pytest.fixture(autouse=True)
def _no_containers_left(dockerd):
    yield
    dockerd.remove_containers()


def unique(prefix: str = "bx") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


RUN = ("run", "--runtime", "bosun", "--network", "none")


# -- tests -------------------------------------------------------------------------------------

def test_daemon_knows_the_bosun_runtime(dockerd):
    info = json.loads(dockerd.docker("info", "--format", "{{json .}}", check=True).stdout)
    assert "bosun" in info["Runtimes"]
    assert info["Runtimes"]["bosun"]["path"] == str(BIN)
    assert info["Driver"] == dockerd.driver
    images = dockerd.docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=True)
    assert "busybox:latest" in images.stdout.split()


def test_run_rm_prints_hi(dockerd):
    name = unique()
    p = dockerd.docker(*RUN, "--rm", "--name", name, "busybox", "echo", "hi")
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr + dockerd.log_tail()
    # --rm: gone from docker and from the runtime's state root
    assert dockerd.docker("ps", "-aq", "--filter", f"name=^{name}$").stdout == ""
    for root in dockerd.exec_root.glob("runtime-*/*"):
        r = dockerd.runtime(root, "list", "-q")
        assert (r.returncode, r.stdout) == (0, ""), r.stderr


def test_run_returns_the_exit_status(dockerd):
    p = dockerd.docker(*RUN, "--rm", "busybox", "sh", "-c", "exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout == ""


def test_run_separates_stdout_and_stderr(dockerd):
    p = dockerd.docker(*RUN, "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (p.returncode, p.stdout, p.stderr) == (0, "out\n", "err\n")


def test_run_missing_executable_is_reported(dockerd):
    # The runtime's error goes through its --log (json) file to containerd, then to docker,
    # which maps "no such file or directory" to 127 as it does for runc.
    p = dockerd.docker(*RUN, "--rm", "busybox", "/nonexistent")
    assert p.returncode == 127
    assert "/nonexistent" in p.stderr and "no such file or directory" in p.stderr
    p = dockerd.docker(*RUN, "--rm", "busybox", "nosuchcommand")
    assert p.returncode == 127
    assert "executable file not found in $PATH" in p.stderr


def test_detached_container_lifecycle(dockerd):
    name = unique()
    p = dockerd.docker(*RUN, "-d", "--name", name, "busybox", "sleep", "1000", check=True)
    cid = p.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), p.stdout

    ps = dockerd.docker("ps", "--filter", f"name=^{name}$",
                        "--format", "{{.ID}}|{{.Status}}|{{.Command}}", check=True)
    short, status, command = ps.stdout.strip().split("|")
    assert cid.startswith(short) and status.startswith("Up") and "sleep 1000" in command

    st = dockerd.inspect(name)
    assert st["HostConfig"]["Runtime"] == "bosun"
    assert st["State"]["Status"] == "running" and st["State"]["Running"] is True
    pid = st["State"]["Pid"]
    assert pid > 0 and _cmdline(pid) == b"sleep\x001000\x00"

    # It really is bosun-runtime that the shim drives: our state file, our `state` output.
    root = dockerd.runtime_root(cid)
    assert root is not None, list(dockerd.exec_root.rglob("*"))[:50]
    s = dockerd.runtime(root, "state", cid)
    assert s.returncode == 0, s.stderr
    state = json.loads(s.stdout)
    assert (state["id"], state["status"], state["pid"]) == (cid, "running", pid)

    # exec: output, exit status, the container's namespaces, user/cwd/env, stdin
    p = dockerd.docker("exec", name, "sh", "-c",
                       "echo out; echo err >&2; tr '\\0' ' ' </proc/1/cmdline; echo; hostname")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"out\nsleep 1000 \n{cid[:12]}\n"
    assert p.stderr == "err\n"
    p = dockerd.docker("exec", name, "sh", "-c", "echo failing; exit 7")
    assert (p.returncode, p.stdout) == (7, "failing\n")
    p = dockerd.docker("exec", "-u", "1000", "-w", "/tmp", "-e", "FOO=bar", name,
                       "sh", "-c", 'echo "$(id -u) $(pwd) $FOO"')
    assert (p.returncode, p.stdout) == (0, "1000 /tmp bar\n"), p.stderr
    p = dockerd.docker("exec", "-i", name, "cat", input="via stdin\n")
    assert (p.returncode, p.stdout) == (0, "via stdin\n"), p.stderr
    p = dockerd.docker("exec", "-t", name, "tty", raw=True)
    assert (p.returncode, p.stdout) == (0, b"/dev/pts/0\r\n"), p.stderr
    # docker 20.10 reports a failed exec with 126 and the runtime's error on stdout, as for runc
    p = dockerd.docker("exec", name, "nosuchcommand")
    assert p.returncode == 126
    assert "executable file not found in $PATH" in p.stdout + p.stderr, p

    # top (the shim asks `bosun-runtime ps --format json` for the pids)
    top = dockerd.docker("top", name, check=True).stdout.splitlines()
    header = top[0].split()
    assert "PID" in header and "CMD" in header
    rows = [r for r in top[1:] if r.split()[header.index("PID")] == str(pid)]
    assert len(rows) == 1 and rows[0].endswith("sleep 1000"), top
    assert len(top) == 2, top  # the exec'd processes are gone

    # stop: sleep as pid 1 ignores SIGTERM, so docker kills it after the timeout
    p = dockerd.docker("stop", "-t", "1", name, check=True)
    assert p.stdout.strip() == name
    st = dockerd.inspect(name)["State"]
    assert (st["Status"], st["Running"], st["ExitCode"]) == ("exited", False, 137)
    assert not _alive(pid)
    # the runtime deleted its state and the container's cgroups
    assert dockerd.runtime(root, "state", cid).returncode != 0
    assert not any(os.path.exists(os.path.join(c, cid))
                   for c in dockerd._cgroup_candidates(dockerd.cgroup_parent))

    p = dockerd.docker("rm", name, check=True)
    assert p.stdout.strip() == name
    assert dockerd.docker("ps", "-aq", "--filter", f"name=^{name}$").stdout == ""
    assert dockerd.docker("inspect", name).returncode != 0


def test_stop_delivers_sigterm(dockerd):
    name = unique()
    dockerd.docker(*RUN, "-d", "--name", name, "busybox", "sh", "-c",
                   "trap 'exit 42' TERM; sleep 1000 & wait", check=True)
    t0 = time.monotonic()
    dockerd.docker("stop", name, check=True)  # default timeout: 10s before SIGKILL
    assert time.monotonic() - t0 < 8
    st = dockerd.inspect(name)["State"]
    assert (st["Status"], st["ExitCode"]) == ("exited", 42)
    dockerd.docker("rm", name, check=True)


def test_detached_output_wait_and_logs(dockerd):
    name = unique()
    dockerd.docker(*RUN, "-d", "--name", name, "busybox", "sh", "-c",
                   "echo to-stdout; echo to-stderr >&2; exit 5", check=True)
    p = dockerd.docker("wait", name, check=True)
    assert p.stdout.strip() == "5"
    p = dockerd.docker("logs", name, check=True)
    assert (p.stdout, p.stderr) == ("to-stdout\n", "to-stderr\n")
    dockerd.docker("rm", name, check=True)


def test_run_with_a_terminal(dockerd):
    p = dockerd.docker(*RUN, "--rm", "-t", "busybox", "sh", "-c", "tty; exit 4", raw=True)
    assert p.returncode == 4, p.stderr
    assert p.stdout == b"/dev/pts/0\r\n"  # a pty: the line discipline adds \r


def test_run_with_stdin(dockerd):
    p = dockerd.docker(*RUN, "--rm", "-i", "busybox", "cat", input="piped\n")
    assert (p.returncode, p.stdout) == (0, "piped\n"), p.stderr


def test_ulimits(dockerd):
    p = dockerd.docker(*RUN, "--rm", "--ulimit", "nofile=1024:2048", "busybox",
                       "sh", "-c", "ulimit -Sn; ulimit -Hn")
    assert (p.returncode, p.stdout) == (0, "1024\n2048\n"), p.stderr
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with open("/proc/self/status") as f:
        eff = int(next(ln for ln in f if ln.startswith("CapEff:")).split()[1], 16)
    if hard == resource.RLIM_INFINITY or eff >> 24 & 1:  # CAP_SYS_RESOURCE
        return
    # Above our hard limit, without CAP_SYS_RESOURCE: refused, and docker says why.
    p = dockerd.docker(*RUN, "--rm", "--ulimit", f"nofile=1024:{hard + 1}", "busybox", "true")
    assert p.returncode == 125
    assert "RLIMIT_NOFILE" in p.stderr and "CAP_SYS_RESOURCE" in p.stderr, p.stderr


def test_default_seccomp_profile_is_applied(dockerd):
    p = dockerd.docker(*RUN, "--rm", "busybox", "grep", "Seccomp:", "/proc/self/status")
    assert (p.returncode, p.stdout) == (0, "Seccomp:\t2\n"), p.stderr  # a filter is loaded
    # docker's profile allows unshare only with CAP_SYS_ADMIN, which containers lack
    p = dockerd.docker(*RUN, "--rm", "busybox", "unshare", "-U", "true")
    assert p.returncode != 0 and "Operation not permitted" in p.stderr, p
    p = dockerd.docker(*RUN, "--rm", "--security-opt", "seccomp=unconfined", "busybox",
                       "grep", "Seccomp:", "/proc/self/status")
    assert (p.returncode, p.stdout) == (0, "Seccomp:\t0\n"), p.stderr


CGROUP_V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _cg(v1: str, v2: str) -> str:
    """A cgroup file as the container sees it under /sys/fs/cgroup."""
    return f"/sys/fs/cgroup/{v2 if CGROUP_V2 else v1}"


def test_resource_limits(dockerd):
    files = [_cg("memory/memory.limit_in_bytes", "memory.max"), _cg("pids/pids.max", "pids.max"),
             _cg("cpu/cpu.cfs_quota_us", "cpu.max")]
    p = dockerd.docker(*RUN, "--rm", "--memory", "64m", "--pids-limit", "20", "--cpus", "0.5",
                       "busybox", "cat", *files)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["67108864", "20", "50000"] + (["100000"] if CGROUP_V2 else [])


def test_pause_update_restart_kill(dockerd):
    name = unique()
    dockerd.docker(*RUN, "-d", "--name", name, "busybox", "sleep", "1000", check=True)
    dockerd.docker("pause", name, check=True)
    assert dockerd.inspect(name)["State"]["Status"] == "paused"
    dockerd.docker("unpause", name, check=True)
    assert dockerd.inspect(name)["State"]["Status"] == "running"
    assert dockerd.docker("exec", name, "true").returncode == 0

    # docker update sends every limit, 0 for those it leaves alone (memory included)
    dockerd.docker("update", "--pids-limit", "30", name, check=True)
    p = dockerd.docker("exec", name, "cat", _cg("pids/pids.max", "pids.max"))
    assert (p.returncode, p.stdout) == (0, "30\n"), p.stderr
    dockerd.docker("update", "--memory", "100m", "--memory-swap", "200m", name, check=True)
    p = dockerd.docker("exec", name, "cat", _cg("memory/memory.limit_in_bytes", "memory.max"))
    assert (p.returncode, p.stdout) == (0, f"{100 << 20}\n"), p.stderr

    pid = dockerd.inspect(name)["State"]["Pid"]
    dockerd.docker("restart", "-t", "0", name, check=True)
    st = dockerd.inspect(name)["State"]
    assert st["Status"] == "running" and st["Pid"] not in (0, pid)

    dockerd.docker("kill", name, check=True)  # SIGKILL
    st = dockerd.inspect(name)["State"]
    assert (st["Status"], st["ExitCode"]) == ("exited", 137)
    dockerd.docker("rm", name, check=True)


def test_stats_and_update_cpus(dockerd):
    """docker stats reads the cgroup the runtime made; docker update --cpus goes through
    `bosun-runtime update`."""
    name = unique()
    dockerd.docker(*RUN, "-d", "--name", name, "--memory", "64m", "busybox", "sleep", "1000",
                   check=True)
    try:
        p = dockerd.docker("stats", "--no-stream", "--format",
                           "{{.Name}} {{.MemUsage}} {{.PIDs}}", name)
        assert p.returncode == 0, p.stderr
        got_name, usage, limit, pids = p.stdout.replace(" / ", " ").split()
        assert got_name == name and limit == "64MiB" and int(pids) >= 1, p.stdout
        dockerd.docker("update", "--cpus", "0.25", name, check=True)
        p = dockerd.docker("exec", name, "cat", _cg("cpu/cpu.cfs_quota_us", "cpu.max"))
        assert (p.returncode, p.stdout.split()[0]) == (0, "25000"), (p.stdout, p.stderr)
    finally:
        dockerd.docker("rm", "-f", name)
