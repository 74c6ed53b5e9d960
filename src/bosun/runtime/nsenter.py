"""Namespace plumbing shared by create and exec: which flags, which order, id maps."""

from __future__ import annotations

import os

from bosun import kernel as K
from bosun.runtime.errors import RuntimeErr

FLAGS = {
    "pid": K.CLONE_NEWPID, "network": K.CLONE_NEWNET, "mount": K.CLONE_NEWNS,
    "ipc": K.CLONE_NEWIPC, "uts": K.CLONE_NEWUTS, "user": K.CLONE_NEWUSER,
    "cgroup": K.CLONE_NEWCGROUP, "time": K.CLONE_NEWTIME,
}
PROC_NAMES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
              "user": "user", "cgroup": "cgroup", "time": "time"}
# The user namespace first (it owns the others); mount late, since paths vanish after it.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "mount", "cgroup", "time")


def open_paths(paths: dict[str, str]) -> list[tuple[str, int]]:
    """Open every namespace to join before joining any: after setns(mnt) paths change."""
    fds = []
    try:
        for kind in JOIN_ORDER:
            if kind in paths:
                try:
                    fds.append((kind, os.open(paths[kind], os.O_RDONLY | os.O_CLOEXEC)))
                except OSError as e:
                    raise RuntimeErr(f"cannot open {kind} namespace {paths[kind]}: "
                                     f"{e.strerror}") from None
    except BaseException:
        for _, fd in fds:
            os.close(fd)
        raise
    return fds


def join(fds: list[tuple[str, int]], kernel: K.Kernel = K.LINUX) -> None:
    for kind, fd in fds:
        try:
            kernel.setns(fd, FLAGS[kind])
        except OSError as e:
            raise RuntimeErr(f"cannot join {kind} namespace: {e.strerror}") from None
        finally:
            os.close(fd)


def format_map(mappings) -> str:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def write_id_maps(pid: int, linux: dict) -> None:
    """Write uid_map/gid_map of a child that has just unshared its user namespace."""
    uid_map, gid_map = format_map(linux["uidMappings"]), format_map(linux["gidMappings"])
    if os.geteuid() != 0:
        # An unprivileged process may map only itself, and only after denying setgroups.
        try:
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
        except OSError:
            pass
    for name, data in (("uid_map", uid_map), ("gid_map", gid_map)):
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(data)
        except OSError as e:
            raise RuntimeErr(f"cannot write {name} ({data.strip()!r}): {e.strerror}") from None


def loopback_up() -> None:
    """Bring lo up in a new network namespace, as runc does (it starts down)."""
    import _socket  # not `socket`: its enums cost start-up time
    import fcntl
    import struct

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifr = fcntl.ioctl(s.fileno(), 0x8913, struct.pack("16sh22x", b"lo", 0))  # SIOCGIFFLAGS
        flags = struct.unpack("16sh22x", ifr)[1]
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sh22x", b"lo", flags | 1))  # IFF_UP
    finally:
        s.close()


def write_time_offsets(offsets: dict) -> None:
    lines = []
    for clock in ("monotonic", "boottime"):
        o = offsets.get(clock)
        if o:
            lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
    if lines:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("".join(lines))


def container_namespaces(pid: int, types) -> dict[str, str]:
    """The /proc paths of a running container's namespaces, for exec to join."""
    out = {}
    for kind in types:
        mine = os.readlink(f"/proc/self/ns/{PROC_NAMES[kind]}")
        path = f"/proc/{pid}/ns/{PROC_NAMES[kind]}"
        try:
            theirs = os.readlink(path)
        except OSError as e:
            raise RuntimeErr(f"cannot read {path}: {e.strerror}") from None
        if theirs != mine:
            out[kind] = path
    return out
