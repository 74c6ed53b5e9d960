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
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "bosun-runtime"
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKERD = shutil.which("dockerd", path=os.environ.get("PATH", "") + ":" + _SBIN_PATH)
DOCKER = shutil.which("docker")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root"),
    pytest.mark.skipif(DOCKERD is None, reason="dockerd is not installed (Debian: docker.io)"),
    pytest.mark.skipif(DOCKER is None, reason="the docker CLI is not installed"),
    pytest.mark.skipif(shutil.which("containerd", path=_SBIN_PATH) is None
                       or shutil.which("containerd-shim-runc-v2", path=_SBIN_PATH) is None,
                       reason="containerd and containerd-shim-runc-v2 are needed by dockerd"),
]

# Shared by every containerd 1.6 on the host (shim sockets) and every dockerd (plugins):
# removed at teardown only if this module created them and they are empty.
HOST_DIRS = ("/run/containerd/s", "/run/containerd", "/run/docker/plugins", "/run/docker")


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """True unless gone or a zombie (an orphaned shim's zombie belongs to pid 1)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def _mountpoints_under(prefix: str) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
                out.append(mnt)
    return out


def _dockerd_major() -> int:
    out = subprocess.run([DOCKERD, "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    m = re.search(r"version (\d+)\.", out)
    return int(m.group(1)) if m else 0


class Dockerd:
    """One private dockerd and a docker CLI pointed at it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sock = tmp / "d.sock"
        self.data_root = tmp / "data"
        self.exec_root = tmp / "x"
        self.pidfile = tmp / "d.pid"
        self.log = tmp / "dockerd.log"
        self.config_file = tmp / "daemon.json"
        self.cgroup_parent = f"bosun-dk-{tmp.name.rpartition('-')[2]}"
        self.proc: subprocess.Popen | None = None
        self.driver = ""
        self.started = time.time()
        self.host_dirs_before = {d for d in HOST_DIRS if os.path.exists(d)}
        self.key_json_before = os.path.exists("/etc/docker/key.json")
        from bosun.runtime import cgroups

        self.own_cgroups = cgroups.own_cgroups()  # dockerd and its children inherit these
        self.docker_cgroups_before = {d for d in self._cgroup_candidates("docker")
                                      if os.path.isdir(d)}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DOCKER_", "CONTAINERD_", "LISTEN_", "NOTIFY_SOCKET"))}
        env["PATH"] = env.get("PATH", "") + ":" + _SBIN_PATH
        self.daemon_env = env
        self.cli_env = dict(env, DOCKER_HOST=f"unix://{self.sock}",
                            DOCKER_CONFIG=str(tmp / "cli"), DOCKER_CLI_HINTS="false")

    # -- the docker CLI ---------------------------------------------------------------------
    def docker(self, *args, input: bytes | str | None = None, timeout: float = 60,
               check: bool = False, raw: bool = False) -> subprocess.CompletedProcess:
        """Run the docker CLI; output is text (universal newlines) unless raw or bytes input."""
        text = not raw and not isinstance(input, bytes)
        p = subprocess.run([DOCKER, *map(str, args)], env=self.cli_env, timeout=timeout,
                           input=input, capture_output=True, text=text,
                           stdin=subprocess.DEVNULL if input is None else None)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(map(str, args))} exited {p.returncode}\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}\n{self.log_tail()}")
        return p

    def inspect(self, name: str) -> dict:
        return json.loads(self.docker("inspect", name, check=True).stdout)[0]

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "dockerd log (tail):\n" + "\n".join(lines[-n:])

    def runtime_root(self, cid: str) -> Path | None:
        """The shim's --root for bosun-runtime (dockerd 20.10: <exec-root>/runtime-runc/moby)."""
        for d in self.exec_root.glob(f"runtime-*/*/{cid}"):
            return d.parent
        return None

    def runtime(self, root: Path, *args) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN), "--root", str(root), *map(str, args)],
                              capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    # -- start --------------------------------------------------------------------------------
    def start(self) -> None:
        errors = []
        for driver in ("overlay2", "vfs"):
            try:
                self._start(driver)
                return
            except RuntimeError as e:
                errors.append(f"{driver}: {e}")
                self.stop_daemon()
                self._unmount_all()
                shutil.rmtree(self.data_root, ignore_errors=True)
                shutil.rmtree(self.exec_root, ignore_errors=True)
        raise RuntimeError("dockerd did not start:\n" + "\n".join(errors))

    def _start(self, driver: str) -> None:
        config = {}
        if _dockerd_major() < 23:  # keep the libtrust key out of /etc/docker
            config["deprecated-key-path"] = str(self.tmp / "key.json")
        self.config_file.write_text(json.dumps(config))
        cmd = [DOCKERD, "--config-file", self.config_file, "--data-root", self.data_root,
               "--exec-root", self.exec_root, "--pidfile", self.pidfile,
               "--host", f"unix://{self.sock}", "--add-runtime", f"bosun={BIN}",
               "--iptables=false", "--ip-masq=false", "--bridge=none",
               "--storage-driver", driver, "--cgroup-parent", self.cgroup_parent,
               "--exec-opt", "native.cgroupdriver=cgroupfs"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env=self.daemon_env, start_new_session=True)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}\n"
                                   + self.log_tail())
            if self.sock.exists():
                try:
                    p = self.docker("version", "--format", "{{.Server.Version}}", timeout=10)
                except subprocess.TimeoutExpired:
                    continue
                if p.returncode == 0 and p.stdout.strip():
                    self.driver = driver
                    return
            time.sleep(0.1)
        raise RuntimeError("dockerd did not answer `docker version` in 45s\n" + self.log_tail())

    # -- teardown -----------------------------------------------------------------------------
    def _ours(self) -> list[int]:
        """dockerd, containerd and the shims: every process whose command line names tmp."""
        needle = str(self.tmp).encode()
        return [int(p) for p in os.listdir("/proc")
                if p.isdigit() and int(p) != os.getpid() and needle in _cmdline(int(p))]

    def remove_containers(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            ids = self.docker("ps", "-aq", timeout=20).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, timeout=60)
        except subprocess.TimeoutExpired:
            pass

    def stop_daemon(self) -> None:
        """SIGTERM dockerd (it stops its containerd), then SIGKILL whatever is left of ours."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for _ in range(3):
            pids = [p for p in self._ours() if _alive(p)]
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _shim_sockets(self) -> list[str]:
        out = []
        for f in self.exec_root.glob("containerd/daemon/io.containerd.runtime.v2.task/*/*/address"):
            try:
                addr = f.read_text().strip()
            except OSError:
                continue
            if addr.startswith("unix://"):
                out.append(addr[len("unix://"):])
        return out

    def _cgroup_candidates(self, name: str) -> list[str]:
        from bosun.runtime import cgroups

        out = []
        for ctrl, mnt in cgroups.hierarchies().items():
            own = self.own_cgroups.get(ctrl, "/").lstrip("/")
            for base in {own, ""}:
                d = os.path.normpath(os.path.join(mnt, base, name))
                if d not in out:
                    out.append(d)
        return out

    def _remove_cgroups(self) -> list[str]:
        """Kill what is left in our --cgroup-parent and remove it (all hierarchies); return
        what could not be removed. A /docker cgroup that appeared meanwhile is removed only
        if empty: it may belong to another daemon."""
        left = []
        for attempt in range(100):
            left = []
            for top in self._cgroup_candidates(self.cgroup_parent):
                if not os.path.isdir(top):
                    continue
                for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                    try:
                        with open(os.path.join(dirpath, "cgroup.procs")) as f:
                            for pid in f.read().split():
                                os.kill(int(pid), signal.SIGKILL)  # a container's leftover
                    except (OSError, ValueError):
                        pass
                    try:
                        os.rmdir(dirpath)
                    except FileNotFoundError:
                        pass
                    except OSError:
                        left.append(dirpath)
            if not left:
                break
            time.sleep(0.05)
        for d in self._cgroup_candidates("docker"):
            if d not in self.docker_cgroups_before:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        return left

    def _unmount_all(self) -> list[str]:
        for _ in range(20):
            mounts = _mountpoints_under(str(self.tmp))
            if not mounts:
                return []
            for m in sorted(set(mounts), key=lambda p: -p.count("/")):
                subprocess.run(["umount", "-l", m], capture_output=True, timeout=30)
        return _mountpoints_under(str(self.tmp))

    def teardown(self) -> None:
        problems = []
        sockets = self._shim_sockets()  # before containerd removes the bundles naming them
        for step in (self.remove_containers, self.stop_daemon):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - every step runs
                problems.append(f"{step.__name__}: {e!r}")
        left = [p for p in self._ours() if _alive(p)]
        if left:
            problems.append(f"processes left: {left}")
        cg_left = self._remove_cgroups()
        if cg_left:
            problems.append(f"cgroups left: {cg_left}")
        mounts = self._unmount_all()
        if mounts:
            problems.append(f"mounts left: {mounts}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp.exists():
            problems.append(f"{self.tmp} could not be removed")
        for s in sockets:
            try:
                os.unlink(s)
            except OSError:
                pass
        for d in HOST_DIRS:
            if d not in self.host_dirs_before:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        key = "/etc/docker/key.json"
        if not self.key_json_before and os.path.exists(key) \
                and os.stat(key).st_mtime >= self.started - 1:
            os.unlink(key)
        if problems:
            raise AssertionError("dockerd teardown: " + "; ".join(problems))


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
        assert dockerd.runtime(root, "list", "-q").stdout == ""


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
