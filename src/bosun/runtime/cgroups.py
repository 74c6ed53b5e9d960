"""Cgroup placement: create the container's cgroup in every hierarchy and join it.

Works on cgroup v1 (one hierarchy per controller), v2 (unified) and hybrid hosts; the
hierarchies are read from /proc/self/mountinfo at run time. Resource limits, freezing and
stats build on the `paths` this module records (a later issue).
"""

from __future__ import annotations

import os

from bosun.runtime.errors import RuntimeErr

UNIFIED = "unified"
# Mount options of a v1 hierarchy that name a controller (the rest: rw, xattr, noprefix...).
V1_CONTROLLERS = frozenset((
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
    "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc"))


def hierarchies(mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """Map each v1 controller (and "unified" for cgroup2) to its mount point."""
    found: dict[str, str] = {}
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = post.split()
            if not fields or fields[0] not in ("cgroup", "cgroup2"):
                continue
            mnt = pre.split()[4]
            if fields[0] == "cgroup2":
                found.setdefault(UNIFIED, mnt)
                continue
            for opt in fields[2].split(","):
                if opt in V1_CONTROLLERS or opt.startswith("name="):
                    found.setdefault(opt, mnt)
    return found


def own_cgroups(pid: str = "self") -> dict[str, str]:
    """The cgroup path of a process in each hierarchy, from /proc/<pid>/cgroup."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if not ctrls:
                out[UNIFIED] = path
                continue
            for c in ctrls.split(","):
                out[c] = path
    return out


def resolve(cgroups_path: str, cid: str) -> dict[str, str]:
    """Directory of the container's cgroup in each mounted hierarchy."""
    if cgroups_path and ":" in cgroups_path and not cgroups_path.startswith("/"):
        raise RuntimeErr(f"cgroupsPath {cgroups_path!r} is systemd's slice:prefix:name form, "
                         "and the systemd cgroup driver is not supported")
    path = cgroups_path or "/" + cid
    if not path.strip("/") or path.strip("/") == ".":
        raise RuntimeErr("cgroupsPath must name a cgroup below the hierarchy's root")
    mounts = hierarchies()
    own = own_cgroups() if not path.startswith("/") else {}
    dirs = {}
    for ctrl, mnt in mounts.items():
        if ctrl.startswith("name=") and ctrl != "name=systemd":
            continue
        base = own.get(ctrl, "/") if own else "/"
        full = os.path.normpath(os.path.join(mnt, base.lstrip("/"), path.lstrip("/")))
        if not (full + "/").startswith(mnt.rstrip("/") + "/"):
            raise RuntimeErr(f"cgroupsPath {cgroups_path!r} escapes the cgroup hierarchy")
        dirs[ctrl] = full
    return dirs


def create(dirs: dict[str, str]) -> None:
    """Create each cgroup directory (with parents)."""
    for ctrl, d in dirs.items():
        os.makedirs(d, exist_ok=True)
        if ctrl == "cpuset":
            _inherit_cpuset(d)


def remove_created(dirs: dict[str, str]) -> None:
    """Undo a partial create(): remove the directories that exist (empty, just made)."""
    for d in set(dirs.values()):
        try:
            os.rmdir(d)
        except OSError:
            pass


def enter(dirs: dict[str, str]) -> None:
    """Move the calling (single-threaded) process into the cgroups.

    On v1 it writes "0" to `tasks`: moving only the calling thread lets the kernel skip the
    global threadgroup lock, whose RCU grace period costs ~20 ms on the first
    cgroup.procs write of each start. For a single-threaded process it is the same move.
    """
    done = set()
    for ctrl, d in dirs.items():
        if d in done:  # co-mounted controllers share one directory
            continue
        done.add(d)
        name = "cgroup.procs" if ctrl == UNIFIED else "tasks"
        with open(os.path.join(d, name), "w") as f:
            f.write("0")


def move(pid: int, d: str) -> None:
    """Move process `pid` (all its threads) into the cgroup directory d."""
    with open(os.path.join(d, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def join(pid: int, dirs: dict[str, str]) -> None:
    """Create the cgroups and move process `pid` (all its threads) into them."""
    create(dirs)
    for d in set(dirs.values()):
        with open(os.path.join(d, "cgroup.procs"), "w") as f:
            f.write(str(pid))


def _inherit_cpuset(d: str) -> None:
    """v1 cpuset cgroups start empty and refuse tasks until cpus and mems are copied down."""
    for key in ("cpuset.cpus", "cpuset.mems"):
        p = os.path.join(d, key)
        with open(p) as f:
            if f.read().strip():
                continue
        parent = os.path.dirname(d)
        _inherit_cpuset(parent) if parent != d else None
        with open(os.path.join(parent, key)) as f:
            value = f.read().strip()
        with open(p, "w") as f:
            f.write(value)


def pids(dirs: dict[str, str]) -> list[int]:
    """Every process in the container's cgroup, sub-cgroups included."""
    d = dirs.get("pids") or dirs.get("memory") or dirs.get(UNIFIED) or next(iter(dirs.values()), None)
    if not d or not os.path.isdir(d):
        return []
    out = []
    for dirpath, _, _ in os.walk(d):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def is_frozen(dirs: dict[str, str]) -> bool:
    d = dirs.get("freezer")
    try:
        if d:
            with open(os.path.join(d, "freezer.state")) as f:
                return f.read().strip() == "FROZEN"
        if dirs.get(UNIFIED):  # no v1 freezer: the v2 one, as freeze() uses
            with open(os.path.join(dirs[UNIFIED], "cgroup.freeze")) as f:
                return f.read().strip() == "1"
    except OSError:
        pass
    return False


def remove(dirs: dict[str, str]) -> None:
    """Remove the cgroups, sub-cgroups first. Empty cgroups only: callers kill first."""
    for d in set(dirs.values()):
        if not os.path.isdir(d):
            continue
        for dirpath, _, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise RuntimeErr(f"cannot remove cgroup {dirpath}: {e.strerror}") from None


def thaw(dirs: dict[str, str]) -> None:
    d = dirs.get("freezer")
    target, value = (os.path.join(d, "freezer.state"), "THAWED") if d else (
        os.path.join(dirs.get(UNIFIED, ""), "cgroup.freeze"), "0")
    try:
        with open(target, "w") as f:
            f.write(value)
    except OSError:
        pass


def freeze(dirs: dict[str, str], frozen: bool, timeout: float = 10.0) -> None:
    """Freeze or thaw every process of the cgroup, and wait until the kernel says it is so."""
    import time

    d = dirs.get("freezer")
    if d:
        target, value, check = os.path.join(d, "freezer.state"), \
            "FROZEN" if frozen else "THAWED", lambda s: s == ("FROZEN" if frozen else "THAWED")
        state_file = target
    elif UNIFIED in dirs:
        target, value = os.path.join(dirs[UNIFIED], "cgroup.freeze"), "1" if frozen else "0"
        state_file = os.path.join(dirs[UNIFIED], "cgroup.events")
        check = lambda s: f"frozen {int(frozen)}" in s  # noqa: E731
    else:
        raise RuntimeErr("no freezer: this host mounts neither the v1 freezer nor cgroup v2")
    deadline = time.monotonic() + timeout
    while True:
        with open(target, "w") as f:
            f.write(value)  # v1 may stay FREEZING while a task is busy: write again
        with open(state_file) as f:
            if check(f.read().strip()):
                return
        if time.monotonic() > deadline:
            raise RuntimeErr(f"cgroup did not {'freeze' if frozen else 'thaw'} in {timeout}s")
        time.sleep(0.001)
