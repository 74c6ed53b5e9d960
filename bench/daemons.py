"""Daemons the benchmarks start and always stop: Debian's docker-registry (the tests' own
harness, bosun.testing.registry) and a private dockerd (Debian's docker.io, with the
containerd it manages, set up for pulls from an insecure local registry). Each lives in a
temporary directory of its own; `stop()` leaves no process, mount or directory behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

from bosun.testing.registry import Registry, die_with_parent  # noqa: F401  (re-exported)


def mountpoints_under(prefix: str | os.PathLike) -> list[str]:
    """Mount points at or below prefix (a real path), from /proc/self/mountinfo."""
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


def remove_tree(path: str | os.PathLike) -> None:
    """Unmount whatever is mounted below path, then delete it. Refuses (raises) while
    anything is still mounted there: rmtree would walk into the mount."""
    if not os.path.lexists(path):
        return
    left = unmount_under(path)
    if left:
        raise RuntimeError(f"{path}: still mounted, not removed: {left}")
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        raise RuntimeError(f"{path} could not be removed")


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    """True unless gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


# -------------------------------------------------------------------------------------------
# dockerd

# Shared by every containerd 1.6 (shim sockets) and every dockerd (plugins) on the host:
# removed at stop only if they did not exist before and are empty.
_HOST_DIRS = ("/run/containerd/s", "/run/containerd", "/run/docker/plugins", "/run/docker")


class Dockerd:
    """A private dockerd: data-root, exec-root, pidfile and socket in tmp (keep its path
    short: unix socket paths are limited), no networking set up, the given registries
    insecure. `docker(...)` runs the CLI against it."""

    def __init__(self, tmp: Path, insecure_registries: list[str] = ()) -> None:
        self.dockerd = shutil.which("dockerd", path=os.environ.get("PATH", "") + ":" + SBIN_PATH)
        if self.dockerd is None:
            raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
        for tool in ("containerd", "containerd-shim-runc-v2"):
            if shutil.which(tool, path=SBIN_PATH) is None:
                raise RuntimeError(f"{tool} is needed by dockerd (apt-get install containerd)")
        # Debian's CLI (docker.io) next to Debian's daemon, if it is there.
        self.cli = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) \
            else shutil.which("docker")
        if self.cli is None:
            raise RuntimeError("the docker CLI is not installed (apt-get install docker.io)")
        self.tmp = tmp
        self.sock = tmp / "d.sock"
        self.data_root = tmp / "data"
        self.exec_root = tmp / "x"
        self.log = tmp / "dockerd.log"
        self.insecure_registries = list(insecure_registries)
        self.proc: subprocess.Popen | None = None
        self.driver = ""
        self.version = ""
        self.started = time.time()
        self.host_dirs_before = {d for d in _HOST_DIRS if os.path.exists(d)}
        self.key_json_before = os.path.exists("/etc/docker/key.json")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DOCKER_", "CONTAINERD_", "LISTEN_", "NOTIFY_SOCKET"))}
        env["PATH"] = env.get("PATH", "") + ":" + SBIN_PATH
        self.daemon_env = env
        self.cli_env = dict(env, DOCKER_HOST=f"unix://{self.sock}",
                            DOCKER_CONFIG=str(tmp / "cli"), DOCKER_CLI_HINTS="false")

    def docker(self, *args: str, timeout: float = 300,
               check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([self.cli, *args], env=self.cli_env, timeout=timeout,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {p.returncode}: "
                               f"{p.stderr.strip()}\n{self.log_tail()}")
        return p

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "dockerd log (tail):\n" + "\n".join(lines[-n:])

    def start(self) -> None:
        errors = []
        for driver in ("overlay2", "vfs"):
            try:
                self._start(driver)
                return
            except RuntimeError as e:
                errors.append(f"{driver}: {e}")
                self._stop_daemon()
                unmount_under(self.tmp)
                shutil.rmtree(self.data_root, ignore_errors=True)
                shutil.rmtree(self.exec_root, ignore_errors=True)
        raise RuntimeError("dockerd did not start:\n" + "\n".join(errors))

    def _start(self, driver: str) -> None:
        out = subprocess.run([self.dockerd, "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
        m = re.search(r"version (\d+)\.", out)
        config: dict = {"insecure-registries": self.insecure_registries}
        if m and int(m.group(1)) < 23:  # keep the libtrust key out of /etc/docker
            config["deprecated-key-path"] = str(self.tmp / "key.json")
        config_file = self.tmp / "daemon.json"
        config_file.write_text(json.dumps(config))
        cmd = [self.dockerd, "--config-file", config_file, "--data-root", self.data_root,
               "--exec-root", self.exec_root, "--pidfile", self.tmp / "d.pid",
               "--host", f"unix://{self.sock}", "--iptables=false", "--ip-masq=false",
               "--bridge=none", "--storage-driver", driver,
               "--exec-opt", "native.cgroupdriver=cgroupfs"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env=self.daemon_env, start_new_session=True,
                                         preexec_fn=die_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}\n"
                                   + self.log_tail())
            if self.sock.exists():
                try:
                    p = self.docker("version", "--format", "{{.Server.Version}}", timeout=10,
                                    check=False)
                except subprocess.TimeoutExpired:
                    continue
                if p.returncode == 0 and p.stdout.strip():
                    self.driver = driver
                    self.version = p.stdout.strip()
                    return
            time.sleep(0.1)
        raise RuntimeError("dockerd did not answer `docker version` in 45s\n" + self.log_tail())

    def _ours(self) -> list[int]:
        """dockerd, containerd and any shim: every process whose command line names tmp."""
        needle = str(self.tmp).encode()
        return [int(p) for p in os.listdir("/proc")
                if p.isdigit() and int(p) != os.getpid() and needle in _cmdline(int(p))]

    def _stop_daemon(self) -> None:
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

    def stop(self) -> None:
        """Stop everything and remove tmp; raises if something could not be cleaned up."""
        problems = []
        try:
            self._stop_daemon()
        except Exception as e:  # noqa: BLE001 - the rest still runs
            problems.append(f"stopping dockerd: {e!r}")
        left = [p for p in self._ours() if _alive(p)]
        if left:
            problems.append(f"processes left: {left}")
        mounts = unmount_under(self.tmp)
        if mounts:
            problems.append(f"mounts left: {mounts}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self.tmp.exists():
                problems.append(f"{self.tmp} could not be removed")
        for d in _HOST_DIRS:
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
            raise RuntimeError("dockerd cleanup: " + "; ".join(problems))
