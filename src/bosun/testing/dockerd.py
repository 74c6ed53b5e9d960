"""Harness shared by bosun's integration tests and benchmarks: one private dockerd
(Debian's docker.io, with the containerd it manages) whose data-root, exec-root, pidfile and
socket live in a temporary directory, with bosun-runtime registered as a runtime. `teardown()`
leaves no process, cgroup, mount or directory behind, and reports what it could not remove.

Not used by bosun itself; it lives in the package so that tests and benchmarks share one
copy (benchmarks do not import test modules)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent / "bosun-runtime"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKERD = shutil.which("dockerd", path=os.environ.get("PATH", "") + ":" + SBIN_PATH)
DOCKER = shutil.which("docker")

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


def mountpoints_under(prefix: str | os.PathLike) -> list[str]:
    """Mount points at or below prefix (as a real path), from /proc/self/mountinfo."""
    prefix = os.path.realpath(prefix)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
                out.append(mnt)
    return out


def unmount_under(prefix: str | os.PathLike) -> list[str]:
    """Lazily unmount everything at or below prefix, deepest first; return what is left."""
    for _ in range(20):
        mounts = mountpoints_under(prefix)
        if not mounts:
            return []
        for m in sorted(set(mounts), key=lambda p: -p.count("/")):
            subprocess.run(["umount", "-l", m], capture_output=True, timeout=30, check=False)
    return mountpoints_under(prefix)


def _dockerd_major() -> int:
    out = subprocess.run([DOCKERD, "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    m = re.search(r"version (\d+)\.", out)
    return int(m.group(1)) if m else 0


class Dockerd:
    """One private dockerd and a docker CLI pointed at it."""

    def __init__(self, tmp: Path, *, runtimes: dict[str, Path] | None = None,
                 insecure_registries: Sequence[str] = (), cli: str | None = None,
                 bridge: str | None = None) -> None:
        """runtimes: extra OCI runtimes by name (default: bosun-runtime as "bosun");
        cli: the docker CLI to use (default: `docker` on PATH); bridge: "NAME ADDRESS/LEN"
        gives containers dockerd's default bridge network on a Linux bridge made here (and
        removed at teardown) — without it they have no network. dockerd's iptables stay
        off either way (it would take over the host's FORWARD policy), so there is no NAT."""
        self.tmp = tmp
        self.runtimes = {"bosun": BIN} if runtimes is None else dict(runtimes)
        self.insecure_registries = list(insecure_registries)
        self.cli = cli or DOCKER
        self.bridge = bridge.split() if bridge else None
        self.version = ""
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
        env["PATH"] = env.get("PATH", "") + ":" + SBIN_PATH
        self.daemon_env = env
        self.cli_env = dict(env, DOCKER_HOST=f"unix://{self.sock}",
                            DOCKER_CONFIG=str(tmp / "cli"), DOCKER_CLI_HINTS="false")

    # -- the docker CLI ---------------------------------------------------------------------
    def docker(self, *args, input: bytes | str | None = None, timeout: float = 60,
               check: bool = False, raw: bool = False) -> subprocess.CompletedProcess:
        """Run the docker CLI; output is text (universal newlines) unless raw or bytes input."""
        text = not raw and not isinstance(input, bytes)
        p = subprocess.run([self.cli, *map(str, args)], env=self.cli_env, timeout=timeout,
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
        return subprocess.run([str(self.runtimes["bosun"]), "--root", str(root), *map(str, args)],
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

    def _make_bridge(self) -> None:
        name, address = self.bridge
        subprocess.run(["ip", "link", "add", "name", name, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", address, "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)

    def _start(self, driver: str) -> None:
        if self.bridge and not os.path.exists(f"/sys/class/net/{self.bridge[0]}"):
            self._make_bridge()
        config: dict = {"insecure-registries": self.insecure_registries}
        if _dockerd_major() < 23:  # keep the libtrust key out of /etc/docker
            config["deprecated-key-path"] = str(self.tmp / "key.json")
        self.config_file.write_text(json.dumps(config))
        cmd = [DOCKERD, "--config-file", self.config_file, "--data-root", self.data_root,
               "--exec-root", self.exec_root, "--pidfile", self.pidfile,
               "--host", f"unix://{self.sock}",
               *[f"--add-runtime={name}={path}" for name, path in self.runtimes.items()],
               "--iptables=false", "--ip-masq=false",
               f"--bridge={self.bridge[0] if self.bridge else 'none'}",
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
                    self.driver, self.version = driver, p.stdout.strip()
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
        return unmount_under(self.tmp)

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
        if self.bridge and os.path.exists(f"/sys/class/net/{self.bridge[0]}"):
            subprocess.run(["ip", "link", "del", self.bridge[0]], capture_output=True)
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

    stop = teardown
