"""Harness shared by bosun's integration tests and benchmarks: a private `bosun daemon` whose
data-root, exec-root and socket live in a temporary directory, driven by the real docker CLI
(DOCKER_HOST) or the docker SDK. `teardown()` removes every container, then checks that no
shim, mount, cgroup, directory, volume, network (endpoint veth, bridge, nftables table,
namespace mount) is left, and reports what it had to clean itself. Each daemon gets a bridge of its
own (`bridge`, hence its own nftables table and link owner tag), so daemons run side by side
never touch each other's networking nor the host's bosun0.

Not used by bosun itself; it lives in the package so tests and benchmarks share one copy."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bosun.testing.dockerd import DOCKER, _alive, mountpoints_under, unmount_under

PY = sys.executable


def import_busybox(data_root: str, ref: str = "busybox:latest") -> str:
    """Put a busybox image into the image store under data_root (as `docker import` would)."""
    from bosun.demo import CACHE, busybox_tar
    from bosun.image.archive import import_rootfs
    from bosun.image.store import ImageStore

    os.makedirs(CACHE, exist_ok=True)
    with ImageStore(os.path.join(data_root, "image")) as store:
        return import_rootfs(store, busybox_tar(CACHE), ref=ref, changes=['CMD ["sh"]'])


class BosunDaemon:
    def __init__(self, workdir: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="bosun-daemon-"))
        self.data_root = self.workdir / "data"
        self.exec_root = self.workdir / "exec"
        self.socket = self.workdir / "bosun.sock"
        self.host = f"unix://{self.socket}"
        self.log_path = self.workdir / "daemon.log"
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.bridge = f"bsn{secrets.token_hex(4)}"  # ≤ 15 characters, unique to this daemon

    @property
    def nft_table(self) -> str:
        """The daemon's nftables table, which also tags the links it makes (EngineConfig)."""
        return f"bosun_{self.bridge}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, DOCKER_HOST=self.host)
        env.pop("DOCKER_CONTEXT", None)
        env["DOCKER_CONFIG"] = str(self.workdir / "docker-config")
        return env

    def start(self, timeout: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.workdir / "daemon.json").exists():
            (self.workdir / "daemon.json").write_text("{}")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PY, "-m", "bosun.cli", "daemon", "-H", self.host, "--data-root",
             str(self.data_root), "--exec-root", str(self.exec_root), "--config-file",
             str(self.workdir / "daemon.json"), "--pidfile", str(self.workdir / "bosun.pid"),
             "--bridge", self.bridge, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bosun daemon exited: {self.log_tail()}")
            if self.socket.exists() and self._ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"bosun daemon did not come up: {self.log_tail()}")

    def _ping(self) -> bool:
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(self.socket))
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
        finally:
            s.close()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 120,
               check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, *args], env=self.env, input=input, capture_output=True,
                           timeout=timeout)
        if check and r.returncode:
            raise AssertionError(f"docker {' '.join(args)} → {r.returncode}\n"
                                 f"{r.stderr.decode(errors='replace')}\n{self.log_tail()}")
        return r

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, version="1.47", timeout=120)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop the daemon (SIGKILL simulates a crash); containers keep running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if sig == signal.SIGKILL:
            # the fork-server notices its daemon is gone and exits; give it a moment
            time.sleep(0.05)
        self.proc = None

    def shim_pids(self) -> list[int]:
        """This daemon's shims (they outlive the daemon): processes named bosun-shim whose
        working directory is their container's, under our exec root."""
        out = []
        for pid in _shims_of(self.exec_root):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "bosun-shim":
                        out.append(pid)
            except OSError:
                continue
        return out

    def teardown(self) -> list[str]:
        """Remove all containers, stop the daemon, clean up; return what was left over."""
        problems = []
        made: set[str] = set()  # container IDs, which name their cgroups
        if self.proc is not None and self.proc.poll() is None:
            r = self.docker("ps", "-aq", "--no-trunc", check=False, timeout=30)
            ids = r.stdout.decode().split()
            made = set(ids) | self._created_ids()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=120)
            r = self.docker("network", "ls", "-q", "--filter", "type=custom", check=False,
                            timeout=30)
            nets = r.stdout.decode().split()
            if nets:
                self.docker("network", "rm", *nets, check=False, timeout=60)
            self.docker("volume", "prune", "-af", check=False, timeout=60)
        self.stop()
        vdir = self.data_root / "volumes"
        left = [p.name for p in vdir.iterdir() if p.is_dir()] if vdir.is_dir() else []
        if left:
            problems.append(f"volume directories left: {left}")
        problems += self._network_leftovers()
        from bosun.runtime.delete import delete
        from bosun.runtime.errors import RuntimeErr

        from bosun.runtime.state import Container

        runtime_root = self.exec_root / "runtime"
        if runtime_root.is_dir():
            for name in Container.dirs(str(runtime_root)):
                problems.append(f"runtime state left: {name[:12]}")
                try:
                    delete(str(runtime_root), name, force=True)
                except RuntimeErr:
                    pass
        left = _cgroups_named(made)
        if left:
            problems.append(f"cgroups left: {left}")
            for d in sorted(left, key=len, reverse=True):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        for pid in _shims_of(self.workdir):
            problems.append(f"shim left: {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = mountpoints_under(self.workdir)
        if left:
            problems.append(f"mounts left: {left}")
            unmount_under(self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return problems

    def _created_ids(self) -> set[str]:
        """IDs of the containers created since the daemon started, as far as its kept events
        go back (removed containers included)."""
        r = self.docker("events", "--since", "0", "--until", f"{time.time():.3f}", "--filter",
                        "type=container", "--filter", "event=create", "--format", "{{.ID}}",
                        check=False, timeout=30)
        return set(r.stdout.decode().split())

    def _network_leftovers(self) -> list[str]:
        """After the daemon stopped with every container and user network removed: only its
        default bridge (and its table) may remain, as dockerd leaves docker0. Those are
        removed here; anything else is reported (and removed)."""
        from bosun.network import firewall, netlink

        problems = []
        owner = self.nft_table
        # A stopped container's veths go with its namespace, which the kernel destroys
        # asynchronously: give that a moment.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(
                ":ep:" in alias for alias in netlink.owned_links(owner).values()):
            time.sleep(0.05)
        for ifname, alias in netlink.owned_links(owner).items():
            if ifname != self.bridge:
                problems.append(f"link left: {ifname} ({alias})")
            netlink.delete_link(ifname)
        rules = firewall.table_rules(owner)
        if rules:
            dnat = [r for r in rules if any("dnat" in stmt for stmt in r.get("expr", ()))]
            if dnat:
                problems.append(f"published-port rules left in nft table {owner}: {len(dnat)}")
        if firewall.table_rules(owner, "ip6") is not None:
            problems.append(f"nft table ip6 {owner} left (no IPv6 network remains)")
        firewall.delete_table(owner)
        netns_dir = self.exec_root / "network" / "netns"
        if netns_dir.is_dir():
            for name in os.listdir(netns_dir):
                problems.append(f"netns left: {name[:12]}")
                netlink.remove_netns(str(netns_dir / name))
        db = self.data_root / "network" / "network.db"
        if db.exists():
            from bosun.network.store import NetworkStore

            store = NetworkStore(str(db))
            eps = store.endpoints()
            if eps:
                problems.append(f"IPAM rows left: {[e.container_id[:12] for e in eps]}")
        return problems


def _shims_of(root: Path) -> list[int]:
    """Live processes tied to `root`: their cwd, an open file, or a unix socket bound there
    (a shim's only tie may be its listener, bound under a short temporary name)."""
    prefix = str(root)
    sockets = set()  # inodes of unix sockets bound under root
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith(prefix):
                    sockets.add(fields[6])
    except OSError:
        pass
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            targets = [os.readlink(f"/proc/{name}/cwd")]
            for fd in os.listdir(f"/proc/{name}/fd"):
                try:
                    targets.append(os.readlink(f"/proc/{name}/fd/{fd}"))
                except OSError:
                    continue
        except OSError:
            continue
        if any(t.startswith(prefix) or (t.startswith("socket:[") and t[8:-1] in sockets)
               for t in targets) and _alive(int(name)):
            out.append(int(name))
    return out


def _cgroups_named(names: set[str]) -> list[str]:
    """Cgroup directories, in any hierarchy and at any depth, whose name is in names."""
    from bosun.runtime import cgroups

    out = []
    for mnt in set(cgroups.hierarchies().values()) if names else ():
        for dirpath, dirnames, _ in os.walk(mnt):
            out += [os.path.join(dirpath, d) for d in dirnames if d in names]
    return sorted(out)


def inspect_container(daemon: BosunDaemon, name: str) -> dict:
    """`docker inspect` of one container, parsed."""
    import json

    return json.loads(daemon.docker("inspect", "--type", "container", name).stdout)[0]


def wait_for(what, timeout: float = 10.0, step: float = 0.05):
    """Poll what() until it returns something true; that value (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what.__doc__ or what}")
        time.sleep(step)
