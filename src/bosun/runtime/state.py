"""A container's on-disk record under the runtime root, and its live status.

Layout: <root>/<id>/state.json (written atomically) and <root>/<id>/exec.fifo (exists from
create until start). The status is never stored: it is derived from the kernel each time
(is the init alive, with the same start time, and is it still blocked on the fifo?).
"""

from __future__ import annotations

import os
import time

from bosun import quickjson
from bosun.runtime.errors import NotFound, RuntimeErr

DEFAULT_ROOT = "/run/bosun-runtime"


def default_root() -> str:
    """root's state lives in /run; another user's in $XDG_RUNTIME_DIR (as runc's)."""
    if os.geteuid() == 0:
        return DEFAULT_ROOT
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/bosun-runtime-{os.geteuid()}"
    return os.path.join(base, "bosun-runtime") if os.environ.get("XDG_RUNTIME_DIR") else base
STATE_FILE = "state.json"
FIFO = "exec.fifo"

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"


# The runtime's cache of compiled seccomp programs, under the state root: '@' is in no valid
# container id, so no container can take (or delete) this name.
SECCOMP_CACHE = "@seccomp"


def valid_id(cid: str) -> None:
    ok = cid not in ("", ".", "..") and len(cid) <= 1024 and all(
        c.isascii() and (c.isalnum() or c in "_+-.") for c in cid)
    if not ok:
        raise RuntimeErr(f"invalid container id {cid!r}: use letters, digits, '_+-.'")


def atomic_write(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Write a file so that readers see the old content or the new, never a torn mix;
    `durable` also makes it survive a crash (fsync of the file and of its directory)."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    if not durable:
        return
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def proc_stat(pid: int) -> tuple[bytes, int] | None:
    """(state letter, start time in clock ticks) of /proc/<pid>/stat (fields 3 and 22);
    None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0], int(fields[19])


def proc_start_time(pid: int) -> int | None:
    """The process's start time; None if gone or a zombie."""
    stat = proc_stat(pid)
    return None if stat is None or stat[0] in (b"Z", b"X") else stat[1]


class Container:
    """One container's record. Cheap to construct: loading reads one small JSON file."""

    def __init__(self, root: str, cid: str, record: dict):
        self.root = root
        self.id = cid
        self.record = record

    # -- locations -------------------------------------------------------------------------
    @staticmethod
    def dir_for(root: str, cid: str) -> str:
        return os.path.join(root, cid)

    @property
    def dir(self) -> str:
        return self.dir_for(self.root, self.id)

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, FIFO)

    @property
    def config(self) -> dict:
        return self.record["config"]

    @property
    def pid(self) -> int:
        return self.record.get("pid", 0)

    # -- persistence -------------------------------------------------------------------------
    @classmethod
    def load(cls, root: str, cid: str) -> "Container":
        valid_id(cid)
        try:
            with open(os.path.join(cls.dir_for(root, cid), STATE_FILE), "rb") as f:
                record = quickjson.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {cid!r} does not exist") from None
        except ValueError:
            raise RuntimeErr(f"state of container {cid!r} is corrupt") from None
        return cls(root, cid, record)

    def save(self, durable: bool = True) -> None:
        """durable=False for the transient records of a create in progress: after a crash
        no process of it survives, and `delete --force` removes even an unreadable record."""
        atomic_write(os.path.join(self.dir, STATE_FILE), quickjson.dumps(self.record).encode(),
                     durable=durable)

    @staticmethod
    def dirs(root: str) -> list[str]:
        """Every container directory under root, finished or not (a create cut short leaves
        one without a state file); not the runtime's own entries, such as SECCOMP_CACHE."""
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n != SECCOMP_CACHE)

    @staticmethod
    def ids(root: str) -> list[str]:
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names
                      if os.path.isfile(os.path.join(root, n, STATE_FILE)))

    # -- live status ---------------------------------------------------------------------------
    def init_alive(self) -> bool:
        pid, start = self.pid, self.record.get("pid_start")
        return bool(pid) and start is not None and proc_start_time(pid) == start

    def status(self) -> str:
        if not self.init_alive():
            return STOPPED
        if self.record.get("creating"):
            return CREATING
        if os.path.exists(self.fifo):
            return CREATED
        from bosun.runtime import cgroups

        if cgroups.is_frozen(self.record.get("cgroups") or {}):
            return PAUSED
        return RUNNING

    def oci_state(self) -> dict:
        status = self.status()
        state = {
            "ociVersion": self.config.get("ociVersion", ""),
            "id": self.id,
            "status": status,
            "pid": self.pid if status != STOPPED else 0,
            "bundle": self.record["bundle"],
            "rootfs": self.config["root"]["path"],
            "created": self.record["created"],
            "owner": "",
        }
        annotations = self.config.get("annotations")
        if annotations:
            state["annotations"] = annotations
        return state


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
